"""Debiasing as a command (paper Sec. 6, App. H.2): per-entry binary search of λ, then F_p before/after, and TIME Multi.

    python -m time_core.debias --preset timed_professions --model CompVis/stable-diffusion-v1-4 \\
        --classifier ViT-B-32 --seeds 24 --out runs/debias_sd14
    python -m time_core.debias --preset shapes_debias --model toy --seeds 24 --out runs/debias_shapes

For each entry ("a developer" → "a female developer"), F_p is the share of images that the classifier labels
`attributes[0]` ("female", or on the Shapes world the colour read from the pixels); the goal is `F_p = target`
(50%), measured as Δ_p = |F_p − target| / target.

1. **Per entry (TIME)**: F_p of the original model on the validation prompt; binary search of log10 λ on the validation
   prompt until Δ_p < tolerance (`time_core.evaluation.search.iter_search`, one factorisation for every λ); then F_p
   and Δ_p on the test prompts, original and edited.
2. **TIME Multi**: one multi-edit of every entry together with a single λ, searched in the same way on the mean F_p of
   the validation prompts; then F_p and Δ_p on every test prompt.

Every image of a prompt uses the same seeds in every condition. Each entry's result goes to its own JSON file as soon
as it is done, so a re-run skips finished entries; a changed configuration in the same `--out` is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from ..generate import generate
from ..methods import prepare_edit
from ..presets import DebiasEntry, DebiasPreset, load_preset
from ..prompts import as_prompts
from .metrics import attribute_share, delta
from .results import RunConfig, check_out_dir, read_json, write_json
from .search import LOG_LAM_MAX, LOG_LAM_MIN, iter_search, result_of

__all__ = ["DebiasConfig", "ShareMeter", "merge_debias", "run_debias_benchmark"]

# What an entry's file and TIME Multi's file must hold to count as done.
ENTRY_KEYS = ("source", "lam", "converged", "validation_original", "validation_edited", "search", "tests")
MULTI_KEYS = ("lam", "tests")


@dataclass(frozen=True)
class DebiasConfig(RunConfig):
    """Everything that determines the numbers of a debiasing run (stored in `OUT/config.json`). See `RunConfig` for
    the shared fields."""

    seeds: tuple[int, ...] = tuple(range(24))
    target: float = 0.5
    tolerance: float = 0.1
    log_lam_min: float = LOG_LAM_MIN
    log_lam_max: float = LOG_LAM_MAX
    max_iterations: int = 8
    multi: bool = True
    not_identity: ClassVar[tuple[str, ...]] = ("limit", "multi")

    def check(self) -> None:
        """`RunConfig.check`, and the target, the tolerance, the λ range and the number of search steps."""
        super().check()
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"target must lie strictly between 0 and 1, got {self.target}")
        if not 0.0 < self.tolerance < math.inf:
            raise ValueError(f"tolerance must be a finite number > 0, got {self.tolerance}")
        if not -math.inf < self.log_lam_min < self.log_lam_max < math.inf:
            raise ValueError(f"the log10 λ range must be finite with log_lam_min < log_lam_max, got "
                             f"[{self.log_lam_min}, {self.log_lam_max}]")
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) or self.max_iterations < 1:
            raise ValueError(f"max_iterations must be an integer >= 1, got {self.max_iterations!r}")


@dataclass
class ShareMeter:
    """F_p of prompts under an edit (or the original model): generates `seeds` images per prompt and labels them.

    Args:
        pipe: the pipeline (never written).
        classifier (`ColourClassifier` or `ClipClassifier`): labels images with attribute values.
        seeds (`tuple[int, ...]`): one image per seed and prompt.
        steps (`int`), guidance (`float`): denoising steps and guidance scale.
    """

    pipe: Any
    classifier: Any
    seeds: tuple[int, ...]
    steps: int
    guidance: float

    def shares(self, prompts: Sequence[str], entries: Sequence[DebiasEntry], edit=None) -> list[float]:
        """One F_p per prompt; `entries[i]` gives prompt i's attributes and class texts."""
        prompts = as_prompts(prompts)
        if len(prompts) != len(entries):
            raise ValueError(f"got {len(prompts)} prompts but {len(entries)} entries")
        result = generate(self.pipe, prompts, self.seeds, edit=edit, original=edit is None,
                          num_inference_steps=self.steps, guidance_scale=self.guidance, progress=False)
        images = result.original if edit is None else result.edited  # [prompt][seed]
        return [attribute_share(self.classifier.labels(row, entry.classes, entry.attributes), entry.attributes[0])
                for row, entry in zip(images, entries)]


