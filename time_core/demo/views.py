"""What the demo shows: status lines, tables, the λ-sweep plot and image strip, and the JSON details of a run.

Pure formatting of the runs' updates (`edit_run`, `sweep_run`, `debias_run`); nothing here computes images or scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..evaluation.metrics import Scores, delta
from ..methods import Edit
from .debias_run import DebiasUpdate
from .edit_run import EditUpdate
from .images import ScoredImage
from .inputs import format_lam, lam_text
from .methods import METHOD_LABELS
from .sweep_run import SweepUpdate
from .texts import quote

__all__ = [
    "SCORE_HEADERS",
    "knob_note",
    "debias_found",
    "debias_status",
    "edit_details",
    "edit_status",
    "gallery_items",
    "scores_rows",
    "debias_search_rows",
    "sweep_figure",
    "sweep_rows",
    "sweep_status",
    "sweep_strip",
    "debias_test_rows",
]

SCORE_HEADERS = ("model", "efficacy", "generality", "specificity")
SHOWN_PRESERVED = 3  # preserved prompts named in the status line (the details list them all)


def _preserved(edit) -> str:
    """The status line's preserved prompts: `keeping 8 prompts ("a blue circle", "a yellow circle", "a orange
    circle" +5; weight 0.000233)`."""
    n = len(edit.preserve)
    shown = ", ".join(f'"{quote(p)}"' for p in edit.preserve[:SHOWN_PRESERVED])
    more = f" +{n - SHOWN_PRESERVED}" if n > SHOWN_PRESERVED else ""
    kind = ("derived " if edit.auto_preserve else "") + ("prompts" if n > 1 else "prompt")
    return f"keeping {n} {kind} ({shown}{more}; weight {edit.preserve_weight:.3g})"


def edit_status(update: EditUpdate) -> str:
    """A one-line Markdown summary of an edit run."""
    edit = update.edit
    mode = METHOD_LABELS.get(edit.method, edit.method)
    if isinstance(edit, Edit):
        mode += ", keys + values" if edit.edit_keys else ", values only"
    aug = "augmented" if edit.augment else "not augmented"
    pairs = len(edit.sources)
    what = f'"{quote(edit.sources[-1])}" → "{quote(edit.destinations[-1])}"'
    what += f" with {pairs - 1} stacked pair{'s' if pairs > 2 else ''} (multi-edit)" if pairs > 1 else ""
    total = len(update.original)
    if edit.lam_auto:  # the chosen λ, to 3 digits (the details have it exactly)
        lam = f"**λ = {format_lam(edit.lam)}** (knob-free: chosen for this edit)"
    else:
        lam = f"**λ = {lam_text(edit.lam)}**"
    parts = [lam, what, mode, aug] + ([_preserved(edit)] if edit.preserve else [])
    parts.append(f"originals: {update.cached}/{total} from cache ({update.seconds.get('original', 0.0):.1f} s)")
    if update.stage == "preview":
        shown = sum(image is not None for image in update.edited)
        parts.append(f"edited: {shown}/{total} shown at once ({update.seconds.get('preview', 0.0):.1f} s), "
                     "the rest rendering…")
    elif update.edited is None:
        parts.append("edited: generating…")
    else:
        parts.append(f"edited: {update.seconds.get('edited', 0.0):.1f} s")
    return " · ".join(parts)


def knob_note(update: EditUpdate) -> str:
    """Where the knob-free λ of the shown edit lies (for the line under the λ slider), or "" when there is none."""
    if update.auto_lam is None:
        return ""
    where = "the λ shown" if update.auto_lam == update.edit.lam else f"shown: λ = {lam_text(update.edit.lam)}"
    return (f"knob-free λ for this edit: **{format_lam(update.auto_lam)}** (log10 λ = "
            f"{np.log10(update.auto_lam):.2f}; {where})")


def gallery_items(images: Sequence[ScoredImage]) -> list[tuple[Any, str]]:
    """`(image, caption)` pairs of scored images, for a gallery."""
    return [(im.image, im.caption) for im in images]


