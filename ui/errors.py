"""The one error wrapper of the page's events, for the page and for the API.

A handler (`ui.handlers`) is a generator `run(runtime, ui, values, progress)` that reads its inputs from `values`
(`{component: value}`) and yields `{component: update}`; it raises `ValueError` (`DemoInputError`, `PromptError`,
`EditFileError`) with a message for the user. On the page, the message shows in the tab's error box as text (the
prompts it quotes make no element: `time_core.demo.toast`) and stays there until the tab's next run; the previous
results stay, marked stale. An API client gets the exception, with the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gradio as gr

from time_core.demo import toast

__all__ = ["error_html", "on_api", "on_page", "stale_html"]


def error_html(error: Exception) -> str:
    """The error box's content: what went wrong, in the message's words, shown as text (`toast`)."""
    return (f'<div class="error-box" role="alert"><b>Nothing was run:</b> {toast(error)}'
            f'<br><small>The results below are from the previous run.</small></div>')


def stale_html(why: str) -> str:
    """The note that marks a tab's results stale (the page greys them out while it shows)."""
    return f'<div class="stale-note">{toast(why)}</div>'


def _only(update: dict, outputs: Sequence[Any]) -> dict:
    return {component: value for component, value in update.items() if component in outputs}


def on_page(run: Callable[..., Iterator[dict]], runtime, ui, box, stale, outputs: Sequence[Any], values: dict,
            progress=gr.Progress()) -> Iterator[dict]:
    """Runs `run` for the page (inputs as a set, so `values` is a dict): its first update clears the error box and
    the stale note; a `ValueError` fills the box and marks the results stale, and nothing else changes."""
    try:
        first = True
        for update in run(runtime, ui, values, progress):
            if first:
                update, first = {box: "", stale: "", **update}, False
            yield _only(update, outputs)
    except ValueError as error:
        yield _only({box: error_html(error), stale: stale_html("stale: the last run failed")}, outputs)


def on_api(run: Callable[..., Iterator[dict]], runtime, ui, inputs: Sequence[Any], outputs: Sequence[Any],
           *values: Any) -> Iterator[dict]:
    """Runs `run` for an API client (inputs in the documented order): a `ValueError` is raised as `gr.Error`."""
    given = dict(zip(inputs, values))
    try:
        for update in run(runtime, ui, given, None):
            yield _only(update, outputs)
    except ValueError as error:
        raise gr.Error(toast(error), title=type(error).__name__) from error
