"""The edit command (`time-edit`, `python -m time_core`): end to end on the embedded toy model in a subprocess (the
edit file loads, the LoRA loads into diffusers, the preview PNGs), and bad input: exit status 2 and one line, no
traceback, nothing written."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import ROOT
from PIL import Image

from time_core import compute_edit, load_edit, load_pipeline
from time_core.cli import edit_main
from time_core.export import read_lora_report
from time_core.models import TOY_PIPELINE_DIR

SOURCE, DESTINATION = "a circle", "a green circle"


def command(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, "-m", "time_core", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def toy():
    if not (TOY_PIPELINE_DIR / "model_index.json").is_file():
        pytest.fail(f"the embedded toy model is missing from {TOY_PIPELINE_DIR}", pytrace=False)
    return load_pipeline("toy", device="cpu")


def test_edit_lora_and_preview_end_to_end(toy, tmp_path):
    done = command(SOURCE, DESTINATION, "--model", "toy", "--lam", "0.1", "--method", "time", "--out",
                   "circle.safetensors", "--lora", "circle-lora.safetensors", "--rank", "8", "--lora-format", "kohya",
                   "--preview", "2", "--preview-dir", "preview", "--steps", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "denoising" in done.stderr and "factorising unet" in done.stderr  # progress bars

    edit = load_edit(tmp_path / "circle.safetensors")
    assert edit.method == "time" and edit.sources == (SOURCE,) and edit.destinations == (DESTINATION,)
    assert edit.lam == 0.1

    report = read_lora_report(tmp_path / "circle-lora.safetensors")
    assert report["format"] == "kohya" and report["rank"] == 8 and set(report["ranks"].values()) == {8}
    assert f"{report['max_error']:.2e}" in done.stdout
    other = copy.deepcopy(toy)
    other.load_lora_weights(str(tmp_path / "circle-lora.safetensors"))
    assert any("lora" in name for name, _ in other.unet.named_parameters())

    names = sorted(p.name for p in (tmp_path / "preview").iterdir())
    assert names == ["edited_seed0.png", "edited_seed1.png", "grid.png", "original_seed0.png", "original_seed1.png"]
    size = toy.unet.config.sample_size * toy.vae_scale_factor
    for name in names[:2] + names[3:]:
        assert Image.open(tmp_path / "preview" / name).size == (size, size)
    assert Image.open(tmp_path / "preview" / "grid.png").size == (2 * size, 2 * size)


def test_defaults_full_rank_peft_lora_without_preview(toy, tmp_path):
    done = command(SOURCE, DESTINATION, "--out", "e.safetensors", "--lora", "l.safetensors", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors", "l.safetensors"]
    report = read_lora_report(tmp_path / "l.safetensors")
    assert report["format"] == "peft" and report["rank"] is None and report["max_error"] < 1e-6
    assert report["edit"]["lam"] == "0.1"  # the method's default λ
    other = copy.deepcopy(toy)
    other.load_lora_weights(str(tmp_path / "l.safetensors"))


def test_preservation_automatic_and_listed(toy, tmp_path, capsys, monkeypatch):
    """`--preserve auto` gives the library's automatic edit (bit for bit), `--lam auto` the knob-free one; listed
    prompts take `--preserve-weight`."""
    monkeypatch.chdir(tmp_path)
    edit_main([SOURCE, DESTINATION, "--out", "auto.safetensors", "--preserve", "auto"])
    auto, expected = load_edit(tmp_path / "auto.safetensors"), compute_edit(toy, SOURCE, DESTINATION, preserve="auto")
    assert auto.preserve == expected.preserve and auto.context == expected.context
    assert any("blue circle" in prompt for prompt in auto.preserve)  # another colour, in context, kept
    assert torch.equal(auto.M, expected.M) and auto.lam == 0.1 and not auto.lam_auto
    out = capsys.readouterr().out
    assert f"preserved: {len(auto.preserve)} derived prompts at weight 1 (" in out and f"context: {auto.context}" in out
    edit_main([SOURCE, DESTINATION, "--out", "knobfree.safetensors", "--preserve", "auto", "--lam", "auto"])
    knobfree = load_edit(tmp_path / "knobfree.safetensors")
    expected = compute_edit(toy, SOURCE, DESTINATION, lam="auto", preserve="auto")
    assert knobfree.lam_auto and knobfree.lam == expected.lam and torch.equal(knobfree.M, expected.M)
    assert f"λ = {expected.lam:.4g} (chosen for this edit)" in capsys.readouterr().out
    edit_main([SOURCE, DESTINATION, "--out", "listed.safetensors", "--preserve", "a star", "a blue circle",
               "--preserve-weight", "2", "--method", "diff-quickfix"])
    listed = load_edit(tmp_path / "listed.safetensors")
    assert listed.method == "diff-quickfix" and listed.preserve == ("a star", "a blue circle")
    assert listed.preserve_weight == 2.0
    assert "preserved: 2 prompts at weight 2 (a star; a blue circle)" in capsys.readouterr().out


def test_bad_input_in_a_subprocess_is_one_line_without_traceback(tmp_path):
    done = command(SOURCE, DESTINATION, "--out", "e.safetensors", "--lam", "-1", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    prog = "python -m time_core"
    assert done.stderr == f"{prog}: error: lam must be finite and > 0, got -1.0 (see {prog} --help)\n"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--out", "e.txt"], "--out must name a .safetensors file, got 'e.txt'"),
    (["--out", "missing/e.safetensors"], "missing does not exist"),
    (["--out", "e.safetensors", "--lam", "nan"], "lam must be finite and > 0, got nan"),
    (["--out", "e.safetensors", "--lora", "l.safetensors", "--rank", "0"], "rank must be an integer >= 1"),
    (["--out", "e.safetensors", "--lora", "l.safetensors", "--lora-format", "lycoris"], "invalid choice: 'lycoris'"),
    (["--out", "e.safetensors", "--rank", "4"], "--rank, --lora-format and --lora-dtype need --lora PATH"),
    (["--out", "e.safetensors", "--lora", "e.safetensors"], "--lora and --out name the same file"),
    (["--out", "e.safetensors", "--preview", "-1"], "--preview must be between 0 and 64 seeds, got -1"),
    (["--out", "e.safetensors", "--preview", "1", "--steps", "0"], "--steps must be >= 1, got 0"),
    (["--out", "e.safetensors", "--method", "uce"], "invalid choice: 'uce'"),
    (["--out", "e.safetensors", "--method", "diff-quickfix", "--values-only"],
     "--values-only is an option of TIME's edit; diff-quickfix has no keys and values"),
    (["--out", "e.safetensors", "--preserve", "auto", "a star"], "--preserve auto derives the prompts itself"),
    (["--out", "e.safetensors", "--lam", "auto"], "--lam auto needs --preserve auto"),
    (["--out", "e.safetensors", "--lam", "big"], "lam must be a number, got 'big'"),
    (["--out", "e.safetensors", "--method", "finetune", "--preserve", "auto"],
     "--preserve auto is not available for finetune"),
    (["--out", "e.safetensors", "--preserve", "auto", "--preserve-weight", "2"],
     "--preserve-weight does not apply to --preserve auto"),
    (["--out", "e.safetensors", "--preserve-weight", "2"], r"--preserve-weight needs --preserve PROMPT \.\.\."),
    (["--out", "e.safetensors", "--preserve", "a star", "--preserve-weight", "-1"],
     "preserve_weight must be finite and >= 0, got -1.0"),
    (["--out", "e.safetensors", "--preserve", " "], "preserve prompt is empty"),
    ([], "the following arguments are required: --out"),
    (["--out", "e.safetensors", "--lam", "5e-324"], "lam must be at least 1e-12"),
    (["--out", "/proc/e.safetensors"], "--out /proc/e.safetensors: cannot write to /proc"),
    (["--out", "e.safetensors", "--lora", "/proc/l.safetensors"], "--lora /proc/l.safetensors: cannot write to /proc"),
    (["--out", "e.safetensors", "--preview", "1", "--preview-dir", "/proc/p"], "--preview-dir /proc/p: cannot write"),
    (["--out", "e.safetensors", "--model", "models/sd-v1-4/"], "no folder models/sd-v1-4/: a local model is a folder"),
    (["--out", "e.safetensors", "--preserve", "x" * 10_000], "preserve prompt has 10000 characters; at most 1000"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        edit_main([SOURCE, DESTINATION, *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("time-edit: error: "), err
    assert re.search(message, err), err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("source, destination, message", [
    ("", DESTINATION, "source is empty"),
    (SOURCE, "a green square", "does not contain the source word 'circle'"),
])
def test_bad_prompts_exit_2(source, destination, message, toy, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        edit_main([source, destination, "--out", "e.safetensors"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("time-edit: error: ") and message in err[-1]
    assert not list(tmp_path.iterdir())


def test_a_long_prompt_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from time_core.cli import command as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "load_pipeline", None)  # a call would fail with a TypeError, not the message below
    with pytest.raises(SystemExit) as exit_:
        edit_main(["a " * 5_000, DESTINATION, "--out", "e.safetensors"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("time-edit: error: source has 9999 characters; at most 1000 are read "
                                       "(see time-edit --help)\n")


def test_an_existing_output_is_replaced_only_with_force(toy, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e.safetensors").write_bytes(b"keep")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "grid.png").write_bytes(b"keep")
    for args, message in ((["--out", "e.safetensors"], "--out e.safetensors exists; pass --force to replace it"),
                          (["--out", "f.safetensors", "--lora", "e.safetensors"], "--lora e.safetensors exists"),
                          (["--out", "f.safetensors", "--preview", "1", "--preview-dir", "p"],
                           "--preview-dir p holds grid.png; pass --force to replace the preview")):
        with pytest.raises(SystemExit) as exit_:
            edit_main([SOURCE, DESTINATION, *args])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert (tmp_path / "e.safetensors").read_bytes() == b"keep" and not (tmp_path / "f.safetensors").exists()
    assert (tmp_path / "p" / "grid.png").read_bytes() == b"keep"
    edit_main([SOURCE, DESTINATION, "--out", "e.safetensors", "--force"])
    assert load_edit(tmp_path / "e.safetensors").destinations == (DESTINATION,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors", "p"]  # no temporary file left


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_follow_the_umask(mask, toy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    previous = os.umask(mask)
    try:
        edit_main([SOURCE, DESTINATION, "--out", "e.safetensors", "--lora", "l.safetensors"])
    finally:
        os.umask(previous)
    for name in ("e.safetensors", "l.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask


def test_ctrl_c_is_one_line(tmp_path, capsys, monkeypatch):
    from time_core.cli import command as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "load_pipeline", interrupted)
    with pytest.raises(SystemExit) as exit_:
        edit_main([SOURCE, DESTINATION, "--out", "e.safetensors"])
    assert exit_.value.code == 130
    assert capsys.readouterr().err.splitlines()[-1] == "time-edit: error: interrupted"
    assert not list(tmp_path.iterdir())


def test_a_model_that_does_not_load_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(SystemExit) as exit_:
        edit_main([SOURCE, DESTINATION, "--model", str(tmp_path / "not-a-model"), "--out", "e.safetensors"])
    assert exit_.value.code == 2
    assert "is not a diffusers pipeline saved with save_pretrained" in capsys.readouterr().err.splitlines()[-1]


def test_the_evaluation_module_command_still_answers():
    done = subprocess.run([sys.executable, "-m", "time_core.evaluate", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m time_core.evaluate")
    assert "--preset" in done.stdout
