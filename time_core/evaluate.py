"""The paper's evaluation protocol (Sec. 5.4-5.5, App. C-D) on any preset, model and classifier, resumable and sharded.

For each entry of an edit preset and each seed, three conditions are generated from the same initial latents:

- **baseline**: the unedited model on the source prompt, the 5 positives and the 5 negatives;
- **oracle**: the unedited model on the destinations of the source and the positives, and on the negatives' own
  prompts (the oracle of a negative is its baseline);
- **TIME**: the edited model (one edit per λ; one eigendecomposition per entry serves every λ) on the 11 prompts.

Every image is classified as its prompt vs its destination (`time_core.classifiers`), and efficacy, generality and
specificity are reported as mean ± std over seeds, overall and per entry (`time_core.metrics`).

Work is split into units `(entry, block of seeds)` with a fixed batch composition, each written to its own JSON file
as soon as it is done (atomically), so a re-run skips finished units, Ctrl-C loses nothing, and the merged numbers
are identical for any number of processes. With `accelerate launch -m time_core.evaluate ...` every process takes
every `num_processes`-th unit on its own device; the main process merges and writes the report.

    python -m time_core.evaluate --preset shapes --model toy --classifier colour --seeds 8 --out runs/shapes
    accelerate launch -m time_core.evaluate --preset timed_test_filtered_sd14 --model CompVis/stable-diffusion-v1-4 \\
        --classifier ViT-B-32 --seeds 24 --lam 0.1 --out runs/timed
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .metrics import Scores, hits_from_probabilities, score
from .presets import EditEntry, EditPreset, load_preset
from .results import check_out_dir, write_json
from .solver import check_lam

__all__ = ["CONDITIONS", "EvalConfig", "evaluate", "main", "merge_results", "unit_id"]

CONDITIONS = ("baseline", "oracle", "time")
NUM_PROMPTS = 11  # source, 5 positives, 5 negatives


@dataclass(frozen=True)
class EvalConfig:
    """Everything that determines the numbers of an evaluation (stored in `OUT/config.json`)."""

    preset: str
    model: str = "toy"
    classifier: str = "colour"
    seeds: tuple[int, ...] = tuple(range(8))
    lams: tuple[float, ...] = (0.1,)
    edit_keys: bool = True
    augment: bool = True
    steps: int | None = None
    guidance: float | None = None
    scheduler: str = "default"
    seeds_per_unit: int = 4
    limit: int | None = None
    extra: dict = field(default_factory=dict)

    def identity(self) -> dict:
        """What must match for stored units to be reused (λ values may be added later)."""
        data = asdict(self)
        for key in ("lams", "limit", "extra"):
            data.pop(key)
        return data


def unit_id(entry: int, seeds: Sequence[int]) -> str:
    return f"e{entry:04d}_s{seeds[0]}-{seeds[-1]}"


def _lam_key(lam: float) -> str:
    return repr(float(lam))


def _entry_prompts(entry: EditEntry) -> tuple[list[str], list[str]]:
    prompts = [entry.source] + [p.prompt for p in entry.positives] + [n.prompt for n in entry.negatives]
    destinations = [entry.destination] + [p.destination for p in entry.positives] + [n.destination for n in entry.negatives]
    return prompts, destinations


def _probabilities(classifier, images_by_prompt, prompts, destinations) -> list[list[float]]:
    """`[prompt][seed]` images → `[prompt][seed]` P(destination)."""
    flat = [img for row in images_by_prompt for img in row]
    n_seeds = len(images_by_prompt[0])
    p = classifier.prob_destination(
        flat, [x for x in prompts for _ in range(n_seeds)], [x for x in destinations for _ in range(n_seeds)]
    )
    p = np.asarray(p, dtype=np.float64).reshape(len(prompts), n_seeds)
    return p.tolist()


def run_unit(pipe, classifier, problem, entry: EditEntry, seeds: Sequence[int], lams: Sequence[float], config: EvalConfig,
             base: dict | None) -> tuple[dict, dict[str, list]]:
    """Generates and classifies one unit; `base` (baseline + oracle) is reused when already stored."""
    from .generate import generate

    prompts, destinations = _entry_prompts(entry)
    kwargs = dict(num_inference_steps=config.steps, guidance_scale=config.guidance, progress=False)
    if base is None:
        oracle_prompts = destinations[:6]  # destinations of the source and the positives
        start = time.perf_counter()
        result = generate(pipe, prompts + oracle_prompts, seeds, **kwargs)
        images = result.original  # [17][S]
        seconds = time.perf_counter() - start
        baseline = _probabilities(classifier, images[:NUM_PROMPTS], prompts, destinations)
        oracle = _probabilities(classifier, images[NUM_PROMPTS:], prompts[:6], destinations[:6])
        base = {"baseline": baseline, "oracle": oracle + baseline[6:],  # a negative's oracle is its baseline
                "timing": {"images": len(images) * len(seeds), "seconds": seconds}}
    time_results = {}
    for lam in lams:
        edit = problem.solve(lam)
        start = time.perf_counter()
        result = generate(pipe, prompts, seeds, edit=edit, original=False, **kwargs)
        seconds = time.perf_counter() - start
        time_results[_lam_key(lam)] = {
            "time": _probabilities(classifier, result.edited, prompts, destinations),
            "timing": {"images": len(prompts) * len(seeds), "seconds": seconds},
        }
    return base, time_results


def _units(preset: EditPreset, config: EvalConfig) -> list[tuple[int, tuple[int, ...]]]:
    n_entries = len(preset.entries) if config.limit is None else min(config.limit, len(preset.entries))
    blocks = [config.seeds[i : i + config.seeds_per_unit] for i in range(0, len(config.seeds), config.seeds_per_unit)]
    return [(e, tuple(block)) for e in range(n_entries) for block in blocks]


def _check_out_dir(out: Path, config: EvalConfig) -> None:
    check_out_dir(out, config.identity(), "units")


def evaluate(config: EvalConfig, out: str | Path, pipe=None, classifier=None, process_index: int = 0,
             num_processes: int = 1, device=None, progress: bool = True) -> None:
    """Runs this process's share of the units that are not done yet; see the module docstring."""
    from .edit import prepare_edit
    from .models import check_scheduler, generation_defaults, load_pipeline, with_scheduler

    out = Path(out)
    check_scheduler(config.scheduler)  # before any model is loaded
    preset = load_preset(config.preset)
    if not isinstance(preset, EditPreset):
        raise ValueError(f"preset {config.preset!r} is a {type(preset).__name__}; evaluate needs an edit preset")
    for lam in config.lams:
        check_lam(lam)
    units = _units(preset, config)[process_index::num_processes]
    todo = []
    for entry_index, seeds in units:
        uid = unit_id(entry_index, seeds)
        missing = [lam for lam in config.lams if not (out / "units" / f"{uid}_lam{_lam_key(lam)}.json").exists()]
        if missing or not (out / "units" / f"{uid}_base.json").exists():
            todo.append((entry_index, seeds, missing))
    if not todo:
        return
    if pipe is None:
        pipe = load_pipeline(config.model, device=device)
    pipe = with_scheduler(pipe, config.scheduler)
    if classifier is None:
        from .classifiers import load_classifier

        classifier = load_classifier(config.classifier, device=device)
    defaults = generation_defaults(pipe)
    config = EvalConfig(**{**asdict(config), "steps": config.steps or defaults.steps,
                           "guidance": defaults.guidance if config.guidance is None else config.guidance})
    problems = {}
    bar = tqdm(todo, desc=f"units (process {process_index + 1}/{num_processes})", disable=not progress)
    for entry_index, seeds, missing in bar:
        entry = preset.entries[entry_index]
        uid = unit_id(entry_index, seeds)
        bar.set_postfix_str(entry.source[:40])
        if entry_index not in problems:  # one text encoding + eigendecomposition per entry serves every λ
            problems = {entry_index: prepare_edit(pipe, entry.source, entry.destination, config.edit_keys, config.augment)}
        base_path = out / "units" / f"{uid}_base.json"
        base = json.loads(base_path.read_text()) if base_path.exists() else None
        base, time_results = run_unit(pipe, classifier, problems[entry_index], entry, seeds, missing, config, base)
        if not base_path.exists():
            write_json(base_path, {"entry": entry_index, "seeds": list(seeds), **base})
        for lam_key, result in time_results.items():
            write_json(out / "units" / f"{uid}_lam{lam_key}.json", {"entry": entry_index, "seeds": list(seeds),
                                                                     "lam": float(lam_key), **result})


