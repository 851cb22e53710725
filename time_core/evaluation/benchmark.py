"""The paper's evaluation protocol (Sec. 5.4-5.5, App. C-D) on any preset, model and classifier, resumable and sharded.

For each entry of an edit preset and each seed, three conditions are generated from the same initial latents:

- **baseline**: the unedited model on the source prompt, the 5 positives and the 5 negatives;
- **oracle**: the unedited model on the destinations of the source and the positives, and on the negatives' own
  prompts (the oracle of a negative is its baseline);
- **TIME** (or other registered methods, `--method time diff-quickfix`): the edited model, one edit per method and λ
  (one text encoding and factorisation per entry and method serves every λ), on the 11 prompts.

Every image is classified as its prompt vs its destination (`time_core.evaluation.classifiers`), and efficacy,
generality and specificity are reported as mean ± std over seeds, overall, per prompt type (for presets whose prompts
carry a `type`, such as the hard Shapes benchmark) and per entry (`time_core.evaluation.metrics`).

Work is split into units `(entry, block of seeds)` with a fixed batch composition, each written to its own JSON file
as soon as it is done (atomically): the baseline and oracle once, the edited images once per method and λ (the
column `METHOD@λ` of the report; TIME's files keep the names they had before methods could share a folder), so a
re-run skips finished units, Ctrl-C loses nothing, and the merged numbers are identical for any number of processes.
With `accelerate launch -m time_core.evaluate ...` every process takes every `num_processes`-th unit on its own
device; the main process merges and writes the report.

    python -m time_core.evaluate --preset shapes --model toy --classifier colour --seeds 8 --out runs/shapes
    accelerate launch -m time_core.evaluate --preset timed_test_filtered_sd14 --model CompVis/stable-diffusion-v1-4 \\
        --classifier ViT-B-32 --seeds 24 --lam 0.1 --out runs/timed
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from ..generate import generate
from ..methods import DEFAULT_METHOD, get_method, prepare_edit
from ..models import check_scheduler
from ..presets import EditEntry, EditPreset, load_preset
from ..prompts import is_auto_preserve
from ..solver import AUTO_LAM, check_lam, is_auto
from .metrics import Scores, hits_from_probabilities, score, scores_by_type
from .results import RunConfig, check_out_dir, read_json, write_json

__all__ = [
    "CONDITIONS", "EvalConfig", "check_eval_dir", "column_name", "evaluate", "merge_results", "throughput", "unit_id",
]

CONDITIONS = ("baseline", "oracle", "time")
BASE_KEYS, EDITED_KEYS = ("baseline", "oracle"), ("time",)  # what a unit file must hold to count as done


@dataclass(frozen=True)
class EvalConfig(RunConfig):
    """Everything that determines the numbers of an evaluation (stored in `OUT/config.json`; λ values and methods may
    be added later). See `RunConfig` for the shared fields; `method` and `lams` are those `evaluate` runs unless it is
    given several methods."""

    lams: tuple[float, ...] = (0.1,)
    scheduler: str = "default"
    seeds_per_unit: int = 4
    extra: dict = field(default_factory=dict)
    not_identity: ClassVar[tuple[str, ...]] = ("lams", "limit", "extra")

    def check(self) -> None:
        """`RunConfig.check`, and the λ values, the seeds per unit and the sampler."""
        super().check()
        if not self.lams:
            raise ValueError("lams is empty: give at least one λ")
        for lam in self.lams:
            if not is_auto(lam):
                check_lam(lam)
        if isinstance(self.seeds_per_unit, bool) or not isinstance(self.seeds_per_unit, int) or self.seeds_per_unit < 1:
            raise ValueError(f"seeds_per_unit must be an integer >= 1, got {self.seeds_per_unit!r}")
        check_scheduler(self.scheduler)

    def identity(self) -> dict:
        """`RunConfig.identity` without the method: each method's results have their own unit files, so several
        methods share one folder (a folder that recorded a method, written before, does not resume)."""
        data = super().identity()
        data.pop("method", None)
        return data


def unit_id(entry: int, seeds: Sequence[int]) -> str:
    return f"e{entry:04d}_s{seeds[0]}-{seeds[-1]}"


def _lam_key(lam: float | str) -> str:
    return AUTO_LAM if is_auto(lam) else repr(float(lam))


def column_name(method: str, lam: float | str) -> str:
    """The report's column of a method at one λ: `"time@0.1"`, `"diff-quickfix@0.01"`, `"time@auto"` (the knob-free
    edit: λ chosen per entry)."""
    return f"{method}@{_lam_key(lam)}"


def _edited_file(out: Path, uid: str, method: str, lam: float | str) -> Path:
    """One unit's edited results for a method and λ (TIME's keep their name from before methods shared a folder)."""
    infix = "" if method == DEFAULT_METHOD else f"_{method}"
    return out / "units" / f"{uid}{infix}_lam{_lam_key(lam)}.json"


def _probabilities(classifier, images_by_prompt, prompts, destinations) -> list[list[float]]:
    """`[prompt][seed]` images → `[prompt][seed]` P(destination)."""
    flat = [img for row in images_by_prompt for img in row]
    n_seeds = len(images_by_prompt[0])
    p = classifier.prob_destination(
        flat, [x for x in prompts for _ in range(n_seeds)], [x for x in destinations for _ in range(n_seeds)]
    )
    return np.asarray(p, dtype=np.float64).reshape(len(prompts), n_seeds).tolist()


def _baseline_and_oracle(pipe, classifier, entry: EditEntry, seeds: Sequence[int], kwargs: dict) -> dict:
    """The unedited model on the entry's prompts and on the destinations of the source and the positives."""
    prompts, destinations = entry.prompts()
    edited = entry.num_edited  # the source and the positives: the prompts that should follow the edit
    start = time.perf_counter()
    images = generate(pipe, prompts + destinations[:edited], seeds, **kwargs).original  # [P + edited][S]
    seconds = time.perf_counter() - start
    baseline = _probabilities(classifier, images[: len(prompts)], prompts, destinations)
    oracle = _probabilities(classifier, images[len(prompts) :], prompts[:edited], destinations[:edited])
    return {"baseline": baseline, "oracle": oracle + baseline[edited:],  # a negative's oracle is its baseline
            "timing": {"images": len(images) * len(seeds), "seconds": seconds}}


