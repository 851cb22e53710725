"""Diff-QuickFix: the closed-form solve, the (key, value) pairs, encoding through the edited layer, bad inputs."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from helpers import tiny_text_encoder

from time_core.methods.diff_quickfix import (
    OUT_PROJ_PATH,
    QuickFixProblem,
    encode_with_weight,
    find_projection,
    pair_positions,
    prepare_quickfix,
    projection_io,
    quickfix_pairs,
    solve_quickfix,
    tokenize_prompts,
    with_weight,
)
from time_core.models import UnsupportedModelError
from time_core.prompts import AUGMENTATIONS, PromptError
from time_core.tokenizer import build_clip_tokenizer

LENGTH = 16  # context length of the tiny encoder


@pytest.fixture(scope="module")
def tokenizer():
    return build_clip_tokenizer(model_max_length=LENGTH)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return tiny_text_encoder(32, heads=4, positions=LENGTH).eval()


def random_problem(n: int, d_in: int, d_out: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    V = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    W = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    b = torch.randn(d_out, generator=g, dtype=torch.float64)
    return K, V, W, b


def literal_solution(K, V, W, b, lam):
    """W' = (λ W + Σ_j (v_j − b) k_jᵀ)(λ I + Σ_j k_j k_jᵀ)⁻¹, written out."""
    numerator = lam * W.clone()
    gram = lam * torch.eye(K.shape[1], dtype=torch.float64)
    for k, v in zip(K, V):
        numerator += torch.outer(v - b, k)
        gram += torch.outer(k, k)
    return numerator @ torch.inverse(gram)


def objective(W_new, K, V, W, b, lam):
    """Σ_j ‖W' k_j + b − v_j‖² + λ ‖W' − W‖²."""
    return ((K @ W_new.T + b - V) ** 2).sum() + lam * ((W_new - W) ** 2).sum()


def capture(encoder, ids):
    """Inputs and outputs of the first out_proj, recorded with a plain forward hook (removed afterwards)."""
    records = []
    layer = encoder.encoder.layers[0].self_attn.out_proj
    handle = layer.register_forward_hook(lambda m, a, o: records.append((a[0].double(), o.double())))
    try:
        with torch.no_grad():
            encoder(ids)
    finally:
        handle.remove()
    return records[0]


