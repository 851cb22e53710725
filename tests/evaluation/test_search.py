"""The binary search of λ for debiasing, on synthetic monotone shares."""

import numpy as np
import pytest

from time_core.evaluation.search import iter_search, search_lambda


def logistic_share(lam: float, low: float = 0.05, high: float = 0.8, centre: float = 1.7) -> float:
    """A synthetic monotone F(λ): `low` for a strong edit (λ → 0), `high` without edit (λ → ∞)."""
    return low + (high - low) / (1.0 + 10.0 ** (-(np.log10(lam) - centre)))


def test_binary_search_converges_on_a_monotone_share():
    calls = []

    def evaluate(lam):
        calls.append(lam)
        return logistic_share(lam)

    result = search_lambda(evaluate, target=0.5, original_share=0.8, max_iterations=20)
    assert result.converged and abs(result.share - 0.5) / 0.5 < 0.1
    assert len(result.steps) == len(calls) <= 10
    assert result.steps[0].lam == pytest.approx(10**1.5)  # the middle of [-3, 6] in log10 λ
    # the found λ is where the logistic crosses 0.5, up to the tolerance
    assert abs(logistic_share(result.lam) - 0.5) < 0.05

    # the other direction: the share grows as the edit gets stronger
    rising = search_lambda(lambda lam: 1 - logistic_share(lam), 0.5, 0.2, max_iterations=20)
    assert rising.converged and abs(rising.share - 0.5) < 0.05


def test_binary_search_cap_and_no_edit_needed():
    capped = search_lambda(logistic_share, target=0.5, original_share=0.8, max_iterations=1)
    assert not capped.converged and len(capped.steps) == 1 and capped.lam == capped.steps[0].lam
    # an edit that moves F_p away from the target: no λ helps, the original model is kept
    wrong_way = search_lambda(lambda lam: 0.0, target=0.5, original_share=0.3, max_iterations=3)
    assert wrong_way.lam is None and not wrong_way.converged and len(wrong_way.steps) == 3
    assert list(iter_search(logistic_share, 0.5, 0.52)) == []
    balanced = search_lambda(logistic_share, 0.5, 0.52)
    assert balanced.lam is None and balanced.converged
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        search_lambda(logistic_share, 0.0, 0.8)


def test_a_search_on_few_images_converges_within_one_image():
    """F_p measured on 16 images moves in steps of 1/16: the relative tolerance alone (|F_p − 0.5| < 0.05) accepts
    only 8 of 16, which sampling noise rarely gives, so the search bounces; within one image it converges."""
    n = 16

    def searches(resolution):
        converged = []
        for seed in range(40):
            rng = np.random.default_rng(seed)
            evaluate = lambda lam, rng=rng: rng.binomial(n, logistic_share(lam)) / n  # noqa: E731
            result = search_lambda(evaluate, 0.5, 0.8, max_iterations=8, resolution=resolution)
            converged.append(result.converged)
            if result.converged:
                assert abs(result.share - 0.5) <= 1 / n + 1e-12
        return sum(converged)

    with_resolution, without = searches(1 / n), searches(0.0)
    assert with_resolution >= 38 and without < with_resolution - 10, (with_resolution, without)
    with pytest.raises(ValueError, match="resolution"):
        search_lambda(logistic_share, 0.5, 0.8, resolution=1.5)
