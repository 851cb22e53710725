"""Benchmark `compute_edit` at the real SD 1.4 shapes against the classic per-layer float32 Eq. 5.

Random weights from SD 1.4's known configs (UNet 860M parameters, CLIP ViT-L/14 text encoder 123M), the real CLIP
tokenizer; nothing is downloaded. Prints, for one edit ("a pack of roses" -> "a pack of blue roses", λ = 0.1, K+V,
augmentations):

- `compute_edit` latency with its breakdown (text encoding / solve), against the classic way run in the same process:
  for each of the 32 `attn2.to_k` / `attn2.to_v` layers, `(λ W + Σ v* cᵀ)(λ I + Σ c cᵀ)⁻¹` in float32 with
  `torch.inverse`, writing `W'` (what the original implementations do, minus their redundant recomputation);
- the relative error of each against a float64 per-layer reference, at λ = 0.1 and λ = 1e-4;
- the memory each needs beyond the loaded model (peak resident set size while it runs);
- the cost of applying an edit during generation (mapping the embeddings of one CFG batch) against one UNet step;
- the cost of the knob-free edit (`lam="auto", preserve="auto"`: context sets from the generic corpus, cross-validated
  λ) against the plain edit;

Usage: `python benchmarks/bench_edit.py [--repeats 5] [--step-size 64] [--skip-step]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch

from time_core import compute_edit
from time_core.attention import install_split_processors, split_key_value
from time_core.models import cross_attention_layers, encode_prompts
from time_core.prompts import build_pairs
from time_core.solver import build_system, naive_edited_weight
from time_core.tokenizer import build_clip_tokenizer

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"

SD14_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
)
CLIP_L_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)


class PeakRSS:
    """Samples this process's resident set size in a thread; `.peak - .start` is what the block added."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def added_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def build_sd14(num_threads: int):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.set_num_threads(num_threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD14_UNET).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)).eval()
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    ).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def classic_edit(pipe, lam: float, dtype=torch.float32, outer_products: bool = False) -> dict[str, torch.Tensor]:
    """The classic TIME: per layer, `(λ W + Σ v* cᵀ)(λ I + Σ c cᵀ)⁻¹` with an explicit inverse in `dtype`.

    `outer_products=True` accumulates the sums from per-token outer products, one prompt pair at a time, as the
    published implementations do; otherwise each sum is one matrix product.
    """
    C, C_star, _ = build_pairs(pipe, [SOURCE], [DESTINATION], augment=True)  # (N, d) ×2
    new_weights = {}
    for name, layer in cross_attention_layers(pipe.unet).items():
        for proj in ("to_k", "to_v"):
            W = getattr(layer, proj).weight.detach()
            if not outer_products:
                new_weights[f"{name}.{proj}.weight"] = naive_edited_weight(W, C, C_star, lam, dtype=dtype).to(W.dtype)
                continue
            W = W.to(dtype)
            mat1 = lam * W  # (out, d)
            mat2 = lam * torch.eye(W.shape[1], dtype=dtype)  # (d, d)
            for c, c_star in zip(C.to(dtype).split(77), C_star.to(dtype).split(77)):  # one prompt pair: (77, d)
                v_star = c_star @ W.T  # (77, out)
                mat1 += (v_star[:, :, None] @ c[:, None, :]).sum(dim=0)
                mat2 += (c[:, :, None] @ c[:, None, :]).sum(dim=0)
            new_weights[f"{name}.{proj}.weight"] = mat1 @ torch.inverse(mat2)
    return new_weights


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def edit_mb(edit) -> float:
    return edit.M.numel() * edit.M.element_size() / 2**20


