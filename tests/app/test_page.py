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


def test_events_that_run_the_pipeline_queue_one_at_a_time_and_a_push_tokenizes_apart(tiny_runtime):
    """The edit (button and Enter), λ sweep and debias events share one concurrency group of one: the pipeline's
    tokenizers and scheduler keep per-call state. A push runs beside them, so it checks the pair with the runtime's
    private tokenizer: a pipeline whose tokenizer cannot be called still takes a push."""
    import copy

    import app

    blocks = app.build_demo(tiny_runtime)
    handlers = {}
    for fn in blocks.fns.values():
        name = getattr(getattr(fn.fn, "func", fn.fn), "__name__", None)
        handlers.setdefault(name, []).append(fn)
    heavy = [fn for name in ("edit_and_generate", "sweep_lambda", "debias") for fn in handlers[name]]
    assert len(heavy) == 5 and {(fn.concurrency_id, fn.concurrency_limit) for fn in heavy} == {("pipeline", 1)}
    assert all(fn.concurrency_id != "pipeline" for name in ("push_edit", "undo_edit", "upload_edit", "on_preset")
               for fn in handlers[name])

    class Untouchable:
        def __call__(self, *args, **kwargs):
            raise AssertionError("a push called the pipeline's tokenizer")

    pipe = copy.copy(tiny_runtime.pipe)
    object.__setattr__(pipe, "tokenizer", Untouchable())
    runtime = demo.DemoRuntime(pipe=pipe, classifier=tiny_runtime.classifier, config=tiny_runtime.config,
                               cache=tiny_runtime.cache, workdir=tiny_runtime.workdir,
                               tokenizer=tiny_runtime.tokenizer)
    assert tiny_runtime.tokenizer is not tiny_runtime.pipe.tokenizer
    session, rows = app.push_edit(runtime, "a rose", "a blue rose", demo.SessionEdits())
    assert session.stack == (("a rose", "a blue rose"),) and rows == session.stack_rows()


def test_choosing_a_method_sets_the_other_tab_lambda_and_edit_keys():
    import app

    other, lam_text, log_lam, keys = app.on_method("diff-quickfix")
    assert (other, lam_text, log_lam) == ("diff-quickfix", "0.01", -2.0)
    assert keys.value is True and keys.interactive is False  # no keys / values choice for Diff-QuickFix
    other, lam_text, _, keys = app.on_method("time")
    assert (other, lam_text, keys.interactive) == ("time", "0.1", True)


def test_a_model_that_cannot_load_is_a_clear_error():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--model", "no-such-user/no-such-model"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "could not load model 'no-such-user/no-such-model'" in done.stderr and "offline" in done.stderr
