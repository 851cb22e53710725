"""Preview images of an edit: N seeds of the source before and after, as PNGs and a side-by-side grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["grid", "preview_files", "write_preview"]


def grid(rows: Sequence[Sequence]):
    """The images pasted into one picture, one row per sequence (all images of one size): `(W·cols, H·rows)`."""
    from PIL import Image

    width, height = rows[0][0].size
    picture = Image.new("RGB", (width * max(len(r) for r in rows), height * len(rows)), "white")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            picture.paste(image.convert("RGB"), (j * width, i * height))
    return picture


def preview_files(folder: Path, seeds: Sequence[int]) -> list[Path]:
    """The files `write_preview` writes for `seeds`: the originals, the edited images, then the grid."""
    return ([folder / f"{model}_seed{seed}.png" for model in ("original", "edited") for seed in seeds]
            + [folder / "grid.png"])


def write_preview(
    pipe, edit, prompt: str, seeds: Sequence[int], folder: Path, steps: int, guidance: float
) -> list[Path]:
    """Renders `prompt` with the original and the edited model for each seed (one batched `generate` call, with its
    progress bar) and writes `original_seed{s}.png`, `edited_seed{s}.png` and `grid.png` (originals on top).

    Returns:
        the written paths, the grid last.
    """
    from ..generate import generate

    result = generate(pipe, [prompt], list(seeds), edit=edit, num_inference_steps=steps, guidance_scale=guidance)
    folder.mkdir(parents=True, exist_ok=True)
    paths = preview_files(folder, result.seeds)
    images = [*result.original[0], *result.edited[0], grid([result.original[0], result.edited[0]])]
    for path, image in zip(paths, images):
        image.save(path)
    return paths
