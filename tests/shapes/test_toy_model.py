"""End to end on the embedded Shapes-world model: the same code path as SD 1.4 (`load_pipeline` → `from_pretrained`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pipeline_hash

import time_core
from time_core.models import TOY_DEFAULTS, TOY_PIPELINE_DIR, generation_defaults
from time_core.presets import load_preset
from time_core.shapes.colour_reader import destination_probability, read_colour
from time_core.shapes.world import DEFAULT_COLOURS

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = dict(num_inference_steps=TOY_DEFAULTS.steps, guidance_scale=TOY_DEFAULTS.guidance, progress=False)


@pytest.fixture(scope="module")
def toy():
    assert (TOY_PIPELINE_DIR / "model_index.json").is_file(), (
        f"the embedded toy model is missing from {TOY_PIPELINE_DIR}; it is part of the repository "
        "(train it again with `python -m time_core.shapes.train`)"
    )
    return time_core.load_pipeline("toy", device="cpu")


def test_toy_loads_through_the_standard_pipeline(toy):
    from diffusers import StableDiffusionPipeline

    assert type(toy) is StableDiffusionPipeline
    assert generation_defaults(toy) == TOY_DEFAULTS
    size = sum(f.stat().st_size for f in TOY_PIPELINE_DIR.parent.rglob("*") if f.is_file())
    assert size < 30 * 2**20, f"committed weights are {size / 2**20:.1f} MB"


def test_toy_context_length_comes_from_its_config(toy):
    # the toy text encoder reads 20 positions, not SD's 77: the edit takes every length from the model's configs
    length = toy.text_encoder.config.max_position_embeddings
    assert toy.tokenizer.model_max_length == length == 20
    problem = time_core.prepare_edit(toy, "a circle", "a green circle")
    assert problem.num_pairs == 4 * length  # the source and 3 augmentations × every position
    with pytest.raises(time_core.PromptError, match="reads at most 20"):
        time_core.prepare_edit(toy, "a photo of a big circle on a white background " * 2, "a green circle")


def test_preset_edit_flips_the_source_and_keeps_a_negative(toy):
    entry = load_preset("shapes").entries[0]  # "a circle" -> "a green circle"
    target = entry.destination.split()[1]
    negative = next(p for p in entry.negatives if p.type == "unrelated")
    negative_shape = negative.prompt.split()[-1]
    seeds = list(range(8))
    before = pipeline_hash(toy)
    edit = time_core.compute_edit(toy, entry.source, entry.destination)
    result = time_core.generate(toy, [entry.source, negative.prompt], seeds, edit=edit, **SETTINGS)
    original_source = [read_colour(img) for img in result.original[0]]
    edited_source = [read_colour(img) for img in result.edited[0]]
    edited_negative = [read_colour(img) for img in result.edited[1]]
    original_negative = [read_colour(img) for img in result.original[1]]
    assert sum(c == target for c in original_source) <= 2, original_source  # the implicit default
    assert sum(c == target for c in edited_source) >= 6, edited_source  # flipped
    assert sum(c == DEFAULT_COLOURS[negative_shape] for c in original_negative) >= 6, original_negative
    assert sum(c == DEFAULT_COLOURS[negative_shape] for c in edited_negative) >= 6, edited_negative  # kept
    assert pipeline_hash(toy) == before


def test_oracle_follows_every_prompt_type(toy):
    # The unedited model draws what a prompt names, for every type of test prompt of the hard benchmark: each
    # positive's destination shows the edit's colour on the right shape(s), each negative keeps its own colour.
    entries = [load_preset("shapes").entries[k] for k in (0, 7, 15)]  # circle, square, star edits
    cases = []  # (type, prompt to draw, prompt, destination, wanted P(destination))
    for entry in entries:
        cases += [(p.type, p.destination, p.prompt, p.destination, 1.0) for p in entry.positives]
        cases += [(p.type, p.prompt, p.prompt, p.destination, 0.0) for p in entry.negatives]
    seeds = [0, 1, 2, 3]
    images = time_core.generate(toy, [c[1] for c in cases], seeds, **SETTINGS).original
    correct: dict[str, list[bool]] = {}
    for (kind, _, prompt, destination, wanted), row in zip(cases, images):
        correct.setdefault(kind, []).extend(destination_probability(im, prompt, destination) == wanted for im in row)
    assert set(correct) == {"phrasing", "plural", "scene-first", "scene-second", "related", "explicit", "other-object",
                            "unrelated"}
    for kind, hits in correct.items():
        assert sum(hits) >= 0.95 * len(hits), (kind, sum(hits), len(hits))


def test_a_measured_leak_and_its_cure_by_a_large_lambda(toy):
    # README (The Shapes world > Evidence): after "a circle" -> "a green circle" at the paper's λ = 0.1, the
    # look-alike "a oval" (orange by default) and the explicit "a blue circle" turn green (8 of 8 seeds measured);
    # at λ = 1000 both keep their colour while the source still turns green.
    seeds = [0, 1, 2, 3]
    prompts = ["a circle", "a oval", "a blue circle"]
    colours = {}
    for lam in (0.1, 1000.0):
        edit = time_core.compute_edit(toy, "a circle", "a green circle", lam=lam)
        result = time_core.generate(toy, prompts, seeds, edit=edit, original=False, **SETTINGS)
        colours[lam] = [[read_colour(image) for image in row] for row in result.edited]
    source, oval, blue = colours[0.1]
    assert source.count("green") == 4, source
    assert oval.count("green") >= 3 and blue.count("green") >= 3, (oval, blue)  # the leak
    source, oval, blue = colours[1000.0]
    assert source.count("green") >= 3, source
    assert oval.count(DEFAULT_COLOURS["oval"]) == 4 and blue.count("blue") == 4, (oval, blue)  # kept


def test_knob_free_edit_keeps_colours_named_in_context(toy):
    # After "a circle" -> "a green circle" with lam="auto", preserve="auto" (the knob-free edit), colours named with
    # other words around them keep their colour — the circle's own default red included, where plain TIME turns them
    # green (test above) — while the source, a plural and the circle named second in a scene follow.
    seeds = [0, 1, 2, 3]
    edit = time_core.compute_edit(toy, "a circle", "a green circle", lam="auto", preserve="auto")
    assert edit.lam_auto and edit.auto_preserve and edit.context.startswith("corpus edit_corpus.txt:")
    kept = {"a red circle": "a green circle", "a big purple circle": "a big green circle",
            "two blue circles on a white background": "two green circles on a white background",
            "a yellow circle next to a heart": "a green circle next to a heart",
            "an image of a orange circle": "an image of a green circle"}
    follow = {"a circle": "a green circle", "a drawing of two circles": "a drawing of two green circles",
              "a square and a circle": "a square and a green circle"}
    prompts = [*kept, *follow]
    result = time_core.generate(toy, prompts, seeds, edit=edit, original=False, **SETTINGS)
    for prompt, row in zip(prompts, result.edited):
        destination = {**kept, **follow}[prompt]
        green = [destination_probability(image, prompt, destination) > 0.5 for image in row]
        assert sum(green) == (0 if prompt in kept else len(seeds)), (prompt, green)


def _run_evaluate(out: Path, processes: int) -> dict:
    args = ["-m", "time_core.evaluate", "--preset", "shapes", "--model", "toy", "--classifier", "colour",
            "--seeds", "4", "--seeds-per-unit", "2", "--limit", "2", "--out", str(out)]
    if processes == 1:
        command = [sys.executable, *args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_two_processes_equal_one(tmp_path):
    one = _run_evaluate(tmp_path / "one", 1)
    two = _run_evaluate(tmp_path / "two", 2)
    assert one["overall"] == two["overall"]
    assert one["per_entry"] == two["per_entry"]
    units = sorted(p.name for p in (tmp_path / "two" / "units").iterdir())
    assert len(units) == 2 * 2 * 2  # 2 entries × 2 seed blocks × (base + one λ)
