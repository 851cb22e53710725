"""The Edit tab's run: the edit (the session's stack plus the current pair), the original model's scored images
(cached), then the edited model's, with the same seeds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..edit import BaseEdit
from ..evaluation.metrics import Scores
from ..solver import check_lam
from .images import ProgressFn, ScoredImage, StageProgress, edited_images, original_images, score_images, scores_of
from .inputs import GenerationSettings
from .prompt_sets import PromptSet
from .runtime import DemoRuntime
from .session import SessionEdits

__all__ = ["EditUpdate", "run_edit"]


@dataclass(frozen=True)
class EditUpdate:
    """One step of an edit run.

    Args:
        stage (`str`): `"original"` (originals ready, edited pending) or `"edited"` (done).
        edit (`BaseEdit`): the edit.
        original (`list[ScoredImage]`): the original model's images, prompt-major.
        edited (`list[ScoredImage]`, *optional*): the edited model's images, same order.
        scores (`dict`): `{"original": Scores, "edited": Scores | None}`.
        num_seeds (`int`): images per prompt.
        cached (`int`): original images taken from the cache.
        seconds (`dict[str, float]`): wall time of the stages so far.
    """

    stage: str
    edit: BaseEdit
    original: list[ScoredImage]
    edited: list[ScoredImage] | None
    scores: dict[str, Scores | None]
    num_seeds: int
    cached: int
    seconds: dict[str, float]


def run_edit(
    runtime: DemoRuntime,
    session: SessionEdits,
    prompts: PromptSet,
    lam: float,
    settings: GenerationSettings,
    edit_keys: bool = True,
    augment: bool = True,
    progress: ProgressFn | None = None,
) -> Iterator[EditUpdate]:
    """Computes the edit (the session's stack plus `prompts.source → prompts.destination`), then yields the original
    model's scored images and, once generated, the edited model's, with the same seeds.

    Everything is checked before any image is generated: bad prompts raise `PromptError`, a bad λ `ValueError`, an
    edit, a table or a click over the limits of `runtime.config` `DemoInputError`.

    Args:
        runtime (`DemoRuntime`): the shared pipeline, scorer and cache.
        session (`SessionEdits`): the session's stacked edits.
        prompts (`PromptSet`): the edit and its test prompts.
        lam (`float`): λ.
        settings (`GenerationSettings`): seeds, steps, guidance, size.
        edit_keys (`bool`, *optional*, defaults to `True`), augment (`bool`, *optional*, defaults to `True`): see
            `compute_edit`.
        progress (`Callable`, *optional*): called as `progress(fraction, desc=...)` after every denoising step.

    Yields:
        `EditUpdate`: stage `"original"`, then stage `"edited"`.
    """
    lam = check_lam(lam)
    session.check(runtime.config, prompts.source, prompts.destination)
    prompts.check(runtime.config, len(settings.seeds), models=2)
    edit = session.build(runtime.pipe, prompts.source, prompts.destination, lam, edit_keys, augment)
    rows = prompts.rows()
    texts = [prompt for _, prompt, _ in rows]
    seeds = settings.seeds

    model = runtime.config.model
    missing = sum(settings.original_key(model, p, s) not in runtime.cache for p in texts for s in seeds)
    share = missing / (missing + len(texts) * len(seeds))  # of the denoising work, for the progress bar
    start = time.perf_counter()
    report = StageProgress(progress, 0.0, share, "original model")
    originals, cached = original_images(runtime, texts, settings, report)
    original = score_images(runtime, rows, originals, seeds)
    seconds = {"original": time.perf_counter() - start}
    scores: dict[str, Scores | None] = {"original": scores_of(original, len(seeds)), "edited": None}
    yield EditUpdate("original", edit, original, None, dict(scores), len(seeds), cached, dict(seconds))

    start = time.perf_counter()
    report = StageProgress(progress, share, 1.0 - share, "edited model")
    edited_raw = edited_images(runtime, texts, settings, edit, report)
    edited = score_images(runtime, rows, edited_raw, seeds)
    seconds["edited"] = time.perf_counter() - start
    scores["edited"] = scores_of(edited, len(seeds))
    yield EditUpdate("edited", edit, original, edited, scores, len(seeds), cached, seconds)
