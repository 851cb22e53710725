"""Image classifiers for the evaluation: P(destination) for each (image, prompt, destination).

- `"colour"`: the Shapes world's ground-truth colour reader (no learned model): P = 1 when the colour read from the
  pixels is the colour named by the destination prompt, else 0.
- any `time_core.scoring.load_scorer` name (`"ViT-B-32"`, `"toy"`, `"open_clip:MODEL:PRETRAINED"`, ...): two-way
  CLIP zero-shot between the prompt and its destination.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["CLASSIFIER_NAMES", "ClipClassifier", "ColourClassifier", "load_classifier"]

CLASSIFIER_NAMES = '"colour" (Shapes world only), or a scorer name of time_core.scoring.load_scorer'


class ColourClassifier:
    """Classifies Shapes-world images by the colour of their pixels (`time_core.shapes.colour_reader`)."""

    name = "colour"

    @staticmethod
    def destination_colour(prompt: str) -> str:
        """The colour a Shapes destination prompt names; `ValueError` when it names none."""
        from .shapes.world import parse_caption

        colour = parse_caption(prompt)["colour"]
        if colour is None:
            raise ValueError(f"the colour reader needs destinations that name a colour; {prompt!r} names none")
        return colour

    def prob_destination(self, images: Sequence, prompts: Sequence[str], destinations: Sequence[str]) -> np.ndarray:
        from .shapes.colour_reader import read_colours

        if not (len(images) == len(prompts) == len(destinations)):
            raise ValueError("images, prompts and destinations must have the same length")
        colours = read_colours(list(images))
        wanted = [self.destination_colour(d) for d in destinations]
        return np.array([float(c == w) for c, w in zip(colours, wanted)])


class ClipClassifier:
    """Two-way CLIP zero-shot (paper Sec. 5.4) with a `time_core.scoring.ClipScorer`."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.name = scorer.name

    def prob_destination(self, images: Sequence, prompts: Sequence[str], destinations: Sequence[str]) -> np.ndarray:
        with torch.no_grad():
            return self.scorer.prob_destination(list(images), list(prompts), list(destinations)).cpu().double().numpy()


def load_classifier(name: str, device: str | torch.device | None = None):
    """`"colour"` → `ColourClassifier`; anything else is passed to `time_core.scoring.load_scorer`."""
    if name == "colour":
        return ColourClassifier()
    from .scoring import load_scorer

    try:
        return ClipClassifier(load_scorer(name, device=device))
    except ValueError as error:
        raise ValueError(f"unknown classifier {name!r}: expected {CLASSIFIER_NAMES} ({error})") from error
