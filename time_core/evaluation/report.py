"""The reports of the evaluation and debiasing commands: markdown tables and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..methods import DEFAULT_METHOD, METHODS
from ..solver import AUTO_LAM

__all__ = ["debias_table", "markdown_table", "write_plots"]

METRICS = ("efficacy", "generality", "specificity")


def _fmt(value) -> str:
    return "—" if value is None else f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"


def markdown_table(report: dict) -> str:
    """The evaluation report as markdown: the metrics and the harmonic mean of generality and specificity per
    condition, then E / G / S per entry."""
    columns = list(report["overall"])
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for metric in METRICS:
        lines.append(f"| {metric} | " + " | ".join(_fmt(report["overall"][c][metric]) for c in columns) + " |")
    lines.append("| harmonic mean of G and S | "
                 + " | ".join(_fmt(report["overall"][c].get("harmonic_mean")) for c in columns) + " |")
    lines += ["", f"{report['entries_kept']} of {report['entries_total']} entries"
              + (f" (oracle filter {report['oracle_filter']})" if report["oracle_filter"] is not None else "")
              + f", seeds {len(report['config']['seeds'])}, classifier {report['config']['classifier']}, "
              f"model {report['config']['model']}"]
    lines += _type_table(report, columns)
    lines += ["", "| entry | " + " | ".join(f"{c} E / G / S" for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for row in report["per_entry"]:
        cells = [" / ".join("—" if row[c][m] is None else f"{100 * row[c][m]['mean']:.0f}"
                            for m in METRICS) for c in columns]
        lines.append(f"| {row['source']} → {row['destination']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _type_table(report: dict, columns: list[str]) -> list[str]:
    """Generality per positive type and specificity per negative type, one row each (nothing without types)."""
    by_type = report.get("by_type") or {}
    if not by_type:
        return []
    first = by_type[columns[0]]
    lines = ["", "| per type | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for metric in ("generality", "specificity"):
        for kind in first[metric]:
            lines.append(f"| {metric}: {kind} | " + " | ".join(_fmt(by_type[c][metric][kind]) for c in columns) + " |")
    return lines


def write_plots(report: dict, out: Path) -> list[Path]:
    """Per method (columns `METHOD@λ`): per-entry bars of its first column and, with several λ, the metrics against
    λ (`per_entry.png`, `lambda_sweep.png`, `lambda_sweep_types.png` in `out` for TIME; `per_entry_METHOD.png` etc.
    for the other methods)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods: dict[str, list[str]] = {}
    for column in report["overall"]:
        if "@" in column:
            methods.setdefault(column.split("@", 1)[0], []).append(column)
    paths = []
    for method, columns in methods.items():
        suffix = "" if method == DEFAULT_METHOD else f"_{method}"
        paths.append(_per_entry_plot(plt, report, columns[0], out / f"per_entry{suffix}.png"))
        columns = [c for c in columns if not c.endswith(f"@{AUTO_LAM}")]  # the knob-free λ differs per entry
        if len(columns) > 1:
            paths.append(_sweep_plot(plt, report, columns, out / f"lambda_sweep{suffix}.png"))
            if report.get("by_type"):
                paths.append(_type_sweep_plot(plt, report, columns, out / f"lambda_sweep_types{suffix}.png"))
    return paths


def _per_entry_plot(plt, report: dict, column: str, path: Path) -> Path:
    rows = report["per_entry"]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows)), 4))
    width = 0.27
    x = np.arange(len(rows))
    for k, metric in enumerate(METRICS):
        values = [100 * (r[column][metric] or {"mean": 0})["mean"] for r in rows]
        ax.bar(x + (k - 1) * width, values, width, label=metric)
    ax.set_xticks(x, [r["source"][:20] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("%")
    ax.set_title(f"{_label(column.split('@', 1)[0])} per entry ({column})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _sweep_plot(plt, report: dict, columns: list[str], path: Path) -> Path:
    lams = [float(c.split("@", 1)[1]) for c in columns]
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric in METRICS:
        means = np.array([100 * report["overall"][c][metric]["mean"] for c in columns])
        stds = np.array([100 * report["overall"][c][metric]["std"] for c in columns])
        ax.plot(lams, means, marker="o", label=metric)
        ax.fill_between(lams, means - stds, means + stds, alpha=0.2)
    return _save_lambda_figure(plt, fig, ax, path)


def _type_sweep_plot(plt, report: dict, columns: list[str], path: Path) -> Path:
    """Generality per positive type (solid) and specificity per negative type (dashed) against λ."""
    lams = [float(c.split("@", 1)[1]) for c in columns]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for metric, style in (("generality", "-"), ("specificity", "--")):
        for kind in report["by_type"][columns[0]][metric]:
            means = [100 * report["by_type"][c][metric][kind]["mean"] for c in columns]
            ax.plot(lams, means, style, marker="o", markersize=3, label=f"{metric}: {kind}")
    efficacy = [100 * report["overall"][c]["efficacy"]["mean"] for c in columns]
    ax.plot(lams, efficacy, "k:", marker="s", markersize=3, label="efficacy")
    return _save_lambda_figure(plt, fig, ax, path, fontsize=7, loc="lower left")


def _save_lambda_figure(plt, fig, ax, path: Path, **legend) -> Path:
    """Finishes a figure of metrics (%) against a log-scaled λ axis and writes it to `path`."""
    ax.set_xscale("log")
    ax.set_xlabel("λ")
    ax.set_ylabel("%")
    ax.legend(**legend)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _lam(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


def _label(method: str) -> str:
    """A method's name in tables: its `label` when it is registered, else the name the report recorded."""
    return METHODS[method].label if method in METHODS else method


def debias_table(report: dict) -> str:
    """The report as markdown: one row per entry (F_p on the test prompts, Δ_p), then the mean; columns are named
    after the run's method (TIME, or e.g. diff-quickfix)."""
    has_multi = "delta_multi" in report["overall"]
    name = _label(report["config"].get("method", DEFAULT_METHOD))
    head = f"| prompt | λ_p | F_p original | F_p {name} | Δ original | Δ {name} |"
    rule = "|---|---|---|---|---|---|"
    if has_multi:
        head += f" F_p {name} Multi | Δ {name} Multi |"
        rule += "---|---|"
    lines = [head, rule]
    for r in report["entries"]:
        line = (f"| {r['source']} | {_lam(r['lam'])}{'' if r['converged'] else '*'} | {_pct(r['F_original'])} | "
                f"{_pct(r['F_time'])} | {_num(r['delta_original'])} | {_num(r['delta_time'])} |")
        if has_multi:
            line += f" {_pct(r.get('F_multi'))} | {_num(r.get('delta_multi'))} |"
        lines.append(line)
    o = report["overall"]
    line = (f"| **mean** | | {_pct(o.get('F_original'))} | {_pct(o.get('F_time'))} | "
            f"**{_num(o.get('delta_original'))}** | **{_num(o.get('delta_time'))}** |")
    if has_multi:
        line += f" {_pct(o.get('F_multi'))} (λ = {_lam(report['multi_lam'])}) | **{_num(o.get('delta_multi'))}** |"
    lines.append(line)
    if any(not r["converged"] for r in report["entries"]):
        lines += ["", "`*`: the search did not reach the tolerance; the λ closest to the target is used."]
    return "\n".join(lines) + "\n"
