#!/usr/bin/env python
"""Gradio demo of TIME (Orgad, Kawar, Belinkov, ICCV 2023): edit, compare, move λ live, sweep λ, debias.

The page only assembles the tabs of `ui/` (layouts, handlers, the one error wrapper, the stylesheet and the examples);
every computation lives in `time_core.demo` and the library below it. Run `python app.py --help` for the flags.
"""

from __future__ import annotations

import os

# Before torch loads: idle OpenMP threads sleep instead of spinning, which keeps a CPU Space responsive when the cores
# are shared (a default only; set OMP_WAIT_POLICY to override).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import gradio as gr  # noqa: E402

import time_core.demo as demo  # noqa: E402
from time_core import ModelLoadError  # noqa: E402
from time_core.demo import renderer_of  # noqa: E402
from time_core.demo.texts import DESCRIPTION  # noqa: E402
from time_core.evaluation.scoring import ScorerWeightsUnavailableError  # noqa: E402
from ui import edit_tab, study_tabs  # noqa: E402

CSS = Path(__file__).with_name("ui") / "style.css"


def warm_examples(runtime: demo.DemoRuntime) -> None:
    """Renders every example's edit in the background at start-up (the default one first), so the first page and
    each example show their results at once."""
    settings = runtime.settings()
    jobs = []
    for source, destination, lam, _, auto_preserve in edit_tab.examples(runtime.config.family):
        prompts = demo.example_prompts(runtime.config.family, source, destination)
        prompts = prompts or demo.PromptSet(source, destination)
        jobs.append(demo.ExampleTask(runtime, prompts, demo.parse_lam_or_auto(lam), settings, auto_preserve))
    renderer_of(runtime).submit(runtime, jobs)


def build_demo(runtime: demo.DemoRuntime) -> gr.Blocks:
    """The Blocks app for a loaded runtime, its queue set up (at most 64 waiting events)."""
    image_format = runtime.image_format
    with gr.Blocks(title="TIME: editing implicit assumptions", delete_cache=(3600, 7200)) as app:
        gr.Markdown(DESCRIPTION)
        gr.Markdown(runtime.describe(), elem_id="model-line")
        ui = SimpleNamespace(session=gr.State(demo.SessionEdits()),
                             files=demo.ImageFiles(Path(runtime.workdir) / "images", image_format))
        with gr.Tabs():
            with gr.Tab("Edit", id="edit"):
                ui.edit = edit_tab.edit_tab(runtime)
            with gr.Tab("λ sweep", id="sweep"):
                ui.sweep = study_tabs.sweep_tab(runtime, image_format)
            with gr.Tab("Debias", id="debias"):
                ui.debias = study_tabs.debias_tab(runtime, image_format)
        edit_tab.wire_edit(runtime, ui)
        study_tabs.wire_studies(runtime, ui)
        edit_tab.wire_first_page(runtime, ui, app.load)
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
    warm_examples(runtime)
    app.launch(server_name=args.host, server_port=args.port, theme=gr.themes.Soft(primary_hue="indigo"),
               css=CSS.read_text(), max_file_size=int((config.max_upload_mb + 1) * 1e6),
               allowed_paths=[str(Path(runtime.workdir))])


if __name__ == "__main__":
    main()
