#!/usr/bin/env python
"""Gradio demo of TIME (Orgad, Kawar, Belinkov, ICCV 2023): edit, compare, score, sweep λ, debias.

The page only lays out components and wires events; every computation lives in `time_core.demo` (and the library
below it). Run `python app.py --help` for the flags.
"""

from __future__ import annotations

import os

# Before torch loads: idle OpenMP threads sleep instead of spinning, which keeps a CPU Space responsive when the cores
# are shared (a default only; set OMP_WAIT_POLICY to override).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import functools  # noqa: E402
import itertools  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import gradio as gr  # noqa: E402

import time_core.demo as demo  # noqa: E402
from time_core import ModelLoadError  # noqa: E402
from time_core.demo.texts import CSS, DEBIAS_HELP, DESCRIPTION, EDIT_HELP, SWEEP_HELP  # noqa: E402
from time_core.evaluation.scoring import ScorerWeightsUnavailableError  # noqa: E402

try:  # Hugging Face ZeroGPU: heavy functions get a GPU for their duration; a no-op everywhere else.
    import spaces
except ImportError:
    spaces = None


def gpu(duration: int):
    """`spaces.GPU(duration=...)` on ZeroGPU, the identity elsewhere."""
    return (lambda fn: fn) if spaces is None else spaces.GPU(duration=duration)


LIGHT = dict(concurrency_limit=None, show_progress="hidden")  # events that compute nothing heavy
# Events that run the shared pipeline (whose tokenizers and scheduler keep per-call state): one at a time, in order.
HEAVY = dict(concurrency_id="pipeline", concurrency_limit=1)

# Event handlers: module-level functions; the shared runtime is bound with functools.partial. They never mutate the
# runtime; a session's edits live in its gr.State and are returned, not modified.


def _raise(error: Exception):
    raise gr.Error(str(error), title=type(error).__name__) from error


def on_preset(key: str | None):
    if not key:
        return gr.skip(), gr.skip(), gr.skip()
    try:
        prompts = demo.preset_prompts(key)
    except ValueError as error:
        _raise(error)
    return prompts.source, prompts.destination, prompts.table()


def on_method(method: str):
    """A method chosen on one tab: the other tab's selector, the method's default λ, and "edit keys" (TIME only)."""
    try:
        fields = demo.method_fields(method)
    except ValueError as error:
        _raise(error)
    return method, fields.lam_text, fields.log_lam, _edit_keys(method)


def _edit_keys(method: str, value: bool = True) -> gr.Checkbox:
    """"Edit keys too" as a method leaves it: a TIME option, on and greyed out for the other methods."""
    has_edit_keys = demo.method_fields(method).has_edit_keys
    return gr.Checkbox(value or not has_edit_keys, interactive=has_edit_keys)


def on_lam_text(text: str):
    try:
        return demo.log_from_lam(text)
    except ValueError as error:
        gr.Warning(str(error))
        return gr.skip()


@gpu(duration=60)  # the largest Edit click SD's limits allow: 47 s on an A100 (README, SD on a Space)
def edit_and_generate(runtime: demo.DemoRuntime, source, destination, tests, lam_text, edit_keys, augment, num_seeds,
                      first_seed, steps, guidance, size, method, auto_preserve, session: demo.SessionEdits,
                      progress=gr.Progress()):
    try:
        session = session.with_method(demo.parse_method(method), bool(auto_preserve))
        lam = demo.parse_lam(lam_text)
        settings = runtime.settings(num_seeds, first_seed, steps, guidance, size)
        prompts = demo.PromptSet.from_fields(source, destination, tests)
        updates = demo.run_edit(runtime, session, prompts, lam, settings, bool(edit_keys), bool(augment), progress)
        first = next(updates)
    except ValueError as error:
        _raise(error)
    session = session.with_edit(first.edit)
    edit_file = str(demo.save_edit_file(first.edit, runtime.workdir))
    columns = len(settings.seeds)  # one row per prompt
    yield (gr.Gallery(demo.gallery_items(first.original), columns=columns), gr.Gallery([], columns=columns),
           demo.scores_rows(first.scores), demo.edit_status(first), demo.edit_details(first), edit_file, session)
    for update in updates:  # the final yield repeats every output, so API clients receive the complete result
        yield (demo.gallery_items(update.original), demo.gallery_items(update.edited), demo.scores_rows(update.scores),
               demo.edit_status(update), demo.edit_details(update), edit_file, session)


