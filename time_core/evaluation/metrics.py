"""Efficacy, generality and specificity (paper Sec. 5.4), and the debiasing share F_p and distance Δ_p (Sec. 6), from
per-image classifications.

Every image is classified as its prompt or as that prompt's destination (by CLIP zero-shot, or in the Shapes world by
the ground-truth colour reader). A *hit* is an image classified as the destination:

- efficacy: share of the source prompt's images that are hits;
- generality: share of the positive prompts' images that are hits (they should follow the edit);
- specificity: share of the negative prompts' images that are NOT hits (they should keep their own meaning).

As in the paper, each metric is computed per seed over all entries and prompts, then reported as mean ± standard
deviation over seeds (sample standard deviation, `ddof=1`; 0 for a single seed).

The harmonic mean of generality and specificity, `2 G S / (G + S)` (0 when both are 0), is the paper's criterion for
choosing λ (App. E): it is taken of the mean generality and the mean specificity, so a reader recomputes it from the
reported means; its ± is the standard deviation over seeds of the per-seed harmonic mean.

For debiasing, images are labelled with an attribute value instead: F_p is the share labelled `attributes[0]` and
Δ_p = |F_p − target| / target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MeanStd", "Scores", "attribute_share", "delta", "f_share", "harmonic_mean", "hits_from_probabilities", "score",
    "scores_by_type",
]


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}"


@dataclass(frozen=True)
class Scores:
    """Mean ± std over seeds of the three metrics, as fractions in [0, 1], and the harmonic mean of generality and
    specificity (see the module docstring); a metric without images is `None`."""

    efficacy: MeanStd | None
    generality: MeanStd | None
    specificity: MeanStd | None
    harmonic_mean: MeanStd | None = None

    def as_dict(self) -> dict[str, dict[str, float] | None]:
        return {
            name: None if value is None else {"mean": value.mean, "std": value.std}
            for name, value in (("efficacy", self.efficacy), ("generality", self.generality),
                                ("specificity", self.specificity), ("harmonic_mean", self.harmonic_mean))
        }


def harmonic_mean(generality, specificity):
    """`2 G S / (G + S)`, elementwise, 0 where both are 0 (floats or arrays in [0, 1])."""
    g, s = np.asarray(generality, dtype=np.float64), np.asarray(specificity, dtype=np.float64)
    total = g + s
    value = np.divide(2 * g * s, total, out=np.zeros(np.broadcast(g, s).shape), where=total > 0)
    return float(value) if value.ndim == 0 else value


def hits_from_probabilities(p_destination, threshold: float = 0.5) -> np.ndarray:
    """Two-way zero-shot decision: an image is a hit when P(destination) > `threshold`."""
    return np.asarray(p_destination, dtype=np.float64) > threshold


def _per_seed(hits: np.ndarray | None, name: str) -> np.ndarray | None:
    """`(..., S)` booleans → `(S,)` share of hits per seed."""
    if hits is None:
        return None
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim < 1 or hits.shape[-1] == 0 or hits.size == 0:
        raise ValueError(f"{name} hits must have shape (..., seeds) with at least one image")
    return hits.reshape(-1, hits.shape[-1]).mean(axis=0)


def _mean_std(per_seed: np.ndarray | None) -> MeanStd | None:
    if per_seed is None:
        return None
    std = float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0
    return MeanStd(float(per_seed.mean()), std)


def score(source_hits=None, positive_hits=None, negative_hits=None) -> Scores:
    """Efficacy / generality / specificity from hits (`True` = classified as the destination).

    Args:
        source_hits (`array-like` of bool, *optional*): shape `(E, S)` — entries × seeds — or `(S,)`.
        positive_hits (`array-like` of bool, *optional*): shape `(E, P, S)` or `(P, S)`.
        negative_hits (`array-like` of bool, *optional*): shape `(E, Q, S)` or `(Q, S)`.

    All given arrays must share the last (seed) axis.

    Returns:
        `Scores`
    """
    per_seed = {
        "source": _per_seed(source_hits, "source"),
        "positive": _per_seed(positive_hits, "positive"),
        "negative": _per_seed(negative_hits, "negative"),
    }
    seeds = {v.shape[0] for v in per_seed.values() if v is not None}
    if len(seeds) > 1:
        raise ValueError(f"all hits must have the same number of seeds (last axis), got {sorted(seeds)}")
    negative = per_seed["negative"]
    generality = _mean_std(per_seed["positive"])
    specificity = _mean_std(None if negative is None else 1.0 - negative)
    both = None
    if generality is not None and specificity is not None:
        spread = _mean_std(harmonic_mean(per_seed["positive"], 1.0 - negative))  # (S,) per-seed harmonic means
        both = MeanStd(harmonic_mean(generality.mean, specificity.mean), spread.std)
    return Scores(efficacy=_mean_std(per_seed["source"]), generality=generality, specificity=specificity,
                  harmonic_mean=both)


def scores_by_type(
    positive_hits, positive_types: Sequence[Sequence[str]], negative_hits, negative_types: Sequence[Sequence[str]]
) -> dict[str, dict[str, dict[str, float]]]:
    r"""
    Generality per positive type and specificity per negative type (e.g. `"plural"`, `"related"`), each as mean ± std
    over seeds of the share of that type's images, pooled over entries, as `score` does for all of them.

    Args:
        positive_hits (`array-like` of bool): `(E, P, S)` hits of the positives.
        positive_types (`Sequence[Sequence[str]]`): `(E, P)` the type of each positive.
        negative_hits (`array-like` of bool): `(E, Q, S)` hits of the negatives.
        negative_types (`Sequence[Sequence[str]]`): `(E, Q)` the type of each negative.

    Returns:
        `dict`: `{"generality": {type: {"mean", "std"}}, "specificity": {type: {"mean", "std"}}}`, types in order of
        first appearance.
    """
    result = {}
    for metric, hits, types, flip in (("generality", positive_hits, positive_types, False),
                                      ("specificity", negative_hits, negative_types, True)):
        hits = np.asarray(hits, dtype=bool)  # (E, P, S)
        types = np.asarray(types, dtype=object)  # (E, P)
        if hits.shape[:2] != types.shape:
            raise ValueError(f"{metric}: hits of shape {hits.shape} but types of shape {types.shape}")
        result[metric] = {}
        for kind in dict.fromkeys(types.ravel().tolist()):
            per_seed = _per_seed(hits[types == kind], kind)  # (S,)
            value = _mean_std(1.0 - per_seed if flip else per_seed)
            result[metric][kind] = {"mean": value.mean, "std": value.std}
    return result


def attribute_share(labels: Sequence[str], attribute: str) -> float:
    """F_p from labels: the share of `labels` equal to `attribute`, in [0, 1]."""
    labels = list(labels)
    if not labels:
        raise ValueError("f_share needs at least one image")
    return sum(label == attribute for label in labels) / len(labels)


def f_share(images: Sequence[Any], classify: Callable[[Sequence[Any]], Sequence[str]], attribute: str) -> float:
    """F_p: the share of `images` that `classify` labels `attribute`.

    Args:
        images (`Sequence`): the images of one prompt.
        classify (`Callable[[Sequence], Sequence[str]]`): one label per image (e.g. a classifier's `labels`).
        attribute (`str`): the attribute value counted (a debias preset's `attributes[0]`).

    Returns:
        `float` in [0, 1].
    """
    labels = list(classify(images))
    if labels and len(labels) != len(images):
        raise ValueError(f"classify returned {len(labels)} labels for {len(images)} images")
    return attribute_share(labels, attribute)


def delta(share: float, target: float) -> float:
    """Δ_p = |F_p − target| / target (paper Sec. 6)."""
    return abs(share - target) / target
