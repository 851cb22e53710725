"""The editing methods the demo offers, their labels, and what choosing one sets on the page.

The demo offers the registered closed-form methods (`EditingMethod.closed_form`: they edit in well under a second),
under their labels; every other registered method stays available to the library and the commands. A session's edit
stack holds one method at a time: the stack
keeps prompt pairs, and every run solves all of them with the method selected (`SessionEdits.with_method`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..methods import DEFAULT_METHOD, METHODS
from .inputs import DemoInputError, lam_text, log_from_lam

__all__ = ["DEMO_METHODS", "METHOD_LABELS", "MethodFields", "method_choices", "method_fields", "parse_method"]

DEMO_METHODS: tuple[str, ...] = tuple(name for name, method in METHODS.items() if method.closed_form)
METHOD_LABELS: dict[str, str] = {name: f"{METHODS[name].label} ({METHODS[name].edits})" for name in DEMO_METHODS}


def method_choices() -> list[tuple[str, str]]:
    """`(label, key)` of each method the demo offers, for a radio or dropdown."""
    return [(METHOD_LABELS[key], key) for key in DEMO_METHODS]


def parse_method(value: Any) -> str:
    """The method chosen on the page (or passed to an API endpoint); empty is TIME.

    Raises:
        `DemoInputError`: not one of the methods the demo offers.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_METHOD
    offered = [key for _, key in method_choices()]
    key = str(value).strip()
    if key not in offered:
        raise DemoInputError(f"method must be one of {offered}, got {value!r}")
    return key


@dataclass(frozen=True)
class MethodFields:
    """What choosing a method sets on the Edit tab.

    Args:
        lam_text (`str`): the method's default λ, for the λ field.
        log_lam (`float`): the same on the log10 slider.
        has_edit_keys (`bool`): whether "edit keys too" means anything (TIME only; other methods keep it on).
    """

    lam_text: str
    log_lam: float
    has_edit_keys: bool


def method_fields(method: Any) -> MethodFields:
    """The `MethodFields` of a method (raises `DemoInputError` for one the demo does not offer)."""
    key = parse_method(method)
    text = lam_text(METHODS[key].default_lam)
    return MethodFields(lam_text=text, log_lam=log_from_lam(text),
                        has_edit_keys="values_only" in METHODS[key].features)