@gpu(duration=300)
def sweep_lambda(runtime: demo.DemoRuntime, source, destination, tests, edit_keys, augment, log_min, log_max, count,
                 sweep_seeds, first_seed, steps, guidance, size, method, auto_preserve, session: demo.SessionEdits,
                 progress=gr.Progress()):
    try:
        session = session.with_method(demo.parse_method(method), bool(auto_preserve))
        lams = demo.lambda_grid(log_min, log_max, count)
        settings = runtime.settings(sweep_seeds, first_seed, steps, guidance, size)
        prompts = demo.PromptSet.from_fields(source, destination, tests)
        updates = demo.run_sweep(runtime, session, prompts, lams, settings, bool(edit_keys), bool(augment), progress)
        update = next(updates)
    except ValueError as error:
        _raise(error)
    for update in itertools.chain([update], updates):
        strip = demo.sweep_strip(update)
        if not update.done:  # the grid gets one column per λ, plus the original
            strip = gr.Gallery(value=strip, columns=len(update.lams) + 1)
        yield demo.sweep_figure(update), strip, demo.sweep_rows(update), demo.sweep_status(update)


@gpu(duration=300)
def debias(runtime: demo.DemoRuntime, key, target, num_seeds, log_min, log_max, iterations, steps, guidance, size,
           progress=gr.Progress()):
    try:
        entry = demo.debias_entry(key)
        settings = runtime.settings(num_seeds, 0, steps, guidance, size, max_seeds=4 * runtime.config.max_seeds)
        updates = demo.run_debias(runtime, entry, target, settings, log_min, log_max, iterations, progress=progress)
        update = next(updates)
    except ValueError as error:
        _raise(error)
    for update in itertools.chain([update], updates):
        yield (demo.debias_status(update), demo.debias_search_rows(update), update.validation,
               demo.debias_test_rows(update), list(update.test_original), list(update.test_edited),
               demo.debias_found(update))


def use_debias_edit(found):
    if not found:
        raise gr.Error("no λ to use yet: run a search that finds one first")
    source, destination, lam_text = found  # a TIME edit
    return source, destination, lam_text, demo.log_from_lam(lam_text), "time", "time", _edit_keys("time")


def push_edit(runtime: demo.DemoRuntime, source: str, destination: str, session: demo.SessionEdits):
    try:
        session = session.push(runtime.tokenizer, source, destination)
    except ValueError as error:
        _raise(error)
    return session, session.stack_rows()


def undo_edit(session: demo.SessionEdits):
    if not session.stack:
        gr.Warning("the edit stack is already empty")
    session = session.undo()
    return session, session.stack_rows()


def reset_edits(session: demo.SessionEdits):
    session = session.reset()
    return session, session.stack_rows()


def upload_edit(runtime: demo.DemoRuntime, path: str | None):
    try:
        edit = demo.load_edit_file(path, runtime.pipe, int(runtime.config.max_upload_mb * 1e6))
    except ValueError as error:
        _raise(error)
    session = demo.SessionEdits.from_edit(edit)
    lam_text, keys = demo.lam_text(edit.lam), _edit_keys(edit.method, getattr(edit, "edit_keys", True))
    gr.Info(f"loaded a {edit.method} edit of {len(edit.sources)} pair(s), λ = {lam_text}")
    return (session, session.stack_rows(), edit.sources[-1], edit.destinations[-1], lam_text,
            demo.log_from_lam(lam_text), keys, edit.augment, edit.method, edit.method, *[edit.auto_preserve] * 2)


# Layout: one function per tab (and per panel of the Edit tab); each returns its components by name.


def _gallery_panel(label: str, columns: int, image_format: str, **kwargs) -> gr.Gallery:
    return gr.Gallery(label=label, columns=columns, format=image_format, elem_classes="gallery-panel", **kwargs)


def method_controls() -> tuple[gr.Radio, gr.Checkbox]:
    """The editing method (the Edit and λ sweep tabs each have one; choosing on either sets both) and its switch."""
    with gr.Row(equal_height=True):
        method = gr.Radio(demo.method_choices(), value="time", label="Method", scale=3,
                          info="the edit stack is solved with the method of each run")
        auto = gr.Checkbox(False, label="Automatic preservation", scale=1, info="keep the attribute's other values")
    return method, auto


