"""TIME (Orgad, Kawar, Belinkov, ICCV 2023): `Edit` is the matrix `M` of Eq. 5 plus what produced it.

An edit never writes the pipeline's weights. A key+value edit of every `attn2` layer (`W' = W · M`) is applied by
feeding `M c` instead of `c` to the UNet (`Edit.map_embeddings`); a value-only edit feeds `c` to the keys and `M c`
to the values (see `time_core.attention`). `Edit.edited_weights` materialises the classic weight edit on request.
The closed form itself is `time_core.solver`; the embedding pairs `(C, C*)` come from `time_core.prompts`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..attention import install_split_processors, split_key_value
from ..edit import BaseEdit, EditFileError, EditRequest, metadata_errors
from ..models import TextConditioning, check_architecture, cross_attention_layers
from ..prompts import align_tokens, augment_pairs, build_pairs
from ..solver import EditSystem, build_system, check_lam, cross_validated_lam, is_auto
from .base import BaseProblem, EditingMethod

__all__ = ["DEFAULT_LAM", "Edit", "EditProblem", "TimeMethod"]

DEFAULT_LAM = 0.1  # the paper's λ
CV_FOLDS = 4  # folds of the knob-free λ's cross-validation


@dataclass(frozen=True)
class Edit(BaseEdit):
    """A TIME edit: the matrix `M` of Eq. 5 and what was asked for.

    Attributes:
        M (`torch.Tensor`): `(d, d)` float64; every edited projection becomes `W' = W · M`.
        request (`EditRequest`): the prompts and options (`edit.sources`, `edit.preserve`, ... read through). With
            `auto_preserve`, `preserve` holds the context sets' kept prompts (used unaugmented) and `context` says
            what automatic preservation built; with `lam_auto`, λ was chosen for this edit (the knob-free edit).
        lam (`float`): λ of Eq. 4.
        edit_keys (`bool`): `True` edits `to_k` and `to_v`, `False` only `to_v`.
    """

    method: ClassVar[str] = "time"
    component: ClassVar[str] = "unet"

    M: torch.Tensor
    request: EditRequest
    lam: float
    edit_keys: bool = True

    @property
    def text_width(self) -> int:
        return self.M.shape[0]

    def check_compatible(self, pipe) -> None:
        """Raises `EditFileError` when the pipeline's text width differs from the edit's."""
        self.check_text_width(pipe, self.text_width)

    def map_embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        """`c ↦ M c` for every embedding vector: `(..., d)` → `(..., d)`, computed in float64, returned in
        `embeds.dtype`."""
        if embeds.shape[-1] != self.text_width:
            raise EditFileError(f"embeddings of width {embeds.shape[-1]} cannot take an edit of width "
                                f"{self.text_width}")
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
                    raise EditFileError(f"{name}.{proj} reads {W.shape[1]} features; this edit has width "
                                        f"{self.text_width}")
                M = self.M.to(device=W.device)
                weights[f"{name}.{proj}.weight"] = (W.detach().to(torch.float64) @ M).to(W.dtype)
        return weights

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"M": self.M.to(torch.float64)}

    def provenance(self) -> dict[str, str]:
        return {"edit_keys": json.dumps(self.edit_keys), "text_width": str(self.text_width)}

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], name: str) -> Edit:
        request, lam = cls.read_common(meta, name)
        if set(tensors) != {"M"}:
            raise EditFileError(f"{name} must hold exactly one tensor 'M', found {sorted(tensors)}")
        M = tensors["M"]
        with metadata_errors(name):
            width, edit_keys = int(meta["text_width"]), bool(json.loads(meta["edit_keys"]))
        if M.ndim != 2 or tuple(M.shape) != (width, width):
            raise EditFileError(f"{name}: M has shape {tuple(M.shape)}, expected ({width}, {width})")
        if not bool(torch.isfinite(M).all()):
            raise EditFileError(f"{name}: M contains NaN or infinite values")
        return cls(M=M.to(torch.float64), request=request, lam=lam, edit_keys=edit_keys)


@dataclass(frozen=True)
class EditProblem(BaseProblem):
    """The λ-independent part of a TIME edit: prompts, flags and the factorised system of Eq. 5.

    `solve(lam)` costs one `(d, r) × (r, d)` product, so λ sweeps reuse one decomposition.
    """

    system: EditSystem
    request: EditRequest
    edit_keys: bool = True
    num_pairs: int = 0
    auto_lam: float | None = None  # the λ cross-validation chose (automatic preservation only)

    def solve(self, lam: float | str | None = None) -> Edit:
        """The `Edit` for one λ (`None`: `DEFAULT_LAM`; `"auto"`: `auto_lam`, the λ chosen for this edit)."""
        lam_auto = is_auto(lam)
        lam = self.chosen_lam() if lam_auto else check_lam(DEFAULT_LAM if lam is None else lam)
        return Edit(M=self.system.solve(lam), request=replace(self.request, lam_auto=lam_auto), lam=lam,
                    edit_keys=self.edit_keys)


class TimeMethod(EditingMethod):
    """TIME: the cross-attention keys and values of the UNet, `W' = W · M` with one `M` for every layer (Eq. 5)."""

    name: ClassVar[str] = "time"
    label: ClassVar[str] = "TIME"
    edits: ClassVar[str] = "UNet cross-attention"
    default_lam: ClassVar[float] = DEFAULT_LAM
    edit_class: ClassVar[type[BaseEdit]] = Edit
    summary: ClassVar[str] = "TIME (Orgad et al., ICCV 2023): UNet cross-attention keys and values"
    features: ClassVar[frozenset[str]] = frozenset({"values_only", "auto_preserve", "auto_lam"})

    def check_pair(self, tokenizer, source: str, destination: str) -> tuple[str, str]:
        """As `EditingMethod.check_pair`, and the destination must contain the source's tokens in order."""
        pair = super().check_pair(tokenizer, source, destination)
        align_tokens(tokenizer, *pair)
        return pair

    def build(self, pipe, request: EditRequest, edit_keys: bool) -> EditProblem:
        """Encodes and aligns the prompts and factorises Eq. 5; see `time_core.compute_edit` for the arguments."""
        check_architecture(pipe)
        auto_lam = None
        if request.auto_preserve:
            C, C_star, weights, context, auto_lam = _context_problem(pipe, request.sources, request.destinations,
                                                                     request.augment)
            request = replace(request, preserve=context.keep, preserve_weight=1.0, context=context.summary())
        else:
            C, C_star, weights = build_pairs(pipe, request.sources, request.destinations, request.augment,
                                             request.preserve, request.preserve_weight)  # (N, d) ×2
        return EditProblem(system=build_system(C, C_star, weights), request=request, edit_keys=edit_keys,
                           num_pairs=C.shape[0], auto_lam=auto_lam)


