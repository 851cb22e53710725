"""The Shapes world: a tiny synthetic text-to-image world of filled shapes on a plain background.

An image shows one shape in the centre, two shapes of the same kind side by side (a plural, "two circles"), or two
different shapes side by side (a pair, "a circle next to a square", "a red circle and a blue star"). Every shape has one
exact palette colour (`PALETTE`); single shapes are small or big (`SIZES`), shapes in two-object images are small; the
background is white or black (`BACKGROUNDS`). Captions (`describe`, `caption`, parsed back by `parse_caption`) name
the shapes and, optionally, their colours, the size of a single shape and the background, optionally behind one of
`PREFIXES` ("a photo of a big circle", "two red circles on a black background", "a circle next to a blue square").
The data distribution is in `time_core.shapes.sampling`.

The world carries *implicit assumptions* in its data, the way real text-to-image data does: when a caption does not
name a shape's colour, the image shows the shape's default colour (`DEFAULT_COLOURS`) with probability `DEFAULT_RATE`,
otherwise another palette colour. Related concepts have their own defaults: the oval resembles the circle and the
rectangle the square (`RELATED_SHAPES`), and they share every caption context with them. The `DEBIAS_SHAPE` (a diamond)
has no single default: it is orange or blue with the probabilities of `DEBIAS_SPLIT`.

Article choice: a noun phrase always starts with "a", also before a vowel ("a orange diamond", "a oval"), so that a
destination prompt is its source prompt with exactly one word inserted. Only the prefix "an image of" uses "an".
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "diamond", "oval", "rectangle")
# Shapes that look alike: each maps to the shape it resembles.
RELATED_SHAPES: dict[str, str] = {"oval": "circle", "circle": "oval", "rectangle": "square", "square": "rectangle"}
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

# The implicit assumptions: the colour a shape has when its caption does not name one.
DEFAULT_COLOURS: dict[str, str] = {
    "circle": "red",
    "square": "blue",
    "triangle": "green",
    "star": "yellow",
    "heart": "purple",
    "oval": "orange",
    "rectangle": "green",
}
DEFAULT_RATE: float = 0.9
# The shape/colour pair of the debiasing workflow: the unnamed colour is split between two palette colours.
DEBIAS_SHAPE: str = "diamond"
DEBIAS_SPLIT: dict[str, float] = {"orange": 0.8, "blue": 0.2}

IMAGE_SIZE: int = 64
# Shape "radius" (half of the shape's height) as a fraction of the image side.
SIZE_RADIUS: dict[str, float] = {"small": 0.2, "big": 0.38}
# Horizontal centre of each slot as a fraction of the image side: one shape sits in the centre, two sit left and right
# (the first one named on the left). Two-object images keep every shape inside its half (see `MAX_PAIR_JITTER`).
SLOT_X: dict[str, float] = {"centre": 0.5, "left": 0.26, "right": 0.74}
# Largest centre offset from the slot centre, as a fraction of the image side, along each axis.
MAX_JITTER: float = 0.06
MAX_PAIR_JITTER: float = 0.02


@dataclass(frozen=True)
class Scene:
    r"""
    One shape of a Shapes-world image.

    Args:
        shape (`str`): One of `SHAPES`.
        colour (`str`): One of `PALETTE`; the exact fill colour.
        size (`str`): One of `SIZES`.
        background (`str`): One of `BACKGROUNDS`.
        dx (`float`, *optional*, defaults to 0.0):
            Horizontal offset of the shape centre from its slot centre, as a fraction of the image side, in
            `[-MAX_JITTER, MAX_JITTER]` (`[-MAX_PAIR_JITTER, MAX_PAIR_JITTER]` outside the centre slot).
        dy (`float`, *optional*, defaults to 0.0): Vertical offset of the shape centre, like `dx`.
        slot (`str`, *optional*, defaults to `"centre"`): One of `SLOT_X`; `"left"` / `"right"` shapes are small.
    """

    shape: str
    colour: str
    size: str
    background: str
    dx: float = 0.0
    dy: float = 0.0
    slot: str = "centre"

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.shape, SHAPES, "shape"),
            (self.colour, COLOURS, "colour"),
            (self.size, SIZES, "size"),
            (self.background, BACKGROUNDS, "background"),
            (self.slot, tuple(SLOT_X), "slot"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; expected one of {allowed}")
        limit = MAX_JITTER if self.slot == "centre" else MAX_PAIR_JITTER
        if abs(self.dx) > limit or abs(self.dy) > limit:
            raise ValueError(f"centre offset ({self.dx}, {self.dy}) exceeds {limit} for slot {self.slot!r}")
        if self.slot != "centre" and self.size != "small":
            raise ValueError(f"a shape in the {self.slot!r} slot must be small, got {self.size!r}")


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices (pixel coordinates) of a polygonal shape with centre `(cx, cy)` and radius `r`."""
    if shape == "square":
        s = 0.8 * r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "rectangle":
        # As wide as the square's diagonal reach, about half its height: a square's look-alike, clearly flatter.
        w, h = 1.0 * r, 0.52 * r
        return [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h), (cx - w, cy + h)]
    if shape == "triangle":
        # Upward-pointing; the centroid of the box sits at the centre.
        return [(cx, cy - r), (cx + 1.0 * r, cy + 0.85 * r), (cx - 1.0 * r, cy + 0.85 * r)]
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
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def shape_mask(scene: Scene, image_size: int = IMAGE_SIZE) -> np.ndarray:
    r"""
    The binary silhouette of one shape.

    Args:
        scene (`Scene`): The shape.
        image_size (`int`, *optional*, defaults to `IMAGE_SIZE`): Side of the square image in pixels.

    Returns:
        `np.ndarray`: `(H, W)` boolean mask, `True` on the shape.
    """
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}")
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    # Pixel (i, j) covers [j, j+1) x [i, i+1); the image centre is at image_size / 2.
    cx = (SLOT_X[scene.slot] + scene.dx) * image_size - 0.5
    cy = (0.5 + scene.dy) * image_size - 0.5
    r = SIZE_RADIUS[scene.size] * image_size
    if scene.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif scene.shape == "oval":
        # A wide ellipse: the circle's look-alike.
        draw.ellipse([cx - r, cy - 0.62 * r, cx + r, cy + 0.62 * r], fill=255)
    else:
        draw.polygon(_outline(scene.shape, cx, cy, r), fill=255)
    return np.asarray(canvas) > 0  # (H, W)


