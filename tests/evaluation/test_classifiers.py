"""The classifiers (P(destination) and labels) and F_p."""

import numpy as np
import pytest
from helpers import MeanPixelScorer

from time_core.evaluation.classifiers import ClipClassifier, ColourClassifier
from time_core.evaluation.metrics import f_share


def test_f_share_and_classifiers():
    labels = {"r": "orange", "b": "blue"}
    assert f_share(["r", "r", "b", "r"], lambda images: [labels[i] for i in images], "orange") == 0.75
    with pytest.raises(ValueError, match="at least one image"):
        f_share([], lambda images: [], "orange")
    bright = np.full((8, 8, 3), 250, np.uint8)
    dark = np.zeros((8, 8, 3), np.uint8)
    clip = ClipClassifier(MeanPixelScorer())
    labels = clip.labels([bright, dark, dark], ("a female x", "a male x"), ("female", "male"))
    assert labels == ["female", "male", "male"]

    from time_core.shapes import world

    green = world.render(world.Scene("diamond", "green", "big", "white"))
    blue = world.render(world.Scene("diamond", "blue", "big", "black"))
    assert f_share([green, blue, blue], ColourClassifier().labels, "blue") == pytest.approx(2 / 3)


def test_one_classifier_gives_both_probabilities_and_labels():
    from time_core.shapes import world

    green = world.render(world.Scene("circle", "green", "big", "white"))
    red = world.render(world.Scene("circle", "red", "small", "black"))
    colour = ColourClassifier()
    p = colour.prob_destination([green, red], "a circle", "a green circle")  # one string: every image's prompt
    assert p.tolist() == [1.0, 0.0]
    assert colour.labels([green, red]) == ["green", "red"]
    with pytest.raises(ValueError, match="got 2 images but 3 destinations"):
        colour.prob_destination([green, red], "a circle", ["a green circle"] * 3)

    clip = ClipClassifier(MeanPixelScorer())
    bright, dark = np.full((8, 8, 3), 250, np.uint8), np.zeros((8, 8, 3), np.uint8)
    p = clip.prob_destination([bright, dark], "a x", "a y x")
    assert p.dtype == np.float64 and p.shape == (2,) and p[0] > 0.9 > 0.1 > p[1]
    with pytest.raises(ValueError, match="equal length"):
        clip.labels([bright], "a female x", ("female", "male"))


def test_scorer_text_arguments_take_one_string_as_one_prompt():
    from time_core.evaluation.scoring import load_scorer

    toy = load_scorer("toy", device="cpu")
    assert toy.encode_texts("a circle").shape[0] == 1
    with pytest.raises(ValueError, match="single string 'ab'"):
        toy.classify([np.zeros((8, 8, 3), np.uint8)], "ab")


def test_colour_classifier_reads_the_shape_the_destination_recolours():
    from time_core.shapes.world import Scene, render

    pair = render((Scene("circle", "green", "small", "white", slot="left"),
                   Scene("square", "blue", "small", "white", slot="right")))
    p = ColourClassifier().prob_destination(
        [pair, pair, pair],
        ["a circle next to a square"] * 3,
        ["a green circle next to a square", "a circle next to a green square", "a circle next to a blue square"],
    )
    assert p.tolist() == [1.0, 0.0, 1.0]
