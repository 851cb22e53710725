"""What every edit offers, whatever method computed it: the conditioning hook of `generate`, weights on request, files.

An editing method (`time_core.methods`) returns a subclass of `BaseEdit`. `generate` never reads a method's internals:
it asks the edit for the text conditioning of the original and of the edited model (`BaseEdit.conditioning`), so a
method that edits the UNet's cross-attention (TIME: `M c` instead of `c`) and one that edits the text encoder (encoding
the prompts, and the negative / unconditional prompt, through a replaced layer) fit the same batched call. No edit
ever writes the pipeline's weights; `BaseEdit.edited_weights` materialises the classic weight edit on request.

An edit file is a safetensors file: the method's tensors plus string metadata (`format`, `format_version`, `method`
and the method's provenance). Files written before the method was recorded are TIME edits.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .files import write_atomic
from .models import TextConditioning

__all__ = [
    "FORMAT", "FORMAT_VERSION", "LEGACY_METHOD", "BaseEdit", "EditFileError", "read_auto_preserve", "read_edit_file",
]

FORMAT = "time-edit"
FORMAT_VERSION = 1
# Edit files that do not record their method were written by TIME, the only method of the first format.
LEGACY_METHOD = "time"


class EditFileError(ValueError):
    """An edit file is corrupt, foreign, or does not fit the model it is applied to."""


def read_edit_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of an edit file, after checking that it is one (any method).

    Raises:
        `EditFileError`: the file is missing, unreadable, not an edit file, or of another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise EditFileError(f"no edit file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        # each tensor in an allocation of its own: the file's tensors are views at offsets of one buffer, aligned only
        # to their element size, and BLAS kernels may round differently on misaligned data (a loaded edit must
        # compute exactly what the saved one did)
        tensors = {name: tensor.clone() for name, tensor in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise EditFileError(f"{path.name} is not a readable safetensors file ({error})") from error
    if meta.get("format") != FORMAT:
        raise EditFileError(f"{path.name} is not a TIME edit file (its metadata has no format={FORMAT!r})")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise EditFileError(f"{path.name} has edit format version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    meta.setdefault("method", LEGACY_METHOD)
    return tensors, meta


def read_flag(meta: dict[str, str], key: str) -> bool:
    """An edit file's boolean flag `key` (`False` in files written before it was recorded).

    Raises:
        `ValueError`: the flag is not a JSON boolean.
    """
    value = json.loads(meta.get(key, "false"))
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def read_auto_preserve(meta: dict[str, str]) -> bool:
    """An edit file's `auto_preserve` flag (`False` in files written before it was recorded)."""
    return read_flag(meta, "auto_preserve")


class BaseEdit(ABC):
    """An edit of a text-to-image pipeline that never writes its weights (subclassed by each editing method).

    Subclasses are frozen dataclasses with at least the provenance fields declared here, and set the class attributes
    below.

    Attributes:
        method (`str`): the registry name of the method (`"time"`), recorded in edit files.
        component (`str`): the pipeline component whose weights the edit stands for (`"unet"`, `"text_encoder"`);
            `pipe.<component>.load_state_dict(edit.edited_weights(pipe.<component>), strict=False)` applies it.
    """

    method: ClassVar[str]
    component: ClassVar[str]
    sources: tuple[str, ...]  # source prompts (several for a multi-edit)
    destinations: tuple[str, ...]  # destination prompts, one per source
    lam: float  # λ of the method's closed form
    augment: bool  # whether the prompt augmentations were used
    preserve: tuple[str, ...]  # prompts asked to stay as they are
    preserve_weight: float  # the weight of each preservation pair
    model: str  # the model the edit was computed on (informative)
    # whether `preserve` was derived by the method (`preserve="auto"`) rather than listed; False for methods without it
    auto_preserve: bool = False
    lam_auto: bool = False  # whether λ was chosen for this edit (`lam="auto"`); False for methods without it
    context: str = ""  # what automatic preservation built from its corpus; empty for methods without it

    @abstractmethod
    def check_compatible(self, pipe) -> None:
        """Raises `EditFileError` when the edit cannot be applied to `pipe` (e.g. another text width)."""

    @abstractmethod
    def conditioning(
        self, pipe, original: TextConditioning, prompts: Sequence[str], negative_prompt: str | None
    ) -> tuple[TextConditioning, TextConditioning]:
        """The text conditioning of the original and of the edited model, shaped alike so both share one batch.

        Args:
            pipe: the pipeline (never written; an edit may install weight-free attention processors).
            original (`TextConditioning`): `encode_prompts(pipe, prompts, negative_prompt, ...)` of the original
                model; `original.negative` is `None` without classifier-free guidance.
            prompts (`Sequence[str]`): the prompts behind `original` (a method that edits the text encoder encodes
                them, and `negative_prompt`, again through the edited encoder).
            negative_prompt (`str`, *optional*): the negative prompt; `None` is the pipeline's default.

        Returns:
            `(original rows, edited rows)`: two `TextConditioning` with embeddings `(P, L, w)` of the same width `w`.
        """

    @abstractmethod
    def edited_weights(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The classic weight edit of `module` (the pipeline's `component`), keyed by its own parameter names."""

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors stored in an edit file."""

    @abstractmethod
    def provenance(self) -> dict[str, str]:
        """The method's metadata stored beside the tensors (a `str → str` map)."""

    @classmethod
    @abstractmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], name: str) -> BaseEdit:
        """Builds the edit from a file's tensors and metadata, or raises `EditFileError` naming the file `name`."""

    def metadata(self) -> dict[str, str]:
        """Everything stored beside the tensors in an edit file."""
        return {"format": FORMAT, "format_version": str(FORMAT_VERSION), "method": self.method, **self.provenance()}

    def save(self, path: str | Path) -> Path:
        """Writes the edit as a safetensors file (its tensors + metadata; never pickle), atomically and with the
        permissions the umask gives a new file (`time_core.files.write_atomic`)."""
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.tensors().items()}
        metadata = self.metadata()
        return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | Path) -> BaseEdit:
        """Reads an edit file of this class's method (`time_core.load_edit` reads any method's).

        Raises:
            `EditFileError`: the file is corrupt, foreign, tampered with, or holds another method's edit.
        """
        path = Path(path)
        tensors, meta = read_edit_file(path)
        if meta["method"] != cls.method:
            raise EditFileError(
                f"{path.name} holds a {meta['method']!r} edit, not a {cls.method!r} one; read it with time_core.load_edit"
            )
        return cls.from_file(tensors, meta, path.name)
