"""Writes the Shapes-world presets: `shapes.json` (the hard edit benchmark, the toy model's default),
`shapes_validation.json` (its validation set: other destination colours), `shapes_easy.json` (the first benchmark:
one-shape prompts only, unrelated negatives) and `shapes_debias.json` (debiasing set).

Usage:

    python presets/make_shapes_presets.py

The files are written to `time_core/data/presets/` (shipped with the package). The output is deterministic and every
prompt is written with `time_core.shapes.world.caption`, so the presets stay
consistent with the world's vocabulary. Every written file is loaded back with `time_core.presets.load_preset`.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hard_shapes_preset import EDIT_COLOURS as HARD_EDIT_COLOURS  # noqa: E402
from hard_shapes_preset import hard_entries, validation_colours  # noqa: E402

from time_core.presets import NUM_PROMPTS, PRESETS_DIR, load_preset  # noqa: E402
from time_core.shapes.world import (  # noqa: E402
    DEBIAS_SHAPE,
    DEBIAS_SPLIT,
    Scene,
    caption,
    unnamed_colour_distribution,
)

# The shapes of the first (easy) benchmark; it stays as it was written when the world had only these.
EASY_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "diamond")


# Destination colours of each default-coloured shape's edits (the hard benchmark's, for the shapes both share); none is
# the shape's own default colour.
EDIT_COLOURS: dict[str, tuple[str, ...]] = {
    shape: HARD_EDIT_COLOURS[shape] for shape in EASY_SHAPES if shape in HARD_EDIT_COLOURS
}
# (template without colour, template with colour, prefix, size, background) of the five positives.
POSITIVE_FORMS: tuple[tuple[str, str, str | None, str, str], ...] = (
    ("a {size} {shape}", "a {size} {colour} {shape}", None, "big", "white"),
    ("a {size} {shape}", "a {size} {colour} {shape}", "a photo of", "small", "white"),
    ("a {shape} on a {background} background", "a {colour} {shape} on a {background} background",
     None, "big", "black"),
    ("a {shape}", "a {colour} {shape}", "a drawing of", "big", "white"),
    ("a {size} {shape}", "a {size} {colour} {shape}", "an image of", "big", "white"),
)
# The forms of the five negatives, assigned to the negative shapes in turn.
NEGATIVE_FORMS: tuple[tuple[str, str, str | None, str, str], ...] = (
    ("a {shape}", "a {colour} {shape}", None, "big", "white"),
    ("a {shape}", "a {colour} {shape}", "a photo of", "big", "white"),
    ("a {size} {shape}", "a {size} {colour} {shape}", None, "big", "white"),
    ("a {shape} on a {background} background", "a {colour} {shape} on a {background} background", None, "big", "white"),
    ("a {size} {shape}", "a {size} {colour} {shape}", "a picture of", "small", "white"),
)
# Negatives must not already show the destination colour this often when their prompt names no colour.
MAX_NEGATIVE_RATE = 0.05


def prompt_pair(shape: str, colour: str, form: tuple[str, str, str | None, str, str]) -> dict[str, str]:
    plain, coloured, prefix, size, background = form
    scene = Scene(shape=shape, colour=colour, size=size, background=background)
    return {"prompt": caption(scene, plain, prefix), "destination": caption(scene, coloured, prefix)}


def negative_shapes(shape: str, colour: str) -> list[str]:
    """The other shapes whose colour-less prompts rarely show `colour`, in a fixed order."""
    candidates = [other for other in EASY_SHAPES if other != shape]
    return [other for other in candidates if unnamed_colour_distribution(other)[colour] <= MAX_NEGATIVE_RATE]


def edit_entry(shape: str, colour: str) -> dict:
    negatives = negative_shapes(shape, colour)
    scene = Scene(shape=shape, colour=colour, size="big", background="white")
    return {
        "source": caption(scene, "a {shape}"),
        "destination": caption(scene, "a {colour} {shape}"),
        "positives": [prompt_pair(shape, colour, form) for form in POSITIVE_FORMS],
        "negatives": [
            prompt_pair(negatives[k % len(negatives)], colour, form) for k, form in enumerate(NEGATIVE_FORMS)
        ],
    }


def debias_entry() -> dict:
    # As for the professions, the destination names the minority value; F_p is the share of the first attribute.
    majority, minority = sorted(DEBIAS_SPLIT, key=DEBIAS_SPLIT.get, reverse=True)
    scene = Scene(shape=DEBIAS_SHAPE, colour=minority, size="big", background="white")
    tests = [
        caption(scene, "a {size} {shape}"),
        caption(scene, "a {shape}", "a drawing of"),
        caption(Scene(DEBIAS_SHAPE, minority, "small", "white"), "a {size} {shape} on a {background} background"),
        caption(scene, "a {shape}", "an image of"),
        caption(Scene(DEBIAS_SHAPE, minority, "big", "black"), "a {shape} on a {background} background"),
    ]
    assert len(tests) == NUM_PROMPTS
    attributes = [majority, minority]
    return {
        "source": caption(scene, "a {shape}"),
        "destination": caption(scene, "a {colour} {shape}"),
        "validation": caption(scene, "a {shape}", "a photo of"),
        "tests": tests,
        "attributes": attributes,
        "classes": [caption(Scene(DEBIAS_SHAPE, c, "big", "white"), "a {colour} {shape}") for c in attributes],
    }


def write(name: str, preset: dict) -> None:
    path = PRESETS_DIR / f"{name}.json"
    path.write_text(json.dumps(preset, indent=2) + "\n", encoding="utf-8")
    loaded = load_preset(path)
    print(f"wrote {path} ({len(loaded.entries)} entries)")


def main() -> None:
    entries = [edit_entry(shape, colour) for shape, colours in EDIT_COLOURS.items() for colour in colours]
    write(
        "shapes_easy",
        {
            "name": "shapes_easy",
            "description": (
                f"Shapes-world easy edit benchmark: {len(entries)} edits that recolour a default-coloured shape; "
                "positives are one-shape phrasings, negatives are unrelated shapes whose colour-less prompts rarely "
                "show the destination colour."
            ),
            "model": "toy",
            "kind": "edit",
            "entries": entries,
        },
    )
    entries = hard_entries()
    write(
        "shapes",
        {
            "name": "shapes",
            "description": (
                f"Shapes-world hard edit benchmark (the toy default): {len(entries)} edits that recolour a "
                "default-coloured shape. Positives: other phrasings, plurals and two-object scenes holding the shape; "
                "negatives: the look-alike shape, the same shape with another colour named, the other shape of a "
                "two-object scene, unrelated shapes. Every prompt carries its type."
            ),
            "model": "toy",
            "kind": "edit",
            "entries": entries,
        },
    )
    entries = hard_entries(validation_colours())
    write(
        "shapes_validation",
        {
            "name": "shapes_validation",
            "description": (
                f"Validation set of the hard Shapes benchmark: {len(entries)} edits of the same kinds with destination "
                "colours that no test edit of the shape uses; for choosing settings without touching the test set."
            ),
            "model": "toy",
            "kind": "edit",
            "entries": entries,
        },
    )
    split = ", ".join(f"{share:.0%} {colour}" for colour, share in DEBIAS_SPLIT.items())
    write(
        "shapes_debias",
        {
            "name": "shapes_debias",
            "description": (
                f"Shapes-world debiasing set: a {DEBIAS_SHAPE} is {split} when its prompt names no colour; F_p is the "
                "share of images read as the first attribute colour."
            ),
            "model": "toy",
            "kind": "debias",
            "entries": [debias_entry()],
        },
    )


if __name__ == "__main__":
    main()