def run_unit(pipe, classifier, problem, entry: EditEntry, seeds: Sequence[int], lams: Sequence[float], config: EvalConfig,
             base: dict | None, prepare_seconds: float = 0.0) -> tuple[dict, dict[str, dict]]:
    """Generates and classifies one unit; `base` (baseline + oracle) is reused when already stored. Each λ's timing
    holds `edit_seconds`, the time spent computing its edit (`problem.solve`, plus `prepare_seconds` for the first λ:
    the time the problem took to prepare, when it was prepared for this unit)."""
    prompts, destinations = entry.prompts()
    kwargs = dict(num_inference_steps=config.steps, guidance_scale=config.guidance, progress=False)
    if base is None:
        base = _baseline_and_oracle(pipe, classifier, entry, seeds, kwargs)
    edited_results = {}
    for lam in lams:
        start = time.perf_counter()
        edit = problem.solve(lam)
        edit_seconds, prepare_seconds = time.perf_counter() - start + prepare_seconds, 0.0
        start = time.perf_counter()
        result = generate(pipe, prompts, seeds, edit=edit, original=False, **kwargs)
        seconds = time.perf_counter() - start
        edited_results[_lam_key(lam)] = {
            "time": _probabilities(classifier, result.edited, prompts, destinations),
            "lam_used": float(edit.lam),
            "timing": {"images": len(prompts) * len(seeds), "seconds": seconds, "edit_seconds": edit_seconds},
        }
    return base, edited_results


