"""The page itself: its layout for a Stable Diffusion model (a tiny stand-in), and a model that cannot load."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT

import time_core.demo as demo
from time_core.presets import load_preset


def test_the_page_builds_for_stable_diffusion_presets(tiny_runtime):
    """The layout for an SD-family model (here a tiny stand-in): TIMED presets, the professions as debias prompts."""
    import app

    runtime = demo.DemoRuntime(pipe=tiny_runtime.pipe, classifier=tiny_runtime.classifier,
                               config=demo.DemoConfig.for_model("tiny-sd1", family="sd", size=16, scorer="none"),
                               cache=demo.OriginalCache(8), workdir=tiny_runtime.workdir)
    blocks = app.build_demo(runtime)
    components = {c.get("props", {}).get("label"): c["props"] for c in blocks.config["components"]}
    assert len(components["Preset"]["choices"]) == 147 + 104 + 8 + 35
    assert len(components["Prompt"]["choices"]) == 35
    assert components["Source prompt"]["value"] == load_preset("timed_test").entries[0].source
    names = {d.get("api_name") for d in blocks.config["dependencies"]}
    assert {"edit", "sweep", "debias", "push", "undo", "reset", "upload"} <= names
    radios = [c["props"] for c in blocks.config["components"] if c["props"].get("label") == "Method"]
    assert len(radios) == 2  # the Edit and λ sweep tabs
    assert all([tuple(choice) for choice in r["choices"]] == demo.method_choices() for r in radios)


def test_events_that_run_the_pipeline_take_turns_and_a_push_tokenizes_apart(tiny_runtime):
    """The edit (button, Enter, an example, the first page), λ sweep and debias events share one concurrency group and
    take turns on the pipeline chunk by chunk (`PipelineTurns`); live λ has its own group. A push runs beside them, so
    it checks the pair with the runtime's private tokenizer: a pipeline whose tokenizer cannot be called still takes a
    push."""
    import copy
    from types import SimpleNamespace

    import app
    from ui import handlers, stack

    blocks = app.build_demo(tiny_runtime)
    runs = {}
    for fn in blocks.fns.values():
        run = getattr(fn.fn, "args", (None,))[0]
        runs.setdefault(getattr(run, "__name__", None), []).append(fn)
    heavy = [fn for name in ("edit", "sweep", "debias") for fn in runs[name]]
    assert len(runs["edit"]) == 8  # button, two Enter keys, an example, two mode buttons, the first page, the API
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in heavy} == {("pipeline", 8)}
    assert {fn.concurrency_id for name in ("live_from_slider", "live_from_text") for fn in runs[name]} == {"live"}
    assert all(fn.concurrency_id != "pipeline" for name in ("push", "undo", "upload", "on_preset") for fn in runs[name])
    assert handlers.edit.__module__ == "ui.handlers"

    class Untouchable:
        def __call__(self, *args, **kwargs):
            raise AssertionError("a push called the pipeline's tokenizer")

    pipe = copy.copy(tiny_runtime.pipe)
    object.__setattr__(pipe, "tokenizer", Untouchable())
    runtime = demo.DemoRuntime(pipe=pipe, classifier=tiny_runtime.classifier, config=tiny_runtime.config,
                               cache=tiny_runtime.cache, workdir=tiny_runtime.workdir,
                               tokenizer=tiny_runtime.tokenizer)
    assert tiny_runtime.tokenizer is not tiny_runtime.pipe.tokenizer
    ui = SimpleNamespace(session="session", edit=SimpleNamespace(source="source", destination="destination",
                                                                 method="method", stack="stack"))
    values = {"session": demo.SessionEdits(), "source": "a rose", "destination": "a blue rose", "method": "time"}
    (update,) = stack.push(runtime, ui, values)
    assert update["session"].stack == (("a rose", "a blue rose"),) and update["stack"] == [[1, "a rose", "a blue rose"]]
    values["method"] = "diff-quickfix"  # the pair is checked by the chosen method: Diff-QuickFix takes any pair
    (update,) = stack.push(runtime, ui, {**values, "destination": "a car"})
    assert update["session"].stack == (("a rose", "a car"),) and update["session"].method == "diff-quickfix"


def test_choosing_a_method_sets_both_tabs_the_lambda_and_edit_keys():
    from types import SimpleNamespace

    from ui import stack

    ui = SimpleNamespace(edit=SimpleNamespace(method="e", lam_text="lam", lam_slider="slider", edit_keys="keys"),
                         sweep=SimpleNamespace(method="s"))
    (update,) = stack.on_sweep_method(None, ui, {"s": "diff-quickfix"})
    assert (update["e"], update["s"], update["lam"], update["slider"]) == ("diff-quickfix",) * 2 + ("0.01", -2.0)
    assert update["keys"].value is True and update["keys"].interactive is False  # no keys / values choice
    (update,) = stack.on_edit_method(None, ui, {"e": "time"})
    assert (update["s"], update["lam"], update["keys"].interactive) == ("time", "0.1", True)


def test_app_py_is_only_the_page():
    """`app.py` assembles the tabs of `ui/`: at most 150 lines, no handler of its own, the stylesheet and examples as
    files."""
    lines = (ROOT / "app.py").read_text().splitlines()
    assert len(lines) <= 150
    assert (ROOT / "ui" / "style.css").is_file() and (ROOT / "ui" / "examples.json").is_file()
    for path in (ROOT / "ui").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path


def test_a_model_that_cannot_load_is_a_clear_error():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--model", "no-such-user/no-such-model"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "could not load model 'no-such-user/no-such-model'" in done.stderr and "offline" in done.stderr