def edit_controls(runtime: demo.DemoRuntime) -> SimpleNamespace:
    """The left column of the Edit tab: preset, prompts, λ, flags, test prompts, advanced settings, edit stack."""
    config = runtime.config
    choices = demo.preset_choices(config.family)
    start = demo.preset_prompts(choices[0][1])
    c = SimpleNamespace()
    c.preset = gr.Dropdown(choices, value=choices[0][1], label="Preset", filterable=True,
                           info=f"{len(choices)} edits; type to search")
    c.method, c.auto_preserve = method_controls()
    with gr.Row():
        c.source = gr.Textbox(start.source, label="Source prompt", placeholder="a pack of roses")
        c.destination = gr.Textbox(start.destination, label="Destination prompt", placeholder="a pack of blue roses")
    with gr.Row(equal_height=True):
        c.lam_slider = gr.Slider(demo.LOG_LAM_MIN, demo.LOG_LAM_MAX, value=-1.0, step=0.05, label="log10 λ", scale=3)
        c.lam_text = gr.Textbox(demo.lam_text(config.lam), label="λ", scale=1, min_width=90)
    with gr.Row():
        c.edit_keys = gr.Checkbox(True, label="Edit keys too (K+V)")
        c.augment = gr.Checkbox(True, label="Augment prompts")
    c.run = gr.Button("Edit and generate", variant="primary")
    with gr.Accordion("Test prompts (positives should change, negatives should not)", open=False):
        c.tests = gr.Dataframe(start.table(), headers=list(demo.TEST_HEADERS), type="array", interactive=True,
                               column_count=4, wrap=True,
                               label="role · prompt · destination used for scoring · type (e.g. plural, related)")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            c.num_seeds = gr.Number(config.num_seeds, label=f"Seeds (≤ {config.max_seeds})", precision=0)
            c.first_seed = gr.Number(0, label="First seed", precision=0)
        with gr.Row():
            c.steps = gr.Number(config.steps, label=f"Steps (≤ {config.max_steps})", precision=0)
            c.guidance = gr.Number(config.guidance, label="Guidance scale")
            c.size = gr.Number(runtime.default_size, label=f"Size (≤ {config.max_size})", precision=0,
                               step=runtime.size_step)
    with gr.Accordion("Edit stack, download, upload", open=False):
        gr.Markdown("Stacked edits are applied together with the current one, as one multi-edit of the chosen method.")
        c.stack = gr.Dataframe([], headers=["#", "source", "destination"], type="array", interactive=False,
                               label="Stacked edits")
        with gr.Row():
            c.push = gr.Button("Add current edit", size="sm")
            c.undo = gr.Button("Undo", size="sm")
            c.reset = gr.Button("Reset", size="sm", variant="stop")
        c.edit_file = gr.File(label="Current edit (.safetensors)", interactive=False)
        c.upload = gr.File(label="Upload an edit file", file_types=[".safetensors"], type="filepath")
    gr.Markdown(EDIT_HELP)
    return c


def edit_results(runtime: demo.DemoRuntime, image_format: str) -> SimpleNamespace:
    """The right column of the Edit tab: status, scores, the two galleries and the JSON details."""
    columns = runtime.config.num_seeds
    r = SimpleNamespace()
    r.status = gr.Markdown("Press **Edit and generate**.", elem_id="status-line")
    r.scores = gr.Dataframe([], headers=list(demo.SCORE_HEADERS), type="array", interactive=False,
                            label="Scores (%, mean ± std over seeds)")
    with gr.Row(equal_height=False):
        r.original = _gallery_panel("original model", columns, image_format, elem_id="gallery-original", height=560,
                                    object_fit="contain")
        r.edited = _gallery_panel("edited model", columns, image_format, elem_id="gallery-edited", height=560,
                                  object_fit="contain")
    with gr.Accordion("Details (JSON)", open=False):
        r.details = gr.JSON(label="edit, scores and P(destination) of every image")
    return r


