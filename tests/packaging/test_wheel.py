"""The package as a user installs it: build the wheel, install it into a fresh environment, and from another folder load
the toy model, compute an edit, generate an image, read the presets and run the commands' `--help`.

Nothing is downloaded: the wheel is built with this environment's setuptools (`--no-build-isolation`) and installed
with `--no-deps --no-index`; the fresh environment finds the dependencies (torch, diffusers, ...) through a `.pth`
file naming this environment's site-packages, which adds that folder to `sys.path` after its own site-packages, where
the wheel is installed (the `.pth` files of the outer folder, such as an editable install of this checkout, are not
run). The test checks that `time_core` is imported from the installed wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from helpers import ROOT

pytestmark = pytest.mark.packaging

SMOKE = """
import sys
from pathlib import Path

import time_core
from time_core.evaluation.scoring import load_scorer
from time_core.presets import list_presets, load_preset

assert Path(time_core.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), time_core.__file__
pipe = time_core.load_pipeline("toy", device="cpu")
edit = time_core.compute_edit(pipe, "a circle", "a green circle")
result = time_core.generate(pipe, "a circle", [0], edit=edit, num_inference_steps=2, progress=False)
assert result.edited[0][0].size == (64, 64), result.edited[0][0].size
assert set(list_presets()) >= {"timed_test", "timed_test_filtered_sd14", "timed_validation", "timed_professions",
                               "shapes", "shapes_debias"}, sorted(list_presets())
assert len(load_preset("shapes").entries) > 0 and len(load_preset("timed_test").entries) == 147
load_scorer("toy", device="cpu")
print("smoke ok")
"""


def run(command: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict]:
    """`(environment, another folder, process environment)` with the freshly built wheel installed."""
    tmp = tmp_path_factory.mktemp("packaging")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    source = tmp / "source"  # a copy, so that the build leaves nothing in the checkout (symlinks become files)
    shutil.copytree(ROOT / "time_core", source / "time_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
         tmp / "dist", source], tmp, env)
    (wheel,) = (tmp / "dist").glob("time_editing-*.whl")

    prefix = tmp / "env"
    venv.EnvBuilder(with_pip=False).create(prefix)
    python = prefix / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).stdout
    Path(purelib.strip(), "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], tmp, env)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return prefix, elsewhere, env


def test_the_wheel_ships_the_presets_and_the_toy_model(installed):
    prefix, elsewhere, env = installed
    assert "smoke ok" in run([prefix / "bin" / "python", "-c", SMOKE], elsewhere, env).stdout


def test_the_installed_commands_answer(installed):
    prefix, elsewhere, env = installed
    for command in (["time-evaluate", "--help"], ["time-debias", "--help"]):
        out = run([prefix / "bin" / command[0], *command[1:]], elsewhere, env).stdout
        assert out.startswith(f"usage: {command[0]}") and "--preset" in out and "--method" in out
    out = run([prefix / "bin" / "python", "-m", "time_core.evaluate", "--help"], elsewhere, env).stdout
    assert out.startswith("usage: python -m time_core.evaluate")
    # a finished run exits with status 0 (`run` checks it) and writes its report
    run([prefix / "bin" / "time-evaluate", "--preset", "shapes", "--limit", "1", "--seeds", "1", "--seeds-per-unit",
         "1", "--lam", "0.1", "--out", "tiny-run"], elsewhere, env)
    assert (elsewhere / "tiny-run" / "results.json").is_file()


def test_the_installed_edit_command_writes_an_edit_and_a_lora(installed):
    prefix, elsewhere, env = installed
    assert run([prefix / "bin" / "time-edit", "--help"], elsewhere, env).stdout.startswith("usage: time-edit")
    run([prefix / "bin" / "time-edit", "a circle", "a green circle", "--out", "edit.safetensors", "--lora",
         "lora.safetensors", "--rank", "4"], elsewhere, env)
    assert (elsewhere / "edit.safetensors").is_file() and (elsewhere / "lora.safetensors").is_file()
    out = run([prefix / "bin" / "python", "-m", "time_core", "--help"], elsewhere, env).stdout
    assert out.startswith("usage: python -m time_core")
