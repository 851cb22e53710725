"""A session's edits: the stack of applied edits (solved together as one multi-edit; its edit files are written and
read by `exports`). Kept in the UI's per-session state, never shared."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..edit import BaseEdit
from ..methods import DEFAULT_METHOD, BaseProblem, get_method, prepare_edit
from ..prompts import AUTO_PRESERVE, check_prompt
from ..solver import check_lam
from .config import DemoConfig
from .exports import PAIRS_FLAG
from .inputs import check_count

__all__ = ["SessionEdits"]


@dataclass(frozen=True)
class SessionEdits:
    """The edits of one session (kept in the UI's per-session state; never shared).

    The stacked pairs and the current pair are solved together as one multi-edit of one method,
    `compute_edit(pipe, [sources], [destinations], ..., method=method)`: the stack holds prompt pairs, so switching
    the method (`with_method`) solves the whole stack with the new one. Every method returns a new object; the old
    one is unchanged.

    Args:
        stack (`tuple[tuple[str, str], ...]`): applied `(source, destination)` pairs, oldest first.
        preserve (`tuple[str, ...]`): prompts to keep as they are (from an uploaded edit file).
        preserve_weight (`float`): their weight.
        edit (`BaseEdit`, *optional*): the edit of the last run (what "download" saves).
        method (`str`, *optional*, defaults to `"time"`): the editing method (a key of `time_core.METHODS`).
        auto_preserve (`bool`, *optional*, defaults to `False`): solve with automatic preservation
            (`preserve="auto"`: the context sets of `time_core.methods.context`) instead of the uploaded `preserve`
            prompts.
    """

    stack: tuple[tuple[str, str], ...] = ()
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    edit: BaseEdit | None = None
    method: str = DEFAULT_METHOD
    auto_preserve: bool = False

    def push(self, tokenizer, source: str, destination: str, max_pairs: int | None = None) -> SessionEdits:
        """Adds a pair to the stack, after checking with `tokenizer` (the pipeline's, or `DemoRuntime.tokenizer`) that
        the session's method takes it (`EditingMethod.check_pair`; raises `PromptError`) and that the stack holds fewer
        than `max_pairs` (raises `DemoInputError`); a repeat is ignored."""
        pair = get_method(self.method).check_pair(tokenizer, source, destination)
        if pair in self.stack:
            return self
        if max_pairs is not None:
            check_count(len(self.stack) + 1, max_pairs, "pairs in the edit stack", PAIRS_FLAG)
        return replace(self, stack=self.stack + (pair,))

    def undo(self) -> SessionEdits:
        """Removes the last stacked pair."""
        return replace(self, stack=self.stack[:-1])

    def reset(self) -> SessionEdits:
        """Forgets every stacked pair, preserved prompt and the last edit (the method and its options stay)."""
        return SessionEdits(method=self.method, auto_preserve=self.auto_preserve)

    def with_method(self, method: str, auto_preserve: bool = False) -> SessionEdits:
        """The same stack solved with another method (a key of `time_core.METHODS`), with or without automatic
        preservation: the stack keeps prompt pairs, so it holds one method at a time, the one of the next run."""
        get_method(method)
        if (method, bool(auto_preserve)) == (self.method, self.auto_preserve):
            return self
        return replace(self, method=method, auto_preserve=bool(auto_preserve))

    def with_edit(self, edit: BaseEdit) -> SessionEdits:
        return replace(self, edit=edit)

    def pairs(self, source: str = "", destination: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The sources and destinations of the multi-edit: the stack plus the current pair.

        An empty current pair is allowed only when the stack is not empty; half a pair raises `PromptError`.
        """
        source, destination = (source or "").strip(), (destination or "").strip()
        pairs = list(self.stack)
        if source or destination or not pairs:
            pair = (check_prompt(source, "source"), check_prompt(destination, "destination"))
            if pair not in pairs:
                pairs.append(pair)
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)

    def check(self, config: DemoConfig, source: str = "", destination: str = "") -> None:
        """Raises `DemoInputError` when the edit of the stack plus the current pair has more pairs, or more preserved
        prompts, than `config` allows (and `PromptError` for half a pair), before anything is computed."""
        sources, _ = self.pairs(source, destination)
        check_count(len(sources), config.max_pairs, "prompt pairs in the edit (stacked and current)", PAIRS_FLAG)
        check_count(len(self.preserve), config.max_preserve, "preserved prompts in the edit")

    def prepare(self, pipe, source: str, destination: str, edit_keys: bool = True,
                augment: bool = True) -> BaseProblem:
        """The λ-independent problem of the stack plus the current pair (one factorisation)."""
        sources, destinations = self.pairs(source, destination)
        preserve = AUTO_PRESERVE if self.auto_preserve else self.preserve
        return prepare_edit(pipe, list(sources), list(destinations), edit_keys=edit_keys, augment=augment,
                            preserve=preserve, preserve_weight=self.preserve_weight, method=self.method)

    def request(self, prompts, settings, edit_keys: bool = True, augment: bool = True):
        """The `EditRequest` of a run of `prompts` (a `PromptSet`: the current pair and its rows) with this stack."""
        from .live import EditRequest

        sources, destinations = self.pairs(prompts.source, prompts.destination)
        return EditRequest(self.method, sources, destinations, bool(edit_keys), bool(augment), tuple(self.preserve),
                           float(self.preserve_weight), bool(self.auto_preserve), tuple(prompts.rows()), settings)

    def build(self, pipe, source: str, destination: str, lam: float, edit_keys: bool = True,
              augment: bool = True) -> BaseEdit:
        """The multi-edit of the stack plus the current pair, for one λ."""
        return self.prepare(pipe, source, destination, edit_keys, augment).solve(check_lam(lam))

    @classmethod
    def from_edit(cls, edit: BaseEdit) -> SessionEdits:
        """The session state after uploading an edit: all pairs but the last are stacked; the last is the current. An
        edit with automatic preservation turns it on (its prompts are derived again, as they were), listed prompts
        are kept with their weight."""
        pairs = tuple(zip(edit.sources, edit.destinations))
        if edit.auto_preserve:
            return cls(stack=pairs[:-1], edit=edit, method=edit.method, auto_preserve=True)
        return cls(stack=pairs[:-1], preserve=tuple(edit.preserve), preserve_weight=edit.preserve_weight, edit=edit,
                   method=edit.method)

    def stack_rows(self) -> list[list[Any]]:
        """The stack as table rows `[number, source, destination]`."""
        return [[i + 1, s, d] for i, (s, d) in enumerate(self.stack)]
