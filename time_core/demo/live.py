"""Live λ: an edit run is recorded as an `EditRequest`, so the same edit can be shown at another λ without another
click. One factorisation (the prepared problem, cached by request) serves every λ, and the edited model's scored
images are cached by request, λ, prompt and seed: a λ seen before (on the slider, in the background grid, in an
example) costs nothing, and a new one shows the source, one positive and one negative row first (first seed), the
rest following.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..edit import BaseEdit
from ..evaluation.metrics import Scores
from ..methods import BaseProblem, prepare_edit
from ..solver import check_lam
from .images import ScoredImage, edited_images, original_images, score_images, scores_of
from .inputs import GenerationSettings, lam_from_log
from .turns import EDIT, LIVE

__all__ = ["EditRequest", "EditUpdate", "cached_edited", "live_lams", "preview_rows", "run_live"]

# The λ slider's positions (log10 λ): the background grid renders each of them after an edit.
LIVE_LOG_STEP = 0.25


@dataclass(frozen=True)
class EditRequest:
    """What an edit run computes, without λ: the multi-edit, its rows and its generation settings.

    Args:
        method (`str`): the editing method.
        sources (`tuple[str, ...]`), destinations (`tuple[str, ...]`): the stack plus the current pair.
        edit_keys (`bool`), augment (`bool`): see `compute_edit`.
        preserve (`tuple[str, ...]`), preserve_weight (`float`): listed prompts to keep and their weight.
        auto_preserve (`bool`): automatic preservation (`preserve="auto"`) instead of `preserve`.
        rows (`tuple[tuple[str, str, str], ...]`): `(role, prompt, destination)` of every row shown.
        settings (`GenerationSettings`): seeds, steps, guidance, size.
    """

    method: str
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    edit_keys: bool
    augment: bool
    preserve: tuple[str, ...]
    preserve_weight: float
    auto_preserve: bool
    rows: tuple[tuple[str, str, str], ...]
    settings: GenerationSettings

    @property
    def problem_key(self) -> tuple:
        """What the prepared problem depends on."""
        return (self.method, self.sources, self.destinations, self.edit_keys, self.augment, self.preserve,
                self.preserve_weight, self.auto_preserve)

    def prepare(self, runtime, priority: int = EDIT) -> BaseProblem:
        """The prepared problem (encoding and factorisation in one turn on the pipeline), cached in the runtime."""
        key = (runtime.config.model,) + self.problem_key
        problem = runtime.problems.get(key)
        if problem is None:
            preserve = "auto" if self.auto_preserve else self.preserve
            with runtime.turns.turn(priority):
                problem = prepare_edit(runtime.pipe, list(self.sources), list(self.destinations),
                                       edit_keys=self.edit_keys, augment=self.augment, preserve=preserve,
                                       preserve_weight=self.preserve_weight, method=self.method)
            runtime.problems.put(key, problem)
        return problem

    def image_key(self, model: str, lam: float, row: tuple[str, str, str], seed: int) -> tuple:
        s = self.settings
        return (model, self.problem_key, lam, row[1], row[2], seed, s.steps, s.guidance, s.size)


@dataclass(frozen=True)
class EditUpdate:
    """One step of an edit run.

    Args:
        stage (`str`): `"original"` (originals ready, edited pending), `"preview"` (a live λ: some edited images, the
            others `None`) or `"edited"` (done).
        edit (`BaseEdit`): the edit.
        original (`list[ScoredImage]`): the original model's images, prompt-major.
        edited (`list[ScoredImage | None]`, *optional*): the edited model's images, same order.
        scores (`dict`): `{"original": Scores, "edited": Scores | None}`.
        num_seeds (`int`): images per prompt.
        cached (`int`): original images taken from the cache.
        seconds (`dict[str, float]`): wall time of the stages so far.
        request (`EditRequest`, *optional*): the run without its λ (what live λ and the background grid run again).
        auto_lam (`float`, *optional*): the λ the knob-free edit chooses for this edit (`None`: the method or the
            options choose none).
    """

    stage: str
    edit: BaseEdit
    original: list[ScoredImage]
    edited: list[ScoredImage] | None
    scores: dict[str, Scores | None]
    num_seeds: int
    cached: int
    seconds: dict[str, float]
    request: Any = None
    auto_lam: float | None = None


def preview_rows(rows: Sequence[tuple[str, str, str]]) -> list[int]:
    """The rows a new λ shows first: the source, the first positive and the first negative."""
    found = {}
    for index, (role, _, _) in enumerate(rows):
        found.setdefault(role, index)
    return [found[role] for role in ("source", "positive", "negative") if role in found]


def live_lams(lam: float | None = None) -> list[float]:
    """The λ values of the slider's positions (as the λ field reads them), nearest to `lam` first."""
    from ..evaluation.search import LOG_LAM_MAX, LOG_LAM_MIN

    count = int(round((LOG_LAM_MAX - LOG_LAM_MIN) / LIVE_LOG_STEP)) + 1
    lams = [float(lam_from_log(LOG_LAM_MIN + k * LIVE_LOG_STEP)) for k in range(count)]
    if lam is not None:
        import math

        lams.sort(key=lambda x: abs(math.log10(x) - math.log10(lam)))
    return lams