def render(scene: Scene | tuple[Scene, ...] | list[Scene], image_size: int = IMAGE_SIZE) -> np.ndarray:
    r"""
    Renders one shape or the shapes of a two-object image without anti-aliasing: every pixel is either an exact
    palette colour or the exact background.

    Args:
        scene (`Scene` or a sequence of `Scene`): The shape(s); all of them share one background.
        image_size (`int`, *optional*, defaults to `IMAGE_SIZE`): Side of the square image in pixels.

    Returns:
        `np.ndarray`: `(H, W, 3)` `uint8` RGB image.
    """
    objects = (scene,) if isinstance(scene, Scene) else tuple(scene)
    if not objects or len({obj.background for obj in objects}) != 1:
        raise ValueError("render needs at least one shape, and all shapes of an image share one background")
    image = np.empty((image_size, image_size, 3), dtype=np.uint8)
    image[...] = BACKGROUND_RGB[objects[0].background]
    for obj in objects:
        image[shape_mask(obj, image_size)] = PALETTE[obj.colour]
    return image


def unnamed_colour_distribution(shape: str) -> dict[str, float]:
    r"""
    The colour distribution of a shape whose caption does not name its colour (the implicit assumption).

    Args:
        shape (`str`): One of `SHAPES`.

    Returns:
        `dict[str, float]`: Probability of each palette colour, summing to 1.
    """
    if shape == DEBIAS_SHAPE:
        return {colour: DEBIAS_SPLIT.get(colour, 0.0) for colour in COLOURS}
    if shape not in DEFAULT_COLOURS:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    default = DEFAULT_COLOURS[shape]
    other = (1.0 - DEFAULT_RATE) / (len(COLOURS) - 1)
    return {colour: DEFAULT_RATE if colour == default else other for colour in COLOURS}


