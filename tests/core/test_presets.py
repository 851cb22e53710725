import copy
import dataclasses
import json
from pathlib import Path

import pytest

from time_core.presets import (
    DebiasEntry,
    DebiasPreset,
    EditEntry,
    EditPreset,
    PromptPair,
    list_presets,
    load_preset,
)
from time_core.shapes.colour_reader import changed_objects
from time_core.shapes.world import DEBIAS_SHAPE, DEBIAS_SPLIT, DEFAULT_COLOURS, PALETTE, RELATED_SHAPES, parse_caption

EXPECTED = {
    "timed_test": (EditPreset, 147),
    "timed_test_filtered_sd14": (EditPreset, 104),
    "timed_validation": (EditPreset, 8),
    "timed_professions": (DebiasPreset, 35),
    "shapes": (EditPreset, 21),
    "shapes_easy": (EditPreset, 15),
    "shapes_validation": (EditPreset, 10),
    "shapes_debias": (DebiasPreset, 1),
}


def _edit_data() -> dict:
    def entry() -> dict:
        pairs = [{"prompt": f"A pear {k}", "destination": f"A blue pear {k}"} for k in range(5)]
        negatives = copy.deepcopy(pairs)
        return {"source": "A banana", "destination": "A blue banana", "positives": pairs, "negatives": negatives}

    return {"name": "t", "description": "d", "model": "sd", "kind": "edit", "entries": [entry(), entry()]}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_presets_load(name):
    cls, count = EXPECTED[name]
    preset = load_preset(name)
    assert isinstance(preset, cls)
    assert preset.name == name
    assert len(preset.entries) == count
    assert load_preset(list_presets()[name]) == preset
    size = 10 if name in ("shapes", "shapes_validation") else 5  # the hard Shapes benchmark: 10 + 10 per entry
    for entry in preset.entries:
        if isinstance(entry, EditEntry):
            assert len(entry.positives) == size and len(entry.negatives) == size
            assert all(isinstance(pair, PromptPair) for pair in entry.positives + entry.negatives)
        else:
            assert isinstance(entry, DebiasEntry) and len(entry.tests) == 5 and len(entry.classes) == 2


def test_list_presets_names_the_shipped_files():
    assert set(EXPECTED) <= set(list_presets())


def test_timed_rows_round_trip():
    preset = load_preset("timed_test")
    first = preset.entries[0]
    # First row of TIMED_test_set.csv.
    assert first == EditEntry(
        source="A banana",
        destination="A blue banana",
        positives=(
            PromptPair("A bowl of bananas", "A bowl of blue bananas"),
            PromptPair("A painting of a banana", "A painting of a blue banana"),
            PromptPair("A pizza with bananas", "A pizza with blue bananas"),
            PromptPair("A banana funny cartoon", "A blue banana funny cartoon"),
            PromptPair("Bananas in space", "Blue bananas in space"),
        ),
        negatives=(
            PromptPair("An apple", "A blue apple"),
            PromptPair("A pear", "A blue pear"),
            PromptPair("A strawberry", "A blue strawberry"),
            PromptPair("A pineapple", "A blue pineapple"),
            PromptPair("A lemon", "A blue lemon"),
        ),
    )
    # Prompts are stripped of surrounding whitespace only ("... playing football " in the CSV).
    prompts = [pair.prompt for entry in preset.entries for pair in entry.positives + entry.negatives]
    assert "Harry Potter playing football" in prompts
    assert all(prompt == prompt.strip() for prompt in prompts)
    # The filtered and validation sets: the filtered set is a subset of the test set.
    filtered = load_preset("timed_test_filtered_sd14")
    assert set(filtered.entries) <= set(preset.entries)
    validation = load_preset("timed_validation")
    assert validation.entries[0].positives[0] == PromptPair("A bear, pixel art", "A sand bear, pixel art")


def test_timed_professions_round_trip():
    preset = load_preset("timed_professions")
    first = preset.entries[0]
    assert first == DebiasEntry(
        source="an attendant",
        destination="a female attendant",
        validation="A photo of an attendant",
        tests=(
            "A painting of an attendant",
            "an attendant working",
            "an attendant laughing",
            "an attendant in the workplace",
            "an attendant digital art",
        ),
        attributes=("female", "male"),
        classes=("a female attendant", "a male attendant"),
    )
    for entry in preset.entries:
        assert entry.attributes == ("female", "male")
        assert entry.destination in entry.classes
        assert entry.classes[1] == entry.classes[0].replace(" female ", " male ", 1)


