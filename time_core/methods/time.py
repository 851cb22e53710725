"""TIME (Orgad, Kawar, Belinkov, ICCV 2023): `Edit` is the matrix `M` of Eq. 5 plus what produced it.

An edit never writes the pipeline's weights. A key+value edit of every `attn2` layer (`W' = W · M`) is applied by
feeding `M c` instead of `c` to the UNet (`Edit.map_embeddings`); a value-only edit feeds `c` to the keys and `M c`
to the values (see `time_core.attention`). `Edit.edited_weights` materialises the classic weight edit on request.
The closed form itself is `time_core.solver`; the embedding pairs `(C, C*)` come from `time_core.prompts`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..attention import install_split_processors, split_key_value
from ..edit import BaseEdit, EditFileError, read_auto_preserve
from ..models import TextConditioning, check_architecture, cross_attention_layers, model_id, text_width
from ..prompts import as_prompts, augment_pairs, build_pairs, check_preserve_weight, is_auto_preserve, preserve_prompts
from ..solver import EditSystem, build_system, check_lam
from .base import BaseProblem, EditingMethod

__all__ = ["DEFAULT_LAM", "Edit", "EditProblem", "TimeMethod"]

DEFAULT_LAM = 0.1  # the paper's λ


@dataclass(frozen=True)
class Edit(BaseEdit):
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
        auto_preserve (`bool`): whether `preserve` and its weight were derived (`preserve="auto"`); such an edit is
            reproduced by asking for `"auto"` again, not by listing its prompts (they are used unaugmented).
    """

    method: ClassVar[str] = "time"
    component: ClassVar[str] = "unet"

    M: torch.Tensor
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    lam: float
    edit_keys: bool = True
    augment: bool = True
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    model: str = ""
    auto_preserve: bool = False

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

    def conditioning(
        self, pipe, original: TextConditioning, prompts: Sequence[str], negative_prompt: str | None
    ) -> tuple[TextConditioning, TextConditioning]:
        """`c` and `M c` (key+value edit), or `[c, c]` and `[c, M c]` through split processors (value-only edit).

        The prompts are not encoded again: the edit maps the original embeddings, the negative ones included.
        """
        if self.edit_keys:
            return original, original.with_embeddings(self.map_embeddings)  # (P, L, d) each
        install_split_processors(pipe.unet)  # keys read the first half, values the second
        unedited = original.with_embeddings(lambda c: split_key_value(c, c))  # (P, L, 2d)
        edited = original.with_embeddings(lambda c: split_key_value(c, self.map_embeddings(c)))  # (P, L, 2d)
        return unedited, edited

    def edited_weights(self, unet: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The classic weight edit: `W' = W · M` for each edited `attn2.to_k` / `attn2.to_v` weight of the UNet.

        Keys are the UNet's own parameter names, so `unet.load_state_dict(edit.edited_weights(unet), strict=False)`
        gives the weight-edited model. The UNet itself is not modified.
        """
        layers = cross_attention_layers(unet)
        if not layers:
            raise EditFileError("no cross-attention layer (attn2.to_k / attn2.to_v) found in this UNet")
        projections = ("to_k", "to_v") if self.edit_keys else ("to_v",)
        weights = {}
        for name, layer in layers.items():
            for proj in projections:
                W = getattr(layer, proj).weight  # (out, d)
                if W.shape[1] != self.text_width:
                    raise EditFileError(f"{name}.{proj} reads {W.shape[1]} features; this edit has width {self.text_width}")
                M = self.M.to(device=W.device)
                weights[f"{name}.{proj}.weight"] = (W.detach().to(torch.float64) @ M).to(W.dtype)
        return weights

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"M": self.M.to(torch.float64)}

    def provenance(self) -> dict[str, str]:
        return {
            "sources": json.dumps(list(self.sources)),
            "destinations": json.dumps(list(self.destinations)),
            "lam": repr(float(self.lam)),
            "edit_keys": json.dumps(self.edit_keys),
            "augment": json.dumps(self.augment),
            "preserve": json.dumps(list(self.preserve)),
            "preserve_weight": repr(float(self.preserve_weight)),
            "auto_preserve": json.dumps(self.auto_preserve),
            "text_width": str(self.text_width),
            "model": self.model,
        }

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], name: str) -> Edit:
        if set(tensors) != {"M"}:
            raise EditFileError(f"{name} must hold exactly one tensor 'M', found {sorted(tensors)}")
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
                auto_preserve=read_auto_preserve(meta),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise EditFileError(f"{name} has invalid edit metadata ({type(error).__name__}: {error})") from error
        if M.ndim != 2 or tuple(M.shape) != (width, width):
            raise EditFileError(f"{name}: M has shape {tuple(M.shape)}, expected ({width}, {width})")
        if not bool(torch.isfinite(M).all()):
            raise EditFileError(f"{name}: M contains NaN or infinite values")
        if len(edit.sources) != len(edit.destinations) or not edit.sources:
            raise EditFileError(f"{name}: sources and destinations must be non-empty lists of equal length")
        return edit


@dataclass(frozen=True)
class EditProblem(BaseProblem):
    """The λ-independent part of a TIME edit: prompts, flags and the factorised system of Eq. 5.

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
    auto_preserve: bool = False

    def solve(self, lam: float | None = None) -> Edit:
        """The `Edit` for one λ (`None`: `DEFAULT_LAM`)."""
        lam = check_lam(DEFAULT_LAM if lam is None else lam)
        return Edit(
            M=self.system.solve(lam),
            sources=self.sources,
            destinations=self.destinations,
            lam=lam,
            edit_keys=self.edit_keys,
            augment=self.augment,
            preserve=self.preserve,
            preserve_weight=self.preserve_weight,
            model=self.model,
            auto_preserve=self.auto_preserve,
        )


class TimeMethod(EditingMethod):
    """TIME: the cross-attention keys and values of the UNet, `W' = W · M` with one `M` for every layer (Eq. 5)."""

    name: ClassVar[str] = "time"
    default_lam: ClassVar[float] = DEFAULT_LAM
    edit_class: ClassVar[type[BaseEdit]] = Edit
    summary: ClassVar[str] = "TIME (Orgad et al., ICCV 2023): UNet cross-attention keys and values"
    features: ClassVar[frozenset[str]] = frozenset({"values_only", "auto_preserve"})
    auto_preserve_strength: ClassVar[float] = 0.5  # chosen on shapes_validation (time_core/shapes/TRAINING.md)

    def prepare(
        self,
        pipe,
        source: str | Sequence[str],
        destination: str | Sequence[str],
        edit_keys: bool = True,
        augment: bool = True,
        preserve: str | Sequence[str] = (),
        preserve_weight: float = 1.0,
    ) -> EditProblem:
        """Encodes and aligns the prompts and factorises Eq. 5; see `time_core.compute_edit` for the arguments."""
        sources = as_prompts(source, "source")
        destinations = as_prompts(destination, "destination")
        if len(sources) != len(destinations):
            raise ValueError(f"got {len(sources)} source prompts but {len(destinations)} destination prompts")
        check_architecture(pipe)
        auto = is_auto_preserve(preserve)
        if auto:
            C, C_star, weights, preserve, preserve_weight = _auto_pairs(pipe, sources, destinations, augment,
                                                                          self.auto_preserve_strength)
        else:
            preserve = preserve_prompts(preserve)
            preserve_weight = check_preserve_weight(preserve_weight)
            C, C_star, weights = build_pairs(pipe, sources, destinations, augment, preserve, preserve_weight)  # (N, d) ×2
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
            auto_preserve=auto,
        )


def _auto_pairs(pipe, sources: tuple[str, ...], destinations: tuple[str, ...], augment: bool, strength: float):
    """The pairs of an edit with automatic preservation (`time_core.methods.preservation`): the derived prompts
    (without augmentations) and their weight, `strength` times the regulariser's at λ = 0.1. Returns `C`, `C_star`, `weights`, the prompts, the weight."""
    from .preservation import auto_preservation, relative_preserve_weight

    preserve = auto_preservation(pipe, sources, destinations).prompts
    if not preserve:
        C, C_star, weights = build_pairs(pipe, sources, destinations, augment)
        return C, C_star, weights, (), 0.0
    C, C_star, weights = build_pairs(pipe, sources, destinations, augment, preserve, 1.0, augment_preserve=False)
    edit_prompts = len(augment_pairs(sources, destinations, augment))
    num_edit = edit_prompts * (C.shape[0] // (edit_prompts + len(preserve)))  # pairs per prompt: the context length
    weight = relative_preserve_weight(C[num_edit:], DEFAULT_LAM, strength)
    weights[num_edit:] = weight
    return C, C_star, weights, preserve, weight
