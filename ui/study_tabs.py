"""The λ sweep and Debias tabs: their layouts and events (they read the Edit tab's prompts and settings)."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

import time_core.demo as demo
from time_core.demo.texts import DEBIAS_HELP, SWEEP_HELP

from . import handlers, stack
from .edit_tab import method_controls
from .wiring import HEAVY, LIGHT, listen

__all__ = ["debias_tab", "sweep_tab", "wire_studies"]


def _gallery(label: str, columns: int, image_format: str, height: int, **kwargs) -> gr.Gallery:
    return gr.Gallery(label=label, columns=columns, format=image_format, elem_classes="gallery-panel", height=height,
                      object_fit="contain", **kwargs)


def sweep_tab(runtime: demo.DemoRuntime, image_format: str) -> SimpleNamespace:
    """The range, count and seeds; the plot, the table and the image strip."""
    config = runtime.config
    tab = SimpleNamespace()
    gr.Markdown(SWEEP_HELP)
    tab.method, tab.auto_preserve = method_controls()
    with gr.Row():
        tab.log_min = gr.Number(config.sweep_log_min, label="smallest log10 λ", min_width=120)
        tab.log_max = gr.Number(config.sweep_log_max, label="largest log10 λ", min_width=120)
        tab.count = gr.Number(config.sweep_count, label=f"λ values ({demo.SWEEP_MIN_COUNT}–{demo.SWEEP_MAX_COUNT})",
                              precision=0, min_width=120)
        tab.seeds = gr.Number(config.sweep_seeds, label="seeds per λ", precision=0, min_width=120)
        tab.run = gr.Button("Sweep λ", variant="primary", min_width=120)
    tab.error = gr.HTML("", elem_id="sweep-error")
    tab.stale = gr.HTML("", elem_id="sweep-stale")
    tab.status = gr.Markdown(elem_id="sweep-status")
    with gr.Row(equal_height=False):
        tab.plot = gr.Plot(label="metrics vs λ", format="png", elem_id="sweep-plot")
        tab.table = gr.Dataframe([], headers=["λ", "efficacy", "generality", "specificity"], type="array",
                                 interactive=False, label="Scores (%)", wrap=True)
    tab.gallery = _gallery("positive (top) and negative (bottom) prompt, original then each λ", config.sweep_count + 1,
                           image_format, 300, elem_id="gallery-sweep")
    return tab


def debias_tab(runtime: demo.DemoRuntime, image_format: str) -> SimpleNamespace:
    """The prompt, target share and search settings; the search, the F_p tables and the images."""
    config = runtime.config
    choices = demo.preset_choices(config.family, kind="debias")
    tab = SimpleNamespace()
    gr.Markdown(DEBIAS_HELP)
    with gr.Row():
        tab.preset = gr.Dropdown(choices, value=choices[0][1], label="Prompt", filterable=True, scale=3)
        tab.target = gr.Slider(5, 95, value=50, step=1, label="Target share F_p (%)", scale=2)
    with gr.Row():
        tab.seeds = gr.Number(config.debias_seeds, label="images per prompt", precision=0, min_width=120)
        tab.log_min = gr.Number(demo.LOG_LAM_MIN, label="smallest log10 λ", min_width=120)
        tab.log_max = gr.Number(demo.LOG_LAM_MAX, label="largest log10 λ", min_width=120)
        tab.iterations = gr.Number(config.debias_iterations, label="max. search steps", precision=0, min_width=120)
        tab.run = gr.Button("Search λ", variant="primary", min_width=120)
    tab.error = gr.HTML("", elem_id="debias-error")
    tab.stale = gr.HTML("", elem_id="debias-stale")
    tab.status = gr.Markdown()
    tab.found = gr.State(None)
    with gr.Row(equal_height=False):
        tab.search = gr.Dataframe([], headers=["step", "λ", "F_p", "rel. error"], type="array", interactive=False,
                                  label="Search (validation prompt)")
        tab.tests = gr.Dataframe([], headers=["test prompt", "F_p original", "F_p edited"], type="array",
                                 interactive=False, label="F_p on the test prompts", wrap=True)
    tab.validation = _gallery("validation prompt at the reported λ (caption: classified as)", 8, image_format, 220)
    with gr.Row():
        tab.original = _gallery("test prompts, original model", 8, image_format, 300)
        tab.edited = _gallery("test prompts, edited model", 8, image_format, 300)
    tab.use = gr.Button("Use this edit in the Edit tab", size="sm")
    return tab


def wire_studies(runtime: demo.DemoRuntime, ui) -> None:
    e, s, d = ui.edit, ui.sweep, ui.debias
    sweep_inputs = [e.source, e.destination, e.tests, e.edit_keys, e.augment, s.log_min, s.log_max, s.count, s.seeds,
                    e.first_seed, e.steps, e.guidance, e.size, s.method, s.auto_preserve, ui.session]
    sweep_outputs = [s.plot, s.gallery, s.table, s.status]
    listen([s.run.click], handlers.sweep, runtime, ui, s, sweep_inputs, sweep_outputs, api_name="sweep",
           api_inputs=sweep_inputs, api_outputs=sweep_outputs, **HEAVY)
    debias_inputs = [d.preset, d.target, d.seeds, d.log_min, d.log_max, d.iterations, e.steps, e.guidance, e.size]
    debias_outputs = [d.status, d.search, d.validation, d.tests, d.original, d.edited, d.found]
    listen([d.run.click], handlers.debias, runtime, ui, d, debias_inputs, debias_outputs, api_name="debias",
           api_inputs=debias_inputs, api_outputs=debias_outputs, **HEAVY)
    listen([d.use.click], stack.use_debias_edit, runtime, ui, d, [d.found],
           [e.source, e.destination, e.lam_text, e.lam_slider, e.method, s.method, e.edit_keys], **LIGHT)
