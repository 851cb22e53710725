"""The demo's bounds on what a user sends (pairs, preserved prompts, test prompts, images per click, prompt length,
uploads checked like typed input), prompts shown as text, and the work folder of edit files."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from helpers import pipeline_hash

import time_core.demo as demo
from time_core import Edit, EditFileError, EditRequest, PromptError
from time_core.demo.exports import download_folder
from time_core.presets import PromptPair

PROMPTS = demo.PromptSet("a rose", "a blue rose", (PromptPair("a rose in a vase", "a blue rose in a vase"),),
                         (PromptPair("a tulip", "a blue tulip"),))


def bounded(runtime, tmp_path=None, **limits) -> demo.DemoRuntime:
    """`runtime` with other limits (and another work folder)."""
    config = dataclasses.replace(runtime.config, **limits)
    return dataclasses.replace(runtime, config=config, workdir=tmp_path or runtime.workdir)


def run(runtime, session, prompts=PROMPTS, seeds=1):
    settings = runtime.settings(num_seeds=seeds, steps=2, guidance=5.0)
    return next(demo.run_edit(runtime, session, prompts, 0.1, settings))


def test_limits_are_checked_before_anything_is_computed(tiny_runtime, monkeypatch):
    runtime = bounded(tiny_runtime, max_pairs=2, max_preserve=1, max_test_prompts=3, max_images=8)
    before = pipeline_hash(runtime.pipe)
    monkeypatch.setattr(demo.SessionEdits, "prepare", None)  # reaching the solve would be a TypeError
    session = demo.SessionEdits(stack=(("a tulip", "a red tulip"), ("a vase", "a green vase")))
    with pytest.raises(demo.DemoInputError, match=re.escape(
            "3 prompt pairs in the edit (stacked and current), more than the limit of 2 (start the app with "
            "--max-pairs or $TIME_MAX_PAIRS to change it)")):
        run(runtime, session)
    with pytest.raises(demo.DemoInputError, match="2 preserved prompts in the edit, more than the limit of 1"):
        run(runtime, demo.SessionEdits(preserve=("a tulip", "a vase")))
    many = dataclasses.replace(PROMPTS, negatives=PROMPTS.negatives * 3)
    with pytest.raises(demo.DemoInputError, match="4 test prompts, more than the limit of 3"):
        run(runtime, demo.SessionEdits(), many)
    with pytest.raises(demo.DemoInputError, match=re.escape(
            "this click would generate 12 images (3 prompts × 2 seeds × 2 models), more than the limit of 8")):
        run(runtime, demo.SessionEdits(), seeds=2)
    sweep = demo.run_sweep(runtime, demo.SessionEdits(), PROMPTS, (0.1, 1.0), runtime.settings(1, steps=2))
    with pytest.raises(demo.DemoInputError, match=re.escape("(3 prompts × 1 seeds × 3 models)")):
        next(sweep)
    entry = demo.debias_entry("shapes_debias:0")
    search = demo.run_debias(runtime, entry, 50, runtime.settings(2, steps=2), -1, 1, 3)
    message = f"({4 + 2 * len(entry.tests)} prompts × 2 seeds × 1 models)"
    with pytest.raises(demo.DemoInputError, match=re.escape(message)):
        next(search)
    long = dataclasses.replace(PROMPTS, positives=(PromptPair("a rose " * 200, "a blue rose"),))
    with pytest.raises(PromptError, match="test prompt has 1399 characters; at most 1000 are read"):
        run(runtime, demo.SessionEdits(), long)
    assert pipeline_hash(runtime.pipe) == before


def test_the_stack_is_bounded_when_pushing(tiny_runtime):
    session = demo.SessionEdits()
    tokenizer = tiny_runtime.tokenizer
    session = session.push(tokenizer, "a tulip", "a red tulip", max_pairs=2).push(tokenizer, "a vase", "a red vase", 2)
    assert session.push(tokenizer, "a vase", "a red vase", 2) is session  # a repeat is no new pair
    with pytest.raises(demo.DemoInputError, match="3 pairs in the edit stack, more than the limit of 2"):
        session.push(tokenizer, "a rose", "a blue rose", max_pairs=2)


def test_an_upload_is_checked_like_typed_input(tiny_runtime, tmp_path):
    runtime = bounded(tiny_runtime, tmp_path, max_pairs=3, max_preserve=2)
    width = tiny_runtime.pipe.text_encoder.config.hidden_size
    eye = torch.eye(width, dtype=torch.float64)

    def upload(name, sources, destinations, preserve=()):
        request = EditRequest(sources=sources, destinations=destinations, preserve=preserve)
        edit = Edit(M=eye, request=request, lam=0.1)
        return runtime.load_edit(edit.save(tmp_path / f"{name}.safetensors"))

    assert upload("ok", ("a rose",), ("a blue rose",), ("a tulip",)).sources == ("a rose",)
    cases = [
        (("many", ("a rose",) * 4, ("a blue rose",) * 4),
         "4 prompt pairs in many.safetensors, more than the limit of 3"),
        (("kept", ("a rose",), ("a blue rose",), ("a", "b", "c")), "3 preserved prompts in kept.safetensors"),
        (("empty", ("a rose", " "), ("a blue rose", "a red")), "empty.safetensors, pair 2: source is empty"),
        (("align", ("a rose",), ("<img src=x onerror=alert(1)>",)),
         "align.safetensors, pair 1: destination '<img src=x onerror=alert(1)>' does not contain the source word 'a':"),
        (("long", ("a rose",), ("a blue rose " + "x" * 2000,)), "long.safetensors, pair 1: destination has 2012 char"),
        (("tokens", ("a rose",), ("a blue rose",), ("a " * 90,)), "tokens.safetensors, preserved prompt 1: prompt"),
    ]
    for args, message in cases:
        with pytest.raises(EditFileError, match=re.escape(message)):
            upload(*args)


def test_prompts_are_text_in_markdown_and_pop_ups():
    hostile = "<img src=x onerror=alert(1)> [sign in](https://evil.example) ![i](http://evil.example/i.png) " \
              "www.evil.example a@evil.example *b* `c` $x$\n# heading"
    quoted = demo.quote(hostile)
    assert "\n" not in quoted and not re.search(r"(?<!\\)[<>\[\]()*`$#@:.!]", quoted)  # every one escaped
    assert re.sub(r"\\(.)", r"\1", quoted) == " ".join(hostile.split())  # unescaped, it is the prompt again
    assert demo.toast("destination '<a href=\"x\">x</a>' & more > 0") == \
        "destination '&lt;a href=\"x\">x&lt;/a>' &amp; more > 0"


def test_edit_files_are_bounded_and_removed_at_close(tiny_runtime, tmp_path):
    runtime = bounded(tiny_runtime, tmp_path / "work", max_edit_files=2)
    runtime.workdir.mkdir()
    request = EditRequest(sources=("a",), destinations=("a b",))
    edit = Edit(M=torch.eye(4, dtype=torch.float64), request=request, lam=0.1)
    paths = [runtime.save_edit(edit) for _ in range(4)]
    assert all(p.is_file() for p in paths[2:]) and not any(p.exists() for p in paths[:2])
    assert len(list(runtime.workdir.iterdir())) == 2
    runtime.close()
    assert not runtime.workdir.exists()


def test_download_folders_are_bounded_by_kind(tmp_path):
    """Edit and LoRA files are kept per kind, newest first; the grid's images/ folder is never removed."""
    (tmp_path / "images").mkdir()
    loras = [download_folder(tmp_path, "lora", keep=1) for _ in range(2)]
    edits = [download_folder(tmp_path, "edit", keep=2) for _ in range(3)]
    assert [p.exists() for p in loras] == [False, True] and [p.exists() for p in edits] == [False, True, True]
    assert (tmp_path / "images").is_dir() and len(list(tmp_path.iterdir())) == 4
    with pytest.raises(EditFileError, match="no file was uploaded"):
        demo.load_edit_file(None, None, max_bytes=10**6)


@pytest.mark.parametrize("model, images", [("toy", 1200), ("CompVis/stable-diffusion-v1-4", 300)])
def test_the_default_limits_fit_the_default_clicks(model, images):
    config = demo.DemoConfig.for_model(model)
    assert (config.max_images, config.max_pairs, config.max_test_prompts) == (images, 32, 20)
    prompts = 11  # a preset: the source, 5 positives and 5 negatives
    assert demo.check_images(config, prompts, config.num_seeds, 2) == 2 * prompts * config.num_seeds  # an edit
    demo.check_images(config, prompts, config.sweep_seeds, demo.SWEEP_MAX_COUNT + 1)  # the longest sweep
    with pytest.raises(ValueError, match="max_pairs must be an integer >= 1, got 0"):
        demo.DemoConfig.for_model(model, max_pairs=0)
