"""Binding handlers to events: every event goes through the error wrapper (`ui.errors`); an event with an API name
gets a second, API-only listener on a hidden button with its documented inputs and outputs, so the page shows errors
in place while API clients get exceptions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from .errors import on_api, on_page

__all__ = ["HEAVY", "LIGHT", "LIVE", "listen"]

LIGHT = dict(concurrency_limit=None, show_progress="hidden")  # events that compute nothing heavy
# Events that run the shared pipeline: several may be in flight, and they take turns on the pipeline chunk by chunk
# (`time_core.demo.turns`), so a sweep never holds an edit for longer than one chunk.
HEAVY = dict(concurrency_id="pipeline", concurrency_limit=8)
LIVE = dict(concurrency_id="live", concurrency_limit=None, trigger_mode="always_last", show_progress="minimal")


def listen(triggers: Sequence[Callable], run: Callable, runtime, ui, tab, inputs: Sequence[Any],
           outputs: Sequence[Any], api_name: str | None = None, api_inputs: Sequence[Any] = (),
           api_outputs: Sequence[Any] = (), **kwargs: Any) -> list:
    """Runs `run` on each of `triggers` (e.g. `[button.click, box.submit]`) for the page, showing errors in
    `tab.error` and marking `tab.stale`; with `api_name`, also as the API endpoint of that name. Returns the page's
    event dependencies (to chain others with `.then`)."""
    page_outputs = list(dict.fromkeys([*outputs, tab.error, tab.stale]))
    handler = functools.partial(on_page, run, runtime, ui, tab.error, tab.stale, page_outputs)
    dependencies = [trigger(handler, set(inputs), page_outputs, api_name=False, **kwargs) for trigger in triggers]
    if api_name:
        button = gr.Button(visible=False, elem_classes="api-only")
        button.click(functools.partial(on_api, run, runtime, ui, list(api_inputs), list(api_outputs)),
                     list(api_inputs), list(api_outputs), api_name=api_name, **kwargs)
    return dependencies
