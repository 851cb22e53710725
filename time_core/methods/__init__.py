"""Editing methods: the interface (`base`), TIME (`time`), and the registry the rest of the library dispatches on."""

from .base import BaseProblem, EditingMethod
from .registry import DEFAULT_METHOD, METHODS, compute_edit, get_method, load_edit, prepare_edit
from .time import Edit, EditProblem, TimeMethod

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "BaseProblem",
    "Edit",
    "EditProblem",
    "EditingMethod",
    "TimeMethod",
    "compute_edit",
    "get_method",
    "load_edit",
    "prepare_edit",
]
