"""A ground-truth colour reader for Shapes-world images (no learned model).

The reader estimates the background colour from the image border, takes the pixels far from it as the shape, and names
the palette colour nearest to the median colour of the shape's interior. It tolerates the imperfect images of a
generative model: noise, blur, off-white backgrounds and slightly shifted colours. In a two-object image each half is
read on its own (`read_object_colours`): the world keeps each of the two shapes inside its half.
"""

from typing import Any, Sequence

import numpy as np
from PIL import Image

from .world import PALETTE, parse_caption

NO_SHAPE = "none"
# Euclidean RGB distance (0..255 scale) above which a pixel differs from the background.
FOREGROUND_THRESHOLD: float = 80.0
# Smallest share of the image that the foreground must cover to count as a shape.
MIN_FOREGROUND_FRACTION: float = 0.02
# Width in pixels of the border ring that estimates the background.
BORDER_WIDTH: int = 2

_PALETTE_NAMES: tuple[str, ...] = tuple(PALETTE)
_PALETTE_RGB = np.array([PALETTE[name] for name in _PALETTE_NAMES], dtype=np.float64)  # (C, 3)


def _to_array(image: Any) -> np.ndarray:
    """Converts one image to a `(H, W, 3)` float64 array on the 0..255 scale."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    if type(image).__module__.startswith("torch"):
        image = image.detach().cpu().float().numpy()
    array = np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"Expected an image of shape (H, W, 3) or (3, H, W), got shape {array.shape}.")
    if array.shape[-1] != 3 and array.shape[0] == 3:
        array = np.transpose(array, (1, 2, 0))  # (3, H, W) -> (H, W, 3)
    if array.shape[-1] != 3:
        raise ValueError(f"Expected an image of shape (H, W, 3) or (3, H, W), got shape {array.shape}.")
    if array.dtype == np.uint8:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(
                f"Float images must lie in [0, 1], got values in [{array.min():.3f}, {array.max():.3f}]."
            )
        return array.astype(np.float64) * 255.0
    raise ValueError(f"Expected a uint8 or float image, got dtype {array.dtype}.")


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion of a `(H, W)` mask; pixels outside the image count as background."""
    padded = np.pad(mask, 1, constant_values=False)  # (H + 2, W + 2)
    height, width = mask.shape
    eroded = np.ones_like(mask)
    for di in range(3):
        for dj in range(3):
            eroded &= padded[di : di + height, dj : dj + width]
    return eroded


def background_colour(image: Any) -> np.ndarray:
    r"""
    Estimates the background colour as the per-channel median of the border pixels.

    Args:
        image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`):
            `(H, W, 3)` uint8, `(H, W, 3)` or `(3, H, W)` float in `[0, 1]`, or a PIL image.

    Returns:
        `np.ndarray`: `(3,)` float RGB on the 0..255 scale.
    """
    return _background(_to_array(image))