PREFIXES: tuple[str, ...] = ("a photo of", "an image of", "a picture of", "a drawing of")
# Single-shape caption templates (`caption`).
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
# The words between the two shapes of a pair ("a circle next to a square", "a circle and a square").
CONNECTORS: tuple[str, ...] = ("next to", "and")
PLURALS: dict[str, str] = {shape: shape + "s" for shape in SHAPES}
KINDS: tuple[str, ...] = ("single", "plural", "pair")


def caption(scene: Scene, template: str, prefix: str | None = None) -> str:
    r"""
    Writes the caption of a single-shape image with a template.

    Args:
        scene (`Scene`): The shape to describe.
        template (`str`): One of `TEMPLATES`; names the attributes the caption mentions.
        prefix (`str`, *optional*): One of `PREFIXES`, put before the noun phrase ("a photo of" + "a circle").

    Returns:
        `str`: The caption, e.g. `"a photo of a big red circle"`.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
    if prefix is not None and prefix not in PREFIXES:
        raise ValueError(f"unknown prefix {prefix!r}; expected one of {PREFIXES} or None")
    text = template.format(shape=scene.shape, colour=scene.colour, size=scene.size, background=scene.background)
    return text if prefix is None else f"{prefix} {text}"


def describe(
    objects: Scene | tuple[Scene, ...] | list[Scene],
    name_colour: bool | tuple[bool, ...] = False,
    name_size: bool = False,
    name_background: bool = False,
    prefix: str | None = None,
    connector: str | None = None,
) -> str:
    r"""
    Writes a caption of any image of the world: one shape, a plural (two alike shapes) or a pair.

    Args:
        objects (`Scene` or a sequence of 1-2 `Scene`): The shapes, left to right.
        name_colour (`bool` or `tuple[bool, ...]`, *optional*, defaults to `False`): Whether to name each shape's
            colour (one flag for all, or one per shape of a pair).
        name_size (`bool`, *optional*, defaults to `False`): Name the size (single shapes only).
        name_background (`bool`, *optional*, defaults to `False`): Add "on a {background} background".
        prefix (`str`, *optional*): One of `PREFIXES`.
        connector (`str`, *optional*): One of `CONNECTORS` for a pair; `None` writes two shapes as a plural ("two
            circles"), which needs two shapes of the same kind and colour.

    Returns:
        `str`: e.g. `"a photo of a circle next to a blue square on a black background"`.
    """
    objects = (objects,) if isinstance(objects, Scene) else tuple(objects)
    flags = (name_colour,) * len(objects) if isinstance(name_colour, bool) else tuple(name_colour)
    if len(flags) != len(objects) or len(objects) not in (1, 2):
        raise ValueError(f"describe needs 1 or 2 shapes and one colour flag each, got {len(objects)} and {len(flags)}")
    if prefix is not None and prefix not in PREFIXES:
        raise ValueError(f"unknown prefix {prefix!r}; expected one of {PREFIXES} or None")
    if name_size and len(objects) != 1:
        raise ValueError("only a single shape's caption names its size")

    def phrase(obj: Scene, colour: bool, noun: str) -> str:
        return " ".join([*([obj.size] if name_size else []), *([obj.colour] if colour else []), noun])

    if len(objects) == 1:
        text = "a " + phrase(objects[0], flags[0], objects[0].shape)
    elif connector is None:
        left, right = objects
        if (left.shape, left.colour) != (right.shape, right.colour) or flags[0] != flags[1]:
            raise ValueError("a plural caption needs two shapes of the same kind and colour, both named or not")
        text = "two " + phrase(left, flags[0], PLURALS[left.shape])
    elif connector in CONNECTORS:
        left, right = objects
        text = f"a {phrase(left, flags[0], left.shape)} {connector} a {phrase(right, flags[1], right.shape)}"
    else:
        raise ValueError(f"unknown connector {connector!r}; expected one of {CONNECTORS} or None")
    if name_background:
        text += f" on a {objects[0].background} background"
    return text if prefix is None else f"{prefix} {text}"


def _noun_phrase(words: list[str], text: str, plural: bool) -> dict[str, str | None]:
    """Parses "[size] [colour] shape" (or "[colour] shapes" for a plural) into its attributes."""
    nouns = {PLURALS[s]: s for s in SHAPES} if plural else {s: s for s in SHAPES}
    if not words or words[-1] not in nouns:
        raise ValueError(f"caption {text!r} does not name one of {tuple(nouns)} where a shape is expected")
    modifiers = words[:-1]
    size = modifiers.pop(0) if modifiers and modifiers[0] in SIZES and not plural else None
    colour = modifiers.pop(0) if modifiers and modifiers[0] in PALETTE else None
    if modifiers:
        raise ValueError(f"caption {text!r} has words outside the Shapes vocabulary: {modifiers}")
    return {"shape": nouns[words[-1]], "colour": colour, "size": size}


def parse_caption(text: str) -> dict:
    r"""
    Parses a caption of the Shapes world back into its attributes.

    Args:
        text (`str`): A caption as written by `caption` or `describe` ("an" before a noun phrase is read as "a").

    Returns:
        `dict`: `"prefix"`, `"background"` (`None` where not named), `"kind"` (one of `KINDS`), `"connector"` (pairs),
        `"objects"` (one dict of `"shape"`, `"colour"`, `"size"` per shape, left to right; a plural gives two equal
        ones) and, for a single shape, its `"shape"`, `"colour"` and `"size"` at the top level (`None` otherwise).
    """
    rest = " ".join(text.strip().lower().split())
    prefix = next((p for p in PREFIXES if rest.startswith(p + " ")), None)
    words = rest[len(prefix) + 1 :].split(" ") if prefix else rest.split(" ")
    background = None
    if len(words) >= 4 and words[-4:-2] == ["on", "a"] and words[-1] == "background":
        background = words[-2]
        if background not in BACKGROUNDS:
            raise ValueError(f"caption {text!r} names unknown background {background!r}")
        words = words[:-4]
    connector, kind = None, "single"
    for candidate in CONNECTORS:
        pattern = candidate.split(" ") + ["a"]
        for i in range(len(words) - len(pattern) + 1):
            if words[i : i + len(pattern)] == pattern:
                connector, kind, cut = candidate, "pair", i
                break
        if connector:
            break
    if words and words[0] == "two":
        kind = "plural"
        objects = [_noun_phrase(words[1:], text, plural=True)] * 2
    elif not words or words[0] not in ("a", "an"):
        raise ValueError(f"caption {text!r} does not start its noun phrase with 'a' or 'two'")
    elif kind == "pair":
        tail = len(connector.split(" ")) + 1
        objects = [_noun_phrase(words[1:cut], text, False), _noun_phrase(words[cut + tail :], text, False)]
        if any(obj["size"] for obj in objects):
            raise ValueError(f"caption {text!r} names a size in a pair; only single shapes have one")
    else:
        objects = [_noun_phrase(words[1:], text, plural=False)]
    single = objects[0] if kind == "single" else {"shape": None, "colour": None, "size": None}
    return {"prefix": prefix, "background": background, "kind": kind, "connector": connector,
            "objects": [dict(obj) for obj in objects], **single}
