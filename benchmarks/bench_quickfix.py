"""Benchmark Diff-QuickFix at the real SD 1.4 shapes, against a plain TIME edit measured in the same process.

The pipeline is `bench_edit.build_sd14` (random weights from SD 1.4's known configs: CLIP ViT-L/14 text encoder, UNet;
nothing is downloaded). Prints, for one edit ("a pack of roses" -> "a pack of blue roses", augmentations):

- `compute_edit(..., method="diff-quickfix")` end to end (λ = 0.01) with its breakdown: collecting the (key, value)
  pairs (one text-encoder pass over the 8 prompts), the float64 factorisation, one `.solve(λ)`;
- `compute_edit(...)` of TIME (λ = 0.1) end to end, and the ratio;
- the relative error of `W'` against the literal float64 formula `(λ W + Σ (v − b) kᵀ)(λ I + Σ k kᵀ)⁻¹`;
- the cost of applying the edit: encoding a CFG batch through the edited encoder (building the weight-edited view
  included) against encoding it through the original encoder.

Usage: `python benchmarks/bench_quickfix.py [--repeats 5] [--threads N]`
"""

from __future__ import annotations

import argparse

import torch
from bench_edit import DESTINATION, SOURCE, PeakRSS, build_sd14, timed

from time_core import compute_edit
from time_core.methods.diff_quickfix import QuickFixProblem, find_projection, projection_path, quickfix_pairs
from time_core.models import encode_prompts

TARGET_SECONDS = 1.0  # end to end, on a CPU


def literal_weight(K: torch.Tensor, V: torch.Tensor, W: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    """`(λ W + Σ_j (v_j − b) k_jᵀ)(λ I + Σ_j k_j k_jᵀ)⁻¹` in float64, with one linear solve."""
    W, b = W.double(), b.double()
    numerator = lam * W + (V - b).T @ K  # (d_out, d_in)
    gram = lam * torch.eye(K.shape[1], dtype=torch.float64) + K.T @ K  # (d_in, d_in), symmetric
    return torch.linalg.solve(gram, numerator.T).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    pipe = build_sd14(args.threads)
    encoder, tokenizer = pipe.text_encoder, pipe.tokenizer
    path = projection_path(encoder)
    layer = find_projection(encoder, path)
    print(f"SD 1.4 shapes (random weights), {args.threads} threads; Diff-QuickFix edits text_encoder.{path} "
          f"{tuple(layer.weight.shape)}")

    with torch.no_grad():
        compute_edit(pipe, SOURCE, DESTINATION, method="diff-quickfix")  # warm-up
        compute_edit(pipe, SOURCE, DESTINATION)
        t_pairs, (K, V) = timed(lambda: quickfix_pairs(encoder, tokenizer, SOURCE, DESTINATION, path=path),
                                args.repeats)
        t_factor, problem = timed(lambda: QuickFixProblem.from_pairs(K, V, layer.weight, layer.bias), args.repeats)
        t_solve, _ = timed(lambda: problem.solve(0.01), args.repeats)
        with PeakRSS() as memory:
            t_quickfix, edit = timed(lambda: compute_edit(pipe, SOURCE, DESTINATION, method="diff-quickfix"),
                                     args.repeats)
        t_time, _ = timed(lambda: compute_edit(pipe, SOURCE, DESTINATION, lam=0.1), args.repeats)

        print(f"\nDiff-QuickFix compute_edit (N = {K.shape[0]} pairs, d = {K.shape[1]}, λ = 0.01):")
        print(f"  pairs (text encoder, 8 prompts)  {1e3 * t_pairs:8.1f} ms")
        print(f"  factorisation (eigh, float64)    {1e3 * t_factor:8.1f} ms")
        print(f"  solve for one λ                  {1e3 * t_solve:8.2f} ms")
        print(f"  end to end                       {1e3 * t_quickfix:8.1f} ms   peak memory added "
              f"{memory.added_mb:6.1f} MB   (target ≤ {TARGET_SECONDS:.0f} s: "
              f"{'met' if t_quickfix <= TARGET_SECONDS else 'NOT met'})")
        t_auto, auto = timed(lambda: compute_edit(pipe, SOURCE, DESTINATION, method="diff-quickfix", preserve="auto"),
                             args.repeats)
        print(f"  with preserve='auto'             {1e3 * t_auto:8.1f} ms   {t_auto / t_quickfix:.2f}x the plain edit "
              f"({len(auto.preserve)} derived prompts, weight {auto.preserve_weight:g}; target ≤ 3x: "
              f"{'met' if t_auto <= 3 * t_quickfix else 'NOT met'})")
        print(f"TIME compute_edit end to end       {1e3 * t_time:8.1f} ms")
        print(f"ratio Diff-QuickFix / TIME: {t_quickfix / t_time:.2f}")

        print("\nrelative error of W' against the literal float64 formula:")
        W = layer.weight.detach().double()
        for lam in (0.01, 1e-4):
            reference = literal_weight(K, V, W, layer.bias.detach(), lam)
            ours = W + compute_edit(pipe, SOURCE, DESTINATION, lam=lam, method="diff-quickfix").deltas[0]
            error = float((ours - reference).norm() / reference.norm())
            print(f"  λ = {lam:<6g} {error:.2e}")

        cond = encode_prompts(pipe, [SOURCE], with_negative=True)
        t_plain, _ = timed(lambda: encode_prompts(pipe, [SOURCE], with_negative=True), 10)
        t_edited, _ = timed(lambda: edit.conditioning(pipe, cond, [SOURCE], None), 10)
        t_view, _ = timed(lambda: edit.edited_pipeline(pipe), 10)
        print(f"\napplying the edit: a CFG batch (prompt + unconditional) through the edited encoder "
              f"{1e3 * t_edited:.1f} ms (building the weight-edited view {1e3 * t_view:.1f} ms) vs "
              f"{1e3 * t_plain:.1f} ms through the original; once per generate call, not per step")


if __name__ == "__main__":
    main()
