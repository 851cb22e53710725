"""Eq. 4/5 as `W' = W · M`: optimality, limits, equivalence with the literal per-layer form, numerics."""

import math

import pytest
import torch

from time_core.solver import (
    MIN_LAM,
    build_system,
    check_finite,
    check_lam,
    cross_validated_lam,
    edit_matrix,
    naive_edited_weight,
    parse_lam,
)


def random_problem(n: int, d: int, out: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(n, d, generator=g, dtype=torch.float64)
    C_star = C + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    W = torch.randn(out, d, generator=g, dtype=torch.float64)
    return C, C_star, W


def eq4_gradient(W_new, W, C, C_star, lam, weights=None):
    """∂/∂W' of Σ w_i ‖W' c_i − W c*_i‖² + λ ‖W' − W‖² (halved)."""
    w = torch.ones(C.shape[0], dtype=C.dtype) if weights is None else weights
    residual = C @ W_new.T - C_star @ W.T  # (N, out)
    return (residual * w[:, None]).T @ C + lam * (W_new - W)


@pytest.mark.parametrize("n,d", [(40, 16), (10, 32), (300, 24)])
@pytest.mark.parametrize("lam", [1e-6, 1e-3, 0.1, 10.0])
def test_solution_zeroes_the_gradient_of_eq4(n, d, lam):
    C, C_star, W = random_problem(n, d)
    W_new = W @ edit_matrix(C, C_star, lam)
    grad = eq4_gradient(W_new, W, C, C_star, lam)
    scale = (C.norm() ** 2) * W.norm()
    assert grad.norm() / scale < 1e-12


def test_rank_deficient_tiny_lambda_is_still_optimal():
    # N < d and duplicated rows (like BOS tokens shared by all prompts): λI + Σ c cᵀ has condition ~1e10 at λ = 1e-6.
    C, C_star, W = random_problem(20, 64)
    C = torch.cat([C, C[:5]])
    C_star = torch.cat([C_star, C_star[:5]])
    lam = 1e-6
    M = edit_matrix(C, C_star, lam)
    grad = eq4_gradient(W @ M, W, C, C_star, lam)
    assert grad.norm() / ((C.norm() ** 2) * W.norm()) < 1e-12
    # In the null space of C, M is exactly the identity (the regulariser alone decides there).
    null = torch.linalg.svd(C, full_matrices=True).Vh[C.shape[0] :]  # (d - r, d)
    assert torch.allclose(M @ null.T, null.T, atol=1e-9)
    # A float32 explicit inverse (the classic implementation) is far off at this λ.
    naive32 = naive_edited_weight(W, C, C_star, lam, dtype=torch.float32).double()
    rel_err_32 = (naive32 - W @ M).norm() / (W @ M).norm()
    assert rel_err_32 > 1e-3


@pytest.mark.parametrize("lam", [1e-2, 0.1, 1.0])
def test_matches_literal_eq5_per_layer_in_float64(lam):
    C, C_star, W = random_problem(50, 16)
    expected = naive_edited_weight(W, C, C_star, lam)
    assert torch.allclose(W @ edit_matrix(C, C_star, lam), expected, rtol=0, atol=1e-10 * expected.abs().max())


def test_large_lambda_returns_the_original_weights():
    C, C_star, W = random_problem(30, 16)
    M = edit_matrix(C, C_star, 1e14)
    assert torch.allclose(M, torch.eye(16, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(W @ M, W, atol=1e-9)


def test_identical_pairs_give_the_identity():
    C, _, _ = random_problem(30, 16)
    assert torch.equal(edit_matrix(C, C.clone(), 0.1), torch.eye(16, dtype=torch.float64))


def test_weights_equal_repeated_pairs():
    C, C_star, W = random_problem(12, 16)
    weights = torch.ones(12, dtype=torch.float64)
    weights[:4] = 3.0
    repeated_C = torch.cat([C, C[:4], C[:4]])
    repeated_C_star = torch.cat([C_star, C_star[:4], C_star[:4]])
    assert torch.allclose(edit_matrix(C, C_star, 0.1, weights), edit_matrix(repeated_C, repeated_C_star, 0.1), atol=1e-10)
    grad = eq4_gradient(W @ edit_matrix(C, C_star, 0.1, weights), W, C, C_star, 0.1, weights)
    assert grad.norm() / ((C.norm() ** 2) * W.norm()) < 1e-12


def test_one_decomposition_serves_a_sweep():
    C, C_star, _ = random_problem(40, 16)
    system = build_system(C, C_star)
    for lam in (1e-4, 1e-2, 1.0, 1e3):
        assert torch.allclose(system.solve(lam), edit_matrix(C, C_star, lam), rtol=0, atol=1e-12)


def test_solution_is_float64_and_does_not_modify_inputs():
    C, C_star, _ = random_problem(10, 8)
    C32, C_star32 = C.float(), C_star.float()
    before = (C32.clone(), C_star32.clone())
    M = edit_matrix(C32, C_star32, 0.1)
    assert M.dtype == torch.float64
    assert torch.equal(C32, before[0]) and torch.equal(C_star32, before[1])


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "abc", None, 5e-324, 1e-30, MIN_LAM / 2])
def test_bad_lambda_is_rejected(bad):
    with pytest.raises(ValueError, match="lam must be"):
        check_lam(bad)
    C, C_star, _ = random_problem(10, 8)
    with pytest.raises(ValueError, match="lam must be"):
        edit_matrix(C, C_star, bad)


def test_the_smallest_lambda_gives_a_finite_edit_that_a_larger_one_approaches():
    # rank deficient (duplicated rows, N < d): the null space of C is where rounding noise would be divided by λ
    C, C_star, _ = random_problem(20, 64)
    C, C_star = torch.cat([C, C[:5]]), torch.cat([C_star, C_star[:5]])
    smallest, small = edit_matrix(C, C_star, MIN_LAM), edit_matrix(C, C_star, 1e-9)
    assert torch.isfinite(smallest).all()
    assert (smallest - small).abs().max() < 1e-6 * small.abs().max()  # both are the λ → 0 limit
    assert check_lam(MIN_LAM) == MIN_LAM
    with pytest.raises(ValueError, match="at least 1e-12"):
        check_lam(5e-324)


def test_a_solve_with_non_finite_values_is_refused():
    with pytest.raises(ValueError, match="NaN or infinite values; use a larger λ"):
        check_finite(torch.tensor([[1.0, math.nan]]), 1e-12)
    system = build_system(*random_problem(10, 8)[:2])
    broken = type(system)(A=system.A * math.inf, s=system.s, B=system.B)
    with pytest.raises(ValueError, match="lam = 0.1 gives an edit with NaN"):
        broken.solve(0.1)


def test_bad_shapes_and_weights_are_rejected():
    C, C_star, _ = random_problem(10, 8)
    with pytest.raises(ValueError, match="shape"):
        build_system(C, C_star[:, :4])
    with pytest.raises(ValueError, match="empty"):
        build_system(C[:0], C_star[:0])
    with pytest.raises(ValueError, match="weights"):
        build_system(C, C_star, torch.full((10,), -1.0))
    with pytest.raises(ValueError, match="NaN"):
        build_system(C * math.nan, C_star)


def test_cross_validated_lam_equals_brute_force_folds():
    """The closed-form held-out errors equal fitting the weighted ridge update on each fold's complement and measuring
    it on the fold; rows of fold -1 are always fitted; the chosen λ is the argmin."""
    g = torch.Generator().manual_seed(0)
    N, d = 60, 8
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    R = X @ torch.randn(d, d, generator=g, dtype=torch.float64) * 0.3 + 0.1 * torch.randn(N, d, generator=g,
                                                                                            dtype=torch.float64)
    w = torch.rand(N, generator=g, dtype=torch.float64) + 0.5
    folds = torch.arange(N) % 3
    folds[:6] = -1
    lams = torch.logspace(-3, 3, 13, dtype=torch.float64)
    chosen, errors = cross_validated_lam(X, R, w, folds, lams)
    for k, lam in enumerate(lams.tolist()):
        expected = 0.0
        for fold in range(3):
            train, held = folds != fold, folds == fold
            Xt, Rt, wt = X[train], R[train], w[train][:, None]
            U = (Rt.T @ (wt * Xt)) @ torch.linalg.inv(lam * torch.eye(d, dtype=torch.float64) + Xt.T @ (wt * Xt))
            expected += float((w[held][:, None] * (X[held] @ U.T - R[held]) ** 2).sum())
        assert errors[k] == pytest.approx(expected, rel=1e-9)
    assert chosen == float(lams[int(errors.argmin())])
    with pytest.raises(ValueError, match="must be > 0"):
        cross_validated_lam(X, R, w, folds, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="at least one fold"):
        cross_validated_lam(X, R, w, torch.full((N,), -1), lams)


@pytest.mark.parametrize("text, expected", [("auto", "auto"), (" Auto ", "auto"), ("0.5", 0.5), (2, 2.0)])
def test_parse_lam(text, expected):
    assert parse_lam(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "big", None])
def test_parse_lam_refuses(text):
    with pytest.raises(ValueError, match="lam must be"):
        parse_lam(text)