def _hits(rows: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hits = hits_from_probabilities(rows)  # (11, S)
    return hits[0], hits[1:6], hits[6:11]


def merge_results(config: EvalConfig, out: str | Path, oracle_filter: float | None = None) -> dict:
    """Reads every unit file and computes the scores per condition (and λ), overall and per entry."""
    out = Path(out)
    preset = load_preset(config.preset)
    units = _units(preset, config)
    entries = sorted({e for e, _ in units})
    columns = {"baseline": "baseline", "oracle": "oracle", **{f"time@{_lam_key(l)}": l for l in config.lams}}
    # probabilities[column][entry] = (11, S) over all seeds, in seed order
    probabilities = {c: {e: [] for e in entries} for c in columns}
    for entry_index, seeds in units:
        uid = unit_id(entry_index, seeds)
        base_path = out / "units" / f"{uid}_base.json"
        if not base_path.exists():
            raise FileNotFoundError(f"unit {uid} is not done ({base_path} missing): run the evaluation first")
        base = json.loads(base_path.read_text())
        probabilities["baseline"][entry_index].append(np.asarray(base["baseline"]))
        probabilities["oracle"][entry_index].append(np.asarray(base["oracle"]))
        for column, lam in columns.items():
            if column.startswith("time@"):
                path = out / "units" / f"{uid}_lam{_lam_key(lam)}.json"
                if not path.exists():
                    raise FileNotFoundError(f"unit {uid} at λ = {lam} is not done ({path} missing)")
                probabilities[column][entry_index].append(np.asarray(json.loads(path.read_text())["time"]))
    stacked = {c: {e: np.concatenate(v, axis=1) for e, v in per_entry.items()} for c, per_entry in probabilities.items()}

    kept = entries
    if oracle_filter is not None:  # App. D: keep entries whose oracle renders the destinations
        kept = [e for e in entries if hits_from_probabilities(stacked["oracle"][e][:6]).mean() >= oracle_filter]

    def scores_of(column: str, selection: list[int]) -> Scores:
        parts = [_hits(stacked[column][e]) for e in selection]
        return score(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]), np.stack([p[2] for p in parts]))

    report = {
        "config": asdict(config),
        "oracle_filter": oracle_filter,
        "entries_kept": len(kept),
        "entries_total": len(entries),
        "overall": {c: scores_of(c, kept).as_dict() for c in columns} if kept else {},
        "per_entry": [
            {"index": e, "source": preset.entries[e].source, "destination": preset.entries[e].destination,
             "kept": e in kept, **{c: scores_of(c, [e]).as_dict() for c in columns}}
            for e in entries
        ],
    }
    return report


