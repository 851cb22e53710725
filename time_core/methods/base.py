"""The interface of an editing method: prompts in, a λ-independent problem out, one `BaseEdit` per λ.

A method registered in `time_core.methods.registry.METHODS` declares its facts (name, label, default λ, edit class,
features) and implements `EditingMethod.build`: `EditingMethod.prepare` checks the prompts and options once for every
method (the options a method lacks are refused here, from its `features`) and hands `build` an `EditRequest`; `build`
encodes the prompts and factorises the closed form once, so `BaseProblem.solve(lam)` costs little and λ sweeps and
searches reuse one factorisation. The edits it returns implement `time_core.edit.BaseEdit`, which is all that
`generate`, the evaluation and the demo use. `tests/methods/test_method_contract.py` checks every registered method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from ..edit import BaseEdit, EditRequest, RequestFields
from ..models import model_id
from ..prompts import as_prompts, check_preserve_weight, check_prompt, is_auto_preserve, preserve_prompts, token_ids

__all__ = ["FEATURES", "BaseProblem", "EditingMethod"]

# the options of `prepare` beyond the defaults a method may support, and what a method without one is told: in the
# commands' flag names, and in the library's arguments
FEATURES: dict[str, tuple[str, str]] = {
    "values_only": ("--values-only is an option of TIME's edit; {name} has no keys and values to choose",
                    "edit_keys=False (values only) is not available for {name}; it has no keys and values to choose "
                    "between"),
    "auto_preserve": ("--preserve auto is not available for {name}; list the prompts to keep",
                      "preserve='auto' is not available for {name}; list the prompts to keep"),
    "auto_lam": ("--lam auto is not available for {name}; give a number",
                 "lam='auto' is not available for {name}; give a number"),
}


class BaseProblem(RequestFields, ABC):
    """The λ-independent part of an edit; `solve(lam)` gives the edit for one λ.

    Subclasses are dataclasses with at least the field `request` (`EditRequest`; its fields read through as
    attributes: `problem.sources`).
    """

    request: EditRequest
    auto_lam: float | None = None  # the λ chosen for this edit (methods with the feature "auto_lam")

    def chosen_lam(self) -> float:
        """`auto_lam`, the λ of `solve("auto")`, or a `ValueError` saying how to get one."""
        if self.auto_lam is None and self.auto_preserve:
            raise ValueError("lam='auto' found no corpus caption that fits this edit (the source and the destination "
                             "must start with the same article, e.g. 'a rose' -> 'a blue rose'); give λ as a number")
        if self.auto_lam is None:
            raise ValueError("lam='auto' needs preserve='auto': λ is chosen on the context sets automatic "
                             "preservation builds")
        return self.auto_lam

    @abstractmethod
    def solve(self, lam: float | str | None = None) -> BaseEdit:
        """The edit for one λ; `None` is the method's `default_lam`, `"auto"` the λ chosen for this edit."""


