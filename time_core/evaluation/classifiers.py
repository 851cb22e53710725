"""The image classifiers of the evaluation, the debiasing command and the demo, each answering two questions:

- `prob_destination(images, prompts, destinations)`: P(destination) of each image against its prompt (efficacy,
  generality, specificity: Sec. 5.4);
- `labels(images, classes, attributes)`: the attribute value each image shows (F_p for debiasing: Sec. 6).

Two kinds:

- `"colour"` (`ColourClassifier`): the Shapes world's ground-truth colour reader (no learned model). P(destination) is
  the share of the shapes the destination recolours (one, or the two of a plural) whose colour read from the pixels
  is the one it names: each shape of a two-shape image is read in its own half; the label is the palette colour read.
- any `time_core.evaluation.scoring.load_scorer` name (`"ViT-B-32"`, `"toy"`, `"open_clip:MODEL:PRETRAINED"`, ...)
  (`ClipClassifier`): two-way CLIP zero-shot between the prompt and its destination; the label is the attribute
  whose class text CLIP prefers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..models import TOY

__all__ = ["CLASSIFIER_NAMES", "ClipClassifier", "ColourClassifier", "default_classifier", "load_classifier"]

CLASSIFIER_NAMES = '"colour" (Shapes world only), or a scorer name of time_core.evaluation.scoring.load_scorer'


def _broadcast(texts: str | Sequence[str], n: int, what: str) -> list[str]:
    """One text per image: a bare string is repeated `n` times; a sequence must hold `n` texts."""
    texts = [texts] * n if isinstance(texts, str) else list(texts)
    if len(texts) != n:
        raise ValueError(f"got {n} images but {len(texts)} {what}")
    return texts


class ColourClassifier:
    """Classifies Shapes-world images by the colour of their pixels (`time_core.shapes.colour_reader`)."""

    name = "colour"

    def prob_destination(
        self, images: Sequence[Any], prompts: str | Sequence[str], destinations: str | Sequence[str]
    ) -> np.ndarray:
        """`(N,)` float64: the share of the recoloured shapes that show the destination's colour (0 or 1 for one)."""
        from ..shapes.colour_reader import destination_probability

        prompts = _broadcast(prompts, len(images), "prompts")
        destinations = _broadcast(destinations, len(images), "destinations")
        return np.array([destination_probability(i, p, d) for i, p, d in zip(images, prompts, destinations)])

    def labels(self, images: Sequence[Any], classes: Sequence[str] = (), attributes: Sequence[str] = ()) -> list[str]:
        """The palette colour name read from each image (`"none"` without a shape); `classes` are not needed, and
        the names are compared with the `attributes` of a Shapes debias preset as they are."""
        from ..shapes.colour_reader import read_colours

        return read_colours(list(images))


class ClipClassifier:
    """Two-way CLIP zero-shot (paper Sec. 5.4) with a `time_core.evaluation.scoring.ClipScorer`.

    Args:
        scorer (`ClipScorer`): the CLIP scorer (or anything with its `prob_destination` and `classify`).
    """

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.name = getattr(scorer, "name", "")

    def prob_destination(
        self, images: Sequence[Any], prompts: str | Sequence[str], destinations: str | Sequence[str]
    ) -> np.ndarray:
        """`(N,)` float64: CLIP's P(destination) between each image's prompt and destination."""
        prompts = _broadcast(prompts, len(images), "prompts")
        destinations = _broadcast(destinations, len(images), "destinations")
        with torch.no_grad():
            p = self.scorer.prob_destination(list(images), prompts, destinations)
        return np.asarray(p.cpu().double() if isinstance(p, torch.Tensor) else p, dtype=np.float64)

    def labels(self, images: Sequence[Any], classes: Sequence[str], attributes: Sequence[str]) -> list[str]:
        """The attribute whose class text CLIP prefers, for each image (`classes[i]` describes `attributes[i]`)."""
        if isinstance(classes, str) or isinstance(attributes, str) or len(classes) != len(attributes):
            raise ValueError(f"classes and attributes must be lists of equal length, got {classes!r} and "
                             f"{attributes!r}")
        with torch.no_grad():
            probabilities = self.scorer.classify(list(images), list(classes))  # (N, K)
        return [attributes[int(i)] for i in probabilities.argmax(dim=-1).tolist()]


def default_classifier(model: str) -> str:
    """The classifier a command uses when none is named: the colour reader on the toy model, the paper's CLIP else."""
    return "colour" if model == TOY else "ViT-B-32"


def load_classifier(name: str, device: str | torch.device | None = None) -> ColourClassifier | ClipClassifier:
    """`"colour"` → `ColourClassifier`; anything else is passed to `time_core.evaluation.scoring.load_scorer`."""
    if name == "colour":
        return ColourClassifier()
    from .scoring import load_scorer

    try:
        return ClipClassifier(load_scorer(name, device=device))
    except ValueError as error:
        raise ValueError(f"unknown classifier {name!r}: expected {CLASSIFIER_NAMES} ({error})") from error
