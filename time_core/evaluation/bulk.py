"""How the evaluation prepares each entry's edit: one edit per entry (the protocol of Sec. 5.5), or one multi-edit of
every entry at once (paper App. F, `--bulk`).

Bulk editing: the entries of a preset (the first `--limit` ones) are edited together in one solve, the pairs of every
entry stacked as in a multi-edit (`compute_edit(pipe, [sources], [destinations])`), after removing every entry whose
source repeats an earlier one (the first is kept; sources are compared case- and space-insensitively), since one
source cannot be mapped to two destinations. Every kept entry is then measured under that single edit with the
usual units, so a bulk run resumes and shards like any evaluation. The kept entries are written to the results
folder as a preset of their own (`preset.json`), which the units and the report read.

    python -m time_core.evaluate --preset shapes --model toy --bulk --seeds 4 --lam 0.1 10 1000 --out runs/bulk
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from ..methods import BaseProblem, EditingMethod
from ..presets import EditEntry, EditPreset, load_preset
from .results import write_json

__all__ = ["BULK_PRESET", "BulkProblem", "bulk_entries", "conflicting_negatives", "entry_problem", "write_bulk_preset"]

BULK_PRESET = "preset.json"  # the kept entries, in the results folder


def _key(source: str) -> str:
    return " ".join(source.lower().split())


def bulk_entries(entries: Sequence[EditEntry]) -> tuple[list[int], list[int]]:
    """The indices of the entries a bulk edit keeps (the first of every source) and of those it removes."""
    seen, kept, removed = set(), [], []
    for index, entry in enumerate(entries):
        (removed if _key(entry.source) in seen else kept).append(index)
        seen.add(_key(entry.source))
    return kept, removed


def _phrase(prompt: str) -> str:
    """A prompt without its leading article ("a circle" → "circle")."""
    words = prompt.split(" ", 1)
    return words[1] if len(words) == 2 and words[0].lower() in ("a", "an", "the") else prompt


def _applied(prompt: str, source: str, destination: str) -> str:
    """`prompt` with every whole occurrence of the source's phrase (or its plain plural) put as the destination's."""
    old, new = _phrase(source), _phrase(destination)
    return re.sub(rf"\b{re.escape(old)}(s?)\b", lambda m: new + m.group(1), prompt, flags=re.IGNORECASE)


def conflicting_negatives(entries: Sequence[EditEntry]) -> set[tuple[int, int]]:
    """`(entry, negative)` indices of the negatives that another entry of a bulk edit turns into their destination
    ("a rectangle" must not become "a orange rectangle" after "a square" → "a orange square", while the same bulk
    edit holds "a rectangle" → "a orange rectangle"): the bulk set asks for them to change, so they measure the set's
    contradiction, not the edit's specificity."""
    conflicts = set()
    for e, entry in enumerate(entries):
        for k, negative in enumerate(entry.negatives):
            if any(_applied(negative.prompt, other.source, other.destination) == negative.destination
                   for o, other in enumerate(entries) if o != e):
                conflicts.add((e, k))
    return conflicts


def _entry_json(entry: EditEntry) -> dict:
    data = asdict(entry)
    for pair in data["positives"] + data["negatives"]:
        if pair.get("type") is None:
            pair.pop("type", None)
    return data


def write_bulk_preset(preset_name: str, limit: int | None, path: Path) -> dict:
    """Writes the entries of a bulk edit (the first `limit` entries of the preset, repeated sources removed) as a
    preset file at `path`.

    Returns:
        `dict`: `{"kept": [...], "removed": [...]}`, indices into the original preset.

    Raises:
        `ValueError`: when the preset is not an edit preset.
    """
    preset = load_preset(preset_name)
    if not isinstance(preset, EditPreset):
        raise ValueError(f"preset {preset_name!r} is a {type(preset).__name__}; --bulk needs an edit preset")
    entries = preset.entries if limit is None else preset.entries[:limit]
    kept, removed = bulk_entries(entries)
    removed_text = "; ".join(f"{entries[i].source} -> {entries[i].destination}" for i in removed) or "none"
    write_json(path, {
        "name": f"{preset.name}_bulk", "model": preset.model, "kind": "edit",
        "description": f"the entries of {preset.name} edited at once (App. F); removed as repeated sources: "
                       f"{removed_text}",
        "entries": [_entry_json(entries[i]) for i in kept],
    })
    return {"kept": kept, "removed": removed}


def entry_problem(method: EditingMethod, edit_keys: bool, augment: bool, preserve: str | Sequence[str] = ()
                  ) -> Callable[[object, EditEntry], BaseProblem]:
    """`prepare(pipe, entry)` for `benchmark.evaluate`: one edit per entry by `method` (e.g. a method with options)."""

    def prepare(pipe, entry: EditEntry) -> BaseProblem:
        return method.prepare(pipe, entry.source, entry.destination, edit_keys, augment, preserve)

    return prepare


class BulkProblem:
    """`prepare(pipe, entry)` for `benchmark.evaluate` that gives every entry the same multi-edit of all `entries`,
    prepared once on first use (one text encoding and one factorisation for the whole run).

    Args:
        entries (`Sequence[EditEntry]`): the entries edited together.
        method (`EditingMethod`): the editing method.
        edit_keys (`bool`), augment (`bool`), preserve: the edit's options.
    """

    def __init__(self, entries: Sequence[EditEntry], method: EditingMethod, edit_keys: bool = True,
                 augment: bool = True, preserve: str | Sequence[str] = ()) -> None:
        if not entries:
            raise ValueError("a bulk edit needs at least one entry")
        self.sources = [e.source for e in entries]
        self.destinations = [e.destination for e in entries]
        self.method, self.edit_keys, self.augment, self.preserve = method, edit_keys, augment, preserve
        self.problem: BaseProblem | None = None

    def __call__(self, pipe, entry: EditEntry | None = None) -> BaseProblem:
        if self.problem is None:
            self.problem = self.method.prepare(pipe, self.sources, self.destinations, self.edit_keys, self.augment,
                                               self.preserve)
        return self.problem

