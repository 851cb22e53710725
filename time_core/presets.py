"""Edit benchmarks and debiasing sets stored as JSON presets, loaded strictly into frozen dataclasses.

The shipped presets are package data in `time_core/data/presets/` (format and origins: the `README.md` there). A preset
file holds one JSON object with the keys `name`, `description`, `model`, `kind` and `entries`:

- `kind: "edit"` (the TIMED format): each entry is `{"source", "destination", "positives", "negatives"}`, where
  `positives` and `negatives` are non-empty lists of `{"prompt", "destination"}` objects (`NUM_PROMPTS` each in
  TIMED; every entry of one preset has as many positives, and as many negatives, as the first), each with an
  optional `"type"` (what kind of test it is, e.g. `"plural"` or `"related"`; reported separately). A positive should
  change with the edit (towards its `destination`); a negative should not (its `destination` is what it must not turn
  into).
- `kind: "debias"`: each entry is `{"source", "destination", "validation", "tests", "attributes", "classes"}`, where
  `tests` is a list of exactly `NUM_PROMPTS` prompts, `attributes` names the two values of the attribute being balanced
  (e.g. `["female", "male"]`, or palette colours `["orange", "blue"]` in the Shapes world) and `classes` gives one
  classifier text per attribute (e.g. `["a female developer", "a male developer"]`). The share of a prompt's images
  classified as `attributes[0]` is F_p; debiasing aims at F_p = 0.5.

`model` is `"sd"` (prompts for Stable Diffusion) or `"toy"` (prompts in the Shapes-world vocabulary). Any unknown key,
missing key, wrong type or wrong list length raises a `ValueError` naming the file, the entry index and the key.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRESETS_DIR: Path = Path(__file__).resolve().parent / "data" / "presets"
MODELS: tuple[str, ...] = ("sd", "toy")
KINDS: tuple[str, ...] = ("edit", "debias")
NUM_PROMPTS: int = 5
NUM_ATTRIBUTES: int = 2


@dataclass(frozen=True)
class PromptPair:
    """A prompt and its edited counterpart.

    Args:
        prompt (`str`): The prompt as written before the edit.
        destination (`str`): For a positive, what the prompt should show after the edit; for a negative, what it must
            not turn into.
        type (`str`, *optional*): The kind of test (e.g. `"plural"`, `"scene"`, `"related"`, `"explicit"`), for
            reports per type; `None` when the preset does not say.
    """

    prompt: str
    destination: str
    type: str | None = None


@dataclass(frozen=True)
class EditEntry:
    """One edit of an edit benchmark.

    Args:
        source (`str`): The under-specified source prompt, e.g. `"A banana"`.
        destination (`str`): The destination prompt of the edit, e.g. `"A blue banana"`.
        positives (`tuple[PromptPair, ...]`): related prompts that should change with the edit (`NUM_PROMPTS` in TIMED).
        negatives (`tuple[PromptPair, ...]`): related prompts that should not change (`NUM_PROMPTS` in TIMED).
    """

    source: str
    destination: str
    positives: tuple[PromptPair, ...]
    negatives: tuple[PromptPair, ...]

    @property
    def num_edited(self) -> int:
        """How many of `prompts()` should follow the edit: the source and the positives, which come first."""
        return 1 + len(self.positives)

    def prompts(self) -> tuple[list[str], list[str]]:
        """The source, the positives and the negatives, and the destination of each."""
        pairs = [PromptPair(self.source, self.destination), *self.positives, *self.negatives]
        return [p.prompt for p in pairs], [p.destination for p in pairs]


@dataclass(frozen=True)
class EditPreset:
    """An edit benchmark.

    Args:
        name (`str`): Short name, the file stem of the preset.
        description (`str`): What the benchmark is and where it comes from.
        model (`str`): `"sd"` or `"toy"`, the model family the prompts are written for.
        entries (`tuple[EditEntry, ...]`): The edits.
    """

    name: str
    description: str
    model: str
    entries: tuple[EditEntry, ...]


@dataclass(frozen=True)
class DebiasEntry:
    """One attribute to balance for one under-specified prompt.

    Args:
        source (`str`): The under-specified prompt, e.g. `"a developer"`.
        destination (`str`): The edit destination, naming the non-stereotypical attribute value, e.g.
            `"a female developer"`.
        validation (`str`): The prompt whose F_p chooses the edit strength, e.g. `"A photo of a developer"`.
        tests (`tuple[str, ...]`): `NUM_PROMPTS` held-out prompts on which F_p is reported.
        attributes (`tuple[str, ...]`): The two attribute values; F_p is the share of images classified as
            `attributes[0]`.
        classes (`tuple[str, ...]`): One classifier text per attribute value, in the same order.
    """

    source: str
    destination: str
    validation: str
    tests: tuple[str, ...]
    attributes: tuple[str, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class DebiasPreset:
    """A debiasing set.

    Args:
        name (`str`): Short name, the file stem of the preset.
        description (`str`): What the set is and where it comes from.
        model (`str`): `"sd"` or `"toy"`.
        entries (`tuple[DebiasEntry, ...]`): The prompts to balance.
    """

    name: str
    description: str
    model: str
    entries: tuple[DebiasEntry, ...]


def _check_keys(obj: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = [key for key in obj if key not in keys]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected keys {list(keys)}")
    missing = [key for key in keys if key not in obj]
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}")


def _string(obj: dict, key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"{where}: key {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{where}: key {key!r} must not be empty")
    return value


def _list(obj: dict, key: str, length: int | None, where: str) -> list:
    """`obj[key]`, a list of exactly `length` items (`None`: at least one)."""
    value = obj[key]
    if not isinstance(value, list):
        raise ValueError(f"{where}: key {key!r} must be a list, got {type(value).__name__}")
    if length is None and not value:
        raise ValueError(f"{where}: key {key!r} must hold at least one item")
    if length is not None and len(value) != length:
        raise ValueError(f"{where}: key {key!r} must hold exactly {length} items, got {len(value)}")
    return value


def _prompt_pair(obj: Any, where: str) -> PromptPair:
    if isinstance(obj, dict) and "type" in obj:
        _check_keys(obj, ("prompt", "destination", "type"), where)
        kind = _string(obj, "type", where)
    else:
        _check_keys(obj, ("prompt", "destination"), where)
        kind = None
    return PromptPair(prompt=_string(obj, "prompt", where), destination=_string(obj, "destination", where), type=kind)


def _edit_entry(obj: Any, where: str, counts: tuple[int, int] | None = None) -> EditEntry:
    """One edit entry; `counts` (positives, negatives) is what every entry of its preset must hold, if known."""
    _check_keys(obj, ("source", "destination", "positives", "negatives"), where)
    positives = _list(obj, "positives", counts and counts[0], where)
    negatives = _list(obj, "negatives", counts and counts[1], where)
    return EditEntry(
        source=_string(obj, "source", where),
        destination=_string(obj, "destination", where),
        positives=tuple(_prompt_pair(pair, f"{where}.positives[{k}]") for k, pair in enumerate(positives)),
        negatives=tuple(_prompt_pair(pair, f"{where}.negatives[{k}]") for k, pair in enumerate(negatives)),
    )


def _strings(obj: dict, key: str, length: int, where: str) -> tuple[str, ...]:
    values = _list(obj, key, length, where)
    for k, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: key {key!r} item {k} must be a non-empty string, got {value!r}")
    return tuple(values)


def _debias_entry(obj: Any, where: str) -> DebiasEntry:
    _check_keys(obj, ("source", "destination", "validation", "tests", "attributes", "classes"), where)
    attributes = _strings(obj, "attributes", NUM_ATTRIBUTES, where)
    if len(set(attributes)) != len(attributes):
        raise ValueError(f"{where}: key 'attributes' must hold distinct values, got {list(attributes)}")
    return DebiasEntry(
        source=_string(obj, "source", where),
        destination=_string(obj, "destination", where),
        validation=_string(obj, "validation", where),
        tests=_strings(obj, "tests", NUM_PROMPTS, where),
        attributes=attributes,
        classes=_strings(obj, "classes", NUM_ATTRIBUTES, where),
    )


def parse_preset(data: Any, source: str = "<preset>") -> EditPreset | DebiasPreset:
    """Validates a decoded preset object and builds its dataclass.

    Args:
        data (`Any`): The decoded JSON object.
        source (`str`, *optional*, defaults to `"<preset>"`): Name of the file, used in error messages.

    Returns:
        `EditPreset` or `DebiasPreset`, according to the `kind` key.
    """
    _check_keys(data, ("name", "description", "model", "kind", "entries"), source)
    model = _string(data, "model", source)
    if model not in MODELS:
        raise ValueError(f"{source}: key 'model' must be one of {MODELS}, got {model!r}")
    kind = _string(data, "kind", source)
    if kind not in KINDS:
        raise ValueError(f"{source}: key 'kind' must be one of {KINDS}, got {kind!r}")
    entries = data["entries"]
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: key 'entries' must be a non-empty list")
    name = _string(data, "name", source)
    description = _string(data, "description", source)
    if kind == "edit":
        first = _edit_entry(entries[0], f"{source}: entries[0]")
        counts = (len(first.positives), len(first.negatives))  # every entry as many as the first
        edits = (first, *(_edit_entry(entry, f"{source}: entries[{i}]", counts)
                          for i, entry in enumerate(entries) if i > 0))
        return EditPreset(name=name, description=description, model=model, entries=edits)
    balances = tuple(_debias_entry(entry, f"{source}: entries[{i}]") for i, entry in enumerate(entries))
    return DebiasPreset(name=name, description=description, model=model, entries=balances)


def list_presets() -> dict[str, Path]:
    """The preset files shipped with the package (`PRESETS_DIR`).

    Returns:
        `dict[str, Path]`: Preset name (file stem) to file path, sorted by name.
    """
    return {path.stem: path for path in sorted(PRESETS_DIR.glob("*.json"))}


def load_preset(path_or_name: str | Path) -> EditPreset | DebiasPreset:
    """Loads a preset strictly.

    Args:
        path_or_name (`str` or `Path`): A path to a JSON file, or the name of a shipped preset (see `list_presets`),
            e.g. `"timed_test_filtered_sd14"`.

    Returns:
        `EditPreset` or `DebiasPreset`.
    """
    path = Path(path_or_name)
    if not path.is_file():
        presets = list_presets()
        if str(path_or_name) not in presets:
            raise ValueError(
                f"no preset file or shipped preset named {str(path_or_name)!r}; shipped presets: {sorted(presets)}"
            )
        path = presets[str(path_or_name)]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON: {error}") from error
    return parse_preset(data, source=str(path))