def _background(array: np.ndarray) -> np.ndarray:
    """Per-channel median of the border ring of a `(H, W, 3)` float array; returns `(3,)`."""
    width = min(BORDER_WIDTH, min(array.shape[:2]) // 4 or 1)
    border = np.concatenate(
        [
            array[:width].reshape(-1, 3),
            array[-width:].reshape(-1, 3),
            array[width:-width, :width].reshape(-1, 3),
            array[width:-width, -width:].reshape(-1, 3),
        ]
    )  # (B, 3)
    return np.median(border, axis=0)


def foreground_mask(image: Any) -> np.ndarray:
    r"""
    The pixels that differ from the estimated background by more than `FOREGROUND_THRESHOLD`.

    Args:
        image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`): One image, as for `read_colour`.

    Returns:
        `np.ndarray`: `(H, W)` boolean mask, `True` on the shape.
    """
    return _foreground(_to_array(image))


def _foreground(array: np.ndarray) -> np.ndarray:
    """Foreground mask `(H, W)` of a `(H, W, 3)` float array on the 0..255 scale."""
    distance = np.linalg.norm(array - _background(array), axis=-1)  # (H, W)
    return distance > FOREGROUND_THRESHOLD


def read_colour(image: Any) -> str:
    r"""
    Names the palette colour of the shape in an image.

    Args:
        image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`):
            One image: a PIL image, a `(H, W, 3)` uint8 array, or a `(H, W, 3)` / `(3, H, W)` float array or tensor
            with values in `[0, 1]`.

    Returns:
        `str`: The name of the nearest `PALETTE` colour, or `"none"` when the foreground covers less than
        `MIN_FOREGROUND_FRACTION` of the image.
    """
    array = _to_array(image)  # (H, W, 3)
    mask = _foreground(array)  # (H, W)
    count = int(mask.sum())
    if count < MIN_FOREGROUND_FRACTION * mask.size:
        return NO_SHAPE
    # Drop the edge ring, where blur mixes the shape with the background, unless that leaves too little.
    interior = _erode(mask)
    if interior.sum() >= max(4, count // 4):
        mask = interior
    colour = np.median(array[mask], axis=0)  # (3,)
    distances = np.linalg.norm(_PALETTE_RGB - colour, axis=-1)  # (C,)
    return _PALETTE_NAMES[int(np.argmin(distances))]


def read_colours(images: Any) -> list[str]:
    r"""
    Names the palette colour of the shape in each image of a batch.

    Args:
        images (`Sequence` of images, `np.ndarray` or `torch.Tensor`):
            A list of images as accepted by `read_colour`, a `(N, H, W, 3)` array, or a `(N, H, W, 3)` /
            `(N, 3, H, W)` tensor.

    Returns:
        `list[str]`: One colour name (or `"none"`) per image.
    """
    if isinstance(images, Sequence) or (hasattr(images, "ndim") and images.ndim == 4):
        return [read_colour(image) for image in images]
    raise ValueError(f"Expected a sequence of images or a 4-D batch, got {type(images).__name__}.")


def read_object_colours(image: Any, count: int) -> list[str]:
    r"""
    Names the colour of each shape of an image, left to right.

    Args:
        image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`): One image, as for `read_colour`.
        count (`int`): 1 for a single shape (the whole image is read), 2 for a plural or a pair (each half is read).

    Returns:
        `list[str]`: `count` colour names (or `"none"`).
    """
    if count == 1:
        return [read_colour(image)]
    if count != 2:
        raise ValueError(f"a Shapes-world image holds 1 or 2 shapes, got count={count}")
    array = _to_array(image)  # (H, W, 3)
    half = array.shape[1] // 2
    return [read_colour(array[:, :half] / 255.0), read_colour(array[:, half:] / 255.0)]


def changed_objects(prompt: str, destination: str) -> dict[int, str]:
    r"""
    The shapes a destination prompt recolours: the index (left to right) and named colour of every shape whose colour
    the destination names and the prompt does not (or names differently).

    Args:
        prompt (`str`): A Shapes-world caption ("a circle next to a square").
        destination (`str`): The same caption with a colour named ("a circle next to a green square").

    Returns:
        `dict[int, str]`: e.g. `{1: "green"}`.
    """
    source, target = parse_caption(prompt), parse_caption(destination)
    if len(source["objects"]) != len(target["objects"]):
        raise ValueError(f"prompt {prompt!r} and destination {destination!r} describe different numbers of shapes")
    changed = {
        k: after["colour"]
        for k, (before, after) in enumerate(zip(source["objects"], target["objects"]))
        if after["colour"] is not None and after["colour"] != before["colour"]
    }
    if not changed:
        raise ValueError(f"destination {destination!r} names no colour that prompt {prompt!r} does not")
    return changed


def destination_probability(image: Any, prompt: str, destination: str) -> float:
    r"""
    The ground-truth P(destination) of an image generated for `prompt`: the share of the shapes that `destination`
    recolours (`changed_objects`) that show the destination's colour.

    Args:
        image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`): One image, as for `read_colour`.
        prompt (`str`): The prompt the image was generated for.
        destination (`str`): Its destination prompt.

    Returns:
        `float`: In `[0, 1]`; 0 or 1 for one recoloured shape.
    """
    changed = changed_objects(prompt, destination)
    colours = read_object_colours(image, len(parse_caption(prompt)["objects"]))
    return float(np.mean([colours[k] == colour for k, colour in changed.items()]))
