"""The page's event handlers: generators `run(runtime, ui, values, progress)` that read their inputs from `values`
(`{component: value}`), call `time_core.demo` and yield `{component: update}`. `ui.errors` runs them for the page and
for the API. They never mutate the runtime's state beyond its caches; a session's edits live in its `gr.State`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

import gradio as gr

import time_core.demo as demo
from time_core.demo import renderer_of

try:  # Hugging Face ZeroGPU: heavy functions get a GPU for their duration; a no-op everywhere else.
    import spaces
except ImportError:
    spaces = None

__all__ = ["edit", "grid_update", "live_from_slider", "live_from_text", "sweep", "debias", "image_url"]


def gpu(duration: int):
    """`spaces.GPU(duration=...)` on ZeroGPU, the identity elsewhere."""
    return (lambda fn: fn) if spaces is None else spaces.GPU(duration=duration)


def image_url(files: demo.ImageFiles, image) -> str:
    """The address the page loads an image from (a file the app serves from its work folder)."""
    return f"gradio_api/file={files.path(image)}"


def grid_update(ui, update: demo.EditUpdate) -> str:
    caption = ""
    if update.stage == "preview":
        caption = "the source, first positive and first negative rows first; the others follow"
    return demo.comparison_html(update, functools.partial(image_url, ui.files), caption)


def _edit_outputs(runtime, ui, update: demo.EditUpdate, edit_file, session) -> dict:
    e = ui.edit
    edited = [] if update.edited is None else demo.gallery_items(update.edited)
    return {e.original: demo.gallery_items(update.original), e.edited: edited,
            e.scores: demo.scores_rows(update.scores),
            e.status: demo.edit_status(update), e.details: demo.edit_details(update), e.edit_file: edit_file,
            ui.session: session, e.grid: grid_update(ui, update), e.knob: demo.knob_note(update),
            **({e.lam_slider: demo.log_from_lam(update.edit.lam)} if update.edit.lam_auto else {})}


@gpu(duration=60)  # the largest Edit click SD's limits allow: 47 s on an A100 (docs/demo.md)
def edit(runtime: demo.DemoRuntime, ui, v: dict, progress=None) -> Iterator[dict]:
    """The Edit click: the edit of the stack plus the current pair, originals then edited images; afterwards the
    background renders the λ grid of its preview rows, so the slider answers from the cache."""
    e = ui.edit
    session = v[ui.session].with_method(demo.parse_method(v[e.method]), bool(v[e.auto_preserve]))
    lam = demo.parse_lam_or_auto(v[e.lam_text])
    settings = runtime.settings(v[e.num_seeds], v[e.first_seed], v[e.steps], v[e.guidance], v[e.size])
    prompts = demo.PromptSet.from_fields(v[e.source], v[e.destination], v[e.tests])
    updates = demo.run_edit(runtime, session, prompts, lam, settings, bool(v[e.edit_keys]), bool(v[e.augment]),
                            progress)
    update = next(updates)
    session = session.with_edit(update.edit)
    edit_file = str(runtime.save_edit(update.edit))
    for update in itertools.chain([update], updates):
        outputs = _edit_outputs(runtime, ui, update, edit_file, session)
        if update.stage == "edited":
            renderer_of(runtime).schedule_grid(update.request, update.edit.lam, replaces=v.get(e.live))
            outputs[e.live] = update.request
        yield outputs


def _live(runtime: demo.DemoRuntime, ui, request, lam: float) -> Iterator[dict]:
    e = ui.edit
    if request is None:
        return
    for update in demo.run_live(runtime, request, lam):
        yield {e.grid: grid_update(ui, update), e.status: demo.edit_status(update),
               e.scores: demo.scores_rows(update.scores), e.details: demo.edit_details(update),
               e.knob: demo.knob_note(update)}


def live_from_slider(runtime: demo.DemoRuntime, ui, v: dict, progress=None) -> Iterator[dict]:
    """A λ chosen on the slider: the λ field follows, and the last edit is shown at that λ without a click."""
    text = demo.lam_from_log(v[ui.edit.lam_slider])
    yield {ui.edit.lam_text: text}
    yield from _live(runtime, ui, v[ui.edit.live], demo.parse_lam(text))


def live_from_text(runtime: demo.DemoRuntime, ui, v: dict, progress=None) -> Iterator[dict]:
    """A λ typed in the field: the slider follows, and the last edit is shown at exactly that λ (`auto` waits for the
    next Edit click, which chooses it)."""
    lam = demo.parse_lam_or_auto(v[ui.edit.lam_text])
    if lam == demo.AUTO_LAM:
        return
    yield {ui.edit.lam_slider: demo.log_from_lam(lam)}
    yield from _live(runtime, ui, v[ui.edit.live], lam)


@gpu(duration=300)
def sweep(runtime: demo.DemoRuntime, ui, v: dict, progress=None) -> Iterator[dict]:
    e, s = ui.edit, ui.sweep
    session = v[ui.session].with_method(demo.parse_method(v[s.method]), bool(v[s.auto_preserve]))
    lams = demo.lambda_grid(v[s.log_min], v[s.log_max], v[s.count])
    settings = runtime.settings(v[s.seeds], v[e.first_seed], v[e.steps], v[e.guidance], v[e.size])
    prompts = demo.PromptSet.from_fields(v[e.source], v[e.destination], v[e.tests])
    for update in demo.run_sweep(runtime, session, prompts, lams, settings, bool(v[e.edit_keys]),
                                 bool(v[e.augment]), progress):
        strip = demo.sweep_strip(update)
        if not update.done:  # the grid gets one column per λ, plus the original
            strip = gr.Gallery(value=strip, columns=len(update.lams) + 1)
        yield {s.plot: demo.sweep_figure(update), s.gallery: strip, s.table: demo.sweep_rows(update),
               s.status: demo.sweep_status(update)}


@gpu(duration=300)
def debias(runtime: demo.DemoRuntime, ui, v: dict, progress=None) -> Iterator[dict]:
    d, e = ui.debias, ui.edit
    entry = demo.debias_entry(v[d.preset])
    settings = runtime.settings(v[d.seeds], 0, v[e.steps], v[e.guidance], v[e.size],
                                max_seeds=4 * runtime.config.max_seeds)
    for update in demo.run_debias(runtime, entry, v[d.target], settings, v[d.log_min], v[d.log_max],
                                  v[d.iterations], progress=progress):
        yield {d.status: demo.debias_status(update), d.search: demo.debias_search_rows(update),
               d.validation: update.validation, d.tests: demo.debias_test_rows(update),
               d.original: list(update.test_original), d.edited: list(update.test_edited),
               d.found: demo.debias_found(update)}