def edit_tab(runtime: demo.DemoRuntime, image_format: str) -> SimpleNamespace:
    """The Edit tab: the controls and results, and examples that fill the prompts and move the λ slider."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=360):
            tab = edit_controls(runtime)
        with gr.Column(scale=3, min_width=480):
            tab.results = edit_results(runtime, image_format)
    gr.Examples(demo.edit_examples(runtime.config.family), [tab.source, tab.destination, tab.lam_text, tab.lam_slider],
                label="Examples (fill the fields)", cache_examples=False)
    return tab


def sweep_tab(runtime: demo.DemoRuntime, image_format: str) -> SimpleNamespace:
    """The λ sweep tab: range, count and seeds; the plot, the table and the image strip."""
    config = runtime.config
    tab = SimpleNamespace()
    gr.Markdown(SWEEP_HELP)
    tab.method, tab.auto_preserve = method_controls()
    with gr.Row():
        tab.log_min = gr.Number(config.sweep_log_min, label="smallest log10 λ")
        tab.log_max = gr.Number(config.sweep_log_max, label="largest log10 λ")
        tab.count = gr.Number(config.sweep_count, label=f"λ values ({demo.SWEEP_MIN_COUNT}–{demo.SWEEP_MAX_COUNT})",
                              precision=0)
        tab.seeds = gr.Number(config.sweep_seeds, label="seeds per λ", precision=0)
        tab.run = gr.Button("Sweep λ", variant="primary")
    tab.status = gr.Markdown(elem_id="sweep-status")
    with gr.Row(equal_height=False):
        tab.plot = gr.Plot(label="metrics vs λ", format="png", elem_id="sweep-plot")
        tab.table = gr.Dataframe([], headers=["λ", "efficacy", "generality", "specificity"], type="array",
                                 interactive=False, label="Scores (%)")
    tab.gallery = _gallery_panel("positive (top) and negative (bottom) prompt, original then each λ",
                                 config.sweep_count + 1, image_format, height=300, elem_id="gallery-sweep",
                                 object_fit="contain")
    return tab


def debias_tab(runtime: demo.DemoRuntime, image_format: str) -> SimpleNamespace:
    """The Debias tab: the prompt, target share and search settings; the search, F_p tables and images."""
    config = runtime.config
    choices = demo.preset_choices(config.family, kind="debias")
    tab = SimpleNamespace()
    gr.Markdown(DEBIAS_HELP)
    with gr.Row():
        tab.preset = gr.Dropdown(choices, value=choices[0][1], label="Prompt", filterable=True, scale=3)
        tab.target = gr.Slider(5, 95, value=50, step=1, label="Target share F_p (%)", scale=2)
    with gr.Row():
        tab.seeds = gr.Number(config.debias_seeds, label="images per prompt", precision=0)
        tab.log_min = gr.Number(demo.LOG_LAM_MIN, label="smallest log10 λ")
        tab.log_max = gr.Number(demo.LOG_LAM_MAX, label="largest log10 λ")
        tab.iterations = gr.Number(config.debias_iterations, label="max. search steps", precision=0)
        tab.run = gr.Button("Search λ", variant="primary")
    tab.status = gr.Markdown()
    tab.found = gr.State(None)
    with gr.Row(equal_height=False):
        tab.search = gr.Dataframe([], headers=["step", "λ", "F_p", "rel. error"], type="array", interactive=False,
                                  label="Binary search (validation prompt)")
        tab.tests = gr.Dataframe([], headers=["test prompt", "F_p original", "F_p edited"], type="array",
                                 interactive=False, label="F_p on the test prompts")
    tab.validation = _gallery_panel("validation prompt, latest λ (caption: classified as)", 8, image_format,
                                    height=220)
    with gr.Row():
        tab.original = _gallery_panel("test prompts, original model", 8, image_format, height=300)
        tab.edited = _gallery_panel("test prompts, edited model", 8, image_format, height=300)
    tab.use = gr.Button("Use this edit in the Edit tab", size="sm")
    return tab


def wire_edit(runtime: demo.DemoRuntime, e: SimpleNamespace, s: SimpleNamespace, session: gr.State) -> None:
    """The Edit tab's events: presets, λ, the method (on both tabs), the edit itself, the stack and edit files."""
    e.preset.change(on_preset, e.preset, [e.source, e.destination, e.tests], api_name=False, **LIGHT)
    e.lam_slider.input(demo.lam_from_log, e.lam_slider, e.lam_text, api_name=False, **LIGHT)
    e.lam_text.submit(on_lam_text, e.lam_text, e.lam_slider, api_name=False, **LIGHT)
    e.lam_text.blur(on_lam_text, e.lam_text, e.lam_slider, api_name=False, **LIGHT)
    r = e.results
    inputs = [e.source, e.destination, e.tests, e.lam_text, e.edit_keys, e.augment, e.num_seeds, e.first_seed,
              e.steps, e.guidance, e.size, e.method, e.auto_preserve, session]
    outputs = [r.original, r.edited, r.scores, r.status, r.details, e.edit_file, session]
    handler = functools.partial(edit_and_generate, runtime)
    for event, api_name in ((e.run.click, "edit"), (e.source.submit, False), (e.destination.submit, False)):
        event(handler, inputs, outputs, api_name=api_name, **HEAVY)
    e.push.click(functools.partial(push_edit, runtime), [e.source, e.destination, session], [session, e.stack],
                 api_name="push", **LIGHT)
    e.undo.click(undo_edit, session, [session, e.stack], api_name="undo", **LIGHT)
    e.reset.click(reset_edits, session, [session, e.stack], api_name="reset", **LIGHT)
    e.upload.upload(functools.partial(upload_edit, runtime), e.upload,
                    [session, e.stack, e.source, e.destination, e.lam_text, e.lam_slider, e.edit_keys, e.augment,
                     e.method, s.method, e.auto_preserve, s.auto_preserve], api_name="upload", **LIGHT)
    for mine, other in ((e.method, s.method), (s.method, e.method)):  # user choices only: .input, not .change
        mine.input(on_method, mine, [other, e.lam_text, e.lam_slider, e.edit_keys], api_name=False, **LIGHT)


