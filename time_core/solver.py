"""TIME's closed-form update (paper Eq. 4/5) as `W' = W · M`: pure functions of tensors, in float64.

For one projection `W` (`attn2.to_k` or `attn2.to_v`, shape `(out, d)`) TIME minimises (Eq. 4)

    Σ_i w_i ‖W' c_i − W c*_i‖² + λ ‖W' − W‖²_F

whose minimiser is (Eq. 5)

    W' = (λ W + Σ_i w_i W c*_i c_iᵀ) (λ I + Σ_i w_i c_i c_iᵀ)⁻¹ = W · M,
    M  = (λ I + Σ_i w_i c*_i c_iᵀ) (λ I + Σ_i w_i c_i c_iᵀ)⁻¹                         (d, d)

`M` does not depend on `W`, so one `M` serves every cross-attention layer. With the rows of `C` = √w_i c_iᵀ and
`D` = √w_i (c*_i − c_i)ᵀ (shapes `(N, d)`), `λ I + Σ w c* cᵀ = λ I + CᵀC + DᵀC`, hence

    M = I + Dᵀ C (λ I + CᵀC)⁻¹                       (one eigendecomposition CᵀC = V diag(s) Vᵀ,  d × d)
      = I + Dᵀ (λ I + C Cᵀ)⁻¹ C                      (push-through identity:  C Cᵀ = U diag(s) Uᵀ,  N × N)

Both are `M = I + A diag(1 / (λ + s)) B`: the smaller of the two symmetric eigenproblems (`N × N` for a single edit:
4 prompts × 77 tokens = 308 < d = 768) is solved once in float64 with `torch.linalg.eigh`, and serves any number of
λ values. Forming `M − I` directly (instead of `(λ I + Σ c* cᵀ)` times an inverse) keeps `M` exact in the null space
of `C`, where it is the identity, and keeps the solve accurate for λ down to 1e-6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "AUTO_LAM", "MIN_LAM", "EditSystem", "build_system", "check_finite", "check_lam", "cross_validated_lam",
    "edit_matrix", "factorise", "is_auto", "naive_edited_weight", "parse_lam", "smallest_error_lam",
]

# The smallest λ accepted. Below it the rounding noise of `B` in the null space of `C` (~1e-16 relative) is divided by
# λ: on the toy model the largest entry of `M` is 6.55 for every λ from 1e-9 to 1e-15 (the λ → 0 limit), 3.6e11 at
# λ = 1e-30 (float16 overflows: black images) and NaN at 5e-324, an edit that `load_edit` refuses.
MIN_LAM = 1e-12
AUTO_LAM = "auto"


def is_auto(lam) -> bool:
    """Whether a λ argument asks for the λ chosen per edit (`"auto"`, the knob-free edit)."""
    return isinstance(lam, str) and lam.strip().lower() == AUTO_LAM


def parse_lam(text: str | float) -> float | str:
    """A λ given as text (a command's argument, a form field): `AUTO_LAM` for "auto", else `check_lam` of the number.

    Raises:
        `ValueError`: neither "auto" nor a finite number >= `MIN_LAM`.
    """
    return AUTO_LAM if is_auto(text) else check_lam(text)


def check_lam(lam: float) -> float:
    """Returns `lam` as a float, or raises `ValueError` when it is not a finite number >= `MIN_LAM` (1e-12)."""
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lam must be a number, got {lam!r}") from None
    if not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam must be finite and > 0, got {lam}")
    if lam < MIN_LAM:
        raise ValueError(f"lam must be at least {MIN_LAM:g} (a smaller λ gives an edit of rounding noise), got {lam:g}")
    return lam


def check_finite(matrix: torch.Tensor, lam: float) -> torch.Tensor:
    """Returns `matrix` (an edit's solve for `lam`), or raises `ValueError` when it holds NaN or infinite values: an
    edit that would not load back."""
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"lam = {lam:g} gives an edit with NaN or infinite values; use a larger λ")
    return matrix


@dataclass(frozen=True)
class EditSystem:
    """The λ-independent part of Eq. 5: `M(λ) = I + A diag(1 / (λ + s)) B`.

    Attributes:
        A (`torch.Tensor`): `Dᵀ U` (or `Dᵀ C V`), shape `(d, r)`, float64.
        s (`torch.Tensor`): eigenvalues of `C Cᵀ` (or `CᵀC`), clamped at 0, shape `(r,)`, float64.
        B (`torch.Tensor`): `Uᵀ C` (or `Vᵀ`), shape `(r, d)`, float64.
    """

    A: torch.Tensor  # (d, r)
    s: torch.Tensor  # (r,)
    B: torch.Tensor  # (r, d)

    @property
    def dim(self) -> int:
        return self.B.shape[1]

    def solve(self, lam: float) -> torch.Tensor:
        """Returns `M` of Eq. 5 for one λ, shape `(d, d)`, float64."""
        lam = check_lam(lam)
        M = (self.A / (lam + self.s)) @ self.B  # (d, d): M − I
        M.diagonal().add_(1.0)
        return check_finite(M, lam)


def build_system(C: torch.Tensor, C_star: torch.Tensor, weights: torch.Tensor | None = None) -> EditSystem:
    """Factorises Eq. 5 for the pairs `(c_i, c*_i)`, once for all λ.

    Args:
        C (`torch.Tensor`): source embeddings `c_i`, shape `(N, d)`.
        C_star (`torch.Tensor`): aligned destination embeddings `c*_i`, shape `(N, d)`.
        weights (`torch.Tensor`, *optional*): non-negative weight `w_i` per pair, shape `(N,)`; defaults to ones.

    Returns:
        `EditSystem`: call `.solve(lam)` for `M`.
    """
    if C.ndim != 2 or C.shape != C_star.shape:
        raise ValueError(f"C and C_star must both have shape (N, d), got {tuple(C.shape)} and {tuple(C_star.shape)}")
    if C.shape[0] == 0:
        raise ValueError("C is empty: an edit needs at least one pair of embeddings")
    C = C.detach().to(dtype=torch.float64)  # (N, d)
    D = C_star.detach().to(dtype=torch.float64) - C  # (N, d)
    return EditSystem(*factorise(C, D, weights, what="the text embeddings"))


def factorise(
    X: torch.Tensor, R: torch.Tensor, weights: torch.Tensor | None = None, what: str = "the pairs"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The λ-independent factors of the weighted ridge update `Σ_i w_i r_i x_iᵀ (λ I + Σ_i w_i x_i x_iᵀ)⁻¹`
    `= A diag(1 / (λ + s)) B`, from the smaller of the two eigenproblems (see the module docstring). TIME's `M − I`
    (`X = C`, `R = C* − C`) and Diff-QuickFix's `W' − W` (`X` the keys, `R` the residuals) are both this update.

    Args:
        X (`torch.Tensor`): inputs `x_i`, shape `(N, d_in)`, float64.
        R (`torch.Tensor`): residuals `r_i`, shape `(N, d_out)`, float64.
        weights (`torch.Tensor`, *optional*): non-negative weight `w_i` per pair, shape `(N,)`; defaults to ones.
        what (`str`, *optional*): what `X` and `R` are, for the error on non-finite values.

    Returns:
        `A` `(d_out, r)`, `s` `(r,)` (clamped at 0) and `B` `(r, d_in)`, float64, `r = min(N, d_in)`.

    Raises:
        `ValueError`: weights of the wrong length, negative or not finite; NaN or infinite inputs or residuals.
    """
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=torch.float64, device=X.device).reshape(-1)
        if weights.shape[0] != X.shape[0] or not bool(torch.all(torch.isfinite(weights) & (weights >= 0))):
            raise ValueError(f"weights must be {X.shape[0]} finite non-negative numbers")
        root = weights.sqrt()[:, None]  # (N, 1)
        X, R = X * root, R * root
    if not (torch.isfinite(X).all() and torch.isfinite(R).all()):
        raise ValueError(f"{what} contain NaN or infinite values")
    if X.shape[0] <= X.shape[1]:
        s, U = torch.linalg.eigh(X @ X.T)  # (N,), (N, N): X Xᵀ = U diag(s) Uᵀ
        A, B = R.T @ U, U.T @ X  # (d_out, N), (N, d_in)
    else:
        s, V = torch.linalg.eigh(X.T @ X)  # (d_in,), (d_in, d_in): XᵀX = V diag(s) Vᵀ
        A, B = (R.T @ X) @ V, V.T  # (d_out, d_in), (d_in, d_in)
    return A, s.clamp(min=0.0), B


def edit_matrix(
    C: torch.Tensor, C_star: torch.Tensor, lam: float = 0.1, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """`M` of Eq. 5 for a single λ, shape `(d, d)`, float64. See `build_system` for the arguments."""
    return build_system(C, C_star, weights).solve(lam)


def naive_edited_weight(
    W: torch.Tensor,
    C: torch.Tensor,
    C_star: torch.Tensor,
    lam: float = 0.1,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Eq. 5 literally, for one layer, as the original implementations compute it (reference for tests and benchmarks).

    `W' = (λ W + Σ v*_i c_iᵀ)(λ I + Σ c_i c_iᵀ)⁻¹` with `v*_i = W c*_i`, using an explicit matrix inverse in `dtype`.

    Args:
        W (`torch.Tensor`): the projection weight, shape `(out, d)`.
        C (`torch.Tensor`): source embeddings, shape `(N, d)`.
        C_star (`torch.Tensor`): destination embeddings, shape `(N, d)`.
        lam (`float`, *optional*, defaults to 0.1): λ.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float64`): precision of the whole computation.
    """
    lam = check_lam(lam)
    W, C, C_star = W.to(dtype), C.to(dtype), C_star.to(dtype)
    V_star = C_star @ W.T  # (N, out): v*_i = W c*_i
    eye = torch.eye(W.shape[1], dtype=dtype, device=W.device)
    mat1 = lam * W + V_star.T @ C  # (out, d)
    mat2 = lam * eye + C.T @ C  # (d, d)
    return mat1 @ torch.inverse(mat2)


def cross_validated_lam(
    X: torch.Tensor,
    R: torch.Tensor,
    weights: torch.Tensor,
    folds: torch.Tensor,
    lams: torch.Tensor,
) -> tuple[float, torch.Tensor]:
    """The λ of the weighted ridge update (see `factorise`) that best predicts held-out rows: K-fold cross-validation
    in closed form, one eigendecomposition per fold for every λ.

    For a fold `f`, the update fitted on the other rows is `U(λ) = (Rᵀ W X V) diag(1 / (λ + s)) Vᵀ` with
    `Xᵀ W X = V diag(s) Vᵀ`; its error on the fold's rows, `Σ_f w ‖U x − r‖²`, is a quadratic form in
    `q = 1 / (λ + s)`: `qᵀ ((Zᵀ W Z) ∘ (PᵀP)) q − 2 qᵀ diag(Zᵀ W R P) + Σ w ‖r‖²` with `Z = X_f V`, `P = Rᵀ W X V`
    (of the training rows), so each λ costs `O(d²)`.

    Args:
        X (`torch.Tensor`): inputs, shape `(N, d)`.
        R (`torch.Tensor`): residuals (target minus input), shape `(N, d_out)`.
        weights (`torch.Tensor`): non-negative weight per row, shape `(N,)`.
        folds (`torch.Tensor`): fold of each row, shape `(N,)`; rows with fold −1 are always fitted, never held out.
        lams (`torch.Tensor`): candidate λ values, shape `(K,)`, all > 0.

    Returns:
        the chosen λ (the smallest error; the larger λ on a tie) and the held-out error of every candidate `(K,)`.
    """
    X, R = X.to(torch.float64), R.to(torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64, device=X.device).reshape(-1, 1)  # (N, 1)
    lams = torch.as_tensor(lams, dtype=torch.float64, device=X.device).reshape(-1)  # (K,)
    if not bool((lams > 0).all()):
        raise ValueError("every candidate λ must be > 0")
    errors = torch.zeros_like(lams)
    fold_values = sorted(set(folds.tolist()) - {-1})
    if not fold_values:
        raise ValueError("cross-validation needs rows in at least one fold")
    for fold in fold_values:
        held = folds == fold
        Xt, Rt, wt = X[~held], R[~held], w[~held]
        s, V = torch.linalg.eigh(Xt.T @ (wt * Xt))  # (d,), (d, d)
        P = (Rt.T @ (wt * Xt)) @ V  # (d_out, d)
        Z, Rf, wf = X[held] @ V, R[held], w[held]  # (n, d), (n, d_out), (n, 1)
        H = (Z.T @ (wf * Z)) * (P.T @ P)  # (d, d)
        h = ((Z.T @ (wf * Rf)) @ P).diagonal()  # (d,)
        const = float((wf * Rf**2).sum())
        q = 1.0 / (lams[:, None] + s.clamp(min=0.0)[None, :])  # (K, d)
        errors += ((q @ H) * q).sum(dim=1) - 2 * (q @ h) + const
    return smallest_error_lam(lams, errors), errors


def smallest_error_lam(lams: torch.Tensor, errors: torch.Tensor) -> float:
    """The λ of `lams` `(K,)` with the smallest held-out error `(K,)`; on a tie (within 1e-9), the larger λ."""
    return float(lams[int(torch.nonzero(errors <= errors.min() * (1 + 1e-9)).max())])
