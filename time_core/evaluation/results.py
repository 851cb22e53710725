"""Results folders of the evaluation and debiasing commands: the configuration they belong to, and their files,
written atomically and durably (fsync, rename) and read back with care: a file that cannot be read (truncated by a
crash, emptied by a full disk) is reported by name and set aside, so that its work is done again."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..files import remove_leftovers, write_text_atomic
from ..methods import DEFAULT_METHOD, get_method

__all__ = ["UNREADABLE", "RunConfig", "check_out_dir", "read_json", "write_json", "write_report"]

UNREADABLE = ".unreadable"  # the suffix of a file set aside


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

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raises `ValueError` naming a field that cannot be run (checked when the configuration is made, so before
        anything is loaded or written)."""
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {self.seeds!r}")
        for name in ("steps", "limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.guidance is not None and not 0 <= self.guidance < math.inf:
            raise ValueError(f"guidance must be a finite number >= 0, got {self.guidance!r}")
        get_method(self.method)
        if self.preserve not in ("", "auto"):
            raise ValueError(f"preserve must be '' or 'auto', got {self.preserve!r}")

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
    """Writes atomically and durably (temporary file, fsync, rename), so an interrupted run or a full disk never leaves
    a half-written file."""
    write_text_atomic(path, json.dumps(data, indent=1))


def read_json(path: Path, keys: Sequence[str] = ()) -> Any | None:
    """The JSON object of a results file that holds `keys`; `None` when the file does not exist, or when it cannot be
    read (not JSON, not an object, a key missing): then it is reported on stderr by name and set aside as
    `NAME.unreadable`, so that the work it stood for is done again."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = f"{type(error).__name__}: {error}"
    else:
        missing = [key for key in keys if key not in data] if isinstance(data, dict) else None
        if missing == []:
            return data
        problem = f"no {missing}" if missing else f"a JSON {type(data).__name__}, not an object"
    aside = path.with_name(path.name + UNREADABLE)
    try:
        path.replace(aside)
    except FileNotFoundError:  # another process of the run set it aside first
        return None
    print(f"{path} cannot be read ({problem}); set aside as {aside.name}, its results will be computed again",
          file=sys.stderr)
    return None


def write_report(out: Path, report: dict, table: str, start: float) -> None:
    """Writes `results.json` (the report) and `results.md` (its markdown table) in `out`, and prints the table, the
    paths and the seconds since `start` (a `time.perf_counter()` value)."""
    import time

    write_json(out / "results.json", report)
    write_text_atomic(out / "results.md", table)
    print(table)
    print(f"written: {out / 'results.json'}, {out / 'results.md'} ({time.perf_counter() - start:.0f} s)")


def check_out_dir(out: Path, identity: dict, subdir: str, write: bool = True) -> None:
    """Prepares a results folder: creates `out/subdir` and stores `identity` in `out/config.json`, or checks that the
    stored one is the same, so that results of different configurations never mix. Temporary files that interrupted
    writes left are removed. A `config.json` that cannot be read is set aside and written again when the folder holds
    no results yet, and refused otherwise.

    Args:
        out (`Path`): The results folder.
        identity (`dict`): What determines the results (JSON-serialisable).
        subdir (`str`): The folder of the per-unit files.
        write (`bool`, *optional*, defaults to `True`): create the folder and store `identity`; with `False`, only
            check a stored one (before a model loads, say).

    Raises:
        `ValueError`: When `out` is a file, holds results of another configuration (the message names the keys that
            differ), or holds results beside a `config.json` that cannot be read.
        `OSError`: When `out` cannot be written.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    stored, mine = out / "config.json", json.loads(json.dumps(identity))
    if stored.exists():
        previous = _stored_identity(stored, has_results=any((out / subdir).glob("*.json")))
        if previous is not None and previous != mine:
            diff = sorted(k for k in set(previous) | set(mine) if previous.get(k) != mine.get(k))
            raise ValueError(f"{out} holds results of a different configuration (differs in {diff}); use another --out")
    if not write:
        return
    (out / subdir).mkdir(parents=True, exist_ok=True)
    for folder in (out, out / subdir):
        remove_leftovers(folder)
    if not stored.exists():
        write_json(stored, mine)


def _stored_identity(stored: Path, has_results: bool) -> dict | None:
    """The identity in `config.json`; `None` when it cannot be read and was set aside (the folder holds no results).

    Raises:
        `ValueError`: it cannot be read and the folder holds results, whose configuration is then unknown.
    """
    if not has_results:
        return read_json(stored)
    try:
        previous = json.loads(stored.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = f"{type(error).__name__}: {error}"
    else:
        if isinstance(previous, dict):
            return previous
        problem = f"a JSON {type(previous).__name__}, not an object"
    raise ValueError(f"{stored} cannot be read ({problem}) and the folder holds results of an unknown configuration: "
                     "restore it, or use another --out")
