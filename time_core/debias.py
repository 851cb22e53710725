"""Debiasing with TIME (paper Sec. 5.5 and App. H.2): choose λ so that a prompt's attribute share reaches a target.

For an under-specified prompt such as "a developer", F_p is the share of its images classified as `attributes[0]`
("female"). The edit "a developer" → "a female developer" moves F_p from its original value (λ = ∞, no edit) towards
the destination's (λ → 0); the strength that balances the attribute is found by a binary search over log λ on the
*validation* prompt, until `|F_p − target| / target < tolerance` or an iteration cap, and F_p is then reported on
held-out *test* prompts.

`f_share` and `search_lambda` are pure: they only call the classify / evaluate functions they are given. On the
Shapes world, images are classified by the ground-truth colour reader (`ColourClassifier`); on Stable Diffusion, by
CLIP zero-shot between the entry's class texts (`ClipClassifier`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .demo import (
    DemoInputError,
    DemoRuntime,
    GenerationSettings,
    _StageProgress,
    edited_images,
    format_lam,
    original_images,
    parse_number,
)
from .edit import Edit, prepare_edit
from .presets import DebiasEntry

__all__ = [
    "ClipClassifier",
    "ColourClassifier",
    "DebiasUpdate",
    "SearchResult",
    "SearchStep",
    "ShareAtLambda",
    "TestShare",
    "classifier_for",
    "f_share",
    "iter_search",
    "run_debias",
    "search_lambda",
]

Classify = Callable[[Sequence[Any]], Sequence[str]]


def f_share(images: Sequence[Any], classify: Classify, attribute: str) -> float:
    r"""
    F_p: the share of `images` that `classify` labels `attribute`.

    Args:
        images (`Sequence`): the images of one prompt.
        classify (`Callable[[Sequence], Sequence[str]]`): one label per image (e.g. `ColourClassifier()`).
        attribute (`str`): the attribute value counted (the preset's `attributes[0]`).

    Returns:
        `float` in [0, 1].
    """
    labels = list(classify(images))
    if not labels:
        raise ValueError("f_share needs at least one image")
    if len(labels) != len(images):
        raise ValueError(f"classify returned {len(labels)} labels for {len(images)} images")
    return sum(label == attribute for label in labels) / len(labels)


@dataclass(frozen=True)
class ColourClassifier:
    """Labels Shapes-world images with the palette colour name of their shape (`time_core.shapes.colour_reader`)."""

    def __call__(self, images: Sequence[Any]) -> list[str]:
        from .shapes.colour_reader import read_colour

        return [read_colour(image) for image in images]


@dataclass(frozen=True)
class ClipClassifier:
    r"""
    Labels images with the attribute whose class text CLIP prefers (zero-shot, `ClipScorer.classify`).

    Args:
        scorer (`time_core.scoring.ClipScorer`): the CLIP scorer.
        classes (`tuple[str, ...]`): one class text per attribute, e.g. `("a female developer", "a male developer")`.
        attributes (`tuple[str, ...]`): the attribute names, in the same order.
    """

    scorer: Any
    classes: tuple[str, ...]
    attributes: tuple[str, ...]

    def __call__(self, images: Sequence[Any]) -> list[str]:
        probabilities = self.scorer.classify(list(images), list(self.classes))  # (N, K)
        return [self.attributes[int(i)] for i in probabilities.argmax(dim=-1).tolist()]


def classifier_for(family: str, scorer: Any, entry: DebiasEntry) -> Classify:
    """The classifier of a debiasing entry: the colour reader on the Shapes world, CLIP otherwise."""
    if family == "toy":
        return ColourClassifier()
    return ClipClassifier(scorer, tuple(entry.classes), tuple(entry.attributes))


@dataclass(frozen=True)
class SearchStep:
    r"""
    One evaluation of the binary search.

    Args:
        iteration (`int`): 1-based.
        lam (`float`): λ evaluated.
        share (`float`): F_p at that λ.
        converged (`bool`): whether `|share − target| / target < tolerance`.
    """

    iteration: int
    lam: float
    share: float
    converged: bool


@dataclass(frozen=True)
class SearchResult:
    r"""
    The outcome of `search_lambda`.

    Args:
        lam (`float`, *optional*): the chosen λ (the converged one, else the closest to the target); `None` when the
            original model already meets the target (no edit needed).
        share (`float`): F_p at `lam` (the original share when `lam` is `None`).
        target (`float`): the target share.
        original_share (`float`): F_p of the original model.
        steps (`tuple[SearchStep, ...]`): every evaluation, in order.
        converged (`bool`): whether the tolerance was met.
    """

    lam: float | None
    share: float
    target: float
    original_share: float
    steps: tuple[SearchStep, ...]
    converged: bool


def _check_search(target: float, original_share: float, log_lam_min: float, log_lam_max: float,
                  max_iterations: int, tolerance: float) -> None:
    if not 0.0 < target < 1.0:
        raise ValueError(f"target share must lie strictly between 0 and 1, got {target}")
    if not 0.0 <= original_share <= 1.0:
        raise ValueError(f"original_share must lie in [0, 1], got {original_share}")
    if not (math.isfinite(log_lam_min) and math.isfinite(log_lam_max) and log_lam_min < log_lam_max):
        raise ValueError(f"need finite log10 λ bounds with min < max, got [{log_lam_min}, {log_lam_max}]")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")


def iter_search(
    evaluate: Callable[[float], float],
    target: float,
    original_share: float,
    log_lam_min: float = -3.0,
    log_lam_max: float = 6.0,
    max_iterations: int = 8,
    tolerance: float = 0.1,
) -> Iterator[SearchStep]:
    r"""
    Binary search over log10 λ for `evaluate(λ) ≈ target` (paper App. H.2), one `SearchStep` per evaluation.

    The edit moves F_p monotonically from `original_share` (λ = ∞) towards the destination's share (λ → 0), in
    either direction. At each midpoint: when F_p is still on the original's side of the target the edit is too weak
    and λ goes down; otherwise it overshoots and λ goes up. Stops when `|F_p − target| / target < tolerance` or after
    `max_iterations` evaluations. Yields nothing when the original share already meets the tolerance.

    Args:
        evaluate (`Callable[[float], float]`): F_p of the edited model at λ.
        target (`float`): the wanted share, in (0, 1).
        original_share (`float`): F_p of the original model.
        log_lam_min (`float`, *optional*, defaults to -3), log_lam_max (`float`, *optional*, defaults to 6): the
            log10 λ interval searched.
        max_iterations (`int`, *optional*, defaults to 8): the cap on evaluations.
        tolerance (`float`, *optional*, defaults to 0.1): relative tolerance on F_p.
    """
    _check_search(target, original_share, log_lam_min, log_lam_max, max_iterations, tolerance)
    if abs(original_share - target) / target < tolerance:
        return
    lo, hi = float(log_lam_min), float(log_lam_max)
    original_side = math.copysign(1.0, original_share - target)
    for iteration in range(1, max_iterations + 1):
        mid = 0.5 * (lo + hi)
        lam = 10.0**mid
        share = float(evaluate(lam))
        converged = abs(share - target) / target < tolerance
        yield SearchStep(iteration, lam, share, converged)
        if converged:
            return
        if (share - target) * original_side > 0:  # still on the original's side: edit too weak, smaller λ
            hi = mid
        else:  # overshot: larger λ
            lo = mid


def result_of(steps: Sequence[SearchStep], target: float, original_share: float) -> SearchResult:
    r"""
    The `SearchResult` of a finished search: the converged step, else the step closest to the target, unless no step
    comes closer than the original model (then `lam` is `None`: no edit in the range helps).
    """
    steps = tuple(steps)
    if not steps:
        return SearchResult(None, original_share, target, original_share, (), True)
    best = next((s for s in steps if s.converged), None) or min(steps, key=lambda s: abs(s.share - target))
    if not best.converged and abs(original_share - target) <= abs(best.share - target):
        return SearchResult(None, original_share, target, original_share, steps, False)
    return SearchResult(best.lam, best.share, target, original_share, steps, best.converged)


def search_lambda(
    evaluate: Callable[[float], float],
    target: float,
    original_share: float,
    log_lam_min: float = -3.0,
    log_lam_max: float = 6.0,
    max_iterations: int = 8,
    tolerance: float = 0.1,
) -> SearchResult:
    """Runs `iter_search` to the end (same arguments) and returns its `SearchResult`."""
    steps = list(iter_search(evaluate, target, original_share, log_lam_min, log_lam_max, max_iterations, tolerance))
    return result_of(steps, target, original_share)


class ShareAtLambda:
    r"""
    `evaluate` for `search_lambda` on a real model: F_p of one prompt under the edit at λ. The λ-independent part of
    the edit is solved once; the last images and labels are kept for display.

    Args:
        runtime (`DemoRuntime`): the pipeline.
        solve (`Callable[[float], Edit]`): λ → `Edit` (an `EditProblem.solve`).
        prompt (`str`): the prompt whose share is measured.
        settings (`GenerationSettings`): seeds, steps, guidance, size.
        classify (`Callable`), attribute (`str`): see `f_share`.
        progress (`Callable[[int, int], None]`, *optional*): passed to `generate` as its callback.
    """

    def __init__(self, runtime: DemoRuntime, solve: Callable[[float], Edit], prompt: str,
                 settings: GenerationSettings, classify: Classify, attribute: str,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.runtime, self.solve, self.prompt, self.settings = runtime, solve, prompt, settings
        self.classify, self.attribute, self.progress = classify, attribute, progress
        self.last_images: list[Any] = []
        self.last_labels: list[str] = []

    def __call__(self, lam: float) -> float:
        images = edited_images(self.runtime, [self.prompt], self.settings, self.solve(lam), self.progress)[0]
        self.last_images = list(images)
        self.last_labels = list(self.classify(images))
        return sum(label == self.attribute for label in self.last_labels) / len(self.last_labels)


@dataclass(frozen=True)
class TestShare:
    """F_p of one test prompt before and after the edit."""

    prompt: str
    original: float
    edited: float


@dataclass(frozen=True)
class DebiasUpdate:
    r"""
    The state of a debiasing run.

    Args:
        stage (`str`): `"original"`, `"search"` or `"tests"` (done).
        entry (`DebiasEntry`): the debiasing entry.
        target (`float`): the target share.
        original_share (`float`): F_p of the validation prompt, original model.
        steps (`tuple[SearchStep, ...]`): the search so far.
        result (`SearchResult`, *optional*): set once the search is over.
        validation (`list[tuple[Any, str]]`): the latest validation images with their labels.
        tests (`tuple[TestShare, ...]`): F_p per test prompt (stage `"tests"`).
        test_original (`list[tuple[Any, str]]`), test_edited (`list[tuple[Any, str]]`): test images and labels.
        seconds (`float`): wall time so far.
    """

    stage: str
    entry: DebiasEntry
    target: float
    original_share: float
    steps: tuple[SearchStep, ...]
    result: SearchResult | None
    validation: list[tuple[Any, str]]
    tests: tuple[TestShare, ...] = ()
    test_original: list[tuple[Any, str]] = ()
    test_edited: list[tuple[Any, str]] = ()
    seconds: float = 0.0

    def search_rows(self) -> list[list[str]]:
        """`[step, λ, F_p, |F_p − target| / target]` rows, the original model first."""
        rows = [["original", "∞", f"{100 * self.original_share:.0f}%",
                 f"{abs(self.original_share - self.target) / self.target:.2f}"]]
        for s in self.steps:
            rows.append([str(s.iteration), format_lam(s.lam), f"{100 * s.share:.0f}%",
                         f"{abs(s.share - self.target) / self.target:.2f}" + (" ✓" if s.converged else "")])
        return rows

    def test_rows(self) -> list[list[str]]:
        """`[prompt, F_p original, F_p edited]` rows with a mean row."""
        rows = [[t.prompt, f"{100 * t.original:.0f}%", f"{100 * t.edited:.0f}%"] for t in self.tests]
        if self.tests:
            n = len(self.tests)
            rows.append(["mean", f"{100 * sum(t.original for t in self.tests) / n:.0f}%",
                         f"{100 * sum(t.edited for t in self.tests) / n:.0f}%"])
        return rows

    def status(self) -> str:
        attribute = self.entry.attributes[0]
        head = (f"F_p = share of images classified **{attribute}** · target {100 * self.target:.0f}% · "
                f"original (validation): {100 * self.original_share:.0f}%")
        if self.result is None:
            return head + f" · searching λ… ({len(self.steps)} steps)"
        r = self.result
        if r.lam is None and r.converged:
            return head + " · the original model already meets the target: no edit needed"
        if r.lam is None:
            return head + " · no λ in the range brings F_p closer to the target than the original model"
        outcome = "converged" if r.converged else "did not converge; the closest λ is shown"
        return head + f" · **λ = {format_lam(r.lam)}** → {100 * r.share:.0f}% ({outcome}, {len(r.steps)} steps)"


def _labelled(images: Sequence[Any], labels: Sequence[str], prefix: str = "") -> list[tuple[Any, str]]:
    return [(image, f"{prefix}{label}") for image, label in zip(images, labels)]


def run_debias(
    runtime: DemoRuntime,
    entry: DebiasEntry,
    target: Any,
    settings: GenerationSettings,
    log_lam_min: Any = -3.0,
    log_lam_max: Any = 6.0,
    max_iterations: Any = 8,
    tolerance: float = 0.1,
    progress: Callable[..., Any] | None = None,
) -> Iterator[DebiasUpdate]:
    r"""
    Debiases one entry: F_p of the original model on the validation prompt, the binary search of λ (one
    eigendecomposition for every λ), then F_p before and after on the test prompts. Yields after each stage and step.

    Args:
        runtime (`DemoRuntime`): the pipeline, scorer and cache.
        entry (`DebiasEntry`): e.g. "a developer" → "a female developer".
        target (`float`): the target share in (0, 1) (e.g. 0.5); a percentage in (1, 100) is also accepted.
        settings (`GenerationSettings`): seeds (images per prompt), steps, guidance, size.
        log_lam_min, log_lam_max (`float`): the log10 λ interval searched.
        max_iterations (`int`): the cap on search steps.
        tolerance (`float`, *optional*, defaults to 0.1): relative tolerance on F_p.
        progress (`Callable`, *optional*): `progress(fraction, desc=...)`.
    """
    target = parse_number(target, "target share", minimum=0.0, maximum=100.0)
    target = target / 100.0 if target > 1.0 else target
    if not 0.0 < target < 1.0:
        raise DemoInputError(f"target share must lie strictly between 0% and 100%, got {100 * target:g}%")
    lo = parse_number(log_lam_min, "smallest log10 λ", minimum=-6, maximum=8)
    hi = parse_number(log_lam_max, "largest log10 λ", minimum=-6, maximum=8)
    if lo >= hi:
        raise DemoInputError(f"the smallest log10 λ ({lo:g}) must be below the largest ({hi:g})")
    iterations = parse_number(max_iterations, "search iterations", integer=True, minimum=1, maximum=20)

    start = time.perf_counter()
    problem = prepare_edit(runtime.pipe, entry.source, entry.destination)
    classify = classifier_for(runtime.config.family, runtime.scorer, entry)
    attribute = entry.attributes[0]
    phases = iterations + 2  # originals, search steps, tests

    validation_images, _ = original_images(runtime, [entry.validation], settings,
                                           _StageProgress(progress, 0.0, 1 / phases, "validation prompt, original"))
    labels = list(classify(validation_images[0]))
    original_share = sum(label == attribute for label in labels) / len(labels)
    validation = _labelled(validation_images[0], labels, "original · ")
    steps: list[SearchStep] = []
    yield DebiasUpdate("original", entry, target, original_share, (), None, validation,
                       seconds=time.perf_counter() - start)

    evaluate = ShareAtLambda(runtime, problem.solve, entry.validation, settings, classify, attribute,
                             _StageProgress(progress, 1 / phases, 1 / phases, "search step 1"))
    for step in iter_search(evaluate, target, original_share, lo, hi, iterations, tolerance):
        steps.append(step)
        validation = _labelled(evaluate.last_images, evaluate.last_labels, f"λ = {format_lam(step.lam)} · ")
        if progress is not None:
            progress((1 + len(steps)) / phases, desc=f"search step {len(steps)}: λ = {format_lam(step.lam)}")
        yield DebiasUpdate("search", entry, target, original_share, tuple(steps), None, validation,
                           seconds=time.perf_counter() - start)
        evaluate.progress = _StageProgress(progress, (1 + len(steps)) / phases, 1 / phases,
                                           f"search step {len(steps) + 1}")
    result = result_of(steps, target, original_share)
    yield DebiasUpdate("search", entry, target, original_share, tuple(steps), result, validation,
                       seconds=time.perf_counter() - start)

    tests = list(entry.tests)
    test_progress = _StageProgress(progress, (phases - 1) / phases, 1 / phases, "test prompts")
    originals, _ = original_images(runtime, tests, settings, test_progress)
    if result.lam is None:
        edited = originals
    else:
        edited = edited_images(runtime, tests, settings, problem.solve(result.lam), test_progress)
    shares, test_original, test_edited = [], [], []
    for prompt, before, after in zip(tests, originals, edited):
        labels_before, labels_after = list(classify(before)), list(classify(after))
        shares.append(TestShare(prompt,
                                sum(label == attribute for label in labels_before) / len(labels_before),
                                sum(label == attribute for label in labels_after) / len(labels_after)))
        test_original += _labelled(before, labels_before, f"{prompt} · ")
        test_edited += _labelled(after, labels_after, f"{prompt} · ")
    yield DebiasUpdate("tests", entry, target, original_share, tuple(steps), result, validation, tuple(shares),
                       test_original, test_edited, seconds=time.perf_counter() - start)


if __name__ == "__main__":  # python -m time_core.debias: the debiasing command of `time_core.debias_eval`
    from time_core.debias_eval import main

    main()
