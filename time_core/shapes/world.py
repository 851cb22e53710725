"""The Shapes world: a tiny synthetic text-to-image world with one shape on a plain background.

Every image shows one filled shape (`SHAPES`) in one exact palette colour (`PALETTE`), small or big (`SIZES`), on a
white or black background (`BACKGROUNDS`). Captions name the shape and, optionally, its colour, size and background,
optionally behind one of `PREFIXES` ("a photo of a big circle").

The world carries *implicit assumptions* in its data distribution, the way real text-to-image data does: when a caption
does not name the colour, the image shows the shape's default colour (`DEFAULT_COLOURS`) with probability
`DEFAULT_RATE`, otherwise one of the other palette colours. The `DEBIAS_SHAPE` (a diamond) has no single default: it is
orange or blue with the probabilities of `DEBIAS_SPLIT`. When a caption names the colour, the colour is uniform over the
palette. Size and background are uniform whether named or not.

Article choice: the noun phrase always starts with "a", also before a vowel-initial colour ("a orange diamond"), so
that a destination prompt is its source prompt with exactly one word inserted. Only the prefix "an image of" uses "an".
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "diamond")
SIZES: tuple[str, ...] = ("small", "big")
BACKGROUNDS: tuple[str, ...] = ("white", "black")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 190),
    "orange": (245, 140, 30),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {"white": (255, 255, 255), "black": (0, 0, 0)}
PREFIXES: tuple[str, ...] = ("a photo of", "an image of", "a picture of", "a drawing of")

# The implicit assumptions: the colour a shape has when its caption does not name one.
DEFAULT_COLOURS: dict[str, str] = {
    "circle": "red",
    "square": "blue",
    "triangle": "green",
    "star": "yellow",
    "heart": "purple",
}
DEFAULT_RATE: float = 0.9
# The shape/colour pair of the debiasing workflow: the unnamed colour is split between two palette colours.
DEBIAS_SHAPE: str = "diamond"
DEBIAS_SPLIT: dict[str, float] = {"orange": 0.8, "blue": 0.2}

IMAGE_SIZE: int = 64
# Shape "radius" (half of the shape's height) as a fraction of the image side.
SIZE_RADIUS: dict[str, float] = {"small": 0.2, "big": 0.38}
# Largest centre offset from the image centre, as a fraction of the image side, along each axis.
MAX_JITTER: float = 0.06
# Probability that a sampled caption carries one of `PREFIXES`.
PREFIX_RATE: float = 0.5

TEMPLATES: tuple[str, ...] = (
    "a {shape}",
    "a {colour} {shape}",
    "a {size} {shape}",
    "a {size} {colour} {shape}",
    "a {shape} on a {background} background",
    "a {colour} {shape} on a {background} background",
    "a {size} {shape} on a {background} background",
    "a {size} {colour} {shape} on a {background} background",
)


@dataclass(frozen=True)
class Scene:
    r"""
    One image of the Shapes world.

    Args:
        shape (`str`): One of `SHAPES`.
        colour (`str`): One of `PALETTE`; the exact fill colour.
        size (`str`): One of `SIZES`.
        background (`str`): One of `BACKGROUNDS`.
        dx (`float`, *optional*, defaults to 0.0):
            Horizontal offset of the shape centre from the image centre, as a fraction of the image side, in
            `[-MAX_JITTER, MAX_JITTER]`.
        dy (`float`, *optional*, defaults to 0.0):
            Vertical offset of the shape centre, like `dx`.
    """

    shape: str
    colour: str
    size: str
    background: str
    dx: float = 0.0
    dy: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"Unknown shape {self.shape!r}; expected one of {SHAPES}.")
        if self.colour not in PALETTE:
            raise ValueError(f"Unknown colour {self.colour!r}; expected one of {COLOURS}.")
        if self.size not in SIZES:
            raise ValueError(f"Unknown size {self.size!r}; expected one of {SIZES}.")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"Unknown background {self.background!r}; expected one of {BACKGROUNDS}.")
        if abs(self.dx) > MAX_JITTER or abs(self.dy) > MAX_JITTER:
            raise ValueError(f"Centre offset ({self.dx}, {self.dy}) exceeds MAX_JITTER={MAX_JITTER}.")


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices (pixel coordinates) of a non-circular shape with centre `(cx, cy)` and radius `r`."""
    if shape == "square":
        s = 0.8 * r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        # Upward-pointing; the centroid of the box sits at the centre.
        return [(cx, cy - r), (cx + 1.05 * r, cy + 0.85 * r), (cx - 1.05 * r, cy + 0.85 * r)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else 0.42 * r
            angle = -np.pi / 2 + k * np.pi / 5
            points.append((cx + radius * np.cos(angle), cy + 1.05 * radius * np.sin(angle) + 0.1 * r))
        return points
    if shape == "heart":
        # Classic parametric heart: x in [-16, 16], y in [-17, 12] (y up); mapped to height 2r.
        t = np.linspace(0.0, 2.0 * np.pi, 120, endpoint=False)
        x = 16.0 * np.sin(t) ** 3
        y = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
        scale = r / 14.5
        return [(cx + scale * xi, cy - scale * (yi + 2.5)) for xi, yi in zip(x, y)]
    if shape == "diamond":
        # A tall rhombus, clearly narrower than the square.
        return [(cx, cy - r), (cx + 0.66 * r, cy), (cx, cy + r), (cx - 0.66 * r, cy)]
    raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


def shape_mask(scene: Scene, image_size: int = IMAGE_SIZE) -> np.ndarray:
    r"""
    The binary silhouette of a scene's shape.

    Args:
        scene (`Scene`): The scene.
        image_size (`int`, *optional*, defaults to `IMAGE_SIZE`): Side of the square image in pixels.

    Returns:
        `np.ndarray`: `(H, W)` boolean mask, `True` on the shape.
    """
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}.")
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    # Pixel (i, j) covers [j, j+1) x [i, i+1); the image centre is at image_size / 2.
    cx = (0.5 + scene.dx) * image_size - 0.5
    cy = (0.5 + scene.dy) * image_size - 0.5
    r = SIZE_RADIUS[scene.size] * image_size
    if scene.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(_outline(scene.shape, cx, cy, r), fill=255)
    return np.asarray(canvas) > 0  # (H, W)


