"""Writes the generic prompt corpora of the knob-free edit (`time_core/methods/context.py`).

Usage:

    python presets/make_edit_corpus.py

A corpus is a text file, one caption per line, in which one noun phrase may be marked with square brackets: the
attribute words and the noun an edit can recolour ("a photo of a big [red circle] on a white background", "two
[circle]s", "a [dog] on a beach"); a line without brackets is a caption to keep as it is. Lines starting with `#` are
comments (the licence and the origin).

- **Shapes world** (`time_core/shapes/weights/pipeline/edit_corpus.txt`, next to the toy model it describes, found by
  the pipeline's folder): captions drawn from the world's own caption sampler (`time_core.shapes.sampling`, seed 0),
  one line per shape of a caption, and **no caption or frame that can produce a benchmark prompt**: every line whose
  caption, or whose frame filled with any shape and any or no colour, is a prompt or a destination of any shipped
  Shapes preset (test, validation, easy, debias) is dropped.
- **Stable Diffusion** (`time_core/data/corpus/generic.txt`): captions written for this project from the frames and
  nouns below (released with the project under its licence); no TIMED prompt is among them (checked here).
"""

import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from time_core.presets import PRESETS_DIR  # noqa: E402
from time_core.shapes.sampling import sample_example  # noqa: E402
from time_core.shapes.world import COLOURS, SHAPES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOY_CORPUS = ROOT / "time_core" / "shapes" / "weights" / "pipeline" / "edit_corpus.txt"
GENERIC_CORPUS = ROOT / "time_core" / "data" / "corpus" / "generic.txt"
TOY_SAMPLES = 6000  # captions drawn from the sampler
TOY_LINES = 400  # lines kept (in drawing order)

_PHRASE = re.compile(rf"\b((?:(?:{'|'.join(COLOURS)}) )?)({'|'.join(SHAPES)})(s?)\b")


def preset_prompts(prefix: str) -> set[str]:
    """Every prompt and destination of the shipped presets whose name starts with `prefix`."""
    prompts = set()
    for path in sorted(PRESETS_DIR.glob(f"{prefix}*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for entry in data["entries"]:
            prompts.update(v for k, v in entry.items() if isinstance(v, str) and k in ("source", "destination",
                                                                                     "validation"))
            for key in ("positives", "negatives"):
                for pair in entry.get(key, []):
                    prompts.update((pair["prompt"], pair["destination"]))
            prompts.update(entry.get("tests", []))
    return {" ".join(p.lower().split()) for p in prompts}


def marked_lines(caption: str) -> list[str]:
    """One line per shape of `caption`, that shape's colour and noun in brackets (a plural's "s" stays outside)."""
    lines = []
    for match in _PHRASE.finditer(caption):
        lines.append(f"{caption[: match.start()]}[{match.group(1)}{match.group(2)}]{match.group(3)}"
                     f"{caption[match.end():]}")
    return lines


def fills(line: str) -> list[str]:
    """Every caption the line's frame gives with any shape and any or no colour, and the line's own caption."""
    frame = re.sub(r"\[[^\]]*\]", "{}", line)
    captions = {line.replace("[", "").replace("]", "")}
    for shape, colour in itertools.product(SHAPES, (None, *COLOURS)):
        captions.add(frame.format(shape if colour is None else f"{colour} {shape}"))
    return sorted(captions)


def toy_corpus(excluded: set[str]) -> list[str]:
    rng = np.random.default_rng(0)
    lines, dropped = {}, 0
    for _ in range(TOY_SAMPLES):
        _, caption = sample_example(rng)
        for line in marked_lines(caption):
            if line in lines:
                continue
            if any(text in excluded for text in fills(line)):
                dropped += 1
                continue
            lines[line] = None
    kept = list(lines)[:TOY_LINES]
    print(f"toy corpus: {len(lines)} distinct lines, {dropped} dropped as benchmark frames, {len(kept)} kept")
    return kept


# Stable Diffusion: frames around a marked noun, and the nouns.
GENERIC_FRAMES = (
    "a photo of a [{}]", "a close-up photo of a [{}]", "a [{}] on a wooden table", "a painting of a [{}]",
    "a [{}] in the garden", "a drawing of a [{}]", "a [{}] next to a red car", "a cat and a [{}]",
    "two [{}]s on the grass", "a [{}] on a white background", "a blurry photo of a [{}]", "a [{}] in the snow",
    "a picture of two [{}]s", "an old photo of a [{}]", "a [{}] and a dog", "a small [{}] near a window",
    "a big [{}] in a city street", "a sketch of a [{}]", "a [{}] at night", "a toy [{}] on a shelf",
)
GENERIC_NOUNS = (
    "apple", "chair", "bird", "house", "flower", "car", "cup", "dog", "lamp", "tree", "shirt", "book", "boat", "hat",
    "table", "horse", "bag", "clock", "ball", "bicycle",
)
GENERIC_ATTRIBUTES = (None, "red", "blue", "green", "yellow", "white", "black", "old", "young", "wooden", "small",
                      "large")


def generic_corpus(excluded: set[str]) -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for frame in GENERIC_FRAMES:
        for noun in rng.choice(GENERIC_NOUNS, size=4, replace=False):
            attribute = GENERIC_ATTRIBUTES[rng.integers(len(GENERIC_ATTRIBUTES))]
            line = frame.format(noun if attribute is None else f"{attribute} {noun}")
            if line.replace("[", "").replace("]", "").lower() not in excluded:
                lines.append(line)
    order = rng.permutation(len(lines))
    return [lines[i] for i in order]


def write(path: Path, header: str, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(lines)} lines)")


def main() -> None:
    toy_excluded = preset_prompts("shapes")
    write(TOY_CORPUS,
          "# Generic captions of the Shapes world (presets/make_edit_corpus.py): the world's caption sampler,\n"
          "# seed 0, without any caption or frame that can produce a prompt of a shipped Shapes preset.\n"
          "# Same licence as the project.\n", toy_corpus(toy_excluded))
    sd_excluded = preset_prompts("timed")
    write(GENERIC_CORPUS, "# Generic captions for Stable Diffusion (presets/make_edit_corpus.py), written for this\n"
          "# project from frames and nouns; no TIMED prompt among them. Same licence as the project.\n",
          generic_corpus(sd_excluded))


if __name__ == "__main__":
    main()
