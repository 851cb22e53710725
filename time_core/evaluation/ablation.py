"""The ablation of the paper's App. E (Table 4): which projections to edit, augmentations or not, and λ.

The grid {K+V, V only} × {with, without augmentations} × the `--lam` list is evaluated on one preset (the paper uses
the 8-entry TIMED validation set; on the toy model `shapes_validation`), and every cell reports efficacy, generality,
specificity and the harmonic mean of generality and specificity, the paper's criterion for choosing λ = 0.1.

Each of the four variants is an ordinary evaluation folder under `OUT/variants/` (`kv_aug`, `kv_noaug`, `v_aug`,
`v_noaug`), so the grid resumes and shards like any evaluation. The unedited model's images (baseline and oracle) do
not depend on the variant: they are generated once, by the first variant, and copied to the others.

    python -m time_core.evaluate --preset shapes_validation --model toy --ablation --seeds 4 --lam 0.1 1 10 100 \\
        --out runs/ablation
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from ..files import write_text_atomic
from .benchmark import BASE_KEYS, EvalConfig, check_eval_dir, column_name, evaluate, merge_results
from .results import check_out_dir, read_json, write_json

__all__ = ["VARIANTS", "ablation_configs", "ablation_table", "merge_ablation", "run_ablation", "share_base_units"]

# name → (edit_keys, augment)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "kv_aug": (True, True), "kv_noaug": (True, False), "v_aug": (False, True), "v_noaug": (False, False),
}
METRICS = ("efficacy", "generality", "specificity", "harmonic_mean")


def ablation_configs(config: EvalConfig) -> dict[str, EvalConfig]:
    """The configuration of each variant: `config` with its `edit_keys` and `augment`."""
    return {name: replace(config, edit_keys=keys, augment=augment) for name, (keys, augment) in VARIANTS.items()}


def _identity(config: EvalConfig) -> dict:
    identity = config.identity()
    for key in ("edit_keys", "augment"):
        identity.pop(key)
    return {**identity, "ablation": True}


def share_base_units(source: Path, target: Path) -> int:
    """Copies the baseline + oracle unit files of `source` that `target` lacks (without their timing, so a folder's
    throughput counts only what it generated); returns how many were copied."""
    copied = 0
    for path in sorted((source / "units").glob("*_base.json")):
        destination = target / "units" / path.name
        data = None if destination.exists() else read_json(path, BASE_KEYS)
        if data is not None:  # an unreadable one is set aside and computed again
            data.pop("timing", None)
            write_json(destination, data)
            copied += 1
    return copied


def run_ablation(config: EvalConfig, out: str | Path, state, pipe=None, classifier=None,
                 prepare_for: Callable[[EvalConfig], Callable | None] | None = None, progress: bool = True) -> None:
    """Runs this process's share of every variant's units that are not done yet (variant after variant).

    Args:
        config (`EvalConfig`): the run; its `edit_keys` and `augment` are replaced by each variant's.
        out (`str` or `Path`): the results folder.
        state: `accelerate.PartialState` or anything with `is_main_process`, `process_index`, `num_processes`,
            `device` and `wait_for_everyone()`.
        pipe, classifier: loaded once when not given.
        prepare_for (`Callable`, *optional*): a variant's configuration → its `prepare` for `benchmark.evaluate`.
        progress (`bool`, *optional*, defaults to `True`): show progress bars.
    """
    from ..models import load_pipeline
    from .classifiers import load_classifier

    out = Path(out)
    variants = ablation_configs(config)
    if state.is_main_process:
        check_out_dir(out, _identity(config), "variants")
        for name, variant in variants.items():
            check_eval_dir(out / "variants" / name, variant)
    state.wait_for_everyone()
    pipe = pipe if pipe is not None else load_pipeline(config.model, device=state.device)
    classifier = classifier if classifier is not None else load_classifier(config.classifier, device=state.device)
    first = out / "variants" / next(iter(variants))
    for name, variant in variants.items():
        folder = out / "variants" / name
        if state.is_main_process and folder != first:  # the first variant is complete: its baselines are shared
            share_base_units(first, folder)
        state.wait_for_everyone()
        evaluate(variant, folder, pipe=pipe, classifier=classifier, process_index=state.process_index,
                 num_processes=state.num_processes, device=state.device, progress=progress,
                 prepare=prepare_for(variant) if prepare_for is not None else None)
        state.wait_for_everyone()


def merge_ablation(config: EvalConfig, out: str | Path, oracle_filter: float | None = None) -> dict:
    """Merges every variant (writing each folder's own `results.json`) into the grid: one row per variant and λ,
    after the unedited model's row, with the best harmonic mean marked."""
    from .report import markdown_table

    out = Path(out)
    rows, reports = [], {}
    for name, variant in ablation_configs(config).items():
        folder = out / "variants" / name
        report = reports[name] = merge_results(variant, folder, oracle_filter)
        write_json(folder / "results.json", report)
        write_text_atomic(folder / "results.md", markdown_table(report))
        for lam in variant.lams:
            column = column_name(variant.method, lam)
            rows.append({"variant": name, "edit_keys": variant.edit_keys, "augment": variant.augment,
                         "lam": float(lam), **{m: report["overall"].get(column, {}).get(m) for m in METRICS}})
    first = reports[next(iter(reports))]
    scored = [i for i, r in enumerate(rows) if r["harmonic_mean"] is not None]
    best = max(scored, key=lambda i: rows[i]["harmonic_mean"]["mean"]) if scored else None
    return {
        "config": {**asdict(config), "ablation": True},
        "oracle_filter": oracle_filter,
        "entries_kept": first["entries_kept"],
        "entries_total": first["entries_total"],
        "baseline": {m: first["overall"].get("baseline", {}).get(m) for m in METRICS},
        "rows": rows,
        "best": best,
    }


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"


def ablation_table(report: dict) -> str:
    """The grid as markdown (the best harmonic mean in bold)."""
    lines = ["| edit | augmentations | λ | efficacy | generality | specificity | harmonic mean of G and S |",
             "|---|---|---|---|---|---|---|",
             "| unedited model | | | " + " | ".join(_pct(report["baseline"][m]) for m in METRICS) + " |"]
    for index, row in enumerate(report["rows"]):
        cells = [_pct(row[m]) for m in METRICS]
        if index == report["best"]:
            cells[-1] = f"**{cells[-1]}**"
        lines.append(f"| {'K+V' if row['edit_keys'] else 'V only'} | {'yes' if row['augment'] else 'no'} | "
                     f"{row['lam']:g} | " + " | ".join(cells) + " |")
    config = report["config"]
    lines += ["", f"{report['entries_kept']} of {report['entries_total']} entries of {config['preset']}, "
                  f"seeds {len(config['seeds'])}, classifier {config['classifier']}, model {config['model']}, "
                  f"method {config['method']}"]
    return "\n".join(lines) + "\n"