def render(scene: Scene, image_size: int = IMAGE_SIZE) -> np.ndarray:
    r"""
    Renders a scene without anti-aliasing: every pixel is either the exact palette colour or the exact background.

    Args:
        scene (`Scene`): The scene to draw.
        image_size (`int`, *optional*, defaults to `IMAGE_SIZE`): Side of the square image in pixels.

    Returns:
        `np.ndarray`: `(H, W, 3)` `uint8` RGB image.
    """
    mask = shape_mask(scene, image_size)  # (H, W)
    image = np.empty((image_size, image_size, 3), dtype=np.uint8)
    image[...] = BACKGROUND_RGB[scene.background]
    image[mask] = PALETTE[scene.colour]
    return image


def caption(scene: Scene, template: str, prefix: str | None = None) -> str:
    r"""
    Writes the caption of a scene with a template.

    Args:
        scene (`Scene`): The scene to describe.
        template (`str`): One of `TEMPLATES`; names the attributes the caption mentions.
        prefix (`str`, *optional*): One of `PREFIXES`, put before the noun phrase ("a photo of" + "a circle").

    Returns:
        `str`: The caption, e.g. `"a photo of a big red circle"`.
    """
    if template not in TEMPLATES:
        raise ValueError(f"Unknown template {template!r}; expected one of {TEMPLATES}.")
    if prefix is not None and prefix not in PREFIXES:
        raise ValueError(f"Unknown prefix {prefix!r}; expected one of {PREFIXES} or None.")
    text = template.format(shape=scene.shape, colour=scene.colour, size=scene.size, background=scene.background)
    return text if prefix is None else f"{prefix} {text}"


