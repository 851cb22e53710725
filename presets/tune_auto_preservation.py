"""Validation runs for Diff-QuickFix's automatic preservation (`time_core/methods/preservation.py`) on the toy model.

(TIME's automatic preservation builds context sets instead, `time_core/methods/context.py`; it has no setting to tune.)

Reads only the validation edits (`shapes_validation`, whose source → destination pairs no test entry makes). Besides
the preset's own prompts, every validation edit is checked on an *explicit sweep*: the edited shape with every other
colour of the palette named ("a blue circle", "a yellow circle", ... after "a circle" → "a purple circle"), which must
keep its colour. Prints, per setting, the share of images in the destination colour per prompt type (colour reader)
and the harmonic mean of generality and specificity (as the benchmark computes them, over the preset's prompts).

Usage: `python presets/tune_auto_preservation.py --cluster 0.5 0.4 0.3 --strength 3000 [--seeds 4]`
(`time_core/shapes/TRAINING.md` records the runs).
"""

import argparse
import functools
import json

import numpy as np

import time_core
from time_core.evaluation.classifiers import load_classifier
from time_core.generate import generate
from time_core.methods import preservation
from time_core.models import load_pipeline
from time_core.presets import load_preset
from time_core.shapes.world import PALETTE

POSITIVE_TYPES = ("phrasing", "plural", "scene-first", "scene-second")
NEGATIVE_TYPES = ("related", "explicit", "other-object", "unrelated")


def explicit_sweep(source: str, destination: str) -> list[tuple[str, str]]:
    """("a blue circle", "a purple circle") for every palette colour but the destination's, for "a circle"."""
    shape = source.split()[-1]
    colour = next(word for word in destination.split() if word in PALETTE)
    return [(f"a {other} {shape}", destination) for other in PALETTE if other != colour]


def rates(pipe, classifier, edit, pairs: list[tuple[str, str]], seeds: list[int]) -> np.ndarray:
    """The share of each prompt's images (one per seed) in its destination's colour, `(P,)`."""
    prompts = [p for p, _ in pairs]
    images = generate(pipe, prompts, seeds, edit=edit, original=False, num_inference_steps=12, guidance_scale=5.0,
                      progress=False).edited
    flat = [image for row in images for image in row]
    p = classifier.prob_destination(flat, [p for p, _ in pairs for _ in seeds], [d for _, d in pairs for _ in seeds])
    return (np.asarray(p).reshape(len(pairs), len(seeds)) > 0.5).mean(axis=1) * 100


def run(pipe, classifier, method: str, seeds: list[int], preserve) -> dict:
    found: dict[str, list[float]] = {}
    for entry in load_preset("shapes_validation").entries:
        edit = time_core.compute_edit(pipe, entry.source, entry.destination, method=method, preserve=preserve)
        pairs = [(entry.source, entry.destination)] + [(t.prompt,
                                                        t.destination) for t in entry.positives + entry.negatives]
        types = ["efficacy"] + [t.type for t in entry.positives + entry.negatives]
        sweep = explicit_sweep(entry.source, entry.destination)
        for kind, rate in zip(types + ["explicit sweep"] * len(sweep), rates(pipe, classifier, edit, pairs + sweep,
                                                                             seeds)):
            found.setdefault(kind, []).append(float(rate))
    summary = {kind: round(float(np.mean(values)), 1) for kind, values in found.items()}
    g = float(np.mean([v for kind in POSITIVE_TYPES for v in found.get(kind, [])]))
    s = 100 - float(np.mean([v for kind in NEGATIVE_TYPES for v in found.get(kind, [])]))
    summary.update(G=round(g, 1), S=round(s, 1), H=round(2 * g * s / max(g + s, 1e-9), 1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="diff-quickfix", choices=["diff-quickfix"])
    parser.add_argument("--cluster", type=float, nargs="+", default=[preservation.ATTRIBUTE_CLUSTER])
    parser.add_argument("--strength", type=float, nargs="+", default=None, help="the method's auto_preserve_strength")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--plain", action="store_true", help="also the edit without preservation")
    args = parser.parse_args()
    pipe, classifier = load_pipeline("toy"), load_classifier("colour")
    seeds = list(range(args.seeds))
    method = time_core.METHODS[args.method]
    if args.plain:
        print("RESULT plain", json.dumps(run(pipe, classifier, args.method, seeds, ())), flush=True)
    derive, default_strength = preservation.auto_preservation, method.auto_preserve_strength
    for cluster in args.cluster:
        for strength in args.strength or [default_strength]:
            # the methods look `auto_preservation` up when they prepare an edit; this process only
            preservation.auto_preservation = functools.partial(derive, cluster=cluster)
            type(method).auto_preserve_strength = strength
            result = run(pipe, classifier, args.method, seeds, "auto")
            print(f"RESULT cluster {cluster} strength {strength}", json.dumps(result), flush=True)
    preservation.auto_preservation, type(method).auto_preserve_strength = derive, default_strength


if __name__ == "__main__":
    main()
