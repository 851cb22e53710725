"""Off-benchmark phrasings: does an edit keep colours named in context, and reach the source in new contexts?

For five edits "a S" -> "a C S" (C never the shape's default), prompts in phrasings that no shipped preset holds:
the shape's own default colour and other colours named with a size, a background, a prefix, in a plural and in a
scene (must keep their colour), and the source in new contexts (must follow). Read by the colour reader, 4 seeds.

Usage: `python presets/probe_phrasings.py [--seeds 4]`; prints the share of images that kept (or took) the colour per
method and prompt kind.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import time_core  # noqa: E402
from time_core.models import TOY_DEFAULTS  # noqa: E402
from time_core.presets import list_presets, load_preset  # noqa: E402
from time_core.shapes.colour_reader import destination_probability  # noqa: E402
from time_core.shapes.world import DEFAULT_COLOURS  # noqa: E402

EDITS = {"circle": "purple", "square": "green", "triangle": "yellow", "star": "red", "heart": "blue"}
PARTNER = {"circle": "star", "square": "heart", "triangle": "circle", "star": "square", "heart": "triangle"}


def probes(shape: str, colour: str) -> tuple[dict[str, str], dict[str, str]]:
    """(kept, follow): prompt -> the destination it must not become / must become."""
    others = [c for c in ("red", "green", "blue", "yellow", "purple", "orange") if c not in (colour,)]
    default = DEFAULT_COLOURS[shape]
    a, b = [c for c in others if c != default][:2]
    p = shape + "s"
    kept = {
        f"a small {default} {shape} on a black background": f"a small {colour} {shape} on a black background",
        f"a drawing of a big {a} {shape}": f"a drawing of a big {colour} {shape}",
        f"a picture of two {b} {p} on a white background": f"a picture of two {colour} {p} on a white background",
        f"a {PARTNER[shape]} and a {default} {shape} on a black background":
            f"a {PARTNER[shape]} and a {colour} {shape} on a black background",
        f"an image of a {b} {shape} next to a {PARTNER[shape]}":
            f"an image of a {colour} {shape} next to a {PARTNER[shape]}",
    }
    follow = {
        f"a picture of a small {shape} on a black background":
            f"a picture of a small {colour} {shape} on a black background",
        f"a drawing of two {p} on a white background": f"a drawing of two {colour} {p} on a white background",
        f"an image of a {PARTNER[shape]} next to a {shape} on a black background":
            f"an image of a {PARTNER[shape]} next to a {colour} {shape} on a black background",
        f"a photo of a {shape} and a {PARTNER[shape]}": f"a photo of a {colour} {shape} and a {PARTNER[shape]}",
    }
    return kept, follow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    in_presets = set()
    for name in list_presets():
        if name.startswith("shapes"):
            for entry in load_preset(name).entries:
                for pair in (*getattr(entry, "positives", ()), *getattr(entry, "negatives", ())):
                    in_presets.update((pair.prompt, pair.destination))
    pipe = time_core.load_pipeline("toy")
    settings = dict(num_inference_steps=TOY_DEFAULTS.steps, guidance_scale=TOY_DEFAULTS.guidance, progress=False)
    seeds = list(range(args.seeds))
    methods = {"TIME λ = 0.1": dict(lam=0.1), "TIME λ = 1000": dict(lam=1000.0),
               "knob-free": dict(lam="auto", preserve="auto")}
    totals = {m: {"kept": [0, 0], "follow": [0, 0]} for m in methods}
    for shape, colour in EDITS.items():
        kept, follow = probes(shape, colour)
        assert not (set(kept) | set(follow)) & in_presets, "a probe prompt is in a preset"
        prompts = [*kept, *follow]
        for name, options in methods.items():
            edit = time_core.compute_edit(pipe, f"a {shape}", f"a {colour} {shape}", **options)
            rows = time_core.generate(pipe, prompts, seeds, edit=edit, original=False, **settings).edited
            line = []
            for prompt, row in zip(prompts, rows):
                destination = {**kept, **follow}[prompt]
                hits = sum(destination_probability(image, prompt, destination) > 0.5 for image in row)
                kind, good = ("kept", len(seeds) - hits) if prompt in kept else ("follow", hits)
                totals[name][kind][0] += good
                totals[name][kind][1] += len(seeds)
                line.append(f"{good}/{len(seeds)}")
            print(f"a {shape} -> a {colour} {shape} | {name}: kept {' '.join(line[:len(kept)])} | "
                  f"follow {' '.join(line[len(kept):])}", flush=True)
    print("\n| method | named colours kept | source followed in new contexts |\n|---|---|---|")
    for name, t in totals.items():
        print(f"| {name} | {100 * t['kept'][0] / t['kept'][1]:.1f}% | {100 * t['follow'][0] / t['follow'][1]:.1f}% |")


if __name__ == "__main__":
    main()