def _units(preset: EditPreset, config: EvalConfig) -> list[tuple[int, tuple[int, ...]]]:
    n_entries = len(preset.entries) if config.limit is None else min(config.limit, len(preset.entries))
    blocks = [config.seeds[i : i + config.seeds_per_unit] for i in range(0, len(config.seeds), config.seeds_per_unit)]
    return [(e, tuple(block)) for e in range(n_entries) for block in blocks]


def check_eval_dir(out: Path, config: EvalConfig) -> None:
    """Prepares `out` for `config` (see `time_core.evaluation.results.check_out_dir`)."""
    check_out_dir(out, config.identity(), "units")


def _edit_preset(config: EvalConfig) -> EditPreset:
    preset = load_preset(config.preset)
    if not isinstance(preset, EditPreset):
        raise ValueError(f"preset {config.preset!r} is a {type(preset).__name__}; evaluate needs an edit preset")
    return preset


def _todo(units, out: Path, methods: dict[str, tuple[float, ...]]) -> list[tuple[int, tuple[int, ...], dict]]:
    """The units of `units` with missing files: `(entry, seeds, {method: λ values still to run})`."""
    todo = []
    for entry_index, seeds in units:
        uid = unit_id(entry_index, seeds)
        missing = {method: [lam for lam in lams if read_json(_edited_file(out, uid, method, lam), EDITED_KEYS) is None]
                   for method, lams in methods.items()}
        if any(missing.values()) or read_json(out / "units" / f"{uid}_base.json", BASE_KEYS) is None:
            todo.append((entry_index, seeds, missing))
    return todo


def _loaded(config: EvalConfig, pipe, classifier, device) -> tuple:
    """The pipeline (with the configured sampler), the classifier, and `config` with the model's default settings."""
    from ..models import generation_defaults, load_pipeline, with_scheduler
    from .classifiers import load_classifier

    pipe = with_scheduler(pipe if pipe is not None else load_pipeline(config.model, device=device), config.scheduler)
    classifier = classifier if classifier is not None else load_classifier(config.classifier, device=device)
    defaults = generation_defaults(pipe)
    config = replace(config, steps=config.steps or defaults.steps,
                     guidance=defaults.guidance if config.guidance is None else config.guidance)
    return pipe, classifier, config


def _methods(config: EvalConfig, methods: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, ...]]:
    """`{method: λ values}`, checked: `methods`, or the config's own method and λ values."""
    methods = {config.method: config.lams} if methods is None else methods
    checked = {}
    for name, lams in methods.items():
        get_method(name)
        checked[name] = tuple(AUTO_LAM if is_auto(lam) else check_lam(lam) for lam in lams)
        if any(is_auto(lam) for lam in lams) and not is_auto_preserve(config.preserve or ()):
            raise ValueError("λ 'auto' (the knob-free edit) needs --preserve auto")
        if any(is_auto(lam) for lam in lams) and "auto_lam" not in get_method(name).features:
            raise ValueError(f"λ 'auto' is not available for {name}")
    if not checked:
        raise ValueError("no method to evaluate")
    return checked