def throughput(out: str | Path) -> dict:
    """Images generated and generation seconds summed over the unit files of `out`, and images per second (per
    process: with N processes the run's wall-clock rate is up to N times higher)."""
    images = seconds = 0.0
    for path in sorted((Path(out) / "units").glob("*.json")):
        timing = json.loads(path.read_text()).get("timing")
        if timing:
            images += timing["images"]
            seconds += timing["seconds"]
    return {"images": int(images), "seconds": seconds, "images_per_second": images / seconds if seconds else None}


def _fmt(value) -> str:
    return "—" if value is None else f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"


def markdown_table(report: dict) -> str:
    columns = list(report["overall"])
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for metric in ("efficacy", "generality", "specificity"):
        lines.append(f"| {metric} | " + " | ".join(_fmt(report["overall"][c][metric]) for c in columns) + " |")
    lines += ["", f"{report['entries_kept']} of {report['entries_total']} entries"
              + (f" (oracle filter {report['oracle_filter']})" if report["oracle_filter"] is not None else "")
              + f", seeds {len(report['config']['seeds'])}, classifier {report['config']['classifier']}, "
              f"model {report['config']['model']}"]
    lines += ["", "| entry | " + " | ".join(f"{c} E / G / S" for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for row in report["per_entry"]:
        cells = [" / ".join("—" if row[c][m] is None else f"{100 * row[c][m]['mean']:.0f}"
                            for m in ("efficacy", "generality", "specificity")) for c in columns]
        lines.append(f"| {row['source']} → {row['destination']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_plots(report: dict, out: Path) -> list[Path]:
    """Per-entry bars of the first TIME column and, with several λ, the metrics against λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    metrics = ("efficacy", "generality", "specificity")
    time_columns = [c for c in report["overall"] if c.startswith("time@")]
    if not time_columns:
        return paths
    rows = report["per_entry"]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows)), 4))
    width = 0.27
    x = np.arange(len(rows))
    for k, metric in enumerate(metrics):
        values = [100 * (r[time_columns[0]][metric] or {"mean": 0})["mean"] for r in rows]
        ax.bar(x + (k - 1) * width, values, width, label=metric)
    ax.set_xticks(x, [r["source"][:20] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("%")
    ax.set_title(f"TIME per entry ({time_columns[0]})")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "per_entry.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if len(time_columns) > 1:
        lams = [float(c.split("@", 1)[1]) for c in time_columns]
        fig, ax = plt.subplots(figsize=(6, 4))
        for metric in metrics:
            means = np.array([100 * report["overall"][c][metric]["mean"] for c in time_columns])
            stds = np.array([100 * report["overall"][c][metric]["std"] for c in time_columns])
            ax.plot(lams, means, marker="o", label=metric)
            ax.fill_between(lams, means - stds, means + stds, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("λ")
        ax.set_ylabel("%")
        ax.legend()
        fig.tight_layout()
        paths.append(out / "lambda_sweep.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m time_core.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, help="preset name in presets/ or a JSON path (an edit preset)")
    parser.add_argument("--model", default="toy", help="'toy', a hub id or a local folder")
    parser.add_argument("--classifier", default=None,
                        help="'colour' (Shapes world), 'toy', 'ViT-B-32' (paper) or 'open_clip:MODEL:PRETRAINED'; "
                             "defaults to 'colour' for the toy model and 'ViT-B-32' otherwise")
    parser.add_argument("--seeds", type=int, default=24, help="number of seeds (0 .. N-1); the paper uses 24")
    parser.add_argument("--lam", type=float, nargs="+", default=[0.1], help="one or more λ values")
    parser.add_argument("--values-only", action="store_true", help="edit only to_v (default: to_k and to_v)")
    parser.add_argument("--no-augment", action="store_true", help="no prompt augmentations")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--scheduler", default="default",
                        help="sampler: 'default' (the model's own), 'dpm' (DPM-Solver++, fewer steps), 'ddim', 'euler', "
                             "'unipc'")
    parser.add_argument("--seeds-per-unit", type=int, default=4, help="seeds generated together in one work unit")
    parser.add_argument("--limit", type=int, default=None, help="only the first N entries")
    parser.add_argument("--oracle-filter", type=float, default=None,
                        help="keep entries whose oracle hit rate (source and positive destinations) is >= this")
    parser.add_argument("--out", required=True, help="output folder (re-running with it resumes)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict | None:
    from accelerate import PartialState

    args = parse_args(argv)
    if args.seeds < 1 or args.seeds_per_unit < 1:
        raise SystemExit("--seeds and --seeds-per-unit must be >= 1")
    classifier = args.classifier or ("colour" if args.model == "toy" else "ViT-B-32")
    config = EvalConfig(
        preset=args.preset, model=args.model, classifier=classifier, seeds=tuple(range(args.seeds)),
        lams=tuple(args.lam), edit_keys=not args.values_only, augment=not args.no_augment, steps=args.steps,
        guidance=args.guidance, scheduler=args.scheduler, seeds_per_unit=args.seeds_per_unit, limit=args.limit,
    )
    import torch

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo across CPU processes when there is no GPU
    out = Path(args.out)
    if state.is_main_process:
        _check_out_dir(out, config)
    state.wait_for_everyone()
    start = time.perf_counter()
    evaluate(config, out, process_index=state.process_index, num_processes=state.num_processes, device=state.device)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    report = merge_results(config, out, args.oracle_filter)
    speed = throughput(out)
    write_json(out / "results.json", {**report, "throughput": speed})
    table = markdown_table(report)
    (out / "results.md").write_text(table)
    plots = write_plots(report, out)
    print(table)
    if speed["images_per_second"]:
        print(f"generation: {speed['images']} images in {speed['seconds']:.0f} s of generation "
              f"({speed['images_per_second']:.2f} images/s per process)")
    print(f"written: {out / 'results.json'}, {out / 'results.md'}" + "".join(f", {p}" for p in plots)
          + f" ({time.perf_counter() - start:.0f} s)")
    return report


if __name__ == "__main__":
    main()
