"""`Edit`: TIME's `M` plus what produced it; computing, applying, materialising, saving and loading edits.

An edit never writes the pipeline's weights. A key+value edit of every `attn2` layer (`W' = W · M`) is applied by
feeding `M c` instead of `c` to the UNet (`Edit.map_embeddings`); a value-only edit feeds `c` to the keys and `M c`
to the values (see `time_core.attention`). `Edit.edited_weights` materialises the classic weight edit on request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .models import check_architecture, model_id, text_width
from .prompts import build_pairs, check_prompt
from .solver import EditSystem, build_system, check_lam

__all__ = ["Edit", "EditFileError", "EditProblem", "compute_edit", "prepare_edit"]

FORMAT = "time-edit"
FORMAT_VERSION = 1


class EditFileError(ValueError):
    """An edit file is corrupt, foreign, or does not fit the model it is applied to."""


@dataclass(frozen=True)
class Edit:
    """A TIME edit: the matrix `M` of Eq. 5 and its provenance.

    Attributes:
        M (`torch.Tensor`): `(d, d)` float64; every edited projection becomes `W' = W · M`.
        sources (`tuple[str, ...]`): source prompts (several for a multi-edit).
        destinations (`tuple[str, ...]`): destination prompts, one per source.
        lam (`float`): λ of Eq. 4.
        edit_keys (`bool`): `True` edits `to_k` and `to_v`, `False` only `to_v`.
        augment (`bool`): whether the prompt augmentations were used.
        preserve (`tuple[str, ...]`): prompts asked to stay as they are.
        preserve_weight (`float`): the weight of each preservation pair.
        model (`str`): the model the edit was computed on (informative).
    """

    M: torch.Tensor
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    lam: float
    edit_keys: bool = True
    augment: bool = True
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    model: str = ""

    @property
    def text_width(self) -> int:
        return self.M.shape[0]

    def check_compatible(self, pipe) -> None:
        """Raises `EditFileError` when the pipeline's text width differs from the edit's."""
        width = text_width(pipe)
        if width != self.text_width:
            raise EditFileError(
                f"this edit was computed for text width {self.text_width} (model {self.model or 'unknown'}); "
                f"the loaded model has text width {width}"
            )

    def map_embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        """`c ↦ M c` for every embedding vector: `(..., d)` → `(..., d)`, computed in float64, returned in `embeds.dtype`."""
        if embeds.shape[-1] != self.text_width:
            raise EditFileError(f"embeddings of width {embeds.shape[-1]} cannot take an edit of width {self.text_width}")
        M = self.M.to(device=embeds.device)
        return (embeds.to(torch.float64) @ M.T).to(embeds.dtype)

    def edited_weights(self, unet) -> dict[str, torch.Tensor]:
        """The classic weight edit: `W' = W · M` for each edited `attn2.to_k` / `attn2.to_v` weight.

        Keys are the UNet's own parameter names, so `unet.load_state_dict(edit.edited_weights(unet), strict=False)`
        gives the weight-edited model. The UNet itself is not modified.
        """
        from .models import cross_attention_layers

        layers = cross_attention_layers(unet)
        if not layers:
            raise EditFileError("no cross-attention layer (attn2.to_k / attn2.to_v) found in this UNet")
        projections = ("to_k", "to_v") if self.edit_keys else ("to_v",)
        weights = {}
        for name, module in layers.items():
            for proj in projections:
                W = getattr(module, proj).weight  # (out, d)
                if W.shape[1] != self.text_width:
                    raise EditFileError(f"{name}.{proj} reads {W.shape[1]} features; this edit has width {self.text_width}")
                M = self.M.to(device=W.device)
                weights[f"{name}.{proj}.weight"] = (W.detach().to(torch.float64) @ M).to(W.dtype)
        return weights

    def metadata(self) -> dict[str, str]:
        """The provenance stored beside `M` in an edit file (safetensors metadata is a `str → str` map)."""
        return {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "sources": json.dumps(list(self.sources)),
            "destinations": json.dumps(list(self.destinations)),
            "lam": repr(float(self.lam)),
            "edit_keys": json.dumps(self.edit_keys),
            "augment": json.dumps(self.augment),
            "preserve": json.dumps(list(self.preserve)),
            "preserve_weight": repr(float(self.preserve_weight)),
            "text_width": str(self.text_width),
            "model": self.model,
        }

    def save(self, path: str | Path) -> Path:
        """Writes the edit as a safetensors file (`M` in float64 + metadata)."""
        path = Path(path)
        save_file({"M": self.M.detach().to("cpu", torch.float64).contiguous()}, str(path), metadata=self.metadata())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Edit:
        """Reads an edit file written by `Edit.save`, checking that it is one; raises `EditFileError` otherwise."""
        path = Path(path)
        if not path.is_file():
            raise EditFileError(f"no edit file at {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                keys = set(handle.keys())
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise EditFileError(f"{path.name} is not a readable safetensors file ({error})") from error
        if meta.get("format") != FORMAT:
            raise EditFileError(f"{path.name} is not a TIME edit file (its metadata has no format={FORMAT!r})")
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise EditFileError(f"{path.name} has edit format version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
        if keys != {"M"}:
            raise EditFileError(f"{path.name} must hold exactly one tensor 'M', found {sorted(keys)}")
        M = tensors["M"]
        try:
            width = int(meta["text_width"])
            edit = cls(
                M=M.to(torch.float64),
                sources=tuple(json.loads(meta["sources"])),
                destinations=tuple(json.loads(meta["destinations"])),
                lam=check_lam(float(meta["lam"])),
                edit_keys=bool(json.loads(meta["edit_keys"])),
                augment=bool(json.loads(meta["augment"])),
                preserve=tuple(json.loads(meta["preserve"])),
                preserve_weight=float(meta["preserve_weight"]),
                model=meta.get("model", ""),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise EditFileError(f"{path.name} has invalid edit metadata ({type(error).__name__}: {error})") from error
        if M.ndim != 2 or tuple(M.shape) != (width, width):
            raise EditFileError(f"{path.name}: M has shape {tuple(M.shape)}, expected ({width}, {width})")
        if not bool(torch.isfinite(M).all()):
            raise EditFileError(f"{path.name}: M contains NaN or infinite values")
        if len(edit.sources) != len(edit.destinations) or not edit.sources:
            raise EditFileError(f"{path.name}: sources and destinations must be non-empty lists of equal length")
        return edit


@dataclass(frozen=True)
class EditProblem:
    """The λ-independent part of an edit: prompts, flags and the factorised system of Eq. 5.

    `solve(lam)` costs one `(d, r) × (r, d)` product, so λ sweeps reuse one decomposition.
    """

    system: EditSystem
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    edit_keys: bool = True
    augment: bool = True
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    model: str = ""
    num_pairs: int = 0

    def solve(self, lam: float = 0.1) -> Edit:
        """The `Edit` for one λ."""
        return Edit(
            M=self.system.solve(lam),
            sources=self.sources,
            destinations=self.destinations,
            lam=check_lam(lam),
            edit_keys=self.edit_keys,
            augment=self.augment,
            preserve=self.preserve,
            preserve_weight=self.preserve_weight,
            model=self.model,
        )


def _as_prompt_list(prompts: str | Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = tuple(prompts)
    if not prompts:
        raise ValueError(f"{what} is an empty list")
    return tuple(check_prompt(p, what) for p in prompts)


def prepare_edit(
    pipe,
    source: str | Sequence[str],
    destination: str | Sequence[str],
    edit_keys: bool = True,
    augment: bool = True,
    preserve: Sequence[str] = (),
    preserve_weight: float = 1.0,
) -> EditProblem:
    """Encodes and aligns the prompts and factorises Eq. 5; see `compute_edit` for the arguments."""
    sources = _as_prompt_list(source, "source")
    destinations = _as_prompt_list(destination, "destination")
    if len(sources) != len(destinations):
        raise ValueError(f"got {len(sources)} source prompts but {len(destinations)} destination prompts")
    preserve = tuple(check_prompt(p, "preserve prompt") for p in preserve)
    preserve_weight = float(preserve_weight)
    if not (preserve_weight >= 0 and preserve_weight < float("inf")):
        raise ValueError(f"preserve_weight must be finite and >= 0, got {preserve_weight}")
    check_architecture(pipe)
    C, C_star, weights = build_pairs(pipe, sources, destinations, augment, preserve, preserve_weight)  # (N, d) ×2, (N,)
    return EditProblem(
        system=build_system(C, C_star, weights),
        sources=sources,
        destinations=destinations,
        edit_keys=bool(edit_keys),
        augment=bool(augment),
        preserve=preserve,
        preserve_weight=preserve_weight,
        model=model_id(pipe),
        num_pairs=C.shape[0],
    )


def compute_edit(
    pipe,
    source: str | Sequence[str],
    destination: str | Sequence[str],
    lam: float = 0.1,
    edit_keys: bool = True,
    augment: bool = True,
    preserve: Sequence[str] = (),
    preserve_weight: float = 1.0,
) -> Edit:
    """Computes a TIME edit (paper Eq. 5) without touching the pipeline's weights.

    Args:
        pipe: a `StableDiffusionPipeline` or `StableDiffusionXLPipeline` (see `load_pipeline`).
        source (`str` or `Sequence[str]`): the under-specified prompt(s), e.g. `"a pack of roses"`.
        destination (`str` or `Sequence[str]`): the prompt(s) stating the wanted attribute, e.g.
            `"a pack of blue roses"`; each must contain its source's words in order.
        lam (`float`, *optional*, defaults to 0.1): λ, the weight of `‖W' − W‖²`; larger is a smaller edit.
        edit_keys (`bool`, *optional*, defaults to `True`): edit `to_k` as well as `to_v` (paper's best setting).
        augment (`bool`, *optional*, defaults to `True`): add "A photo of ", "An image of ", "A picture of " versions.
        preserve (`Sequence[str]`, *optional*): prompts to keep as they are (pairs whose target is themselves).
        preserve_weight (`float`, *optional*, defaults to 1.0): the weight of the preservation pairs.

    Returns:
        `Edit`
    """
    lam = check_lam(lam)
    return prepare_edit(pipe, source, destination, edit_keys, augment, preserve, preserve_weight).solve(lam)
