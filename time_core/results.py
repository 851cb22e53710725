"""Results folders of the evaluation and debiasing commands: atomic JSON files and the configuration they belong to."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["check_out_dir", "write_json"]


def write_json(path: Path, data: Any) -> None:
    """Writes atomically (temporary file + rename), so an interrupted run never leaves a half-written file."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def check_out_dir(out: Path, identity: dict, subdir: str) -> None:
    r"""
    Prepares a results folder: creates `out/subdir` and stores `identity` in `out/config.json`, or checks that the
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