def relative_error(weights: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    num = sum(float((weights[k].double() - reference[k]).norm() ** 2) for k in reference)
    den = sum(float(reference[k].norm() ** 2) for k in reference)
    return (num / den) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--step-size", type=int, default=64, help="latent size of the UNet step (64 = 512 px)")
    parser.add_argument("--skip-step", action="store_true", help="skip timing a UNet step")
    args = parser.parse_args()

    start = time.perf_counter()
    pipe = build_sd14(args.threads)
    n_unet = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    n_text = sum(p.numel() for p in pipe.text_encoder.parameters()) / 1e6
    layers = cross_attention_layers(pipe.unet)
    print(f"SD 1.4 shapes (random weights): UNet {n_unet:.0f}M params, text encoder {n_text:.0f}M params, "
          f"{len(layers)} attn2 layers; built in {time.perf_counter() - start:.0f} s; {args.threads} threads")

    with torch.no_grad():
        compute_edit(pipe, SOURCE, DESTINATION)  # warm-up
        t_encode, (C, C_star, w) = timed(lambda: build_pairs(pipe, [SOURCE], [DESTINATION], augment=True), args.repeats)
        t_solve, M = timed(lambda: build_system(C, C_star, w).solve(0.1), args.repeats)
        with PeakRSS() as mem_ours:
            t_ours, edit = timed(lambda: compute_edit(pipe, SOURCE, DESTINATION, lam=0.1), args.repeats)
        with PeakRSS() as mem_classic:
            t_classic, classic = timed(lambda: classic_edit(pipe, 0.1), max(1, args.repeats // 2))
        t_published, _ = timed(lambda: classic_edit(pipe, 0.1, outer_products=True), 1)

        print(f"\ncompute_edit (N = {C.shape[0]} embedding pairs, d = {C.shape[1]}):")
        print(f"  text encoding + alignment   {1e3 * t_encode:8.1f} ms")
        print(f"  solve (eigh + M, float64)   {1e3 * t_solve:8.1f} ms")
        print(f"  end to end                  {1e3 * t_ours:8.1f} ms   peak memory added {mem_ours.added_mb:6.1f} MB")
        print("classic per-layer float32 Eq. 5 (same text encoding):")
        print(f"  sums as matrix products     {1e3 * t_classic:8.1f} ms   peak memory added "
              f"{mem_classic.added_mb:6.1f} MB")
        print(f"  sums of outer products      {1e3 * t_published:8.1f} ms   (as published)")
        kv_mb = sum(v.numel() * v.element_size() for v in classic.values()) / 2**20
        t_auto, auto = timed(lambda: compute_edit(pipe, SOURCE, DESTINATION, lam="auto", preserve="auto"),
                             args.repeats)
        print(f"  knob-free (lam='auto', preserve='auto') {1e3 * t_auto:8.1f} ms   {t_auto / t_ours:.2f}x the plain "
              f"edit "
              f"(target <= 3x; λ chosen {auto.lam:.3g}; {auto.context})")
        print(f"speed-up end to end: {t_classic / t_ours:.1f}x (matrix products), {t_published / t_ours:.1f}x (outer "
              f"products); solve only: {(t_classic - t_encode) / t_solve:.1f}x, "
              f"{(t_published - t_encode) / t_solve:.1f}x")
        print(f"the classic way writes {kv_mb:.0f} MB of new K/V weights; compute_edit reads no weight and writes "
              f"only M ({edit_mb(edit):.1f} MB)")

        print("\nrelative error of W' against a float64 per-layer reference:")
        for lam in (0.1, 1e-4):
            reference = {}
            for name, layer in layers.items():
                for proj in ("to_k", "to_v"):
                    reference[f"{name}.{proj}.weight"] = naive_edited_weight(
                        getattr(layer, proj).weight.detach(), C, C_star, lam, dtype=torch.float64
                    )
            edit_lam = compute_edit(pipe, SOURCE, DESTINATION, lam=lam)
            ours = edit_lam.edited_weights(pipe.unet)  # cast to the weights' float32
            ours64 = {}
            for name, layer in layers.items():
                for proj in ("to_k", "to_v"):
                    ours64[f"{name}.{proj}.weight"] = getattr(layer, proj).weight.detach().double() @ edit_lam.M
            print(f"  λ = {lam:<7g} W·M (float64 M, cast to float32) {relative_error(ours, reference):.2e}   "
                  f"W·M in float64 {relative_error(ours64, reference):.2e}   "
                  f"classic float32 {relative_error(classic_edit(pipe, lam), reference):.2e}")

        if not args.skip_step:
            print(f"\ncost of applying an edit during generation (latents {args.step_size}x{args.step_size}, CFG "
                  f"batch 2):")
            cond = encode_prompts(pipe, [SOURCE], with_negative=True)
            c = torch.cat([cond.negative, cond.embeds])  # (2, L, d)
            sample = torch.randn(2, 4, args.step_size, args.step_size)
            t_map, _ = timed(lambda: edit.map_embeddings(c), 20)
            t_step, _ = timed(lambda: pipe.unet(sample, 500, encoder_hidden_states=c), 1)
            print(f"  UNet step {t_step:8.2f} s; K+V edit: map embeddings once per image {1e3 * t_map:.2f} ms "
                  f"= {100 * t_map / t_step:.4f}% of one step")
            install_split_processors(pipe.unet)
            t_split, _ = timed(lambda: pipe.unet(sample, 500, encoder_hidden_states=split_key_value(c, c)), 1)
            print(f"  V-only edit: UNet step with split key/value embeddings {t_split:8.2f} s "
                  f"({100 * (t_split - t_step) / t_step:+.2f}% vs plain; includes timing noise)")


if __name__ == "__main__":
    main()