def _context_problem(pipe, sources: tuple[str, ...], destinations: tuple[str, ...], augment: bool):
    """The rows of an edit with automatic preservation (`time_core.methods.context`): the edit's own pairs (augmented
    as asked), the generalisation pairs, the kept prompts and the generic captions (unaugmented), every prompt's rows
    at weight 1, and the λ that cross-validation by frame chooses (`solver.cross_validated_lam`).

    Returns `C`, `C_star`, `weights`, the context set and the chosen λ."""
    from .context import context_set, fold_ids, load_corpus

    context = context_set(pipe, load_corpus(pipe), sources, destinations)
    kept = (*context.keep, *context.generic)
    C, C_star, weights = build_pairs(pipe, sources, destinations, augment, kept, 1.0, augment_preserve=False)
    length = C.shape[0] // (len(augment_pairs(sources, destinations, augment)) + len(kept))  # rows per prompt
    folds = [torch.full((C.shape[0] - length * len(kept),), -1, dtype=torch.long),  # the edit's own rows: always fitted
             fold_ids((*context.keep_folds, *context.generic_folds), length, CV_FOLDS)]
    if context.generalise:
        G, G_star, G_weights = build_pairs(pipe, *zip(*context.generalise), augment=False)
        C, C_star, weights = torch.cat([C, G]), torch.cat([C_star, G_star]), torch.cat([weights, G_weights])
        folds.append(fold_ids(context.generalise_folds, length, CV_FOLDS))
    folds = torch.cat(folds)
    if not kept and not context.generalise:
        return C, C_star, weights, context, None
    scale = float((C**2).sum(dim=1).mean())  # mean ‖c‖²: the grid is relative to the embeddings' scale
    lams = scale * torch.logspace(-6, 3, 37, dtype=torch.float64)
    lam, _ = cross_validated_lam(C, C_star - C, weights, folds, lams)
    return C, C_star, weights, context, lam