def hook_count(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


# (1) The solve against the formula written out.


@pytest.mark.parametrize("n,d_in,d_out", [(10, 24, 16), (60, 24, 16), (24, 24, 24)])
def test_solve_matches_the_literal_formula(n, d_in, d_out):
    K, V, W, b = random_problem(n, d_in, d_out)
    problem = QuickFixProblem.from_pairs(K, V, W, b)
    for lam in (0.01, 0.5, 3.0):  # one factorisation, several λ
        expected = literal_solution(K, V, W, b, lam)
        assert torch.allclose(problem.solve(lam), expected, rtol=0, atol=1e-10 * expected.abs().max())
    expected = literal_solution(K, V, W, b, 0.01)
    assert torch.allclose(solve_quickfix(K, V, W, b), expected, rtol=0, atol=1e-10 * expected.abs().max())


def test_solve_on_the_pairs_of_a_text_encoder(encoder, tokenizer):
    problem = prepare_quickfix(encoder, tokenizer, "a rose", "a very blue rose")
    K, V = quickfix_pairs(encoder, tokenizer, "a rose", "a very blue rose")
    layer = find_projection(encoder)
    W, b = layer.weight.detach().double(), layer.bias.detach().double()
    expected = literal_solution(K, V, W, b, 0.01)
    assert problem.num_pairs == K.shape[0]
    assert torch.allclose(problem.solve(), expected, rtol=0, atol=1e-10 * expected.abs().max())


def test_without_bias_is_the_same_as_zero_bias():
    K, V, W, b = random_problem(12, 8, 6)
    assert torch.allclose(solve_quickfix(K, V, W, None), solve_quickfix(K, V, W, torch.zeros_like(b)), atol=1e-14)
    # the bias is fitted exactly, not absorbed into the values: shifting V and b together changes nothing
    assert torch.allclose(solve_quickfix(K, V + b, W, b), solve_quickfix(K, V, W, None), atol=1e-12)


# (2) Optimality and limits.


@pytest.mark.parametrize("n,d_in", [(10, 24), (60, 24)])
@pytest.mark.parametrize("lam", [1e-4, 0.01, 1.0])
def test_solution_zeroes_the_gradient(n, d_in, lam):
    K, V, W, b = random_problem(n, d_in, 16)
    W_new = QuickFixProblem.from_pairs(K, V, W, b).solve(lam).requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(W_new, K, V, W, b, lam), W_new)
    scale = K.norm() ** 2 * (W.norm() + V.norm())
    assert grad.norm() / scale < 1e-11
    # and it is a minimum: any perturbation increases the objective
    with torch.no_grad():
        best = objective(W_new, K, V, W, b, lam)
        for seed in range(3):
            delta = 1e-3 * torch.randn(W.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            assert objective(W_new + delta, K, V, W, b, lam) > best


def test_large_lambda_keeps_the_weight_and_small_lambda_fits_exactly():
    K, V, W, b = random_problem(10, 24, 16)  # N < d_in: an exact fit exists
    problem = QuickFixProblem.from_pairs(K, V, W, b)
    assert torch.allclose(problem.solve(1e12), W, rtol=0, atol=1e-9)
    W_fit = problem.solve(1e-9)
    assert torch.allclose(K @ W_fit.T + b, V, rtol=0, atol=1e-6)
    # the update is zero in the null space of K
    null = torch.linalg.svd(K, full_matrices=True).Vh[K.shape[0] :]  # (d_in − N, d_in)
    update = problem.solve(0.01) - W  # (d_out, d_in)
    assert (update @ null.T).abs().max() < 1e-12


# (3) The pairs.


def test_pairs_positions_by_hand(encoder, tokenizer):
    source, destination = "a rose", "a very blue rose"
    ids, last = tokenize_prompts(tokenizer, [source, destination])
    tokens = [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
    # <start> a rose <end> <pad>…  and  <start> a very blue rose <end> <pad>…  (CLIP pads with <end>)
    assert ids.shape == (2, LENGTH)
    assert tokens[0][2] == "rose</w>" and tokens[0][3] == "<|endoftext|>"
    assert tokens[1][4] == "rose</w>" and tokens[1][5] == "<|endoftext|>"
    assert last.tolist() == [2, 4]

    src, dst = pair_positions(2, 4, LENGTH)
    assert src.tolist() == list(range(2, 16))  # the last word, end-of-text and all padding
    assert dst.tolist() == list(range(4, 16)) + [15, 15]  # same offsets, clamped at the last position
    src, dst = pair_positions(4, 2, LENGTH)  # a longer source: no clamping
    assert src.tolist() == list(range(4, 16)) and dst.tolist() == list(range(2, 14))

    inputs, outputs = capture(encoder, ids)  # (2, L, 32) each
    K, V = quickfix_pairs(encoder, tokenizer, source, destination, augment=False)
    assert K.dtype == V.dtype == torch.float64
    assert K.shape == (14, 32) and V.shape == (14, 32)
    assert torch.equal(K, inputs[0, 2:16])
    assert torch.equal(V, torch.cat([outputs[1, 4:16], outputs[1, 15:16], outputs[1, 15:16]]))

    # projection_io records the same tensors without leaving a hook anywhere
    io_inputs, io_outputs = projection_io(encoder, ids)
    assert torch.equal(io_inputs, inputs) and torch.equal(io_outputs, outputs)
    assert hook_count(encoder) == 0


def test_pairs_run_the_encoder_only_up_to_the_layer(encoder, tokenizer):
    ran = []
    handle = encoder.encoder.layers[1].register_forward_hook(lambda *args: ran.append(1))  # copied into the view
    try:
        ids, _ = tokenize_prompts(tokenizer, ["a rose"])
        projection_io(encoder, ids)
        with torch.no_grad():
            encoder(ids)
    finally:
        handle.remove()
    assert ran == [1]  # the plain call only


def test_augmented_pairs_and_several_prompts(encoder, tokenizer):
    sources, destinations = ["a rose", "a car"], ["a very blue rose", "a red car"]
    K, V = quickfix_pairs(encoder, tokenizer, sources, destinations, augment=True)
    blocks_K, blocks_V, count = [], [], 0
    for source, destination in zip(sources, destinations):
        for prefix in ("",) + AUGMENTATIONS:
            k, v = quickfix_pairs(encoder, tokenizer, prefix + source, prefix + destination, augment=False)
            source_last = len(tokenizer(prefix + source).input_ids) - 2
            assert k.shape[0] == LENGTH - source_last
            blocks_K.append(k)
            blocks_V.append(v)
            count += k.shape[0]
    # "a rose": 14 positions; with "A photo of " etc. (3 more tokens): 11 each
    assert [b.shape[0] for b in blocks_K[:4]] == [14, 11, 11, 11]
    assert K.shape == (count, 32) and V.shape == (count, 32)
    assert torch.allclose(K, torch.cat(blocks_K), atol=1e-6) and torch.allclose(V, torch.cat(blocks_V), atol=1e-6)
    assert hook_count(encoder) == 0


# (4) Encoding through the edited layer.


def test_encode_with_weight_equals_a_weight_edited_copy(encoder, tokenizer):
    W_new = prepare_quickfix(encoder, tokenizer, "a rose", "a very blue rose").solve(0.01)
    before = {name: t.detach().clone() for name, t in encoder.state_dict().items()}
    ids, _ = tokenize_prompts(tokenizer, ["a rose", "a car", "a"])

    edited = copy.deepcopy(encoder)
    with torch.no_grad():
        edited.get_submodule(OUT_PROJ_PATH).weight.copy_(W_new)
        expected = edited(ids).last_hidden_state
        original = encoder(ids).last_hidden_state
        got = encode_with_weight(encoder, ids, W_new)
    assert got.shape == (3, LENGTH, 32)
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)
    assert (got - original).abs().max() > 1e-2  # the edit does change the encoding

    after = encoder.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert hook_count(encoder) == 0
    assert find_projection(encoder).weight.dtype == torch.float32


def test_encoder_is_never_modified_during_the_call(encoder, tokenizer):
    """A hook on a module shared with the view sees the original weight while the edited encoder runs."""
    layer = find_projection(encoder)
    original = layer.weight.detach().clone()
    W_new = torch.zeros_like(original)
    seen = []
    handle = encoder.encoder.layers[1].register_forward_hook(
        lambda m, a, o: seen.append(torch.equal(find_projection(encoder).weight, original))
    )
    try:
        ids, _ = tokenize_prompts(tokenizer, ["a rose"])
        with torch.no_grad():
            encode_with_weight(encoder, ids, W_new)
    finally:
        handle.remove()
    assert seen == [True]
    view = with_weight(encoder, W_new)
    assert view is not encoder and find_projection(encoder) is layer
    # new module objects throughout, sharing every tensor but the edited weight
    shared = dict(encoder.named_parameters())
    for name, parameter in view.named_parameters():
        assert (parameter is not shared[name]) == (name == OUT_PROJ_PATH + ".weight"), name
    assert not {id(m) for m in view.modules()} & {id(m) for m in encoder.modules()}


def test_hidden_states_through_a_view_install_no_hook_on_the_encoder(tokenizer):
    """transformers installs output-capturing hooks the first time hidden states are asked for: on the view's own
    modules, never on the shared encoder, whose own hidden states stay right afterwards."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(1)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                            num_attention_heads=4, max_position_embeddings=LENGTH)
    fresh = CLIPTextModel(config).eval()  # never asked for hidden states yet
    ids, _ = tokenize_prompts(tokenizer, ["a rose"])
    weight = find_projection(fresh).weight.detach() * 2
    with torch.no_grad():
        edited = with_weight(fresh, weight)(ids, output_hidden_states=True).hidden_states
        assert hook_count(fresh) == 0 and len(edited) == 4
        plain = fresh(ids, output_hidden_states=True).hidden_states
        again = with_weight(fresh, weight)(ids, output_hidden_states=True).hidden_states
    assert len(plain) == 4 and len(again) == 4  # no hidden state recorded twice
    assert torch.equal(plain[0], edited[0]) and not torch.equal(plain[1], edited[1])
    assert all(torch.equal(a, b) for a, b in zip(edited, again))


def test_concurrent_original_and_edited_encodings(encoder, tokenizer):
    ids, _ = tokenize_prompts(tokenizer, ["a rose", "a car"])
    W_new = torch.zeros_like(find_projection(encoder).weight)
    with torch.no_grad():
        plain_expected = encoder(ids).last_hidden_state
        edited_expected = encode_with_weight(encoder, ids, W_new)
    failures = []

    def run(edited: bool):
        for _ in range(15):
            with torch.no_grad():
                out = encode_with_weight(encoder, ids, W_new) if edited else encoder(ids).last_hidden_state
            if not torch.equal(out, edited_expected if edited else plain_expected):
                failures.append(edited)

    threads = [threading.Thread(target=run, args=(flag,)) for flag in (True, False, True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# (5) Behaviour: the source's activations move to the destination's.


@pytest.mark.parametrize(
    "augment,lam,bound",
    [
        (False, 0.01, 0.2),  # 14 pairs in 32 dimensions; the tiny model's keys are small (singular values 0.05-5.8)
        (False, 1e-6, 1e-3),  # ... so a small λ fits them exactly
        (True, 0.01, 0.5),  # 47 pairs in 32 dimensions: a least-squares compromise
    ],
)
def test_edit_moves_the_source_outputs_to_the_destination(encoder, tokenizer, augment, lam, bound):
    source, destination = "a rose", "a very blue rose"
    W_new = prepare_quickfix(encoder, tokenizer, source, destination, augment=augment).solve(lam)
    ids, _ = tokenize_prompts(tokenizer, [source, destination])
    src, dst = pair_positions(2, 4, LENGTH)

    _, outputs = capture(encoder, ids)  # unedited
    target = outputs[1, dst]  # (14, 32): the destination's outputs at the aligned positions

    records = []
    layer = find_projection(encoder)
    handle = layer.register_forward_hook(lambda m, a, o: records.append(o.double()))  # copied into the view
    try:
        with torch.no_grad():
            encode_with_weight(encoder, ids[:1], W_new)
    finally:
        handle.remove()
    edited = records[0][0, src]  # (14, 32): the source's outputs through the edited encoder

    before = (outputs[0, src] - target).norm()
    after = (edited - target).norm()
    assert before > 0.1 * target.norm()  # the prompts really differed before the edit
    assert after < bound * before


# (6) Bad inputs.


def test_bad_inputs_raise(encoder, tokenizer):
    K, V, W, b = random_problem(5, 8, 6)
    for lam in (0, -1.0, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="lam"):
            solve_quickfix(K, V, W, b, lam=lam)
        with pytest.raises(ValueError, match="lam"):
            QuickFixProblem.from_pairs(K, V, W, b).solve(lam)
    with pytest.raises(ValueError, match="K and V"):
        solve_quickfix(K, V[:4], W, b)
    with pytest.raises(ValueError, match="W must have shape"):
        solve_quickfix(K, V, W.T, b)
    with pytest.raises(ValueError, match="b must have shape"):
        solve_quickfix(K, V, W, b[:3])
    with pytest.raises(ValueError, match="empty"):
        solve_quickfix(K[:0], V[:0], W, b)
    with pytest.raises(ValueError, match="NaN"):
        solve_quickfix(K.index_fill(0, torch.tensor([0]), float("nan")), V, W, b)

    with pytest.raises(ValueError, match="2 source prompts but 1 destination"):
        quickfix_pairs(encoder, tokenizer, ["a rose", "a car"], ["a blue rose"])
    with pytest.raises(ValueError, match="empty list"):
        quickfix_pairs(encoder, tokenizer, [], [])
    for empty in ("", "   "):
        with pytest.raises(PromptError, match="empty"):
            quickfix_pairs(encoder, tokenizer, empty, "a blue rose")
        with pytest.raises(PromptError, match="empty"):
            quickfix_pairs(encoder, tokenizer, "a rose", [empty])
    with pytest.raises(PromptError, match="tokens"):
        quickfix_pairs(encoder, tokenizer, "a rose", "a " + "very " * 20 + "blue rose")

    ids = torch.zeros(1, LENGTH, dtype=torch.long)
    with pytest.raises(UnsupportedModelError, match="has no module"):
        quickfix_pairs(torch.nn.Linear(4, 4), tokenizer, "a rose", "a blue rose")
    with pytest.raises(UnsupportedModelError, match="has no module"):
        encode_with_weight(encoder, ids, W, path="text_model.encoder.layers.0.self_attn.out_proj")
    with pytest.raises(UnsupportedModelError, match="not a linear layer"):
        find_projection(encoder, "encoder.layers.0.self_attn")
    with pytest.raises(ValueError, match="weight must have the shape"):
        encode_with_weight(encoder, ids, W)
    with pytest.raises(ValueError, match="NaN"):
        encode_with_weight(encoder, ids, torch.full((32, 32), float("nan")))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        quickfix_pairs(encoder, build_clip_tokenizer(model_max_length=LENGTH + 4), "a rose", "a blue rose")
    with pytest.raises(ValueError, match="outside"):
        pair_positions(LENGTH, 2, LENGTH)
    assert hook_count(encoder) == 0