def wire_sweep_and_debias(runtime: demo.DemoRuntime, e: SimpleNamespace, s: SimpleNamespace, d: SimpleNamespace,
                          session: gr.State) -> None:
    """The λ sweep and Debias events (they read the Edit tab's prompts and settings)."""
    s.run.click(functools.partial(sweep_lambda, runtime),
                [e.source, e.destination, e.tests, e.edit_keys, e.augment, s.log_min, s.log_max, s.count, s.seeds,
                 e.first_seed, e.steps, e.guidance, e.size, s.method, s.auto_preserve, session],
                [s.plot, s.gallery, s.table, s.status], api_name="sweep", **HEAVY)
    d.run.click(functools.partial(debias, runtime),
                [d.preset, d.target, d.seeds, d.log_min, d.log_max, d.iterations, e.steps, e.guidance, e.size],
                [d.status, d.search, d.validation, d.tests, d.original, d.edited, d.found], api_name="debias", **HEAVY)
    d.use.click(use_debias_edit, d.found, [e.source, e.destination, e.lam_text, e.lam_slider, e.method, s.method,
                                          e.edit_keys], api_name=False, **LIGHT)


def build_demo(runtime: demo.DemoRuntime) -> gr.Blocks:
    """The Blocks app for a loaded runtime, its queue set up (at most 64 waiting events)."""
    image_format = "png" if runtime.config.family == demo.TOY else "webp"
    with gr.Blocks(title="TIME: editing implicit assumptions", delete_cache=(3600, 7200)) as app:
        gr.Markdown(DESCRIPTION)
        gr.Markdown(runtime.describe(), elem_id="model-line")
        session = gr.State(demo.SessionEdits())
        with gr.Tabs():
            with gr.Tab("Edit", id="edit"):
                edit = edit_tab(runtime, image_format)
            with gr.Tab("λ sweep", id="sweep"):
                sweep = sweep_tab(runtime, image_format)
            with gr.Tab("Debias", id="debias"):
                debiasing = debias_tab(runtime, image_format)
        wire_edit(runtime, edit, sweep, session)
        wire_sweep_and_debias(runtime, edit, sweep, debiasing, session)
    return app.queue(max_size=64)


def main(argv: list[str] | None = None) -> None:
    parser = demo.add_cli_arguments(argparse.ArgumentParser(description=__doc__))
    args = parser.parse_args(argv)
    config = demo.config_from_cli(args)
    try:
        runtime = demo.DemoRuntime.load(config, device=args.device)
    except (ModelLoadError, ScorerWeightsUnavailableError) as error:  # a clear message, never a silent fallback
        parser.exit(1, f"error: {error}\n")
    app = build_demo(runtime)
    app.launch(server_name=args.host, server_port=args.port, theme=gr.themes.Soft(primary_hue="indigo"), css=CSS,
               max_file_size=int((config.max_upload_mb + 1) * 1e6), allowed_paths=[str(Path(runtime.workdir))])


if __name__ == "__main__":
    main()
