"""The closed form of Diff-QuickFix for one linear layer, factorised once for every λ.

With `W` `(d_out, d_in)` and bias `b` `(d_out,)` of the layer (the bias is kept), and weights `w_j ≥ 0` (1 for the
edit's pairs, `preserve_weight` for preservation pairs),

    min_{W'}  Σ_j w_j ‖W' k_j + b − v_j‖² + λ ‖W' − W‖²_F

    W' = (λ W + Σ_j w_j (v_j − b) k_jᵀ)(λ I + Σ_j w_j k_j k_jᵀ)⁻¹
       = W + Eᵀ K (λ I + KᵀK)⁻¹ = W + Eᵀ (λ I + K Kᵀ)⁻¹ K,       E = V − 1 bᵀ − K Wᵀ   (N, d_out)

with the rows of `K` `(N, d_in)` the keys and of `V` `(N, d_out)` the values, both scaled by `√w_j`. `E` holds the
residuals of the unedited layer; the update is exact (zero) in the null space of `K`. The smaller of the symmetric
eigenproblems `K Kᵀ` (`N × N`) and `KᵀK` (`d_in × d_in`) is solved once in float64 and serves every λ
(`QuickFixProblem`).

Unlike the authors' notebook, which fits `W' k_j ≈ v_j` with `v_j` including the bias (so that the edited layer's
outputs `W' k_j + b` are off by `b`), this module minimises the objective above exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from ...solver import check_lam, factorise
from .layer import OUT_PROJ_PATH, find_projection
from .pairs import preservation_pairs, quickfix_pairs

__all__ = ["DEFAULT_LAM", "QuickFixProblem", "prepare_quickfix", "solve_quickfix"]

DEFAULT_LAM = 0.01  # the authors' λ


@dataclass(frozen=True)
class QuickFixProblem:
    """The λ-independent factorisation of the Diff-QuickFix solve: `W'(λ) = W + A diag(1 / (λ + s)) B`.

    Build it with `QuickFixProblem.from_pairs` (or `prepare_quickfix`), then call `.solve(lam)` for any number of λ.

    Attributes:
        weight (`torch.Tensor`): the unedited weight `W`, `(d_out, d_in)`, float64.
        A (`torch.Tensor`): `Eᵀ U` (or `Eᵀ K Q`), `(d_out, r)`, float64.
        s (`torch.Tensor`): eigenvalues of `K Kᵀ` (or `KᵀK`), clamped at 0, `(r,)`, float64.
        B (`torch.Tensor`): `Uᵀ K` (or `Qᵀ`), `(r, d_in)`, float64.
        num_pairs (`int`): the number `N` of (key, value) pairs.
        preserve_weight (`float`): the weight of its preservation pairs (0 when it has none).
    """

    weight: torch.Tensor  # (d_out, d_in)
    A: torch.Tensor  # (d_out, r)
    s: torch.Tensor  # (r,)
    B: torch.Tensor  # (r, d_in)
    num_pairs: int
    preserve_weight: float = 0.0

    @classmethod
    def from_pairs(
        cls,
        K: torch.Tensor,
        V: torch.Tensor,
        W: torch.Tensor,
        b: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> QuickFixProblem:
        """Factorises `min_{W'} Σ_j w_j ‖W' k_j + b − v_j‖² + λ ‖W' − W‖²` once for all λ.

        Args:
            K (`torch.Tensor`): keys `k_j`, `(N, d_in)`.
            V (`torch.Tensor`): values `v_j`, `(N, d_out)`.
            W (`torch.Tensor`): the layer's weight, `(d_out, d_in)`.
            b (`torch.Tensor`, *optional*): the layer's bias `(d_out,)`, kept unchanged; `None` for none.
            weights (`torch.Tensor`, *optional*): a finite weight `w_j ≥ 0` per pair `(N,)`; defaults to ones.
        """
        if K.ndim != 2 or V.ndim != 2 or K.shape[0] != V.shape[0]:
            raise ValueError(
                f"K and V must have shapes (N, d_in) and (N, d_out), got {tuple(K.shape)} and {tuple(V.shape)}"
            )
        if K.shape[0] == 0:
            raise ValueError("K is empty: an edit needs at least one (key, value) pair")
        if tuple(W.shape) != (V.shape[1], K.shape[1]):
            raise ValueError(f"W must have shape (d_out, d_in) = {(V.shape[1], K.shape[1])}, got {tuple(W.shape)}")
        if b is not None and tuple(b.shape) != (V.shape[1],):
            raise ValueError(f"b must have shape (d_out,) = ({V.shape[1]},), got {tuple(b.shape)}")
        device = K.device
        K = K.detach().to(torch.float64)  # (N, d_in)
        V = V.detach().to(device=device, dtype=torch.float64)  # (N, d_out)
        W = W.detach().to(device=device, dtype=torch.float64)  # (d_out, d_in)
        E = V - K @ W.T  # (N, d_out): residuals of the unedited layer
        if b is not None:
            E = E - b.detach().to(device=device, dtype=torch.float64)
        if not torch.isfinite(W).all():
            raise ValueError("the keys, values, weight or bias contain NaN or infinite values")
        A, s, B = factorise(K, E, weights, what="the keys, values, weight or bias")  # (d_out, r), (r,), (r, d_in)
        return cls(weight=W, A=A, s=s, B=B, num_pairs=int(K.shape[0]))

    def update(self, lam: float = DEFAULT_LAM) -> torch.Tensor:
        """`W' − W` for one λ > 0: `(d_out, d_in)`, float64."""
        lam = check_lam(lam)
        return (self.A / (lam + self.s)) @ self.B  # (d_out, d_in)

    def solve(self, lam: float = DEFAULT_LAM) -> torch.Tensor:
        """The edited weight for one λ.

        Args:
            lam (`float`, *optional*, defaults to 0.01): the regulariser λ > 0 (the authors' value).

        Returns:
            `torch.Tensor`: `W'` `(d_out, d_in)`, float64.
        """
        return self.weight + self.update(lam)  # (d_out, d_in)


def solve_quickfix(
    K: torch.Tensor, V: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None, lam: float = DEFAULT_LAM
) -> torch.Tensor:
    """`W' = (λ W + Σ_j (v_j − b) k_jᵀ)(λ I + Σ_j k_j k_jᵀ)⁻¹` for one λ, float64.

    Args:
        K (`torch.Tensor`): keys `(N, d_in)`.
        V (`torch.Tensor`): values `(N, d_out)`.
        W (`torch.Tensor`): the layer's weight `(d_out, d_in)`.
        b (`torch.Tensor`, *optional*): the layer's bias `(d_out,)`.
        lam (`float`, *optional*, defaults to 0.01): λ > 0.

    Returns:
        `torch.Tensor`: `W'` `(d_out, d_in)`, float64.
    """
    lam = check_lam(lam)
    return QuickFixProblem.from_pairs(K, V, W, b).solve(lam)


def prepare_quickfix(
    text_encoder: nn.Module,
    tokenizer,
    sources: str | Sequence[str],
    destinations: str | Sequence[str],
    augment: bool = True,
    path: str = OUT_PROJ_PATH,
    preserve: str | Sequence[str] = (),
    preserve_weight: float = 1.0,
    augment_preserve: bool | None = None,
) -> QuickFixProblem:
    """Collects the pairs (`quickfix_pairs`, and `preservation_pairs` of `preserve` weighted by `preserve_weight`)
    and factorises the solve for the layer at `path`.

    Args:
        augment_preserve (`bool`, *optional*): add the augmentations of the preservation prompts; `None` follows
            `augment`.

    Returns:
        `QuickFixProblem`: `.solve(lam)` gives `W'` for `encode_with_weight`; its `preserve_weight` is the weight used.
    """
    K, V = quickfix_pairs(text_encoder, tokenizer, sources, destinations, augment, path)  # (N, d_in), (N, d_out)
    augment_preserve = augment if augment_preserve is None else augment_preserve
    K_keep, V_keep = preservation_pairs(text_encoder, tokenizer, preserve, augment_preserve, path)  # (M, d_in), (M, d_out)
    weights, weight = None, 0.0
    if K_keep.shape[0]:
        weight = float(preserve_weight)
        weights = torch.cat([K.new_ones(K.shape[0]), K.new_full((K_keep.shape[0],), weight)])
        K, V = torch.cat([K, K_keep.to(K.device)]), torch.cat([V, V_keep.to(V.device)])
    layer = find_projection(text_encoder, path)
    problem = QuickFixProblem.from_pairs(K, V, layer.weight, layer.bias, weights)
    return replace(problem, preserve_weight=weight)
