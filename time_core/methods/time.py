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
from ..edit import BaseEdit, EditFileError, read_auto_preserve, read_flag
from ..models import TextConditioning, check_architecture, cross_attention_layers, model_id, text_width
from ..prompts import (
    align_tokens,
    as_prompts,
    augment_pairs,
    build_pairs,
    check_preserve_weight,
    is_auto_preserve,
    preserve_prompts,
)
from ..solver import EditSystem, build_system, check_lam, cross_validated_lam, is_auto
from .base import BaseProblem, EditingMethod

__all__ = ["DEFAULT_LAM", "Edit", "EditProblem", "TimeMethod"]

DEFAULT_LAM = 0.1  # the paper's λ
CV_FOLDS = 4  # folds of the knob-free λ's cross-validation


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
        lam_auto (`bool`): whether λ was chosen for this edit (`lam="auto"`, the knob-free edit).
        context (`str`): what automatic preservation built from its corpus (`ContextSet.summary`); empty otherwise.
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
    lam_auto: bool = False
    context: str = ""

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
            "lam_auto": json.dumps(self.lam_auto),
            "context": self.context,
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
                lam_auto=read_flag(meta, "lam_auto"),
                context=meta.get("context", ""),
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
    auto_lam: float | None = None
    context: str = ""

    def chosen_lam(self) -> float:
        """`auto_lam`, or a `ValueError` saying how to get one."""
        if self.auto_lam is None and self.auto_preserve:
            raise ValueError("lam='auto' found no corpus caption that fits this edit (the source and the destination "
                             "must start with the same article, e.g. 'a rose' -> 'a blue rose'); give λ as a number")
        if self.auto_lam is None:
            raise ValueError("lam='auto' needs preserve='auto': λ is chosen on the context sets automatic "
                             "preservation builds")
        return self.auto_lam

    def solve(self, lam: float | str | None = None) -> Edit:
        """The `Edit` for one λ (`None`: `DEFAULT_LAM`; `"auto"`: `auto_lam`, the λ chosen for this edit)."""
        lam_auto = is_auto(lam)
        lam = self.chosen_lam() if lam_auto else check_lam(DEFAULT_LAM if lam is None else lam)
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
            lam_auto=lam_auto,
            context=self.context,
        )


class TimeMethod(EditingMethod):
    """TIME: the cross-attention keys and values of the UNet, `W' = W · M` with one `M` for every layer (Eq. 5)."""

    name: ClassVar[str] = "time"
    default_lam: ClassVar[float] = DEFAULT_LAM
    edit_class: ClassVar[type[BaseEdit]] = Edit
    summary: ClassVar[str] = "TIME (Orgad et al., ICCV 2023): UNet cross-attention keys and values"
    features: ClassVar[frozenset[str]] = frozenset({"values_only", "auto_preserve", "auto_lam"})

    def check_pair(self, tokenizer, source: str, destination: str) -> tuple[str, str]:
        """As `EditingMethod.check_pair`, and the destination must contain the source's tokens in order."""
        pair = super().check_pair(tokenizer, source, destination)
        align_tokens(tokenizer, *pair)
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
    ) -> EditProblem:
        """Encodes and aligns the prompts and factorises Eq. 5; see `time_core.compute_edit` for the arguments."""
        sources = as_prompts(source, "source")
        destinations = as_prompts(destination, "destination")
        if len(sources) != len(destinations):
            raise ValueError(f"got {len(sources)} source prompts but {len(destinations)} destination prompts")
        check_architecture(pipe)
        auto = is_auto_preserve(preserve)
        auto_lam, context = None, None
        if auto:
            C, C_star, weights, context, auto_lam = _context_problem(pipe, sources, destinations, augment)
            preserve, preserve_weight = context.keep, 1.0
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
            auto_lam=auto_lam,
            context=context.summary() if context is not None else "",
        )


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