def cached_edited(runtime, request: EditRequest, edit, rows: Sequence[int], seeds: Sequence[int],
                  priority: int = EDIT, progress=None) -> dict[tuple[int, int], ScoredImage]:
    """The edited model's scored images of `rows` (indices into `request.rows`) × `seeds`, from the runtime's cache
    where possible; the missing ones are generated in one turn and cached. Returns `{(row, seed): image}`."""
    model = runtime.config.model
    found = _lookup(runtime, request, edit.lam, rows, seeds)
    missing_rows = [r for r in rows if any((r, s) not in found for s in seeds)]
    if missing_rows:
        missing_seeds = sorted({s for r in missing_rows for s in seeds if (r, s) not in found})
        settings = GenerationSettings(tuple(missing_seeds), request.settings.steps, request.settings.guidance,
                                      request.settings.size)
        texts = [request.rows[r][1] for r in missing_rows]
        images = edited_images(runtime, texts, settings, edit, progress, priority)
        scored = score_images(runtime, [request.rows[r] for r in missing_rows], images, missing_seeds, priority)
        for k, image in enumerate(scored):
            r, seed = missing_rows[k // len(missing_seeds)], missing_seeds[k % len(missing_seeds)]
            runtime.edited_cache.put(request.image_key(model, edit.lam, request.rows[r], seed), image)
            found.setdefault((r, seed), image)
    return found


def _lookup(runtime, request: EditRequest, lam: float, rows: Sequence[int],
            seeds: Sequence[int]) -> dict[tuple[int, int], ScoredImage]:
    """The cached edited images of `rows` × `seeds` at `lam`, `{(row, seed): image}`."""
    found = {}
    for r in rows:
        for seed in seeds:
            image = runtime.edited_cache.get(request.image_key(runtime.config.model, lam, request.rows[r], seed))
            if image is not None:
                found[(r, seed)] = image
    return found


def scored_originals(runtime, request: EditRequest, priority: int = EDIT, progress=None) -> tuple[list, int]:
    """The original model's scored images of every row, prompt-major (from the cache when they are there), and how
    many came from the cache."""
    texts = [prompt for _, prompt, _ in request.rows]
    images, cached = original_images(runtime, texts, request.settings, progress, priority)
    return score_images(runtime, request.rows, images, request.settings.seeds, priority), cached


def run_live(runtime, request: EditRequest, lam: float) -> Iterator:
    """The edit of `request` at another λ: yields an `EditUpdate` of stage `"preview"` (the source, first positive and
    first negative rows, first seed, unless every image is cached) and then one of stage `"edited"` (every image).

    Raises:
        `ValueError`: a bad λ.
    """
    lam = check_lam(lam)
    start = time.perf_counter()
    seeds = request.settings.seeds
    everything = range(len(request.rows))
    with runtime.turns.turn(LIVE):  # the preview in one turn
        problem = request.prepare(runtime, LIVE)
        edit = problem.solve(lam)
        auto_lam = getattr(problem, "auto_lam", None)
        original, cached = scored_originals(runtime, request, LIVE)
        found = _lookup(runtime, request, edit.lam, everything, seeds)
        if len(found) < len(everything) * len(seeds):
            found.update(cached_edited(runtime, request, edit, preview_rows(request.rows), seeds[:1], LIVE))
    if len(found) < len(everything) * len(seeds):
        edited = [found.get((r, s)) for r in everything for s in seeds]
        yield EditUpdate("preview", edit, original, edited, {"original": scores_of(original, len(seeds)),
                                                             "edited": None}, len(seeds), cached,
                         {"preview": time.perf_counter() - start}, request, auto_lam)
        found.update(cached_edited(runtime, request, edit, list(everything), seeds, EDIT))
    edited = [found[(r, s)] for r in everything for s in seeds]
    scores = {"original": scores_of(original, len(seeds)), "edited": scores_of(edited, len(seeds))}
    yield EditUpdate("edited", edit, original, edited, scores, len(seeds), cached,
                     {"edited": time.perf_counter() - start}, request, auto_lam)
