"""The Edit tab's run: the edit (the session's stack plus the current pair), the original model's scored images
(cached), then the edited model's, with the same seeds."""

from __future__ import annotations

import time
from collections.abc import Iterator

from ..evaluation.metrics import Scores
from ..methods import get_method
from ..solver import check_lam, is_auto
from .images import ProgressFn, StageProgress, scores_of
from .inputs import DemoInputError, GenerationSettings
from .live import EditUpdate, cached_edited, scored_originals
from .prompt_sets import PromptSet
from .runtime import DemoRuntime
from .session import SessionEdits
from .turns import EDIT

__all__ = ["EditUpdate", "run_edit"]


def check_lam_or_auto(lam, method: str):
    """λ checked before anything is computed: a number > 0, or `"auto"` for a method with a knob-free λ."""
    if not is_auto(lam):
        return check_lam(lam)
    if "auto_lam" not in get_method(method).features:
        raise DemoInputError(f"{method} has no knob-free λ: give λ as a number")
    return lam


def run_edit(
    runtime: DemoRuntime,
    session: SessionEdits,
    prompts: PromptSet,
    lam: float,
    settings: GenerationSettings,
    edit_keys: bool = True,
    augment: bool = True,
    progress: ProgressFn | None = None,
    priority: int = EDIT,
) -> Iterator[EditUpdate]:
    """Computes the edit (the session's stack plus `prompts.source → prompts.destination`), then yields the original
    model's scored images and, once generated, the edited model's, with the same seeds.

    Everything is checked before any image is generated: bad prompts raise `PromptError`, a bad λ `ValueError`, an
    edit, a table or a click over the limits of `runtime.config` `DemoInputError`.

    Args:
        runtime (`DemoRuntime`): the shared pipeline, scorer and cache.
        session (`SessionEdits`): the session's stacked edits.
        prompts (`PromptSet`): the edit and its test prompts.
        lam (`float` or `"auto"`): λ; `"auto"` is the knob-free edit (λ chosen for this edit; needs automatic
            preservation, `session.auto_preserve`).
        settings (`GenerationSettings`): seeds, steps, guidance, size.
        edit_keys (`bool`, *optional*, defaults to `True`), augment (`bool`, *optional*, defaults to `True`): see
            `compute_edit`.
        progress (`Callable`, *optional*): called as `progress(fraction, desc=...)` after every denoising step.
        priority (`int`, *optional*): the run's place among the jobs waiting for the pipeline (`time_core.demo.turns`).

    Yields:
        `EditUpdate`: stage `"original"`, then stage `"edited"`.
    """
    lam = check_lam_or_auto(lam, session.method)
    session.check(runtime.config, prompts.source, prompts.destination)
    prompts.check(runtime.config, len(settings.seeds), models=2)
    request = session.request(prompts, settings, edit_keys, augment)
    seeds = settings.seeds
    rows = range(len(request.rows))
    model = runtime.config.model
    missing = sum(settings.original_key(model, p, s) not in runtime.cache for _, p, _ in request.rows for s in seeds)
    share = missing / (missing + len(request.rows) * len(seeds))  # of the denoising work, for the progress bar
    start = time.perf_counter()
    with runtime.turns.stage(priority):  # each stage of an edit in one turn: a long job waits, not the edit
        problem = request.prepare(runtime, priority)
        edit = problem.solve(lam)
        auto_lam = getattr(problem, "auto_lam", None)
        original, cached = scored_originals(runtime, request, priority, StageProgress(progress, 0.0, share,
                                                                                       "original model"))
    seconds = {"original": time.perf_counter() - start}
    scores: dict[str, Scores | None] = {"original": scores_of(original, len(seeds)), "edited": None}
    yield EditUpdate("original", edit, original, None, dict(scores), len(seeds), cached, dict(seconds), request,
                     auto_lam)

    start = time.perf_counter()
    report = StageProgress(progress, share, 1.0 - share, "edited model")
    with runtime.turns.stage(priority):
        found = cached_edited(runtime, request, edit, rows, seeds, priority, report)
    edited = [found[(r, s)] for r in rows for s in seeds]
    seconds["edited"] = time.perf_counter() - start
    scores["edited"] = scores_of(edited, len(seeds))
    yield EditUpdate("edited", edit, original, edited, scores, len(seeds), cached, seconds, request, auto_lam)
