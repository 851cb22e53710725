"""Results folders of the evaluation and debiasing commands: the configuration they belong to, atomic JSON files."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..methods import DEFAULT_METHOD

__all__ = ["RunConfig", "check_out_dir", "write_json", "write_report"]


@dataclass(frozen=True)
class RunConfig:
    """What both commands' configurations hold: the preset, the model, the classifier, the seeds and the edit.

    Attributes:
        preset (`str`): a shipped preset name or a JSON path.
        model (`str`): `"toy"`, a hub id or a local folder.
        classifier (`str`): a `time_core.evaluation.classifiers.load_classifier` name.
        seeds (`tuple[int, ...]`): the seeds of every prompt.
        edit_keys (`bool`), augment (`bool`): the edit's options.
        steps (`int`, *optional*), guidance (`float`, *optional*): `None` is the model's default.
        limit (`int`, *optional*): only the first entries.
        method (`str`): the editing method.
        preserve (`str`): `""` (no preservation) or `"auto"` (automatic preservation, `time_core.methods.preservation`).
    """

    preset: str
    model: str = "toy"
    classifier: str = "colour"
    seeds: tuple[int, ...] = tuple(range(8))
    edit_keys: bool = True
    augment: bool = True
    steps: int | None = None
    guidance: float | None = None
    limit: int | None = None
    method: str = DEFAULT_METHOD
    preserve: str = ""
    # Fields that do not change stored results (they select which results to compute or report).
    not_identity: ClassVar[tuple[str, ...]] = ("limit",)

    def identity(self) -> dict:
        """What must match for stored results to be reused. The method and the preservation are part of it unless
        they are the defaults, so folders written before they were selectable still resume."""
        data = asdict(self)
        for key in self.not_identity:
            data.pop(key)
        if data["method"] == DEFAULT_METHOD:
            data.pop("method")
        if not data["preserve"]:
            data.pop("preserve")
        return data


def write_json(path: Path, data: Any) -> None:
    """Writes atomically (temporary file + rename), so an interrupted run never leaves a half-written file."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def write_report(out: Path, report: dict, table: str, start: float) -> None:
    """Writes `results.json` (the report) and `results.md` (its markdown table) in `out`, and prints the table, the
    paths and the seconds since `start` (a `time.perf_counter()` value)."""
    import time

    write_json(out / "results.json", report)
    (out / "results.md").write_text(table)
    print(table)
    print(f"written: {out / 'results.json'}, {out / 'results.md'} ({time.perf_counter() - start:.0f} s)")


def check_out_dir(out: Path, identity: dict, subdir: str) -> None:
    """Prepares a results folder: creates `out/subdir` and stores `identity` in `out/config.json`, or checks that the
    stored one is the same, so that results of different configurations never mix.

    Args:
        out (`Path`): The results folder.
        identity (`dict`): What determines the results (JSON-serialisable).
        subdir (`str`): The folder of the per-unit files.

    Raises:
        `ValueError`: When `out` holds results of another configuration; the message names the keys that differ.
    """
    (out / subdir).mkdir(parents=True, exist_ok=True)
    stored, mine = out / "config.json", json.loads(json.dumps(identity))
    if stored.exists():
        previous = json.loads(stored.read_text())
        if previous != mine:
            diff = sorted(k for k in set(previous) | set(mine) if previous.get(k) != mine.get(k))
            raise ValueError(f"{out} holds results of a different configuration (differs in {diff}); use another --out")
    else:
        write_json(stored, mine)
