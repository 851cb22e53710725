"""The λ sweep tab's run: one factorisation for the edit, `.solve(λ)` per value, originals from the cache (Fig. 7 of
the paper)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..evaluation.metrics import Scores
from ..solver import check_lam
from .images import ProgressFn, ScoredImage, StageProgress, edited_images, original_images, score_images, scores_of
from .inputs import DemoInputError, GenerationSettings, format_lam
from .prompt_sets import PromptSet
from .runtime import DemoRuntime
from .session import SessionEdits
from .turns import LONG

__all__ = ["SweepPoint", "SweepUpdate", "run_sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """The result for one λ of a sweep.

    Args:
        lam (`float`): λ.
        scores (`Scores`): the edited model's metrics.
        strip (`tuple[ScoredImage, ...]`): the edited images of the strip prompts (first seed).
    """

    lam: float
    scores: Scores
    strip: tuple[ScoredImage, ...]


@dataclass(frozen=True)
class SweepUpdate:
    """The state of a λ sweep after some λ values.

    Args:
        lams (`tuple[float, ...]`): every λ of the sweep.
        points (`tuple[SweepPoint, ...]`): the λ values done so far, in order.
        original_scores (`Scores`): the original model's metrics.
        original_strip (`tuple[ScoredImage, ...]`): the original images of the strip prompts (first seed).
        seconds (`float`): wall time so far.
        auto_lam (`float`, *optional*): the knob-free λ of the edit (`None`: none for this method or options).
    """

    lams: tuple[float, ...]
    points: tuple[SweepPoint, ...]
    original_scores: Scores
    original_strip: tuple[ScoredImage, ...]
    seconds: float
    auto_lam: float | None = None

    @property
    def done(self) -> bool:
        return len(self.points) == len(self.lams)


def _strip_rows(prompts: PromptSet) -> list[tuple[str, str, str]]:
    """The prompts of the image strip: the first positive and the first negative (the source when missing)."""
    rows = prompts.rows()
    chosen = [next((r for r in rows if r[0] == role), None) for role in ("positive", "negative")]
    chosen = [r for r in chosen if r is not None]
    return chosen or rows[:1]


def run_sweep(
    runtime: DemoRuntime,
    session: SessionEdits,
    prompts: PromptSet,
    lams: Sequence[float],
    settings: GenerationSettings,
    edit_keys: bool = True,
    augment: bool = True,
    progress: ProgressFn | None = None,
) -> Iterator[SweepUpdate]:
    """Sweeps λ for one edit: ONE text encoding and eigendecomposition (`prepare_edit`), `.solve(λ)` per value, the
    original images from the cache; yields after the originals and after every λ. It takes turns on the pipeline as a
    long job (`time_core.demo.turns.LONG`): an edit arriving meanwhile waits for one small chunk at most.

    Args:
        lams (`Sequence[float]`): the λ values (see `lambda_grid`).
        Other arguments as for `run_edit`.
    """
    lams = tuple(check_lam(lam) for lam in lams)
    if not lams:
        raise DemoInputError("sweep: no λ values")
    session.check(runtime.config, prompts.source, prompts.destination)
    prompts.check(runtime.config, len(settings.seeds), models=len(lams) + 1)
    with runtime.turns.turn(LONG):
        problem = session.prepare(runtime.pipe, prompts.source, prompts.destination, edit_keys, augment)
    rows = prompts.rows()
    texts = [prompt for _, prompt, _ in rows]
    seeds = settings.seeds
    strip_rows = _strip_rows(prompts)
    strip_index = [rows.index(r) for r in strip_rows]
    start = time.perf_counter()
    steps_total = len(lams) + 1
    originals, _ = original_images(runtime, texts, settings, StageProgress(progress, 0.0, 1 / steps_total,
                                                                              "original model"), LONG)
    original = score_images(runtime, rows, originals, seeds, LONG)
    original_scores = scores_of(original, len(seeds))
    original_strip = tuple(original[i * len(seeds)] for i in strip_index)
    points: list[SweepPoint] = []
    auto_lam = getattr(problem, "auto_lam", None)
    yield SweepUpdate(lams, (), original_scores, original_strip, time.perf_counter() - start, auto_lam)
    for k, lam in enumerate(lams):
        edit = problem.solve(lam)
        report = StageProgress(progress, (k + 1) / steps_total, 1 / steps_total, f"λ = {format_lam(lam)}")
        edited = score_images(runtime, rows, edited_images(runtime, texts, settings, edit, report, LONG), seeds, LONG)
        strip = tuple(edited[i * len(seeds)] for i in strip_index)
        points.append(SweepPoint(lam, scores_of(edited, len(seeds)), strip))
        yield SweepUpdate(lams, tuple(points), original_scores, original_strip, time.perf_counter() - start, auto_lam)