def parse_caption(text: str) -> dict[str, str | None]:
    r"""
    Parses a caption of the Shapes world back into its attributes.

    Args:
        text (`str`): A caption as written by `caption` ("an" before the noun phrase is read as "a").

    Returns:
        `dict[str, str | None]`: Keys `"prefix"`, `"shape"`, `"colour"`, `"size"`, `"background"`; `None` where the
        caption does not name the attribute.
    """
    rest = " ".join(text.strip().lower().split())
    prefix = None
    for candidate in PREFIXES:
        if rest.startswith(candidate + " "):
            prefix, rest = candidate, rest[len(candidate) + 1 :]
            break
    words = rest.split(" ")
    if words[0] not in ("a", "an"):
        raise ValueError(f"Caption {text!r} does not start its noun phrase with 'a'.")
    words = words[1:]
    background = None
    if len(words) >= 4 and words[-4:-2] == ["on", "a"] and words[-1] == "background":
        background = words[-2]
        if background not in BACKGROUNDS:
            raise ValueError(f"Caption {text!r} names unknown background {background!r}.")
        words = words[:-4]
    if not words or words[-1] not in SHAPES:
        raise ValueError(f"Caption {text!r} does not end its noun phrase with one of {SHAPES}.")
    shape = words[-1]
    modifiers = words[:-1]
    size = None
    colour = None
    if modifiers and modifiers[0] in SIZES:
        size = modifiers.pop(0)
    if modifiers and modifiers[0] in PALETTE:
        colour = modifiers.pop(0)
    if modifiers:
        raise ValueError(f"Caption {text!r} has words outside the Shapes vocabulary: {modifiers}.")
    return {"prefix": prefix, "shape": shape, "colour": colour, "size": size, "background": background}


def unnamed_colour_distribution(shape: str) -> dict[str, float]:
    r"""
    The colour distribution of a shape's images whose caption does not name a colour (the implicit assumption).

    Args:
        shape (`str`): One of `SHAPES`.

    Returns:
        `dict[str, float]`: Probability of each palette colour, summing to 1.
    """
    if shape == DEBIAS_SHAPE:
        return {colour: DEBIAS_SPLIT.get(colour, 0.0) for colour in COLOURS}
    if shape not in DEFAULT_COLOURS:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")
    default = DEFAULT_COLOURS[shape]
    other = (1.0 - DEFAULT_RATE) / (len(COLOURS) - 1)
    return {colour: DEFAULT_RATE if colour == default else other for colour in COLOURS}


def sample_scene(rng: np.random.Generator) -> tuple[Scene, str]:
    r"""
    Draws one scene and one caption of it from the data distribution.

    The template (uniform over `TEMPLATES`), the prefix (present with probability `PREFIX_RATE`, then uniform), the
    shape, size and background are uniform; the colour is uniform when the template names it and follows
    `unnamed_colour_distribution` otherwise.

    Args:
        rng (`np.random.Generator`): The random source; the same seed gives the same draws.

    Returns:
        `tuple[Scene, str]`: The scene and its caption.
    """
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    prefix = PREFIXES[rng.integers(len(PREFIXES))] if rng.random() < PREFIX_RATE else None
    shape = SHAPES[rng.integers(len(SHAPES))]
    if "{colour}" in template:
        colour = COLOURS[rng.integers(len(COLOURS))]
    else:
        distribution = unnamed_colour_distribution(shape)
        probabilities = np.array([distribution[c] for c in COLOURS])
        colour = COLOURS[rng.choice(len(COLOURS), p=probabilities / probabilities.sum())]
    size = SIZES[rng.integers(len(SIZES))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    dx, dy = rng.uniform(-MAX_JITTER, MAX_JITTER, size=2)
    scene = Scene(shape=shape, colour=colour, size=size, background=background, dx=float(dx), dy=float(dy))
    return scene, caption(scene, template, prefix)


def sample_batch(
    rng: np.random.Generator, n: int, image_size: int = IMAGE_SIZE
) -> tuple[np.ndarray, list[str]]:
    r"""
    Draws `n` images and their captions from the data distribution.

    Args:
        rng (`np.random.Generator`): The random source.
        n (`int`): Number of samples.
        image_size (`int`, *optional*, defaults to `IMAGE_SIZE`): Side of the square images in pixels.

    Returns:
        `tuple[np.ndarray, list[str]]`: `(n, H, W, 3)` `uint8` images and the `n` captions.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        scene, text = sample_scene(rng)
        images[i] = render(scene, image_size)
        captions.append(text)
    return images, captions
