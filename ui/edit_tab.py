"""The Edit tab: its layout (controls, then the results right under the button, then the test prompts, settings and
the edit stack) and its events."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

import time_core.demo as demo

from . import handlers, stack
from .wiring import HEAVY, LIGHT, LIVE, listen

__all__ = ["edit_inputs", "edit_outputs", "edit_tab", "examples", "method_controls", "mode_outputs", "wire_edit",
           "wire_first_page"]

EXAMPLES = Path(__file__).with_name("examples.json")
# On a phone the results come under the controls: show them as soon as an edit starts.
SCROLL_JS = "() => { if (window.innerWidth < 800) document.querySelector('#edit-results').scrollIntoView(); }"
STALE_JS = ("() => '<div class=\"stale-note\">stale: an input changed since these results; "
            "press Edit and generate</div>'")


def method_controls(auto_preserve: bool = False) -> tuple[gr.Radio, gr.Checkbox]:
    """The editing method (the Edit and λ sweep tabs each have one; choosing on either sets both) and its switch (off
    as the API's default; the page turns it on as it opens, with the knob-free edit)."""
    with gr.Row(equal_height=True):
        method = gr.Radio(demo.method_choices(), value=demo.parse_method(None), label="Method", scale=3,
                          info="the edit stack is solved with the method of each run")
        auto = gr.Checkbox(auto_preserve, label="Automatic preservation", scale=1,
                           info="keep the attribute's other values")
    return method, auto


def examples(family: str) -> list[list]:
    """The examples of a model family, `[source, destination, λ, log10 λ, automatic preservation]` (log10 λ moves
    the slider; the knob-free edit's λ `"auto"` leaves it at the paper's λ until the edit chooses one)."""
    rows = json.loads(EXAMPLES.read_text())[family]
    return [[source, destination, lam, slider_position(lam), auto] for source, destination, lam, auto in rows]


def slider_position(lam: str) -> float:
    """The log10 λ slider's position for a λ field's text (`"auto"`: the paper's λ, until an edit chooses one)."""
    return demo.log_from_lam(demo.PAPER_LAM if lam == demo.AUTO_LAM else lam)


def edit_tab(runtime: demo.DemoRuntime) -> SimpleNamespace:
    config = runtime.config
    choices = demo.preset_choices(config.family)
    start = demo.preset_prompts(choices[0][1])
    limit = f"at most {runtime.max_prompt_tokens} tokens"
    c = SimpleNamespace()
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            c.preset = gr.Dropdown(choices, value=choices[0][1], label="Preset", filterable=True,
                                   info=f"{len(choices)} edits; type to search")
            c.method, c.auto_preserve = method_controls()
            with gr.Row():
                c.source = gr.Textbox(start.source, label="Source prompt", placeholder="a pack of roses", info=limit)
                c.destination = gr.Textbox(start.destination, label="Destination prompt", info=limit,
                                           placeholder="a pack of blue roses")
            with gr.Row(equal_height=True):
                c.lam_slider = gr.Slider(demo.LOG_LAM_MIN, demo.LOG_LAM_MAX, value=demo.log_from_lam(config.lam),
                                         step=demo.LIVE_LOG_STEP, label="log10 λ", scale=3,
                                         info="after an edit, moving it shows that λ at once")
                c.lam_text = gr.Textbox(demo.lam_text(config.lam), label="λ", scale=1, min_width=90,
                                        placeholder="a number, or auto")
            c.knob = gr.Markdown("", elem_id="knob-note")
            with gr.Row():
                c.knob_free = gr.Button("knob-free (λ chosen per edit)", size="sm", elem_id="knob-free")
                c.paper = gr.Button(f"paper's TIME (λ = {demo.lam_text(demo.PAPER_LAM)})", size="sm",
                                    elem_id="paper-time")
            with gr.Row():
                c.edit_keys = gr.Checkbox(True, label="Edit keys too (K+V)")
                c.augment = gr.Checkbox(True, label="Augment prompts")
            c.run = gr.Button("Edit and generate", variant="primary", elem_id="edit-button")
            c.error = gr.HTML("", elem_id="edit-error")
        with gr.Column(scale=3, min_width=320, elem_id="edit-results"):
            c.stale = gr.HTML("", elem_id="edit-stale")
            c.status = gr.Markdown("Press **Edit and generate**.", elem_id="status-line")
            c.grid = gr.HTML("", elem_id="comparison")
            c.scores = gr.Dataframe([], headers=list(demo.SCORE_HEADERS), type="array", interactive=False,
                                    label="Scores (%, mean ± std over seeds)", elem_id="scores", wrap=True)
            with gr.Accordion("Details (JSON)", open=False):
                c.details = gr.JSON(label="edit, scores and P(destination) of every image")
            c.examples = gr.Examples(examples(config.family), [c.source, c.destination, c.lam_text, c.lam_slider,
                                                               c.auto_preserve],
                                     label="Examples (click one: its results show)", cache_examples=False)
            c.original = gr.Gallery(label="original model", visible=False, format=runtime.image_format)  # for the API
            c.edited = gr.Gallery(label="edited model", visible=False, format=runtime.image_format)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            with gr.Accordion("Test prompts (positives should change, negatives should not)", open=False):
                c.tests = gr.Dataframe(start.table(), headers=list(demo.TEST_HEADERS), type="array", wrap=True,
                                       interactive=True, column_count=4,
                                       label="role · prompt · destination used for scoring · type")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    c.num_seeds = gr.Number(config.num_seeds, label=f"Seeds (≤ {config.max_seeds})", precision=0)
                    c.first_seed = gr.Number(0, label="First seed", precision=0)
                with gr.Row():
                    c.steps = gr.Number(config.steps, label=f"Steps (≤ {config.max_steps})", precision=0)
                    c.guidance = gr.Number(config.guidance, label="Guidance scale")
                    c.size = gr.Number(runtime.default_size, label=f"Size (≤ {config.max_size})", precision=0,
                                       step=runtime.size_step)
        with gr.Column(scale=3, min_width=320):
            with gr.Accordion("Download (edit file, LoRA), upload, edit stack", open=False):
                gr.Markdown("Stacked edits are applied together with the current one, as one multi-edit.")
                c.stack = gr.Dataframe([], headers=["#", "source", "destination"], type="array", interactive=False,
                                       label="Stacked edits")
                with gr.Row():
                    c.push = gr.Button("Add current edit", size="sm")
                    c.undo = gr.Button("Undo", size="sm")
                    c.reset = gr.Button("Reset", size="sm", variant="stop")
                c.edit_file = gr.File(label="Current edit (.safetensors)", interactive=False)
                with gr.Row(equal_height=True):
                    c.lora_format = gr.Radio([(label, key) for key, label in demo.LORA_FORMATS.items()],
                                             value="peft", label="LoRA format", scale=3)
                    c.lora_run = gr.Button("Export as LoRA", size="sm", scale=1)
                c.lora_report = gr.Markdown("", elem_id="lora-report")
                c.lora_file = gr.File(label="Current edit as a LoRA (.safetensors)", interactive=False,
                                      elem_id="lora-file")
                c.upload = gr.File(label="Upload an edit file (.safetensors from this page or time-edit)",
                                   file_types=[".safetensors"], type="filepath")
    c.live = gr.State(None)  # the last edit's request: what the slider shows at another λ
    return c


def edit_inputs(ui) -> list:
    """The Edit click's inputs in the order of the `/edit` endpoint (new ones go last)."""
    e = ui.edit
    return [e.source, e.destination, e.tests, e.lam_text, e.edit_keys, e.augment, e.num_seeds, e.first_seed, e.steps,
            e.guidance, e.size, e.method, e.auto_preserve, ui.session]


def edit_outputs(ui) -> list:
    """What an edit shows on the page."""
    e = ui.edit
    return [e.grid, e.scores, e.status, e.details, e.edit_file, ui.session, e.live, e.knob, e.lam_slider]


def mode_outputs(ui) -> list:
    """What the knob-free and paper's-TIME buttons set."""
    e, s = ui.edit, ui.sweep
    return [e.lam_text, e.lam_slider, e.method, s.method, e.auto_preserve, s.auto_preserve, e.edit_keys]


def wire_first_page(runtime: demo.DemoRuntime, ui, load) -> None:
    """The page opens on the knob-free edit of the default example, its results shown without a click (rendered at
    start-up; the API's defaults stay the paper's λ without automatic preservation)."""
    e = ui.edit
    (knob_free,) = listen([load], stack.use_knob_free, runtime, ui, e, [ui.session], mode_outputs(ui), **LIGHT)
    listen([knob_free.then], handlers.edit, runtime, ui, e, [*edit_inputs(ui), e.live], edit_outputs(ui), **HEAVY)


def wire_edit(runtime: demo.DemoRuntime, ui) -> None:
    e, s = ui.edit, ui.sweep
    listen([e.preset.change], stack.on_preset, runtime, ui, e, [e.preset], [e.source, e.destination, e.tests],
           **LIGHT)
    fields = edit_inputs(ui)
    api_outputs = [e.original, e.edited, e.scores, e.status, e.details, e.edit_file, ui.session, e.live]
    page_outputs = edit_outputs(ui)
    example = listen([e.examples.load_input_event.then], stack.on_example, runtime, ui, e, [e.source, e.destination],
                     [e.tests], **LIGHT)
    modes = [listen([button.click], run, runtime, ui, e, [ui.session], mode_outputs(ui), **LIGHT)[0]
             for button, run in ((e.knob_free, stack.use_knob_free), (e.paper, stack.use_paper_time))]
    listen([e.run.click, e.source.submit, e.destination.submit, example[0].then, *(m.then for m in modes)],
           handlers.edit,
           runtime, ui, e, [*fields, e.live], page_outputs, api_name="edit", api_inputs=fields,
           api_outputs=api_outputs, scroll_to_output=True, **HEAVY)
    live_outputs = [e.grid, e.status, e.scores, e.details, e.knob]
    listen([e.lam_slider.release], handlers.live_from_slider, runtime, ui, e, [e.lam_slider, e.live],
           [e.lam_text, *live_outputs], **LIVE)
    listen([e.lam_text.submit], handlers.live_from_text, runtime, ui, e, [e.lam_text, e.live],
           [e.lam_slider, *live_outputs], api_name="live", api_inputs=[e.lam_text, e.live],
           api_outputs=[e.lam_slider, *live_outputs], **LIVE)
    e.run.click(None, None, None, js=SCROLL_JS, api_name=False, queue=False)
    for box in (e.source, e.destination, e.tests, e.num_seeds, e.first_seed, e.steps, e.guidance, e.size):
        box.input(None, None, e.stale, js=STALE_JS, api_name=False, queue=False)
    listen([e.push.click], stack.push, runtime, ui, e, [e.source, e.destination, e.method, ui.session],
           [ui.session, e.stack], api_name="push", api_inputs=[e.source, e.destination, ui.session],
           api_outputs=[ui.session, e.stack], **LIGHT)
    for button, run, name in ((e.undo, stack.undo, "undo"), (e.reset, stack.reset, "reset")):
        listen([button.click], run, runtime, ui, e, [ui.session], [ui.session, e.stack], api_name=name,
               api_inputs=[ui.session], api_outputs=[ui.session, e.stack], **LIGHT)
    upload_outputs = [ui.session, e.stack, e.source, e.destination, e.lam_text, e.lam_slider, e.edit_keys, e.augment,
                      e.method, s.method, e.auto_preserve, s.auto_preserve]
    listen([e.upload.upload], stack.upload, runtime, ui, e, [e.upload], upload_outputs, api_name="upload",
           api_inputs=[e.upload], api_outputs=upload_outputs, **LIGHT)
    listen([e.lora_run.click], stack.export_lora, runtime, ui, e, [e.lora_format, ui.session],
           [e.lora_file, e.lora_report], api_name="lora", api_inputs=[e.lora_format, ui.session],
           api_outputs=[e.lora_file, e.lora_report], **HEAVY)
    method_outputs = [e.method, s.method, e.lam_text, e.lam_slider, e.edit_keys]
    listen([e.method.input], stack.on_edit_method, runtime, ui, e, [e.method], method_outputs, **LIGHT)
    listen([s.method.input], stack.on_sweep_method, runtime, ui, s, [s.method], method_outputs, **LIGHT)