def _search(evaluate: Callable[[float], float], original: float, config: DebiasConfig) -> dict:
    steps = list(iter_search(evaluate, config.target, original, config.log_lam_min, config.log_lam_max,
                             config.max_iterations, config.tolerance))
    result = result_of(steps, config.target, original)
    return {"lam": result.lam, "validation_edited": result.share, "converged": result.converged,
            "search": [{"lam": s.lam, "share": s.share} for s in steps]}


def debias_one(meter: ShareMeter, pipe, entry: DebiasEntry, config: DebiasConfig) -> dict:
    """Step 1 of the module docstring for one entry; returns its JSON record."""
    problem = prepare_edit(pipe, entry.source, entry.destination, config.edit_keys, config.augment,
                           config.preserve or (), method=config.method)
    original = meter.shares([entry.validation], [entry])[0]
    record = {"source": entry.source, "destination": entry.destination, "validation": entry.validation,
              "validation_original": original}
    record.update(_search(lambda lam: meter.shares([entry.validation], [entry], problem.solve(lam))[0],
                          original, config))
    tests = list(entry.tests)
    before = meter.shares(tests, [entry] * len(tests))
    after = before if record["lam"] is None else meter.shares(tests, [entry] * len(tests),
                                                               problem.solve(record["lam"]))
    record["tests"] = [{"prompt": p, "original": b, "edited": a} for p, b, a in zip(tests, before, after)]
    return record


def debias_multi(meter: ShareMeter, pipe, entries: Sequence[DebiasEntry], config: DebiasConfig) -> dict:
    """Step 2 of the module docstring: one multi-edit, one λ for every entry."""
    problem = prepare_edit(pipe, [e.source for e in entries], [e.destination for e in entries], config.edit_keys,
                           config.augment, config.preserve or (), method=config.method)
    validations = [e.validation for e in entries]
    original = float(np.mean(meter.shares(validations, entries)))
    record = {"validation_original": original}
    record.update(_search(lambda lam: float(np.mean(meter.shares(validations, entries, problem.solve(lam)))),
                          original, config))
    edit = None if record["lam"] is None else problem.solve(record["lam"])
    prompts = [p for e in entries for p in e.tests]
    owners = [e for e in entries for _ in e.tests]
    after = [None] * len(prompts) if edit is None else meter.shares(prompts, owners, edit)  # None: no edit helps
    record["tests"] = [{"prompt": p, "edited": a} for p, a in zip(prompts, after)]
    return record


def _entries(config: DebiasConfig) -> list[DebiasEntry]:
    preset = load_preset(config.preset)
    if not isinstance(preset, DebiasPreset):
        raise ValueError(f"preset {config.preset!r} is an edit preset; the debiasing command needs a debias preset "
                         "(e.g. timed_professions or shapes_debias)")
    entries = list(preset.entries)
    return entries if config.limit is None else entries[: config.limit]


