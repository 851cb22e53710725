"""An edit as low-rank weight updates: `ΔW = W′ − W` per edited linear layer, factorised by SVD as `up · down`.

Any edit (`time_core.edit.BaseEdit`) materialises its classic weight edit with `edit.edited_weights(module)`, keyed by
the module's own parameter names; this module subtracts the current weights and factorises each difference in
float64, without knowing the method. For TIME, `ΔW = W (M − I)` has rank at most the number of embedding pairs; a
method that edits one projection of the text encoder gives one factorised layer.

Full rank keeps every singular value above the rounding level of the edited weights, `σ > ε(dtype) · ‖W′‖_F` (the
float32 `W′` that `edited_weights` returns cannot resolve smaller changes); `rank=k` keeps the `k` largest. The
relative error of each layer is `‖ΔW − up · down‖_F / ‖ΔW‖_F = sqrt(Σ_{i>r} σ_i²) / sqrt(Σ σ_i²)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["LayerFactors", "check_rank", "edited_components", "factorise", "layer_factors", "weight_deltas"]


@dataclass(frozen=True)
class LayerFactors:
    """The factorised update of one linear layer: `ΔW ≈ up · down`.

    Attributes:
        component (`str`): the pipeline component (`"unet"`, `"text_encoder"`, `"text_encoder_2"`).
        path (`str`): the layer's module path inside the component (e.g.
            `"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"`).
        down (`torch.Tensor`): `(r, in)` float64, `diag(√σ) Vᵀ` (peft's `lora_A`, kohya's `lora_down`).
        up (`torch.Tensor`): `(out, r)` float64, `U diag(√σ)` (peft's `lora_B`, kohya's `lora_up`).
        full_rank (`int`): the numerical rank of `ΔW` (see the module docstring).
        error (`float`): `‖ΔW − up · down‖_F / ‖ΔW‖_F`.
    """

    component: str
    path: str
    down: torch.Tensor
    up: torch.Tensor
    full_rank: int
    error: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def name(self) -> str:
        """`component.path`, the layer's name in reports and file metadata."""
        return f"{self.component}.{self.path}"


def check_rank(rank) -> int | None:
    """`rank` after checking it: `None` (full rank) or an integer >= 1; raises `ValueError` otherwise."""
    if rank is None:
        return None
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1 or None (full rank), got {rank!r}")
    return rank


def edited_components(edit) -> tuple[str, ...]:
    """The pipeline components an edit stands for: `edit.components` when its method defines it (an edit of both
    SDXL text encoders), else `(edit.component,)`."""
    components = getattr(edit, "components", None) or (edit.component,)
    return (components,) if isinstance(components, str) else tuple(components)


def weight_deltas(module: nn.Module, edited: dict[str, torch.Tensor], component: str) -> Iterator[tuple]:
    """`(path, ΔW, ε · ‖W′‖_F)` for every weight that `edited` changes, ΔW `(out, in)` in float64.

    Args:
        module (`nn.Module`): the pipeline component (never written).
        edited (`dict[str, torch.Tensor]`): `edit.edited_weights(module)`, keyed by the module's parameter names.
        component (`str`): the component's name, for error messages.

    Raises:
        `ValueError`: an edited tensor is not the weight of a linear layer, or has another shape.
    """
    parameters = dict(module.named_parameters())
    for name, new in edited.items():
        path, _, kind = name.rpartition(".")
        if name not in parameters:
            raise ValueError(f"the edit names {component}.{name}, which is not a parameter of the {component}")
        layer = module.get_submodule(path)
        if kind != "weight" or not isinstance(layer, nn.Linear):
            raise ValueError(
                f"cannot export {component}.{name} as a LoRA: only weights of linear layers can be, and {path} is a "
                f"{type(layer).__name__}" + ("" if kind == "weight" else f" whose {kind} the edit changes")
            )
        old = parameters[name]
        if tuple(new.shape) != tuple(old.shape):
            raise ValueError(f"the edit gives {component}.{name} the shape {tuple(new.shape)}, not {tuple(old.shape)}")
        new64 = new.detach().to(device="cpu", dtype=torch.float64)
        delta = new64 - old.detach().to(device="cpu", dtype=torch.float64)  # (out, in)
        tolerance = torch.finfo(new.dtype).eps * float(new64.norm()) if new.dtype.is_floating_point else 0.0
        yield path, delta, tolerance


def factorise(
    delta: torch.Tensor, rank: int | None, tolerance: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """Truncated SVD of one update in float64.

    Args:
        delta (`torch.Tensor`): `ΔW` `(out, in)`.
        rank (`int`, *optional*): keep at most this many singular values; `None` keeps all above `tolerance`.
        tolerance (`float`, *optional*, defaults to 0): singular values at or below it are rounding noise.

    Returns:
        `down` `(r, in)`, `up` `(out, r)` (float64, `up · down` = the rank-`r` truncation), the numerical rank and the
        relative Frobenius error of the truncation (0 for `ΔW = 0`).
    """
    delta = delta.to(torch.float64)
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)  # (out, m), (m,), (m, in); m = min(out, in)
    full_rank = int((S > tolerance).sum())
    kept = full_rank if rank is None else min(rank, full_rank)
    root = S[:kept].sqrt()  # (r,)
    total = float(S.square().sum())
    error = (float(S[kept:].square().sum()) / total) ** 0.5 if total > 0 else 0.0
    return root[:, None] * Vh[:kept], U[:, :kept] * root, full_rank, error


def layer_factors(pipe, edit, rank: int | None = None, progress: bool = False) -> list[LayerFactors]:
    """The factorised update of every linear layer an edit changes, component by component (layers of rank 0 left out).

    Args:
        pipe: the pipeline the edit applies to (never written).
        edit (`BaseEdit`): an edit of any method.
        rank (`int`, *optional*): the largest rank per layer; `None` is full rank.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar over the layers.

    Raises:
        `ValueError`: a bad rank, a component the pipeline lacks, an edited tensor that is not a linear weight, or an
            edit that changes no weight.
    """
    rank = check_rank(rank)
    edit.check_compatible(pipe)
    layers = []
    for component in edited_components(edit):
        module = getattr(pipe, component, None)
        if not isinstance(module, nn.Module):
            raise ValueError(f"the edit changes the pipeline's {component}, which this {type(pipe).__name__} lacks")
        with torch.no_grad():
            edited = edit.edited_weights(module)
            deltas = weight_deltas(module, edited, component)
            bar = tqdm(deltas, total=len(edited), desc=f"factorising {component}", unit="layer", disable=not progress)
            for path, delta, tolerance in bar:
                down, up, full_rank, error = factorise(delta, rank, tolerance)
                if down.shape[0]:
                    layers.append(LayerFactors(component, path, down, up, full_rank, error))
    if not layers:
        raise ValueError("the edit changes no weight of the pipeline: there is nothing to export")
    return layers