def test_valid_data_loads(tmp_path):
    preset = load_preset(_write(tmp_path, _edit_data()))
    assert isinstance(preset, EditPreset) and len(preset.entries) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.entries[0].source = "x"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["entries"][1].update(extra="x"), r"entries\[1\]: unknown key 'extra'"),
        (lambda d: d["entries"][1].pop("destination"), r"entries\[1\]: missing key 'destination'"),
        (lambda d: d["entries"][1]["positives"].pop(), r"entries\[1\]: key 'positives' must hold exactly 5 items"),
        (lambda d: d["entries"][1]["negatives"].append({}), r"entries\[1\]: key 'negatives' must hold exactly 5"),
        (lambda d: d["entries"][0].update(negatives=[]), r"entries\[0\]: key 'negatives' must hold at least one"),
        (lambda d: d["entries"][0]["positives"][2].update(prompt=3), r"entries\[0\]\.positives\[2\]: key 'prompt'"),
        (lambda d: d["entries"][0]["negatives"][1].pop("destination"), r"\.negatives\[1\]: missing key 'destination'"),
        (lambda d: d.update(model="sdxl"), r"key 'model' must be one of"),
        (lambda d: d.update(kind="other"), r"key 'kind' must be one of"),
        (lambda d: d.update(colour="red"), r"unknown key 'colour'"),
        (lambda d: d.pop("description"), r"missing key 'description'"),
        (lambda d: d.update(entries=[]), r"key 'entries' must be a non-empty list"),
        (lambda d: d["entries"][0].update(source=""), r"entries\[0\]: key 'source' must not be empty"),
    ],
)
def test_invalid_edit_data_is_rejected(tmp_path, mutate, message):
    data = _edit_data()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=message) as error:
        load_preset(path)
    assert str(path) in str(error.value)


def test_invalid_debias_data_is_rejected(tmp_path):
    data = json.loads(list_presets()["shapes_debias"].read_text())
    data["entries"][0]["tests"] = data["entries"][0]["tests"][:4]
    with pytest.raises(ValueError, match=r"entries\[0\]: key 'tests' must hold exactly 5 items, got 4"):
        load_preset(_write(tmp_path, data))
    data = json.loads(list_presets()["shapes_debias"].read_text())
    data["entries"][0]["attributes"] = ["orange", "orange"]
    with pytest.raises(ValueError, match=r"entries\[0\]: key 'attributes' must hold distinct values"):
        load_preset(_write(tmp_path, data))
    data = json.loads(list_presets()["shapes_debias"].read_text())
    data["entries"][0]["positives"] = []
    with pytest.raises(ValueError, match=r"entries\[0\]: unknown key 'positives'"):
        load_preset(_write(tmp_path, data))