def _metric(value) -> str:
    return "—" if value is None else str(value)


def scores_rows(scores: Mapping[str, Scores | None]) -> list[list[str]]:
    """The metrics table (`SCORE_HEADERS`), in percent, mean ± std over seeds; pending rows show "…"."""
    rows = []
    for name in ("original", "edited"):
        s = scores.get(name)
        label = f"{name} model"
        if s is None:
            rows.append([label, "…", "…", "…"])
        else:
            rows.append([label, _metric(s.efficacy), _metric(s.generality), _metric(s.specificity)])
    return rows


def edit_details(update: EditUpdate) -> dict[str, Any]:
    """A JSON-ready summary of a run: the edit, the metrics and every image's P(destination)."""
    edit = update.edit
    images = []
    for k, original in enumerate(update.original):
        item = {"role": original.role, "prompt": original.prompt, "destination": original.destination,
                "seed": original.seed, "p_destination_original": round(original.p_destination, 4)}
        if update.edited is not None and update.edited[k] is not None:
            item["p_destination_edited"] = round(update.edited[k].p_destination, 4)
        images.append(item)
    return {
        "stage": update.stage,
        "edit": {"method": edit.method, "sources": list(edit.sources), "destinations": list(edit.destinations),
                 "lam": edit.lam, "lam_auto": edit.lam_auto, "auto_lam": update.auto_lam,
                 "edit_keys": getattr(edit, "edit_keys", None), "augment": edit.augment,
                 "preserve": list(edit.preserve), "preserve_weight": edit.preserve_weight, "model": edit.model},
        "scores": {k: (None if v is None else v.as_dict()) for k, v in update.scores.items()},
        "seconds": {k: round(v, 3) for k, v in update.seconds.items()},
        "cached_originals": update.cached,
        "images": images,
    }


_METRIC_COLOURS = {"efficacy": "#1f77b4", "generality": "#2ca02c", "specificity": "#d62728"}


def sweep_figure(update: SweepUpdate):
    """Efficacy, generality and specificity of the edited model against λ (log axis), mean ± std over seeds, with the
    original model's values as dashed lines and the knob-free λ of the edit (when it has one) as a dotted line.

    Returns:
        `matplotlib.figure.Figure` (built without pyplot, so no global figure state).
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    lams = [p.lam for p in update.points]
    for name, colour in _METRIC_COLOURS.items():
        original = getattr(update.original_scores, name)
        if original is not None:
            axes.axhline(100 * original.mean, color=colour, linestyle="--", linewidth=1, alpha=0.6)
        values = [getattr(p.scores, name) for p in update.points]
        if not values or values[0] is None:
            continue
        mean = np.array([100 * v.mean for v in values])
        std = np.array([100 * v.std for v in values])
        axes.plot(lams, mean, marker="o", color=colour, label=name)
        axes.fill_between(lams, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
    axes.set_xscale("log")
    low, high = min(update.lams) / 1.5, max(update.lams) * 1.5
    if update.auto_lam is not None:
        axes.axvline(update.auto_lam, color="black", linestyle=":", linewidth=1.5,
                     label=f"knob-free λ = {format_lam(update.auto_lam)}")
        low, high = min(low, update.auto_lam / 1.5), max(high, update.auto_lam * 1.5)
    axes.set_xlim(low, high)
    axes.set_ylim(-3, 103)
    axes.set_xlabel("λ (log scale)")
    axes.set_ylabel("% of images")
    axes.set_title("edited model (solid) vs original model (dashed)", fontsize=10)
    axes.grid(True, which="major", alpha=0.3)
    if update.points or update.auto_lam is not None:
        axes.legend(loc="best", fontsize=9)
    return figure


def sweep_rows(update: SweepUpdate) -> list[list[str]]:
    """The sweep as table rows `[λ, efficacy, generality, specificity]`, the original model first."""
    s = update.original_scores
    rows = [["original (λ = ∞)", _metric(s.efficacy), _metric(s.generality), _metric(s.specificity)]]
    for p in update.points:
        rows.append([format_lam(p.lam), _metric(p.scores.efficacy), _metric(p.scores.generality),
                     _metric(p.scores.specificity)])
    return rows


def sweep_status(update: SweepUpdate) -> str:
    """The sweep's progress line: λ values done, wall time, and the knob-free λ of the edit when it has one."""
    chosen = "" if update.auto_lam is None else f" · knob-free λ for this edit: {format_lam(update.auto_lam)}"
    return f"{len(update.points)}/{len(update.lams)} λ values · {update.seconds:.1f} s{chosen}"


