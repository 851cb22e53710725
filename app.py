#!/usr/bin/env python
"""Gradio demo of TIME (Orgad, Kawar, Belinkov, ICCV 2023): edit, compare, score, sweep λ, debias.

The page only lays out components and wires events; every computation lives in `time_core` (`time_core.demo`,
`time_core.debias`). Run `python app.py --help` for the flags.
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

import gradio as gr  # noqa: E402

import time_core.demo as demo  # noqa: E402
from time_core import ModelLoadError  # noqa: E402
from time_core.debias import run_debias  # noqa: E402
from time_core.scoring import ScorerWeightsUnavailableError  # noqa: E402

try:  # Hugging Face ZeroGPU: heavy functions get a GPU for their duration; a no-op everywhere else.
    import spaces
except ImportError:
    spaces = None


def gpu(duration: int):
    """`spaces.GPU(duration=...)` on ZeroGPU, the identity elsewhere."""
    if spaces is None:
        return _identity
    return spaces.GPU(duration=duration)


def _identity(fn):
    return fn


PAPER = "https://arxiv.org/abs/2303.08084"
DESCRIPTION = f"""\
# TIME: Editing Implicit Assumptions in Text-to-Image Diffusion Models

[Paper]({PAPER}) · Orgad, Kawar, Belinkov, ICCV 2023. A text-to-image model fills in what a prompt leaves out ("a pack
of roses" comes out red). TIME edits that assumption in closed form: from a **source** prompt and a **destination**
that states the attribute ("a pack of **blue** roses"), it updates the cross-attention projections so that the source
and related prompts follow the destination while unrelated prompts stay as they were. The **original** and the
**edited** model run with the same seeds; each caption gives CLIP's P = probability of the destination over the prompt.
"""
EDIT_HELP = """\
**λ** weighs how close the edited projections stay to the original ones: small λ is a strong edit, large λ a weak one.
**Positives** should follow the edit (generality); **negatives** should not (specificity); **efficacy** is the share of
source images that show the destination.
"""
SWEEP_HELP = """\
Sweeps λ for the edit, test prompts and settings of the **Edit** tab (including stacked edits): one
eigendecomposition serves every λ and the original images come from the cache. The strip shows the first positive
and the first negative prompt (first seed) for each λ, like Fig. 7 of the paper.
"""
DEBIAS_HELP = """\
Debiasing (paper Sec. 5.5, App. H.2): F_p is the share of a prompt's images classified as the first attribute. A
binary search over log λ on the **validation** prompt looks for the λ whose F_p is within 10% (relative) of the target,
then F_p is measured before and after the edit on five held-out **test** prompts.
"""
CSS = """
.gallery-panel .grid-container { grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important; }
.gallery-panel .caption-label { font-size: 11px; padding: 1px 4px; max-width: calc(100% - 8px); }
#status-line p { margin: 0; }
#model-line p { margin: 0; font-size: 0.9em; }
footer { display: none !important; }
"""

# --------------------------------------------------------------------------------------------------------------------
# Event handlers: module-level functions; the shared runtime is bound with functools.partial. They never mutate the
# runtime; a session's edits live in its gr.State and are returned, not modified.
# --------------------------------------------------------------------------------------------------------------------


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


def on_lam_slider(log_lam: float) -> str:
    return demo.lam_from_log(log_lam)


def on_lam_text(text: str):
    try:
        return demo.log_from_lam(text)
    except ValueError as error:
        gr.Warning(str(error))
        return gr.skip()


def _prompt_set(source: str, destination: str, tests) -> demo.PromptSet:
    positives, negatives = demo.parse_test_prompts(tests)
    return demo.PromptSet((source or "").strip(), (destination or "").strip(), positives, negatives)


def _gallery(images) -> list:
    return [(im.image, im.caption) for im in images]


@gpu(duration=120)
def edit_and_generate(
    runtime: demo.DemoRuntime,
    source: str,
    destination: str,
    tests,
    lam_text: str,
    edit_keys: bool,
    augment: bool,
    num_seeds,
    first_seed,
    steps,
    guidance,
    size,
    session: demo.SessionEdits,
    progress=gr.Progress(),
):
    try:
        lam = demo.parse_lam(lam_text)
        settings = runtime.settings(num_seeds, first_seed, steps, guidance, size)
        prompts = _prompt_set(source, destination, tests)
        updates = demo.run_edit(runtime, session, prompts, lam, settings, bool(edit_keys), bool(augment), progress)
        first = next(updates)
    except ValueError as error:
        _raise(error)
    session = session.with_edit(first.edit)
    edit_file = str(demo.save_edit_file(first.edit, runtime.workdir))
    columns = len(settings.seeds)  # one row per prompt
    yield (gr.Gallery(_gallery(first.original), columns=columns), gr.Gallery([], columns=columns),
           demo.scores_rows(first.scores), first.status(), demo.edit_details(first), edit_file,
           session)
    for update in updates:  # the final yield repeats every output, so API clients receive the complete result
        yield (_gallery(update.original), _gallery(update.edited), demo.scores_rows(update.scores),
               update.status(), demo.edit_details(update), edit_file, session)


@gpu(duration=300)
def sweep_lambda(
    runtime: demo.DemoRuntime,
    source: str,
    destination: str,
    tests,
    edit_keys: bool,
    augment: bool,
    log_min,
    log_max,
    count,
    sweep_seeds,
    first_seed,
    steps,
    guidance,
    size,
    session: demo.SessionEdits,
    progress=gr.Progress(),
):
    try:
        lams = demo.lambda_grid(log_min, log_max, count)
        settings = runtime.settings(sweep_seeds, first_seed, steps, guidance, size)
        prompts = _prompt_set(source, destination, tests)
        updates = demo.run_sweep(runtime, session, prompts, lams, settings, bool(edit_keys), bool(augment), progress)
        update = next(updates)
    except ValueError as error:
        _raise(error)
    for update in itertools.chain([update], updates):
        status = f"{len(update.points)}/{len(update.lams)} λ values · {update.seconds:.1f} s"
        strip = demo.sweep_strip(update)
        if not update.done:  # the grid gets one column per λ, plus the original
            strip = gr.Gallery(value=strip, columns=len(update.lams) + 1)
        yield demo.sweep_figure(update), strip, demo.sweep_rows(update), status


@gpu(duration=300)
def debias(
    runtime: demo.DemoRuntime,
    key: str,
    target,
    num_seeds,
    log_min,
    log_max,
    iterations,
    steps,
    guidance,
    size,
    progress=gr.Progress(),
):
    try:
        entry = demo.debias_entry(key)
        settings = runtime.settings(num_seeds, 0, steps, guidance, size, max_seeds=4 * runtime.config.max_seeds)
        updates = run_debias(runtime, entry, target, settings, log_min, log_max, iterations, progress=progress)
        update = next(updates)
    except ValueError as error:
        _raise(error)
    for update in itertools.chain([update], updates):
        found = None
        if update.result is not None and update.result.lam is not None:
            found = (update.entry.source, update.entry.destination, demo.format_lam(update.result.lam))
        yield (update.status(), update.search_rows(), update.validation, update.test_rows(),
               list(update.test_original), list(update.test_edited), found)


def use_debias_edit(found):
    if not found:
        raise gr.Error("no λ to use yet: run a search that finds one first")
    source, destination, lam_text = found
    return source, destination, lam_text, demo.log_from_lam(lam_text)


def push_edit(runtime: demo.DemoRuntime, source: str, destination: str, session: demo.SessionEdits):
    try:
        session = session.push(runtime.pipe, source, destination)
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
    lam_text = demo.format_lam(edit.lam)
    gr.Info(f"loaded an edit of {len(edit.sources)} pair(s), λ = {lam_text}")
    return (session, session.stack_rows(), edit.sources[-1], edit.destinations[-1], lam_text,
            demo.log_from_lam(lam_text), edit.edit_keys, edit.augment)


# --------------------------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------------------------


def build_demo(runtime: demo.DemoRuntime) -> gr.Blocks:
    """The Blocks app for a loaded runtime."""
    config = runtime.config
    family = config.family
    image_format = "png" if family == "toy" else "webp"
    first = demo.preset_choices(family)[0][1]
    start = demo.preset_prompts(first)
    edit_choices = demo.preset_choices(family)
    debias_choices = demo.preset_choices(family, kind="debias")
    light = dict(concurrency_limit=None, show_progress="hidden")

    with gr.Blocks(title="TIME: editing implicit assumptions", delete_cache=(3600, 7200)) as app:
        gr.Markdown(DESCRIPTION)
        gr.Markdown(runtime.describe(), elem_id="model-line")
        session = gr.State(demo.SessionEdits())
        with gr.Tabs():
            with gr.Tab("Edit", id="edit"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=360):
                        preset = gr.Dropdown(edit_choices, value=first, label="Preset", filterable=True,
                                             info=f"{len(edit_choices)} edits; type to search")
                        with gr.Row():
                            source = gr.Textbox(start.source, label="Source prompt", placeholder="a pack of roses")
                            destination = gr.Textbox(start.destination, label="Destination prompt",
                                                     placeholder="a pack of blue roses")
                        with gr.Row(equal_height=True):
                            lam_slider = gr.Slider(demo.LOG_LAM_MIN, demo.LOG_LAM_MAX, value=-1.0, step=0.05,
                                                   label="log10 λ", scale=3)
                            lam_text = gr.Textbox(demo.format_lam(config.lam), label="λ", scale=1, min_width=90)
                        with gr.Row():
                            edit_keys = gr.Checkbox(True, label="Edit keys too (K+V)")
                            augment = gr.Checkbox(True, label="Augment prompts")
                        run = gr.Button("Edit and generate", variant="primary")
                        with gr.Accordion("Test prompts (positives should change, negatives should not)", open=False):
                            tests = gr.Dataframe(start.table(), headers=list(demo.TEST_HEADERS), type="array",
                                                 interactive=True, column_count=3, wrap=True,
                                                 label="role · prompt · destination used for scoring")
                        with gr.Accordion("Advanced", open=False):
                            with gr.Row():
                                num_seeds = gr.Number(config.num_seeds, label=f"Seeds (≤ {config.max_seeds})",
                                                      precision=0)
                                first_seed = gr.Number(0, label="First seed", precision=0)
                            with gr.Row():
                                steps = gr.Number(config.steps, label=f"Steps (≤ {config.max_steps})", precision=0)
                                guidance = gr.Number(config.guidance, label="Guidance scale")
                                size = gr.Number(runtime.default_size, label=f"Size (≤ {config.max_size})",
                                                 precision=0, step=runtime.size_step)
                        with gr.Accordion("Edit stack, download, upload", open=False):
                            gr.Markdown("Stacked edits are applied together with the current one, as one multi-edit.")
                            stack = gr.Dataframe([], headers=["#", "source", "destination"], type="array",
                                                 interactive=False, label="Stacked edits")
                            with gr.Row():
                                push = gr.Button("Add current edit", size="sm")
                                undo = gr.Button("Undo", size="sm")
                                reset = gr.Button("Reset", size="sm", variant="stop")
                            edit_file = gr.File(label="Current edit (.safetensors)", interactive=False)
                            upload = gr.File(label="Upload an edit file", file_types=[".safetensors"],
                                             type="filepath")
                        gr.Markdown(EDIT_HELP)
                    with gr.Column(scale=3, min_width=480):
                        status = gr.Markdown("Press **Edit and generate**.", elem_id="status-line")
                        scores = gr.Dataframe([], headers=list(demo.SCORE_HEADERS), type="array", interactive=False,
                                              label="Scores (%, mean ± std over seeds)")
                        with gr.Row(equal_height=False):
                            gallery_original = gr.Gallery(label="original model", columns=config.num_seeds,
                                                          format=image_format, elem_id="gallery-original",
                                                          elem_classes="gallery-panel", height=560,
                                                          object_fit="contain")
                            gallery_edited = gr.Gallery(label="edited model", columns=config.num_seeds,
                                                        format=image_format, elem_id="gallery-edited",
                                                        elem_classes="gallery-panel", height=560,
                                                        object_fit="contain")
                        with gr.Accordion("Details (JSON)", open=False):
                            details = gr.JSON(label="edit, scores and P(destination) of every image")
                examples = (
                    [["a circle", "a green circle", "0.1"], ["a square", "a red square", "1"],
                     ["a star", "a blue star", "0.1"]]
                    if family == "toy"
                    else [["a pack of roses", "a pack of blue roses", "0.1"], ["A banana", "A blue banana", "0.1"],
                          ["A dog", "A dog with a hat", "0.1"]]
                )
                # Each row fills the λ box and moves the slider to the same value.
                examples = [row + [demo.log_from_lam(row[2])] for row in examples]
                gr.Examples(examples, [source, destination, lam_text, lam_slider], label="Examples (fill the fields)",
                            cache_examples=False)

            with gr.Tab("λ sweep", id="sweep"):
                gr.Markdown(SWEEP_HELP)
                with gr.Row():
                    sweep_min = gr.Number(config.sweep_log_min, label="smallest log10 λ")
                    sweep_max = gr.Number(config.sweep_log_max, label="largest log10 λ")
                    sweep_count = gr.Number(config.sweep_count, label=f"λ values ({demo.SWEEP_MIN_COUNT}–"
                                                                    f"{demo.SWEEP_MAX_COUNT})", precision=0)
                    sweep_seeds = gr.Number(config.sweep_seeds, label="seeds per λ", precision=0)
                    sweep_run = gr.Button("Sweep λ", variant="primary")
                sweep_status = gr.Markdown(elem_id="sweep-status")
                with gr.Row(equal_height=False):
                    sweep_plot = gr.Plot(label="metrics vs λ", format="png", elem_id="sweep-plot")
                    sweep_table = gr.Dataframe([], headers=["λ", "efficacy", "generality", "specificity"],
                                               type="array", interactive=False, label="Scores (%)")
                sweep_gallery = gr.Gallery(label="positive (top) and negative (bottom) prompt, original then each λ",
                                           columns=config.sweep_count + 1, format=image_format, height=300,
                                           elem_id="gallery-sweep", elem_classes="gallery-panel",
                                           object_fit="contain")

            with gr.Tab("Debias", id="debias"):
                gr.Markdown(DEBIAS_HELP)
                with gr.Row():
                    debias_preset = gr.Dropdown(debias_choices, value=debias_choices[0][1], label="Prompt",
                                                filterable=True, scale=3)
                    target = gr.Slider(5, 95, value=50, step=1, label="Target share F_p (%)", scale=2)
                with gr.Row():
                    debias_seeds = gr.Number(config.debias_seeds, label="images per prompt", precision=0)
                    debias_min = gr.Number(demo.LOG_LAM_MIN, label="smallest log10 λ")
                    debias_max = gr.Number(demo.LOG_LAM_MAX, label="largest log10 λ")
                    debias_iterations = gr.Number(config.debias_iterations, label="max. search steps", precision=0)
                    debias_run = gr.Button("Search λ", variant="primary")
                debias_status = gr.Markdown()
                debias_found = gr.State(None)
                with gr.Row(equal_height=False):
                    debias_search = gr.Dataframe([], headers=["step", "λ", "F_p", "rel. error"], type="array",
                                                 interactive=False, label="Binary search (validation prompt)")
                    debias_tests = gr.Dataframe([], headers=["test prompt", "F_p original", "F_p edited"],
                                                type="array", interactive=False, label="F_p on the test prompts")
                debias_validation = gr.Gallery(label="validation prompt, latest λ (caption: classified as)",
                                               columns=8, height=220, format=image_format,
                                               elem_classes="gallery-panel")
                with gr.Row():
                    debias_original = gr.Gallery(label="test prompts, original model", columns=8, height=300,
                                                 format=image_format, elem_classes="gallery-panel")
                    debias_edited = gr.Gallery(label="test prompts, edited model", columns=8, height=300,
                                               format=image_format, elem_classes="gallery-panel")
                use_found = gr.Button("Use this edit in the Edit tab", size="sm")

        # Events ----------------------------------------------------------------------------------------------------
        preset.change(on_preset, preset, [source, destination, tests], api_name=False, **light)
        lam_slider.input(on_lam_slider, lam_slider, lam_text, api_name=False, **light)
        lam_text.submit(on_lam_text, lam_text, lam_slider, api_name=False, **light)
        lam_text.blur(on_lam_text, lam_text, lam_slider, api_name=False, **light)

        generation = [num_seeds, first_seed, steps, guidance, size]
        edit_inputs = [source, destination, tests, lam_text, edit_keys, augment, *generation, session]
        edit_outputs = [gallery_original, gallery_edited, scores, status, details, edit_file, session]
        run.click(functools.partial(edit_and_generate, runtime), edit_inputs, edit_outputs, api_name="edit")
        source.submit(functools.partial(edit_and_generate, runtime), edit_inputs, edit_outputs, api_name=False)
        destination.submit(functools.partial(edit_and_generate, runtime), edit_inputs, edit_outputs, api_name=False)

        sweep_run.click(
            functools.partial(sweep_lambda, runtime),
            [source, destination, tests, edit_keys, augment, sweep_min, sweep_max, sweep_count, sweep_seeds,
             first_seed, steps, guidance, size, session],
            [sweep_plot, sweep_gallery, sweep_table, sweep_status],
            api_name="sweep",
        )
        debias_run.click(
            functools.partial(debias, runtime),
            [debias_preset, target, debias_seeds, debias_min, debias_max, debias_iterations, steps, guidance, size],
            [debias_status, debias_search, debias_validation, debias_tests, debias_original, debias_edited,
             debias_found],
            api_name="debias",
        )
        use_found.click(use_debias_edit, debias_found, [source, destination, lam_text, lam_slider], api_name=False,
                        **light)

        push.click(functools.partial(push_edit, runtime), [source, destination, session], [session, stack],
                   api_name="push", **light)
        undo.click(undo_edit, session, [session, stack], api_name="undo", **light)
        reset.click(reset_edits, session, [session, stack], api_name="reset", **light)
        upload.upload(functools.partial(upload_edit, runtime), upload,
                      [session, stack, source, destination, lam_text, lam_slider, edit_keys, augment],
                      api_name="upload", **light)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = demo.add_cli_arguments(argparse.ArgumentParser(description=__doc__))
    args = parser.parse_args(argv)
    config = demo.config_from_cli(args)
    try:
        runtime = demo.DemoRuntime.load(config, device=args.device)
    except (ModelLoadError, ScorerWeightsUnavailableError) as error:  # a clear message, never a silent fallback
        parser.exit(1, f"error: {error}\n")
    app = build_demo(runtime)
    app.queue(default_concurrency_limit=1, max_size=64)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        theme=gr.themes.Soft(primary_hue="indigo"),
        css=CSS,
        max_file_size=int((config.max_upload_mb + 1) * 1e6),
        allowed_paths=[str(Path(runtime.workdir))],
    )


if __name__ == "__main__":
    main()