def test_bad_files_and_names(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_preset(path)
    with pytest.raises(ValueError, match="no_such_preset"):
        load_preset("no_such_preset")


def _top_level(parsed: dict) -> dict:
    """A parsed one-shape caption without its per-object list."""
    return {key: value for key, value in parsed.items() if key != "objects"}


def test_shapes_easy_preset_covers_the_first_world():
    preset = load_preset("shapes_easy")
    assert preset.model == "toy"
    sources = {parse_caption(entry.source)["shape"] for entry in preset.entries}
    assert sources == set(DEFAULT_COLOURS) - set(RELATED_SHAPES) | {"circle", "square"}
    for entry in preset.entries:
        source = parse_caption(entry.source)
        destination = parse_caption(entry.destination)
        colour = destination["colour"]
        assert source["colour"] is None and colour in PALETTE
        assert colour != DEFAULT_COLOURS[source["shape"]]
        assert destination["shape"] == source["shape"]
        for pair in entry.positives:
            prompt, target = parse_caption(pair.prompt), parse_caption(pair.destination)
            assert prompt["shape"] == source["shape"] and prompt["colour"] is None
            assert _top_level(target) == {**_top_level(prompt), "colour": colour}
        negative_shapes = set()
        for pair in entry.negatives:
            prompt, target = parse_caption(pair.prompt), parse_caption(pair.destination)
            assert prompt["shape"] != source["shape"] and prompt["colour"] is None
            assert _top_level(target) == {**_top_level(prompt), "colour": colour}
            assert DEFAULT_COLOURS.get(prompt["shape"]) != colour
            assert prompt["shape"] != DEBIAS_SHAPE or colour not in DEBIAS_SPLIT
            negative_shapes.add(prompt["shape"])
        assert len(negative_shapes) >= 3


def test_shapes_debias_preset():
    preset = load_preset("shapes_debias")
    assert preset.model == "toy" and len(preset.entries) == 1
    entry = preset.entries[0]
    assert set(entry.attributes) == set(DEBIAS_SPLIT)
    assert DEBIAS_SPLIT[entry.attributes[0]] > DEBIAS_SPLIT[entry.attributes[1]]
    source = parse_caption(entry.source)
    assert source["kind"] == "single" and source["objects"] == [{"shape": DEBIAS_SHAPE, "colour": None, "size": None}]
    assert source["prefix"] is None and source["background"] is None
    assert parse_caption(entry.destination)["colour"] == entry.attributes[1]
    for prompt in (entry.validation, *entry.tests):
        parsed = parse_caption(prompt)
        assert parsed["shape"] == DEBIAS_SHAPE and parsed["colour"] is None
    assert entry.validation not in entry.tests
    assert [parse_caption(text)["colour"] for text in entry.classes] == list(entry.attributes)


def test_hard_shapes_validation_set_shares_no_edit_with_the_test_set():
    test = {(e.source, e.destination) for e in load_preset("shapes").entries}
    validation = {(e.source, e.destination) for e in load_preset("shapes_validation").entries}
    assert validation and not test & validation


@pytest.mark.parametrize("name", ["shapes", "shapes_validation"])
def test_hard_shapes_preset_types_and_targets(name):
    preset = load_preset(name)
    assert preset.model == "toy" and len(preset.entries) >= (20 if name == "shapes" else 10)
    kinds = {"positive": set(), "negative": set()}
    for entry in preset.entries:
        shape = parse_caption(entry.source)["shape"]
        colour = parse_caption(entry.destination)["colour"]
        assert colour != DEFAULT_COLOURS[shape] and parse_caption(entry.source)["colour"] is None
        for pair in entry.positives:
            kinds["positive"].add(pair.type)
            prompt = parse_caption(pair.prompt)
            recoloured = changed_objects(pair.prompt, pair.destination)
            # a positive recolours the edited shape (both shapes of a plural) with the edit's colour
            assert set(recoloured.values()) == {colour}
            assert all(prompt["objects"][k]["shape"] == shape and prompt["objects"][k]["colour"] is None
                       for k in recoloured)
            if pair.type.startswith("scene"):  # the edited shape is named first or second, as the type says
                assert list(recoloured) == [0 if pair.type == "scene-first" else 1]
        for pair in entry.negatives:
            kinds["negative"].add(pair.type)
            prompt = parse_caption(pair.prompt)
            for k, target in changed_objects(pair.prompt, pair.destination).items():
                obj = prompt["objects"][k]
                assert target == colour
                # without the edit the negative shows another colour: the one it names, or its shape's default
                assert (obj["colour"] or DEFAULT_COLOURS[obj["shape"]]) != colour
                assert obj["shape"] != DEBIAS_SHAPE
                if pair.type == "related":
                    assert obj["shape"] == RELATED_SHAPES[shape]
                if pair.type == "explicit":
                    assert obj["shape"] == shape and obj["colour"] not in (None, colour)
                if pair.type == "other-object":
                    assert obj["shape"] != shape and shape in [o["shape"] for o in prompt["objects"]]
    assert kinds == {"positive": {"phrasing", "plural", "scene-first", "scene-second"},
                     "negative": {"related", "explicit", "other-object", "unrelated"}}


def test_hard_shapes_negatives_name_colours_in_context():
    """Explicit negatives name the shape's own default colour, and a colour among other words (a size, a plural, a
    scene), in every entry of the hard benchmark."""
    for entry in load_preset("shapes").entries:
        shape = parse_caption(entry.source)["shape"]
        explicit = [parse_caption(p.prompt) for p in entry.negatives if p.type == "explicit"]
        assert any(p["kind"] == "single" and p["colour"] == DEFAULT_COLOURS[shape] and not p["size"] for p in explicit)
        assert any(p["kind"] == "single" and p["size"] and p["colour"] for p in explicit)
        assert any(p["kind"] == "plural" and p["objects"][0]["colour"] for p in explicit)
        assert any(p["kind"] == "pair" and p["objects"][0]["colour"] for p in explicit)