def evaluate(config: EvalConfig, out: str | Path, pipe=None, classifier=None, process_index: int = 0,
             num_processes: int = 1, device=None, progress: bool = True,
             prepare: Callable[[object, EditEntry], object] | None = None,
             methods: Mapping[str, Sequence[float]] | None = None) -> None:
    """Runs this process's share of the units that are not done yet; see the module docstring.

    `prepare(pipe, entry)` gives an entry's λ-independent problem (default: `prepare_edit` with the config's method
    and flags); `time_core.evaluation.bulk` passes one multi-edit for every entry. `methods` (`{method: λ values}`)
    evaluates several methods at once, each with its own λ values (default: the config's method and λ values); the
    baseline and oracle of a unit are generated once for all of them."""
    out = Path(out)
    check_scheduler(config.scheduler)  # before any model is loaded
    methods = _methods(config, methods)
    if prepare is not None and list(methods) != [config.method]:
        raise ValueError("a prepare hook serves the config's method alone: evaluate one method with it")
    preset = _edit_preset(config)
    todo = _todo(_units(preset, config)[process_index::num_processes], out, methods)
    if not todo:
        return
    pipe, classifier, config = _loaded(config, pipe, classifier, device)
    problems: dict[int, dict[str, object]] = {}
    bar = tqdm(todo, desc=f"units (process {process_index + 1}/{num_processes})", disable=not progress)
    for entry_index, seeds, missing in bar:
        entry = preset.entries[entry_index]
        uid = unit_id(entry_index, seeds)
        bar.set_postfix_str(entry.source[:40])
        problems = {entry_index: problems.get(entry_index, {})}  # one entry's problems at a time
        base_path = out / "units" / f"{uid}_base.json"
        base = read_json(base_path, BASE_KEYS)
        for method, lams in missing.items():
            if not lams and base is not None:
                continue
            prepare_seconds = 0.0
            if method not in problems[entry_index]:  # one text encoding + factorisation per entry and method
                start = time.perf_counter()
                problems[entry_index][method] = prepare(pipe, entry) if prepare is not None else prepare_edit(
                    pipe, entry.source, entry.destination, config.edit_keys, config.augment, config.preserve or (),
                    method=method)
                prepare_seconds = time.perf_counter() - start
            base, edited = run_unit(pipe, classifier, problems[entry_index][method], entry, seeds, lams, config, base,
                                    prepare_seconds)
            if read_json(base_path, BASE_KEYS) is None:
                write_json(base_path, {"entry": entry_index, "seeds": list(seeds), **base})
            for lam_key, result in edited.items():
                write_json(_edited_file(out, uid, method, lam_key),
                           {"entry": entry_index, "seeds": list(seeds), "method": method,
                            "lam": lam_key if is_auto(lam_key) else float(lam_key),
                            **result})


def prompt_types(entry: EditEntry) -> tuple[list[str], list[str]]:
    """The type of each positive and negative of an entry; `"positive"` / `"negative"` where the preset gives none."""
    return ([p.type or "positive" for p in entry.positives], [p.type or "negative" for p in entry.negatives])


