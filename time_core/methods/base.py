"""The interface of an editing method: prompts in, a λ-independent problem out, one `BaseEdit` per λ.

A method registered in `time_core.methods.registry.METHODS` implements `EditingMethod.prepare`, which encodes and
aligns the prompts and factorises its closed form once; `BaseProblem.solve(lam)` then costs little, so λ sweeps and
searches reuse one factorisation. The edits it returns implement `time_core.edit.BaseEdit`, which is all that
`generate`, the evaluation and the demo use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from ..edit import BaseEdit
from ..prompts import check_prompt, token_ids

__all__ = ["BaseProblem", "EditingMethod"]


class BaseProblem(ABC):
    """The λ-independent part of an edit; `solve(lam)` gives the edit for one λ.

    Subclasses carry at least `sources` and `destinations` (`tuple[str, ...]`).
    """

    sources: tuple[str, ...]
    destinations: tuple[str, ...]

    @abstractmethod
    def solve(self, lam: float | None = None) -> BaseEdit:
        """The edit for one λ; `None` is the method's `default_lam`."""


class EditingMethod(ABC):
    """A closed-form editing method.

    Attributes:
        name (`str`): the registry key and the `method` recorded in edit files (`"time"`).
        default_lam (`float`): the λ used when none is given.
        edit_class (`type[BaseEdit]`): the class of its edits (reads its edit files).
        summary (`str`): one line for listings and `--help`.
        features (`frozenset[str]`): the options of `prepare` beyond the defaults that the method supports:
            `"values_only"` (`edit_keys=False`) and `"auto_preserve"` (`preserve="auto"`); the commands check them
            before loading a model.
    """

    name: ClassVar[str]
    default_lam: ClassVar[float]
    edit_class: ClassVar[type[BaseEdit]]
    summary: ClassVar[str]
    features: ClassVar[frozenset[str]] = frozenset()

    def unsupported(self, values_only: bool = False, auto_preserve: bool = False) -> list[str]:
        """What of the options asked for (`values_only`: `edit_keys=False`; `auto_preserve`: `preserve="auto"`) the
        method lacks, one message per option and in the commands' flag names; empty when it has them all."""
        problems = []
        if values_only and "values_only" not in self.features:
            problems.append(f"--values-only is an option of TIME's edit; {self.name} has no keys and values to choose")
        if auto_preserve and "auto_preserve" not in self.features:
            problems.append(f"--preserve auto is not available for {self.name}; list the prompts to keep")
        return problems

    def check_pair(self, tokenizer, source: str, destination: str) -> tuple[str, str]:
        """The pair stripped, or `PromptError` when the method cannot take it (checked before anything is encoded,
        e.g. when a pair is stacked): an empty or over-long prompt. Methods with further conditions extend it."""
        pair = (check_prompt(source, "source"), check_prompt(destination, "destination"))
        for prompt in pair:
            token_ids(tokenizer, prompt)
        return pair

    @abstractmethod
    def prepare(
        self,
        pipe,
        source: str | Sequence[str],
        destination: str | Sequence[str],
        edit_keys: bool = True,
        augment: bool = True,
        preserve: str | Sequence[str] = (),
        preserve_weight: float = 1.0,
    ) -> BaseProblem:
        """Checks the prompts and options, encodes and aligns them, and factorises the method's closed form.

        Args:
            pipe: the pipeline to edit (never written).
            source (`str` or `Sequence[str]`): source prompt(s); a bare string is one prompt.
            destination (`str` or `Sequence[str]`): destination prompt(s), one per source.
            edit_keys (`bool`, *optional*, defaults to `True`): for methods that edit keys and values, edit both.
            augment (`bool`, *optional*, defaults to `True`): add the prompt augmentations.
            preserve (`str` or `Sequence[str]`, *optional*): prompts to keep as they are; a bare string is one prompt.
            preserve_weight (`float`, *optional*, defaults to 1.0): the weight of the preservation pairs.
        """
