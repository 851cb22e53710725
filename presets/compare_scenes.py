"""Where two runs of the Shapes benchmark differ on two-object scenes: the edited shape first ("a oval next to a
square") or second ("a triangle and a oval"), the second split by whether the scene's other shape is one of the words
automatic preservation derived for the edit (`time_core/methods/preservation.py`; "heart" is derived for "a oval" →
"a purple oval", so "a heart oval" is held as it is).

Reads the per-prompt results that `time_core.evaluate` writes (`units/*.json`) of two run folders of the same preset,
at one method and λ each. Prints the share of images in the destination colour per group, and every scene prompt that
moved by more than `--margin`.

Usage: `python presets/compare_scenes.py runs/remeasure-plain runs/shapes-hard-auto --preset shapes --tag lam0.1`
"""

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from time_core.evaluation.benchmark import edited_probabilities
from time_core.methods.preservation import auto_preservation
from time_core.models import load_pipeline
from time_core.presets import load_preset


def per_prompt(run: str, tag: str) -> dict[int, np.ndarray]:
    """`{entry: (P, seeds)}` for the units of `run` whose file names end in `_{tag}.json`."""
    blocks: dict[int, list] = {}
    for path in sorted(glob.glob(str(Path(run) / "units" / f"*_{tag}.json"))):
        unit = json.loads(Path(path).read_text())
        blocks.setdefault(unit["entry"], []).append(np.array(edited_probabilities(unit)))
    if not blocks:
        raise SystemExit(f"no units ending in _{tag}.json in {run}")
    return {entry: np.concatenate(parts, axis=1) for entry, parts in blocks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--tag", default="lam0.1", help="the units' suffix, e.g. lam0.1 or diff-quickfix_lam0.01")
    parser.add_argument("--after-tag", default=None, help="the after run's suffix (default: --tag)")
    parser.add_argument("--margin", type=float, default=0.2)
    args = parser.parse_args()
    before, after = per_prompt(args.before, args.tag), per_prompt(args.after, args.after_tag or args.tag)
    pipe = load_pipeline("toy")
    groups: dict[str, list[tuple[float, float]]] = {}
    for e, entry in enumerate(load_preset(args.preset).entries):
        derived = set(next(iter(auto_preservation(pipe, [entry.source], [entry.destination]).neighbours.values())))
        pairs = [None, *entry.positives, *entry.negatives]  # row 0 is the source prompt itself
        for k, pair in enumerate(pairs):
            if pair is None or pair.type != "scene":
                continue
            words = pair.prompt.split()
            first = words.index(entry.source.split()[-1]) < len(words) // 2
            other = words[1]
            group = "first" if first else (
                "second, other shape derived" if {other, other + "s"} & derived else "second, other not derived")
            x, y = float(before[e][k].mean()), float(after[e][k].mean())
            groups.setdefault(group, []).append((x, y))
            if abs(y - x) > args.margin:
                print(f"{entry.source} -> {entry.destination}: {pair.prompt!r} {100 * x:.0f}% -> {100 * y:.0f}%")
    for group, values in sorted(groups.items()):
        mean = 100 * np.array(values).mean(axis=0)
        print(f"{group:<30} {len(values):>3} prompts   before {mean[0]:5.1f}   after {mean[1]:5.1f}")


if __name__ == "__main__":
    main()
