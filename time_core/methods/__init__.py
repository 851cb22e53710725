"""Editing methods: the interface (`base`), TIME (`time`, with the knob-free edit's context sets in `context`),
Diff-QuickFix (`diff_quickfix`, with its derived preservation prompts in `preservation`), the fine-tuning baseline
(`finetune`), and the registry the rest of the library dispatches on (`registry`). Each method owns its facts (name,
label, default λ, features); `tests/methods/test_method_contract.py` tests every registered one."""

from .base import BaseProblem, EditingMethod
from .diff_quickfix import DiffQuickFixMethod, QuickFixEdit, QuickFixEditProblem
from .finetune import FinetuneEdit, FinetuneMethod, FinetuneProblem
from .registry import DEFAULT_METHOD, METHODS, compute_edit, get_method, load_edit, prepare_edit
from .time import Edit, EditProblem, TimeMethod

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "BaseProblem",
    "DiffQuickFixMethod",
    "Edit",
    "EditProblem",
    "EditingMethod",
    "FinetuneEdit",
    "FinetuneMethod",
    "FinetuneProblem",
    "QuickFixEdit",
    "QuickFixEditProblem",
    "TimeMethod",
    "compute_edit",
    "get_method",
    "load_edit",
    "prepare_edit",
]
