"""The Debias tab's run (paper Sec. 5.5, App. H.2): F_p of the original model on the validation prompt, the binary
search of λ (`time_core.evaluation.search`, one factorisation for every λ), then F_p before and after on the test
prompts. Images are labelled by the colour reader on the Shapes world and by CLIP between the entry's classes on
Stable Diffusion (`DemoRuntime.debias_classifier`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..edit import BaseEdit
from ..evaluation.metrics import attribute_share
from ..evaluation.search import LOG_LAM_MAX, LOG_LAM_MIN, SearchResult, SearchStep, iter_search, result_of
from ..methods import DEFAULT_METHOD, prepare_edit
from ..presets import DebiasEntry
from .images import ProgressFn, StageProgress, edited_images, original_images
from .inputs import DemoInputError, GenerationSettings, check_images, format_lam, parse_log_lam_range, parse_number
from .runtime import DemoRuntime
from .turns import LONG

__all__ = ["DebiasUpdate", "ShareAtLambda", "TestShare", "run_debias"]

Classify = Callable[[Sequence[Any]], Sequence[str]]


class ShareAtLambda:
    """`evaluate` for `search_lambda` on a real model: F_p of one prompt under the edit at λ. The λ-independent part of
    the edit is solved once; the last images and labels are kept for display.

    Args:
        runtime (`DemoRuntime`): the pipeline.
        solve (`Callable[[float], BaseEdit]`): λ → edit (a prepared problem's `solve`).
        prompt (`str`): the prompt whose share is measured.
        settings (`GenerationSettings`): seeds, steps, guidance, size.
        classify (`Callable`), attribute (`str`): see `time_core.evaluation.metrics.f_share`.
        progress (`Callable[[int, int], None]`, *optional*): passed to `generate` as its callback.
    """

    def __init__(self, runtime: DemoRuntime, solve: Callable[[float], BaseEdit], prompt: str,
                 settings: GenerationSettings, classify: Classify, attribute: str,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.runtime, self.solve, self.prompt, self.settings = runtime, solve, prompt, settings
        self.classify, self.attribute, self.progress = classify, attribute, progress
        self.last_images: list[Any] = []
        self.last_labels: list[str] = []
        self.shown: dict[float, tuple[list[Any], list[str]]] = {}  # λ -> its images and labels

    def __call__(self, lam: float) -> float:
        images = edited_images(self.runtime, [self.prompt], self.settings, self.solve(lam), self.progress, LONG)[0]
        self.last_images = list(images)
        with self.runtime.turns.turn(LONG):  # the classifier is shared too
            self.last_labels = list(self.classify(images))
        self.shown[lam] = (self.last_images, self.last_labels)
        return attribute_share(self.last_labels, self.attribute)


@dataclass(frozen=True)
class TestShare:
    """F_p of one test prompt before and after the edit."""

    __test__ = False  # not a pytest test class

    prompt: str
    original: float
    edited: float


@dataclass(frozen=True)
class DebiasUpdate:
    """The state of a debiasing run.

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


def _labelled(images: Sequence[Any], labels: Sequence[str], prefix: str = "") -> list[tuple[Any, str]]:
    return [(image, f"{prefix}{label}") for image, label in zip(images, labels)]


def run_debias(
    runtime: DemoRuntime,
    entry: DebiasEntry,
    target: Any,
    settings: GenerationSettings,
    log_lam_min: Any = LOG_LAM_MIN,
    log_lam_max: Any = LOG_LAM_MAX,
    max_iterations: Any = 8,
    tolerance: float = 0.1,
    progress: ProgressFn | None = None,
    method: str = DEFAULT_METHOD,
) -> Iterator[DebiasUpdate]:
    """Debiases one entry: F_p of the original model on the validation prompt, the binary search of λ (one
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
        method (`str`, *optional*, defaults to `"time"`): the editing method.
    """
    target = _parse_target(target)
    lo, hi = parse_log_lam_range(log_lam_min, log_lam_max)
    iterations = parse_number(max_iterations, "search iterations", integer=True, minimum=1, maximum=20)
    # the validation prompt once per step and for the original, the test prompts for the original and the edit
    check_images(runtime.config, 1 + iterations + 2 * len(entry.tests), len(settings.seeds), models=1)

    start = time.perf_counter()
    with runtime.turns.turn(LONG):
        problem = prepare_edit(runtime.pipe, entry.source, entry.destination, method=method)
    classify = functools.partial(runtime.debias_classifier.labels, classes=entry.classes, attributes=entry.attributes)
    attribute = entry.attributes[0]
    phases = iterations + 2  # originals, search steps, tests

    stage = StageProgress(progress, 0.0, 1 / phases, "validation prompt, original")
    validation_images, _ = original_images(runtime, entry.validation, settings, stage, LONG)
    with runtime.turns.turn(LONG):
        labels = list(classify(validation_images[0]))
    original_share = attribute_share(labels, attribute)
    update = functools.partial(DebiasUpdate, entry=entry, target=target, original_share=original_share)
    validation = _labelled(validation_images[0], labels, "original · ")
    steps: list[SearchStep] = []
    yield update("original", steps=(), result=None, validation=validation, seconds=time.perf_counter() - start)

    evaluate = ShareAtLambda(runtime, problem.solve, entry.validation, settings, classify, attribute,
                             StageProgress(progress, 1 / phases, 1 / phases, "search step 1"))
    resolution = 1.0 / len(settings.seeds)  # one image: the smallest change of F_p the sample can show
    for step in iter_search(evaluate, target, original_share, lo, hi, iterations, tolerance, resolution):
        steps.append(step)
        validation = _labelled(evaluate.last_images, evaluate.last_labels, f"λ = {format_lam(step.lam)} · ")
        if progress is not None:
            progress((1 + len(steps)) / phases, desc=f"search step {len(steps)}: λ = {format_lam(step.lam)}")
        yield update("search", steps=tuple(steps), result=None, validation=validation,
                     seconds=time.perf_counter() - start)
        evaluate.progress = StageProgress(progress, (1 + len(steps)) / phases, 1 / phases,
                                          f"search step {len(steps) + 1}")
    result = result_of(steps, target, original_share)
    if result.lam is not None:  # the images of the λ reported, not of the last one tried
        validation = _labelled(*evaluate.shown[result.lam], f"λ = {format_lam(result.lam)} (reported) · ")
    yield update("search", steps=tuple(steps), result=result, validation=validation,
                 seconds=time.perf_counter() - start)

    edit = None if result.lam is None else problem.solve(result.lam)
    test_progress = StageProgress(progress, (phases - 1) / phases, 1 / phases, "test prompts")
    shares, test_original, test_edited = _test_shares(runtime, entry, settings, edit, classify, test_progress)
    yield update("tests", steps=tuple(steps), result=result, validation=validation, tests=shares,
                 test_original=test_original, test_edited=test_edited, seconds=time.perf_counter() - start)


def _parse_target(target: Any) -> float:
    """The target share in (0, 1) from a fraction or a percentage; raises `DemoInputError` otherwise."""
    target = parse_number(target, "target share", minimum=0.0, maximum=100.0)
    target = target / 100.0 if target > 1.0 else target
    if not 0.0 < target < 1.0:
        raise DemoInputError(f"target share must lie strictly between 0% and 100%, got {100 * target:g}%")
    return target


def _test_shares(runtime: DemoRuntime, entry: DebiasEntry, settings: GenerationSettings, edit: BaseEdit | None,
                 classify: Classify, progress: StageProgress) -> tuple:
    """F_p of every test prompt before and after `edit` (`None`: no edit helps), with the labelled images."""
    attribute = entry.attributes[0]
    tests = list(entry.tests)
    originals, _ = original_images(runtime, tests, settings, progress, LONG)
    edited = originals if edit is None else edited_images(runtime, tests, settings, edit, progress, LONG)
    shares, test_original, test_edited = [], [], []
    for prompt, before, after in zip(tests, originals, edited):
        with runtime.turns.turn(LONG):
            labels_before, labels_after = list(classify(before)), list(classify(after))
        shares.append(TestShare(prompt, attribute_share(labels_before, attribute),
                                attribute_share(labels_after, attribute)))
        test_original += _labelled(before, labels_before, f"{prompt} · ")
        test_edited += _labelled(after, labels_after, f"{prompt} · ")
    return tuple(shares), test_original, test_edited