def _hits(rows: list[list[float]], entry: EditEntry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hits = hits_from_probabilities(rows)  # (1 + P + Q, S)
    return hits[0], hits[1 : entry.num_edited], hits[entry.num_edited :]


def _read_probabilities(config: EvalConfig, out: Path, units, columns: dict) -> dict[str, dict[int, np.ndarray]]:
    """`[column][entry]` → `(1 + P + Q, S)` P(destination) over all seeds, in seed order, from the unit files; `columns`
    maps the edited columns to `(method, λ)`."""
    probabilities = {c: {e: [] for e, _ in units} for c in columns}
    for entry_index, seeds in units:
        uid = unit_id(entry_index, seeds)
        base_path = out / "units" / f"{uid}_base.json"
        base = read_json(base_path, BASE_KEYS)
        if base is None:
            raise FileNotFoundError(f"unit {uid} is not done ({base_path} missing): run the evaluation first")
        probabilities["baseline"][entry_index].append(np.asarray(base["baseline"]))
        probabilities["oracle"][entry_index].append(np.asarray(base["oracle"]))
        for name, edited in columns.items():
            if name not in ("baseline", "oracle"):
                method, lam = edited
                path = _edited_file(out, uid, method, lam)
                edited = read_json(path, EDITED_KEYS)
                if edited is None:
                    raise FileNotFoundError(f"unit {uid} of {method} at λ = {lam} is not done ({path} missing)")
                probabilities[name][entry_index].append(np.asarray(edited["time"]))
    return {c: {e: np.concatenate(v, axis=1) for e, v in per_entry.items()} for c, per_entry in probabilities.items()}


def merge_results(config: EvalConfig, out: str | Path, oracle_filter: float | None = None,
                  methods: Mapping[str, Sequence[float]] | None = None) -> dict:
    """Reads every unit file and computes the scores per condition (and method and λ: the columns `METHOD@λ`),
    overall and per entry. `methods` (`{method: λ values}`) defaults to the config's method and λ values."""
    out = Path(out)
    preset = load_preset(config.preset)
    units = _units(preset, config)
    entries = sorted({e for e, _ in units})
    methods = _methods(config, methods)
    columns = {"baseline": "baseline", "oracle": "oracle",
               **{column_name(m, lam): (m, lam) for m, lams in methods.items() for lam in lams}}
    stacked = _read_probabilities(config, out, units, columns)

    kept = entries
    if oracle_filter is not None:  # App. D: keep entries whose oracle renders the destinations
        kept = [e for e in entries
                if hits_from_probabilities(stacked["oracle"][e][: preset.entries[e].num_edited]).mean() >= oracle_filter]

    def scores_of(column: str, selection: list[int]) -> Scores:
        parts = [_hits(stacked[column][e], preset.entries[e]) for e in selection]
        return score(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]), np.stack([p[2] for p in parts]))

    def by_type(column: str, selection: list[int]) -> dict:
        parts = [_hits(stacked[column][e], preset.entries[e]) for e in selection]
        types = [prompt_types(preset.entries[e]) for e in selection]
        return scores_by_type(np.stack([p[1] for p in parts]), [t[0] for t in types],
                              np.stack([p[2] for p in parts]), [t[1] for t in types])

    return {
        "config": asdict(config),
        "methods": {m: list(lams) for m, lams in methods.items()},
        "oracle_filter": oracle_filter,
        "entries_kept": len(kept),
        "entries_total": len(entries),
        "overall": {c: scores_of(c, kept).as_dict() for c in columns} if kept else {},
        "by_type": {c: by_type(c, kept) for c in columns} if kept else {},
        "per_entry": [
            {"index": e, "source": preset.entries[e].source, "destination": preset.entries[e].destination,
             "kept": e in kept, **{c: scores_of(c, [e]).as_dict() for c in columns}}
            for e in entries
        ],
    }


def specificity_without(config: EvalConfig, out: str | Path, excluded: set[tuple[int, int]],
                        methods: Mapping[str, Sequence[float]] | None = None) -> dict[str, dict]:
    """Specificity per column over the negatives but the `(entry, negative)` pairs of `excluded`, mean ± std over
    seeds of the share of kept images (as `merge_results` computes it over all of them)."""
    out = Path(out)
    preset = load_preset(config.preset)
    units = _units(preset, config)
    methods = _methods(config, methods)
    columns = {"baseline": "baseline", "oracle": "oracle",
               **{column_name(m, lam): (m, lam) for m, lams in methods.items() for lam in lams}}
    stacked = _read_probabilities(config, out, units, columns)
    result = {}
    for column in columns:
        rows = [_hits(stacked[column][e], preset.entries[e])[2][k] for e in sorted(stacked[column])
                for k in range(len(preset.entries[e].negatives)) if (e, k) not in excluded]  # each (S,)
        result[column] = score(negative_hits=np.stack(rows)).as_dict()["specificity"] if rows else None
    return result


def throughput(out: str | Path) -> dict:
    """Images generated and generation seconds summed over the unit files of `out`, images per second (per process:
    with N processes the run's wall-clock rate is up to N times higher), and the seconds spent computing edits."""
    images = seconds = edit_seconds = 0.0
    for path in sorted((Path(out) / "units").glob("*.json")):
        timing = (read_json(path) or {}).get("timing")
        if timing:
            images += timing["images"]
            seconds += timing["seconds"]
            edit_seconds += timing.get("edit_seconds", 0.0)
    return {"images": int(images), "seconds": seconds, "images_per_second": images / seconds if seconds else None,
            "edit_seconds": edit_seconds}