def sweep_strip(update: SweepUpdate, pending: bool = True) -> list[tuple[Any, str]]:
    """The image strip of a sweep (paper Fig. 7), row-major: one row per strip prompt, the original image first, then
    one
    image per λ. Items are `(image, caption)`; with `pending`, λ values not done yet get a grey placeholder, so the
    rows keep their alignment in a grid of `len(update.lams) + 1` columns.
    """
    from PIL import Image

    items = []
    for r, original in enumerate(update.original_strip):
        items.append((original.image, f"original · P={original.p_destination:.2f} · {original.prompt}"))
        for k, lam in enumerate(update.lams):
            if k < len(update.points):
                image = update.points[k].strip[r]
                items.append((image.image, f"λ = {format_lam(lam)} · P={image.p_destination:.2f}"))
            elif pending:
                blank = Image.new("RGB", original.image.size, (236, 236, 240))
                items.append((blank, f"λ = {format_lam(lam)} · pending"))
    return items


def debias_search_rows(update: DebiasUpdate) -> list[list[str]]:
    """`[step, λ, F_p, |F_p − target| / target]` rows, the original model first."""
    rows = [["original", "∞", f"{100 * update.original_share:.0f}%",
             f"{delta(update.original_share, update.target):.2f}"]]
    for s in update.steps:
        rows.append([str(s.iteration), format_lam(s.lam), f"{100 * s.share:.0f}%",
                     f"{delta(s.share, update.target):.2f}" + (" ✓" if s.converged else "")])
    return rows


def debias_test_rows(update: DebiasUpdate) -> list[list[str]]:
    """`[prompt, F_p original, F_p edited]` rows with a mean row."""
    tests = update.tests
    rows = [[t.prompt, f"{100 * t.original:.0f}%", f"{100 * t.edited:.0f}%"] for t in tests]
    if tests:
        n = len(tests)
        rows.append(["mean", f"{100 * sum(t.original for t in tests) / n:.0f}%",
                     f"{100 * sum(t.edited for t in tests) / n:.0f}%"])
    return rows


def debias_found(update: DebiasUpdate) -> tuple[str, str, str] | None:
    """`(source, destination, λ text)` of the TIME edit a search found, for the Edit tab; `None` before one is."""
    if update.result is None or update.result.lam is None:
        return None
    return update.entry.source, update.entry.destination, lam_text(update.result.lam)


def debias_status(update: DebiasUpdate) -> str:
    """A one-line Markdown summary of a debiasing run."""
    attribute = update.entry.attributes[0]
    head = (f"F_p = share of images classified **{attribute}** · target {100 * update.target:.0f}% · "
            f"original (validation): {100 * update.original_share:.0f}%")
    if update.result is None:
        return head + f" · searching λ… ({len(update.steps)} steps)"
    r = update.result
    if r.lam is None and r.converged:
        return head + " · the original model already meets the target: no edit needed"
    if r.lam is None:
        return head + " · no λ in the range brings F_p closer to the target than the original model"
    outcome = "converged" if r.converged else "did not converge; the closest λ is shown"
    return head + f" · **λ = {format_lam(r.lam)}** → {100 * r.share:.0f}% ({outcome}, {len(r.steps)} steps)"
