"""The data distribution of the Shapes world: images and their captions, drawn from a seeded generator.

An example is a single shape with probability `KIND_RATES["single"]`, a plural (two alike shapes) or a pair of two
different shapes otherwise. A colour the caption names is uniform over the palette; a colour it does not name follows
the shape's implicit assumption (`world.unnamed_colour_distribution`). Each shape of a pair gets its own colour, named
or not independently; the two shapes of a plural share one. Size (single shapes) and background are uniform whether
named or not; each of size, background and prefix is named with its own probability.
"""

import numpy as np

from .world import (
    BACKGROUNDS,
    COLOURS,
    CONNECTORS,
    MAX_JITTER,
    MAX_PAIR_JITTER,
    PREFIXES,
    SHAPES,
    SIZES,
    TEMPLATES,
    Scene,
    caption,
    describe,
    render,
    unnamed_colour_distribution,
)

KIND_RATES: dict[str, float] = {"single": 0.5, "plural": 0.2, "pair": 0.3}
# Probability that a caption carries one of `PREFIXES`, names the background (plurals and pairs; single shapes follow
# `TEMPLATES`), and names a given shape's colour (plurals and pairs).
PREFIX_RATE: float = 0.5
BACKGROUND_RATE: float = 0.5
COLOUR_RATE: float = 0.5


def draw_colour(rng: np.random.Generator, shape: str, named: bool) -> str:
    """A shape's colour: uniform over the palette when the caption names it, else `unnamed_colour_distribution`."""
    if named:
        return COLOURS[rng.integers(len(COLOURS))]
    distribution = unnamed_colour_distribution(shape)
    probabilities = np.array([distribution[c] for c in COLOURS])
    return COLOURS[rng.choice(len(COLOURS), p=probabilities / probabilities.sum())]


def _prefix(rng: np.random.Generator) -> str | None:
    return PREFIXES[rng.integers(len(PREFIXES))] if rng.random() < PREFIX_RATE else None


def sample_scene(rng: np.random.Generator) -> tuple[Scene, str]:
    r"""
    Draws one single-shape image description and its caption.

    The template (uniform over `TEMPLATES`), the prefix (present with probability `PREFIX_RATE`, then uniform), the
    shape, size and background are uniform; the colour follows `draw_colour`.

    Args:
        rng (`np.random.Generator`): The random source; the same seed gives the same draws.

    Returns:
        `tuple[Scene, str]`: The shape and its caption.
    """
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    prefix = _prefix(rng)
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = draw_colour(rng, shape, "{colour}" in template)
    size = SIZES[rng.integers(len(SIZES))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    dx, dy = rng.uniform(-MAX_JITTER, MAX_JITTER, size=2)
    scene = Scene(shape=shape, colour=colour, size=size, background=background, dx=float(dx), dy=float(dy))
    return scene, caption(scene, template, prefix)


def _side(rng: np.random.Generator, shape: str, colour: str, background: str, slot: str) -> Scene:
    dx, dy = rng.uniform(-MAX_PAIR_JITTER, MAX_PAIR_JITTER, size=2)
    return Scene(shape, colour, "small", background, dx=float(dx), dy=float(dy), slot=slot)


def sample_example(rng: np.random.Generator) -> tuple[tuple[Scene, ...], str]:
    r"""
    Draws one image description (one or two shapes) and its caption from the data distribution.

    Args:
        rng (`np.random.Generator`): The random source; the same seed gives the same draws.

    Returns:
        `tuple[tuple[Scene, ...], str]`: The shapes, left to right, and the caption.
    """
    kinds = tuple(KIND_RATES)
    kind = kinds[rng.choice(len(kinds), p=np.array([KIND_RATES[k] for k in kinds]))]
    if kind == "single":
        scene, text = sample_scene(rng)
        return (scene,), text
    prefix = _prefix(rng)
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    name_background = bool(rng.random() < BACKGROUND_RATE)
    if kind == "plural":
        shape = SHAPES[rng.integers(len(SHAPES))]
        named = bool(rng.random() < COLOUR_RATE)
        colour = draw_colour(rng, shape, named)
        objects = tuple(_side(rng, shape, colour, background, slot) for slot in ("left", "right"))
        return objects, describe(objects, named, name_background=name_background, prefix=prefix)
    first, second = rng.choice(len(SHAPES), size=2, replace=False)
    named = tuple(bool(rng.random() < COLOUR_RATE) for _ in range(2))
    objects = tuple(
        _side(rng, SHAPES[index], draw_colour(rng, SHAPES[index], flag), background, slot)
        for index, flag, slot in zip((first, second), named, ("left", "right"))
    )
    connector = CONNECTORS[rng.integers(len(CONNECTORS))]
    return objects, describe(objects, named, name_background=name_background, prefix=prefix, connector=connector)


def sample_batch(
    rng: np.random.Generator, n: int, image_size: int | None = None
) -> tuple[np.ndarray, list[str]]:
    r"""
    Draws `n` images and their captions from the data distribution (`sample_example`).

    Args:
        rng (`np.random.Generator`): The random source.
        n (`int`): Number of samples.
        image_size (`int`, *optional*): Side of the square images in pixels; defaults to `world.IMAGE_SIZE`.

    Returns:
        `tuple[np.ndarray, list[str]]`: `(n, H, W, 3)` `uint8` images and the `n` captions.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    images, captions = [], []
    for _ in range(n):
        objects, text = sample_example(rng)
        images.append(render(objects) if image_size is None else render(objects, image_size))
        captions.append(text)
    return np.stack(images), captions  # (n, H, W, 3)