class EditingMethod(ABC):
    """An editing method: its facts, the checks every method shares (`prepare`), and its own problem (`build`).

    Attributes:
        name (`str`): the registry key and the `method` recorded in edit files (`"time"`).
        label (`str`): the method's name for people (the demo, tables and plots): `"TIME"`.
        edits (`str`): what it edits, in a few words (the demo's choice reads `"TIME (UNet cross-attention)"`).
        default_lam (`float`): the λ used when none is given.
        edit_class (`type[BaseEdit]`): the class of its edits (reads its edit files).
        summary (`str`): one line for listings and `--help`.
        features (`frozenset[str]`): the options of `prepare` beyond the defaults that the method supports (keys of
            `FEATURES`): `"values_only"` (`edit_keys=False`), `"auto_preserve"` (`preserve="auto"`) and `"auto_lam"`
            (`lam="auto"` with `preserve="auto"`, the λ chosen per edit); the others are refused by `prepare` and
            `compute_edit`, and by the commands before they load a model (`unsupported`).
        closed_form (`bool`): an edit costs a factorisation and a solve (well under a second): the demo offers it.
        lam_weighs_change (`bool`): λ weighs the change of the weights (`‖W' − W‖²`), so a very large λ is the
            original model; `False` for a λ of another kind (the fine-tuning baseline's weight decay).
        options (`tuple[str, ...]`): constructor arguments the commands may set (`--iterations`).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    edits: ClassVar[str]
    default_lam: ClassVar[float]
    edit_class: ClassVar[type[BaseEdit]]
    summary: ClassVar[str]
    features: ClassVar[frozenset[str]] = frozenset()
    closed_form: ClassVar[bool] = True
    lam_weighs_change: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        """A method declares only features the interface knows (`FEATURES`): checked once, when its class is made."""
        super().__init_subclass__(**kwargs)
        if unknown := set(cls.features) - set(FEATURES):
            raise TypeError(f"{cls.__name__} declares unknown features {sorted(unknown)}; known: {sorted(FEATURES)}")

    def unsupported(self, values_only: bool = False, auto_preserve: bool = False, auto_lam: bool = False,
                    command: bool = True) -> list[str]:
        """What of the options asked for (`values_only`: `edit_keys=False`; `auto_preserve`: `preserve="auto"`;
        `auto_lam`: `lam="auto"`) the method lacks: one message per option, in the commands' flag names (`command`)
        or in the library's arguments; empty when it has them all."""
        asked = {"values_only": values_only, "auto_preserve": auto_preserve, "auto_lam": auto_lam}
        return [(flag if command else argument).format(name=self.name)
                for feature, (flag, argument) in FEATURES.items() if asked[feature] and feature not in self.features]

    def check_options(self, values_only: bool = False, auto_preserve: bool = False, auto_lam: bool = False) -> None:
        """Raises `ValueError` naming every option asked for that the method lacks (see `unsupported`)."""
        if problems := self.unsupported(values_only, auto_preserve, auto_lam, command=False):
            raise ValueError("; ".join(problems))

    def check_pair(self, tokenizer, source: str, destination: str) -> tuple[str, str]:
        """The pair stripped, or `PromptError` when the method cannot take it (checked before anything is encoded,
        e.g. when a pair is stacked): an empty or over-long prompt. Methods with further conditions extend it."""
        pair = (check_prompt(source, "source"), check_prompt(destination, "destination"))
        for prompt in pair:
            token_ids(tokenizer, prompt)
        return pair

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
        """Checks the prompts and options, then encodes them and factorises the method's closed form (`build`).

        Args:
            pipe: the pipeline to edit (never written).
            source (`str` or `Sequence[str]`): source prompt(s); a bare string is one prompt.
            destination (`str` or `Sequence[str]`): destination prompt(s), one per source.
            edit_keys (`bool`, *optional*, defaults to `True`): for methods that edit keys and values, edit both.
            augment (`bool`, *optional*, defaults to `True`): add the prompt augmentations.
            preserve (`str` or `Sequence[str]`, *optional*): prompts to keep as they are; a bare string is one prompt;
                `"auto"`: derived by the method (feature `"auto_preserve"`).
            preserve_weight (`float`, *optional*, defaults to 1.0): the weight of the preservation pairs.

        Raises:
            `PromptError`: an empty, non-string or over-long prompt.
            `ValueError`: lists of different lengths, a bad weight, an option the method lacks.
        """
        sources = as_prompts(source, "source")
        destinations = as_prompts(destination, "destination")
        if len(sources) != len(destinations):
            raise ValueError(f"got {len(sources)} source prompts but {len(destinations)} destination prompts")
        auto = is_auto_preserve(preserve)
        self.check_options(values_only=not edit_keys, auto_preserve=auto)
        request = EditRequest(
            sources=sources, destinations=destinations, augment=bool(augment),
            preserve=() if auto else preserve_prompts(preserve), preserve_weight=check_preserve_weight(preserve_weight),
            model=model_id(pipe), auto_preserve=auto,
        )
        return self.build(pipe, request, bool(edit_keys))

    @abstractmethod
    def build(self, pipe, request: EditRequest, edit_keys: bool) -> BaseProblem:
        """The method's problem for a checked request: encodes and aligns the prompts and factorises the closed form.

        `request.preserve` is empty when `request.auto_preserve` asks the method to derive it; `edit_keys` is `False`
        only for a method with the `"values_only"` feature. Raises `PromptError` / `UnsupportedModelError` for
        prompts or a pipeline the method cannot edit.
        """