def run_debias_benchmark(config: DebiasConfig, out: str | Path, pipe=None, classifier=None,
                         progress: bool = True) -> dict:
    """Runs what is not done yet in `out`, then merges and returns the report (see `merge_debias`).

    Args:
        config (`DebiasConfig`): what to run.
        out (`str` or `Path`): the results folder (a re-run resumes).
        pipe (*optional*): the pipeline; loaded from `config.model` when `None`.
        classifier (*optional*): labels images (`labels(images, classes, attributes)`); loaded from
            `config.classifier` when `None`.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar over the entries.
    """
    from ..models import check_model, generation_defaults, load_pipeline
    from .classifiers import load_classifier

    config.check()
    out = Path(out)
    entries = _entries(config)  # a bad preset fails before any model is loaded
    if pipe is None:
        check_model(config.model)
    check_out_dir(out, config.identity(), "entries", write=False)  # another configuration's folder: before loading
    if classifier is None:
        classifier = load_classifier(config.classifier)
    if pipe is None:
        pipe = load_pipeline(config.model)
    check_out_dir(out, config.identity(), "entries")  # config.json is written once everything is known to work
    defaults = generation_defaults(pipe)
    meter = ShareMeter(pipe, classifier, tuple(config.seeds), config.steps or defaults.steps,
                       defaults.guidance if config.guidance is None else config.guidance)
    bar = tqdm(list(enumerate(entries)), desc="debias entries", disable=not progress)
    for index, entry in bar:
        path = out / "entries" / f"e{index:04d}.json"
        if read_json(path, ENTRY_KEYS) is not None:
            continue
        bar.set_postfix_str(entry.source[:40])
        write_json(path, debias_one(meter, pipe, entry, config))
    multi_path = out / f"multi_{len(entries)}.json"
    if config.multi and len(entries) > 1 and read_json(multi_path, MULTI_KEYS) is None:
        write_json(multi_path, debias_multi(meter, pipe, entries, config))
    return merge_debias(config, out, len(entries))


def merge_debias(config: DebiasConfig, out: str | Path, count: int) -> dict:
    """Reads the entry files of `out` and reports, per entry and on average, F_p and Δ_p on the test prompts for the
    original model, TIME (per-entry λ) and TIME Multi (one λ; present when it was run). As in the paper, F_p pools all
    images of an entry's test prompts (every prompt has the same number of seeds, so it is the mean of the prompts'
    shares) and Δ_p = |F_p − target| / target; the per-prompt shares stay in `OUT/entries/`.
    """
    out = Path(out)
    rows = [read_json(out / "entries" / f"e{i:04d}.json", ENTRY_KEYS) for i in range(count)]
    if None in rows:
        raise FileNotFoundError(f"entry {rows.index(None)} of {out} is not done: run the debiasing first")
    multi = read_json(out / f"multi_{count}.json", MULTI_KEYS)
    target = config.target
    report_rows = []
    for i, row in enumerate(rows):
        original = float(np.mean([t["original"] for t in row["tests"]]))
        edited = float(np.mean([t["edited"] for t in row["tests"]]))
        item = {
            "source": row["source"], "lam": row["lam"], "converged": row["converged"],
            "validation_original": row["validation_original"], "validation_edited": row["validation_edited"],
            "search_steps": len(row["search"]),
            "F_original": original, "F_time": edited,
            "delta_original": delta(original, target), "delta_time": delta(edited, target),
        }
        if multi is not None:
            offset = sum(len(r["tests"]) for r in rows[:i])
            mine = multi["tests"][offset : offset + len(row["tests"])]
            # λ = None: no λ in the range helped, so TIME Multi leaves the model unedited.
            shares = [t["original"] if m["edited"] is None else m["edited"] for t, m in zip(row["tests"], mine)]
            item["F_multi"] = float(np.mean(shares))
            item["delta_multi"] = delta(item["F_multi"], target)
        report_rows.append(item)
    overall = {key: float(np.mean([r[key] for r in report_rows]))
               for key in ("delta_original", "delta_time", "delta_multi", "F_original", "F_time", "F_multi")
               if report_rows and all(key in r for r in report_rows)}
    return {"config": asdict(config), "entries": report_rows, "overall": overall,
            "multi_lam": None if multi is None else multi["lam"]}
