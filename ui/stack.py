"""The light handlers of the Edit tab (they never run the pipeline): presets, the method, the edit stack, edit files,
and the edit a debiasing search found. Same form as `ui.handlers`: `run(runtime, ui, values, progress)` yields
`{component: update}`."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

import time_core.demo as demo

__all__ = ["export_lora", "on_edit_method", "on_example", "on_preset", "on_sweep_method", "push", "reset", "undo",
           "upload", "use_debias_edit"]


def edit_keys_box(method: str, value: bool = True) -> gr.Checkbox:
    """"Edit keys too" as a method leaves it: on and greyed out for a method without the option."""
    has_edit_keys = demo.method_fields(method).has_edit_keys
    return gr.Checkbox(value or not has_edit_keys, interactive=has_edit_keys)


def on_preset(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    e = ui.edit
    if v[e.preset]:
        prompts = demo.preset_prompts(v[e.preset])
        yield {e.source: prompts.source, e.destination: prompts.destination, e.tests: prompts.table()}


def on_example(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    """An example picked: the test prompts of the preset it comes from (the example fills the prompts and λ)."""
    e = ui.edit
    prompts = demo.example_prompts(runtime.config.family, v[e.source], v[e.destination])
    if prompts is not None:
        yield {e.tests: prompts.table()}


def _method_outputs(ui, method: str) -> dict:
    """A method chosen on either tab: both selectors, the method's default λ, and "edit keys"."""
    e, s = ui.edit, ui.sweep
    fields = demo.method_fields(method)
    return {e.method: method, s.method: method, e.lam_text: fields.lam_text, e.lam_slider: fields.log_lam,
            e.edit_keys: edit_keys_box(method)}


def on_edit_method(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    yield _method_outputs(ui, v[ui.edit.method])


def on_sweep_method(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    yield _method_outputs(ui, v[ui.sweep.method])


def push(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    session = v[ui.session]
    if ui.edit.method in v:  # the page's choice (an API client's session keeps its own)
        session = session.with_method(demo.parse_method(v[ui.edit.method]), session.auto_preserve)
    session = session.push(runtime.tokenizer, v[ui.edit.source], v[ui.edit.destination], runtime.config.max_pairs)
    yield {ui.session: session, ui.edit.stack: session.stack_rows()}


def undo(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    session = v[ui.session].undo()
    yield {ui.session: session, ui.edit.stack: session.stack_rows()}


def reset(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    session = v[ui.session].reset()
    yield {ui.session: session, ui.edit.stack: session.stack_rows()}


def upload(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    """An edit file dropped on the upload box, checked like typed input (`DemoRuntime.load_edit`): its pairs, λ
    (exactly), flags and method; a LoRA or a foreign file is refused with a message that says what it is and what to
    do."""
    e, s = ui.edit, ui.sweep
    edit = runtime.load_edit(v[e.upload])
    session = demo.SessionEdits.from_edit(edit)
    text = demo.lam_text(edit.lam)
    gr.Info(f"loaded a {edit.method} edit of {len(edit.sources)} pair(s), λ = {text}")
    yield {ui.session: session, e.stack: session.stack_rows(), e.source: edit.sources[-1],
           e.destination: edit.destinations[-1], e.lam_text: text, e.lam_slider: demo.log_from_lam(text),
           e.edit_keys: edit_keys_box(edit.method, getattr(edit, "edit_keys", True)), e.augment: edit.augment,
           e.method: edit.method, s.method: edit.method, e.auto_preserve: edit.auto_preserve,
           s.auto_preserve: edit.auto_preserve}


def export_lora(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    """The session's last edit as a LoRA file in the chosen format, with the export's error report."""
    path, report = demo.export_session_lora(runtime, v[ui.session].edit, v[ui.edit.lora_format])
    yield {ui.edit.lora_file: str(path), ui.edit.lora_report: report}


def use_knob_free(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    """The knob-free edit: the default method, automatic preservation, λ chosen for each edit."""
    yield _mode_outputs(ui, demo.AUTO_LAM, True)


def use_paper_time(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    """The paper's TIME: the default method at the paper's λ, without automatic preservation."""
    yield _mode_outputs(ui, demo.lam_text(demo.PAPER_LAM), False)


def _mode_outputs(ui, lam: str, auto_preserve: bool) -> dict:
    e, s = ui.edit, ui.sweep
    return {**_method_outputs(ui, demo.parse_method(None)), e.lam_text: lam,
            e.lam_slider: demo.log_from_lam(demo.PAPER_LAM if lam == demo.AUTO_LAM else lam),
            e.auto_preserve: auto_preserve, s.auto_preserve: auto_preserve}


def use_debias_edit(runtime, ui, v: dict, progress=None) -> Iterator[dict]:
    found = v[ui.debias.found]
    if not found:
        raise demo.DemoInputError("no λ to use yet: run a search that finds one first")
    source, destination, text = found
    yield {ui.edit.source: source, ui.edit.destination: destination,
           **_method_outputs(ui, demo.parse_method(None)),  # the search edits with the default method
           ui.edit.lam_text: text, ui.edit.lam_slider: demo.log_from_lam(text)}
