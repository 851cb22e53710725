"""Images of the demo: original ones through the cache, edited ones, scored by the runtime's classifier, and the
progress of a run's stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..edit import BaseEdit
from ..evaluation.metrics import Scores, hits_from_probabilities, score
from ..generate import generate
from ..prompts import as_prompts
from .inputs import GenerationSettings
from .runtime import DemoRuntime
from .turns import EDIT, LONG

# The most images a long or background job generates per turn on the pipeline (`time_core.demo.turns`).
CHUNK_IMAGES = 6

__all__ = ["ProgressFn", "ScoredImage", "StageProgress", "edited_images", "original_images", "score_images",
           "scores_of"]

ProgressFn = Callable[..., Any]


class StageProgress:
    """Maps `generate`'s `callback(done, total)` onto a slice `[start, start + span]` of an overall progress bar."""

    def __init__(self, report: ProgressFn | None, start: float, span: float, desc: str) -> None:
        self.report, self.start, self.span, self.desc = report, start, span, desc

    def __call__(self, done: int, total: int) -> None:
        if self.report is not None and total:
            self.report(min(1.0, self.start + self.span * done / total), desc=self.desc)


@dataclass(frozen=True)
class ScoredImage:
    """One generated image and its CLIP score.

    Args:
        role (`str`): `"source"`, `"positive"` or `"negative"`.
        prompt (`str`): the prompt it was generated from.
        destination (`str`): what the scorer compares the prompt with.
        seed (`int`): the seed.
        image (`PIL.Image.Image`): the image.
        p_destination (`float`): the classifier's P(destination) between `prompt` and `destination`.
    """

    role: str
    prompt: str
    destination: str
    seed: int
    image: Any
    p_destination: float

    @property
    def caption(self) -> str:
        return f"P={self.p_destination:.2f} · {self.prompt} · seed {self.seed}"


def original_images(
    runtime: DemoRuntime,
    prompts: str | Sequence[str],
    settings: GenerationSettings,
    progress: Callable[[int, int], None] | None = None,
    priority: int = EDIT,
) -> tuple[list[list[Any]], int]:
    """The original model's images `[prompt][seed]`, from the cache where possible; the missing ones are generated in
    one batched call (one turn on the pipeline at `priority`, see `time_core.demo.turns`) and cached. A bare string is
    one prompt.

    Returns:
        `(images, cached)`: the images and how many came from the cache.
    """
    prompts = as_prompts(prompts)
    model = runtime.config.model
    keys = [[settings.original_key(model, p, s) for s in settings.seeds] for p in prompts]
    images = [[runtime.cache.get(k) for k in row] for row in keys]
    cached = sum(image is not None for row in images for image in row)
    missing_prompts = [p for p, row in zip(prompts, images) if any(image is None for image in row)]
    if missing_prompts:
        missing_seeds = sorted({s for row, p in zip(images, prompts) if p in missing_prompts
                                for s, image in zip(settings.seeds, row) if image is None})
        unique = list(dict.fromkeys(missing_prompts))
        result = _in_turns(runtime, unique, missing_seeds, settings, None, progress, priority)
        for prompt, row in zip(unique, result):
            for seed, image in zip(missing_seeds, row):
                runtime.cache.put(settings.original_key(model, prompt, seed), image)
        fresh = {(p, s): image for p, row in zip(unique, result) for s, image in zip(missing_seeds, row)}
        images = [[image if image is not None else fresh[(p, s)] for s, image in zip(settings.seeds, row)]
                  for p, row in zip(prompts, images)]
    return images, cached


def edited_images(
    runtime: DemoRuntime,
    prompts: str | Sequence[str],
    settings: GenerationSettings,
    edit: BaseEdit,
    progress: Callable[[int, int], None] | None = None,
    priority: int = EDIT,
) -> list[list[Any]]:
    """The edited model's images `[prompt][seed]`, in turns on the pipeline at `priority` (see `_in_turns`)."""
    return _in_turns(runtime, as_prompts(prompts), settings.seeds, settings, edit, progress, priority)


def _in_turns(runtime: DemoRuntime, prompts: Sequence[str], seeds: Sequence[int], settings: GenerationSettings,
              edit: BaseEdit | None, progress: Callable[[int, int], None] | None, priority: int) -> list[list[Any]]:
    """`generate`'s images `[prompt][seed]` of the original model (`edit=None`) or the edited one: one turn for an
    urgent job; for a long or background one (priority ≥ `LONG`), one turn per chunk of at most `CHUNK_IMAGES`
    images, so that an edit arriving meanwhile waits for one small chunk, not the whole call."""
    per_chunk = len(prompts) if priority < LONG else max(1, CHUNK_IMAGES // max(1, len(seeds)))
    images: list[list[Any]] = []
    for start in range(0, len(prompts), per_chunk):
        chunk = list(prompts[start:start + per_chunk])
        report = None if progress is None else ChunkProgress(progress, start, len(chunk), len(prompts))
        with runtime.turns.turn(priority):
            result = generate(runtime.pipe, chunk, seeds, edit=edit, original=edit is None,
                              num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                              height=settings.size, width=settings.size, batch_size=runtime.config.batch_size,
                              progress=False, callback=report)
        images += result.original if edit is None else result.edited
    return images


class ChunkProgress:
    """Maps a chunk's `callback(done, total)` onto the whole call's (chunks of prompts, in order)."""

    def __init__(self, report: Callable[[int, int], None], start: int, size: int, prompts: int) -> None:
        self.report, self.start, self.size, self.prompts = report, start, size, prompts

    def __call__(self, done: int, total: int) -> None:
        if total:  # this chunk is prompts [start, start + size) of the call's
            self.report(self.start * total + done * self.size, total * self.prompts)


def score_images(runtime: DemoRuntime, rows: Sequence[tuple[str, str, str]], images: Sequence[Sequence[Any]],
                 seeds: Sequence[int], priority: int = EDIT) -> list[ScoredImage]:
    """The classifier's P(destination) for every image of `rows` (`(role, prompt, destination)`) × seeds, flattened."""
    flat = [image for row in images for image in row]
    prompts = [prompt for _, prompt, _ in rows for _ in seeds]
    destinations = [dest for _, _, dest in rows for _ in seeds]
    with runtime.turns.turn(priority):
        probabilities = runtime.classifier.prob_destination(flat, prompts, destinations).tolist()
    out, k = [], 0
    for (role, prompt, destination), row in zip(rows, images):
        for seed, image in zip(seeds, row):
            out.append(ScoredImage(role, prompt, destination, seed, image, float(probabilities[k])))
            k += 1
    return out


def scores_of(images: Sequence[ScoredImage], num_seeds: int) -> Scores:
    """Efficacy / generality / specificity of scored images (hit: P(destination) > 0.5), mean ± std over seeds."""

    def hits(role: str) -> np.ndarray | None:
        p = [im.p_destination for im in images if im.role == role]
        if not p:
            return None
        return hits_from_probabilities(np.asarray(p).reshape(-1, num_seeds))  # (prompts, seeds)

    return score(hits("source"), hits("positive"), hits("negative"))
