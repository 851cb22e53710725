"""Efficacy / generality / specificity against hand-computed cases."""

import numpy as np
import pytest

from time_core.evaluation.metrics import hits_from_probabilities, score


def test_hand_computed_case():
    # 2 entries × 3 seeds
    source = np.array([[1, 0, 1], [1, 1, 0]], dtype=bool)  # per seed: 1.0, 0.5, 0.5
    positives = np.zeros((2, 5, 3), dtype=bool)
    positives[0, :2, 0] = True  # seed 0: 2 of 10 hits
    positives[:, :, 1] = True  # seed 1: 10 of 10
    negatives = np.zeros((2, 5, 3), dtype=bool)
    negatives[1, 0, 2] = True  # seed 2: 1 of 10 turned into its destination
    s = score(source, positives, negatives)
    assert s.efficacy.mean == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert s.efficacy.std == pytest.approx(np.std([1.0, 0.5, 0.5], ddof=1))
    assert s.generality.mean == pytest.approx((0.2 + 1.0 + 0.0) / 3)
    assert s.specificity.mean == pytest.approx((1.0 + 1.0 + 0.9) / 3)
    assert s.specificity.std == pytest.approx(np.std([1.0, 1.0, 0.9], ddof=1))
    assert s.as_dict()["efficacy"]["mean"] == pytest.approx(2 / 3)
    assert str(s.efficacy) == "66.7 ± 28.9"


def test_single_seed_and_missing_parts():
    s = score(source_hits=np.array([[True], [False]]))
    assert s.efficacy.mean == 0.5 and s.efficacy.std == 0.0
    assert s.generality is None and s.specificity is None


def test_threshold_and_errors():
    assert hits_from_probabilities([0.2, 0.5, 0.51]).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="same number of seeds"):
        score(np.ones((2, 3), bool), np.ones((2, 5, 4), bool))
    with pytest.raises(ValueError, match="at least one image"):
        score(np.ones((2, 0), bool))


def test_scores_by_type_by_hand():
    from time_core.evaluation.metrics import scores_by_type

    # 2 entries × 3 positives × 2 seeds; types per entry
    positives = np.zeros((2, 3, 2), dtype=bool)
    positives[0, 0] = [True, True]  # entry 0 "plural": hit on both seeds
    positives[1, 2] = [True, False]  # entry 1 "plural": hit on seed 0 only
    positive_types = [["plural", "scene", "scene"], ["scene", "scene", "plural"]]
    negatives = np.zeros((2, 2, 2), dtype=bool)
    negatives[1, 1] = [False, True]  # entry 1 "related" leaks on seed 1
    negative_types = [["related", "explicit"], ["explicit", "related"]]
    result = scores_by_type(positives, positive_types, negatives, negative_types)
    assert list(result["generality"]) == ["plural", "scene"]
    assert result["generality"]["plural"]["mean"] == pytest.approx((1.0 + 0.5) / 2)  # seed 0: 2/2, seed 1: 1/2
    assert result["generality"]["plural"]["std"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert result["generality"]["scene"]["mean"] == 0.0
    assert result["specificity"]["related"]["mean"] == pytest.approx((1.0 + 0.5) / 2)
    assert result["specificity"]["explicit"] == {"mean": 1.0, "std": 0.0}
    with pytest.raises(ValueError, match="types of shape"):
        scores_by_type(positives, [["plural"]], negatives, negative_types)


def test_harmonic_mean_by_hand():
    from time_core.evaluation.metrics import harmonic_mean

    assert harmonic_mean(0.678, 0.654) == pytest.approx(2 * 0.678 * 0.654 / (0.678 + 0.654))  # the paper's 66.6
    assert harmonic_mean(1.0, 0.0) == 0.0 and harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    # 1 entry × 2 seeds: generality 4/5 and 2/5, specificity 1/5 and 3/5 per seed
    positives = np.zeros((1, 5, 2), dtype=bool)
    positives[0, :4, 0] = positives[0, :2, 1] = True
    negatives = np.zeros((1, 5, 2), dtype=bool)
    negatives[0, :4, 0] = negatives[0, :2, 1] = True
    s = score(None, positives, negatives)
    g, sp = (0.8 + 0.4) / 2, (0.2 + 0.6) / 2
    assert s.harmonic_mean.mean == pytest.approx(2 * g * sp / (g + sp))  # of the means: 0.48
    per_seed = [2 * 0.8 * 0.2 / 1.0, 2 * 0.4 * 0.6 / 1.0]  # 0.32, 0.48
    assert s.harmonic_mean.std == pytest.approx(np.std(per_seed, ddof=1))
    assert s.as_dict()["harmonic_mean"] == {"mean": pytest.approx(0.48), "std": pytest.approx(np.std(per_seed, ddof=1))}
    assert score(source_hits=np.ones((1, 2), dtype=bool)).harmonic_mean is None
