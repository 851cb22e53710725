"""The editing methods by name, and the library's entry points that dispatch on `method`.

`compute_edit`, `prepare_edit` and `load_edit` are what every caller uses (the library API, the evaluation and
debiasing commands, the demo), so a method registered here is available everywhere at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from ..edit import BaseEdit, EditFileError, read_edit_file
from ..prompts import is_auto_preserve
from ..solver import check_lam, is_auto
from .base import BaseProblem, EditingMethod
from .diff_quickfix import DiffQuickFixMethod
from .finetune import FinetuneMethod
from .time import TimeMethod

__all__ = ["DEFAULT_METHOD", "METHODS", "compute_edit", "get_method", "load_edit", "prepare_edit"]

DEFAULT_METHOD = "time"
METHODS: Mapping[str, EditingMethod] = MappingProxyType(
    {method.name: method for method in (TimeMethod(), DiffQuickFixMethod(), FinetuneMethod())}
)


def get_method(name: str) -> EditingMethod:
    """The registered method called `name`; raises `ValueError` listing the registered ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown editing method {name!r}; registered methods: {sorted(METHODS)}")
    return METHODS[name]


def prepare_edit(pipe, source: str | Sequence[str], destination: str | Sequence[str], *options,
                 method: str = DEFAULT_METHOD, **keywords) -> BaseProblem:
    """Checks the prompts and options, encodes them and factorises the method's closed form: the λ-independent
    problem, `.solve(lam)` giving one edit per λ. The arguments are `compute_edit`'s without `lam`
    (`EditingMethod.prepare`: `edit_keys`, `augment`, `preserve`, `preserve_weight`)."""
    return get_method(method).prepare(pipe, source, destination, *options, **keywords)


def compute_edit(
    pipe,
    source: str | Sequence[str],
    destination: str | Sequence[str],
    lam: float | str | None = None,
    edit_keys: bool = True,
    augment: bool = True,
    preserve: str | Sequence[str] = (),
    preserve_weight: float = 1.0,
    *,
    method: str = DEFAULT_METHOD,
) -> BaseEdit:
    """Computes an edit in closed form without touching the pipeline's weights (TIME: paper Eq. 5; Diff-QuickFix:
    the text encoder's first self-attention output projection).

    Args:
        pipe: a `StableDiffusionPipeline` or `StableDiffusionXLPipeline` (see `load_pipeline`).
        source (`str` or `Sequence[str]`): the under-specified prompt(s), e.g. `"a pack of roses"`.
        destination (`str` or `Sequence[str]`): the prompt(s) stating the wanted attribute, e.g.
            `"a pack of blue roses"`; for TIME each must contain its source's words in order.
        lam (`float` or `"auto"`, *optional*): λ, the weight of `‖W' − W‖²`; larger is a smaller edit. `None` is the
            method's default (`METHODS[method].default_lam`: TIME 0.1, Diff-QuickFix 0.01). `"auto"` (with
            `preserve="auto"`): the knob-free edit, λ chosen for this edit by cross-validation on its context sets
            (`problem.auto_lam`; the edit records `lam_auto=True`).
        edit_keys (`bool`, *optional*, defaults to `True`): TIME: edit `to_k` as well as `to_v` (paper's best
            setting). Diff-QuickFix has no such choice and refuses `False` (`ValueError`).
        augment (`bool`, *optional*, defaults to `True`): add "A photo of ", "An image of ", "A picture of " versions.
        preserve (`str` or `Sequence[str]`, *optional*): prompts to keep as they are (pairs whose target is
            themselves); a bare string is one prompt. `"auto"`: automatic preservation (TIME only,
            `time_core.methods.preservation`).
        preserve_weight (`float`, *optional*, defaults to 1.0): the weight of the preservation pairs.
        method (`str`, *optional*, defaults to `"time"`): a key of `METHODS` (`"time"`, `"diff-quickfix"`).

    Returns:
        the method's edit (`Edit` for TIME, `QuickFixEdit` for Diff-QuickFix).
    """
    editing = get_method(method)
    if is_auto(lam):
        editing.check_options(auto_lam=True)
        if not is_auto_preserve(preserve):
            raise ValueError("lam='auto' needs preserve='auto': λ is chosen on the context sets automatic "
                             "preservation builds")
    else:
        lam = editing.default_lam if lam is None else check_lam(lam)  # a bad λ fails before any encoding
    return editing.prepare(pipe, source, destination, edit_keys, augment, preserve, preserve_weight).solve(lam)


def load_edit(path: str | Path) -> BaseEdit:
    """Reads an edit file of any registered method (files that do not record their method are TIME edits).

    Raises:
        `EditFileError`: the file is corrupt, foreign, tampered with, or holds an edit of an unregistered method.
    """
    path = Path(path)
    tensors, meta = read_edit_file(path)
    if meta["method"] not in METHODS:
        raise EditFileError(f"{path.name} holds a {meta['method']!r} edit; registered methods: {sorted(METHODS)}")
    return METHODS[meta["method"]].edit_class.from_file(tensors, meta, path.name)
