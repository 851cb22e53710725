"""What every edit offers, whatever method computed it: the conditioning hook of `generate`, weights on request, files.

An editing method (`time_core.methods`) returns a subclass of `BaseEdit`. `generate` never reads a method's internals:
it asks the edit for the text conditioning of the original and of the edited model (`BaseEdit.conditioning`), so a
method that edits the UNet's cross-attention (TIME: `M c` instead of `c`) and one that edits the text encoder (encoding
the prompts, and the negative / unconditional prompt, through a replaced layer) fit the same batched call. No edit
ever writes the pipeline's weights; `BaseEdit.edited_weights` materialises the classic weight edit on request.

What was asked for, the same for every method, is one record, `EditRequest` (the prompts, the augmentations, the
preservation prompts and their weight, the model, and whether preservation and λ were chosen automatically); each
method's problem and edit carry it as `request`, and its fields read through (`edit.sources`, `problem.preserve`).

An edit file is a safetensors file: the method's tensors plus string metadata (`format`, `format_version`, `method`,
`lam`, the request, and the method's own provenance), written by `BaseEdit.metadata` and read by `BaseEdit.read_common`
(here only). Files written before the method was recorded are TIME edits; fields recorded later read as their
defaults.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .files import write_atomic
from .models import TextConditioning, text_width
from .prompts import check_preserve_weight
from .solver import check_lam

__all__ = [
    "FORMAT", "FORMAT_VERSION", "LEGACY_METHOD", "REQUEST_FIELDS", "BaseEdit", "EditFileError", "EditRequest",
    "RequestFields", "metadata_errors", "read_edit_file", "read_flag",
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
        raise EditFileError(f"{path.name} has edit format version {meta.get('format_version')!r}, expected "
                            f"{FORMAT_VERSION}")
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


@contextmanager
def metadata_errors(name: str) -> Iterator[None]:
    """Turns a missing or malformed metadata field (`KeyError`, `ValueError`, `TypeError`) into an `EditFileError`
    naming the file `name`."""
    try:
        yield
    except (KeyError, ValueError, TypeError) as error:
        raise EditFileError(f"{name} has invalid edit metadata ({type(error).__name__}: {error})") from error


@dataclass(frozen=True)
class EditRequest:
    """What an edit was asked for, whatever the method: shared by every method's problem and edit (`request`).

    Attributes:
        sources (`tuple[str, ...]`): source prompts (several for a multi-edit).
        destinations (`tuple[str, ...]`): destination prompts, one per source.
        augment (`bool`): whether the prompt augmentations were used.
        preserve (`tuple[str, ...]`): prompts asked to stay as they are (derived ones for `preserve="auto"`).
        preserve_weight (`float`): the weight of each preservation pair.
        model (`str`): the model the edit was computed on (informative).
        auto_preserve (`bool`): whether `preserve` was derived by the method (`preserve="auto"`); such an edit is
            reproduced by asking for `"auto"` again, not by listing its prompts.
        lam_auto (`bool`): whether λ was chosen for this edit (`lam="auto"`, the knob-free edit).
        context (`str`): what automatic preservation built from its corpus; empty otherwise.
    """

    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    augment: bool = True
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    model: str = ""
    auto_preserve: bool = False
    lam_auto: bool = False
    context: str = ""

    def metadata(self) -> dict[str, str]:
        """The request as edit-file metadata (`str → str`)."""
        return {
            "sources": json.dumps(list(self.sources)),
            "destinations": json.dumps(list(self.destinations)),
            "augment": json.dumps(self.augment),
            "preserve": json.dumps(list(self.preserve)),
            "preserve_weight": repr(float(self.preserve_weight)),
            "model": self.model,
            "auto_preserve": json.dumps(self.auto_preserve),
            "lam_auto": json.dumps(self.lam_auto),
            "context": self.context,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> EditRequest:
        """The request of an edit file's metadata; flags and fields recorded later read as their defaults.

        Raises:
            `KeyError`, `ValueError`, `TypeError`: a field is missing or malformed.
        """
        request = cls(
            sources=tuple(json.loads(meta["sources"])),
            destinations=tuple(json.loads(meta["destinations"])),
            augment=bool(json.loads(meta["augment"])),
            preserve=tuple(json.loads(meta["preserve"])),
            preserve_weight=check_preserve_weight(float(meta["preserve_weight"])),
            model=meta.get("model", ""),
            auto_preserve=read_flag(meta, "auto_preserve"),
            lam_auto=read_flag(meta, "lam_auto"),
            context=meta.get("context", ""),
        )
        if len(request.sources) != len(request.destinations) or not request.sources:
            raise ValueError("sources and destinations must be non-empty lists of equal length")
        return request


REQUEST_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(EditRequest))


class RequestFields:
    """Read access to the fields of `self.request` (`EditRequest`) as attributes: `edit.sources`, `problem.preserve`."""

    request: EditRequest

    sources = property(lambda self: self.request.sources, doc="source prompts (several for a multi-edit)")
    destinations = property(lambda self: self.request.destinations, doc="destination prompts, one per source")
    augment = property(lambda self: self.request.augment, doc="whether the prompt augmentations were used")
    preserve = property(lambda self: self.request.preserve, doc="prompts asked to stay as they are")
    preserve_weight = property(lambda self: self.request.preserve_weight, doc="the weight of each preservation pair")
    model = property(lambda self: self.request.model, doc="the model the edit was computed on (informative)")
    auto_preserve = property(lambda self: self.request.auto_preserve, doc="whether `preserve` was derived")
    lam_auto = property(lambda self: self.request.lam_auto, doc="whether λ was chosen for this edit")
    context = property(lambda self: self.request.context, doc="what automatic preservation built from its corpus")


class BaseEdit(RequestFields, ABC):
    """An edit of a text-to-image pipeline that never writes its weights (subclassed by each editing method).

    Subclasses are frozen dataclasses with at least the fields `request` (`EditRequest`, whose fields read through as
    attributes) and `lam`, and set the class attributes below.

    Attributes:
        method (`str`): the registry name of the method (`"time"`), recorded in edit files.
        component (`str`): the pipeline component whose weights the edit stands for (`"unet"`, `"text_encoder"`);
            `pipe.<component>.load_state_dict(edit.edited_weights(pipe.<component>), strict=False)` applies it.
    """

    method: ClassVar[str]
    component: ClassVar[str]
    request: EditRequest
    lam: float  # λ of the method's closed form (the fine-tuning baseline: its weight decay η)

    def check_text_width(self, pipe, width: int) -> None:
        """Raises `EditFileError` when the pipeline's text width is not `width`, the one the edit was computed for."""
        if text_width(pipe) != width:
            raise EditFileError(f"this edit was computed for text width {width} (model {self.model or 'unknown'}); "
                                f"the loaded model has text width {text_width(pipe)}")

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
        """The method's own metadata stored beside the tensors and the request (a `str → str` map)."""

    @classmethod
    @abstractmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], name: str) -> BaseEdit:
        """Builds the edit from a file's tensors and metadata, or raises `EditFileError` naming the file `name`."""

    def metadata(self) -> dict[str, str]:
        """Everything stored beside the tensors in an edit file."""
        return {"format": FORMAT, "format_version": str(FORMAT_VERSION), "method": self.method,
                "lam": repr(float(self.lam)), **self.request.metadata(), **self.provenance()}

    @staticmethod
    def read_common(meta: dict[str, str], name: str) -> tuple[EditRequest, float]:
        """The request and λ of an edit file's metadata, for `from_file`.

        Raises:
            `EditFileError`: naming the file `name`, when they are missing or malformed.
        """
        with metadata_errors(name):
            return EditRequest.from_metadata(meta), check_lam(float(meta["lam"]))

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
            raise EditFileError(f"{path.name} holds a {meta['method']!r} edit, not a {cls.method!r} one; read it with "
                                "time_core.load_edit")
        return cls.from_file(tensors, meta, path.name)
