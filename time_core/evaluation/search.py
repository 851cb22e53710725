"""The λ search of debiasing (paper Sec. 6, App. H.2): a binary search over log10 λ for a target attribute share.

For an under-specified prompt such as "a developer", F_p is the share of its images labelled `attributes[0]`
("female"). The edit "a developer" → "a female developer" moves F_p from its original value (λ = ∞, no edit) towards
the destination's (λ → 0); the strength that balances the attribute is found by a binary search over log λ on the
*validation* prompt, until `|F_p − target| / target < tolerance` or an iteration cap.

Everything here is pure: the search only calls the `evaluate(λ) → F_p` function it is given. The debiasing command
(`time_core.evaluation.debiasing`) and the demo's Debias tab (`time_core.demo.debias_run`) supply it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "LOG_LAM_MAX",
    "LOG_LAM_MIN",
    "SearchResult",
    "SearchStep",
    "iter_search",
    "result_of",
    "search_lambda",
]

# The log10 λ interval searched by default (also the demo's λ slider): from a strong edit to almost none.
LOG_LAM_MIN, LOG_LAM_MAX = -3.0, 6.0


@dataclass(frozen=True)
class SearchStep:
    """One evaluation of the binary search.

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
    """The outcome of `search_lambda`.

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
    log_lam_min: float = LOG_LAM_MIN,
    log_lam_max: float = LOG_LAM_MAX,
    max_iterations: int = 8,
    tolerance: float = 0.1,
    resolution: float = 0.0,
) -> Iterator[SearchStep]:
    """Binary search over log10 λ for `evaluate(λ) ≈ target` (paper App. H.2), one `SearchStep` per evaluation.

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
        resolution (`float`, *optional*, defaults to 0): the smallest change of F_p the sample can show (1 / the
            number of images): a share within it of the target also converges. With 16 images a 50% target is met
            by 7, 8 or 9 of them; with the relative tolerance alone only by exactly 8, which sampling noise rarely
            gives twice, so the search bounces around it. 0 keeps the tolerance alone (the paper's criterion).
    """
    _check_search(target, original_share, log_lam_min, log_lam_max, max_iterations, tolerance)
    if not 0.0 <= resolution < 1.0:
        raise ValueError(f"resolution must lie in [0, 1), got {resolution}")
    if abs(original_share - target) / target < tolerance:
        return
    lo, hi = float(log_lam_min), float(log_lam_max)
    original_side = math.copysign(1.0, original_share - target)
    for iteration in range(1, max_iterations + 1):
        mid = 0.5 * (lo + hi)
        lam = 10.0**mid
        share = float(evaluate(lam))
        converged = abs(share - target) / target < tolerance or abs(share - target) <= resolution + 1e-12
        yield SearchStep(iteration, lam, share, converged)
        if converged:
            return
        if (share - target) * original_side > 0:  # still on the original's side: edit too weak, smaller λ
            hi = mid
        else:  # overshot: larger λ
            lo = mid


def result_of(steps: Sequence[SearchStep], target: float, original_share: float) -> SearchResult:
    """The `SearchResult` of a finished search: the converged step, else the step closest to the target, unless no step
    comes closer than the original model (then `lam` is `None`: no edit in the range helps).
    """
    steps = tuple(steps)
    if not steps:
        return SearchResult(None, original_share, target, original_share, (), True)
    best = next((s for s in steps if s.converged), None) or min(steps, key=lambda s: abs(s.share - target))
    if not best.converged and abs(original_share - target) <= abs(best.share - target):
        return SearchResult(None, original_share, target, original_share, steps, False)
    return SearchResult(best.lam, best.share, target, original_share, steps, best.converged)


def search_lambda(evaluate: Callable[[float], float], target: float, original_share: float, **options) -> SearchResult:
    """Runs `iter_search` to the end and returns its `SearchResult`; `options` are `iter_search`'s (`log_lam_min`,
    `log_lam_max`, `max_iterations`, `tolerance`)."""
    steps = list(iter_search(evaluate, target, original_share, **options))
    return result_of(steps, target, original_share)
