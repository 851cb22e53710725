"""Benchmark the demo's Stable Diffusion click on a CUDA GPU: SD 1.4 shapes with random weights, nothing downloaded.

Builds SD 1.4 from its known configs (`bench_edit.build_sd14`: UNet 860M parameters, CLIP ViT-L/14 text encoder, VAE)
with random weights, in float16 on CUDA, with the demo's SD defaults (`DemoConfig.for_model(DEFAULT_SD_MODEL)`:
scheduler, steps, guidance, seeds, batch size), and prints:

- one UNet step (classifier-free guidance: 2 rows per image) at 512 px for 1, 4 and `batch_size` images, and the
  image-steps per second each gives;
- the default Edit click, timed as the demo runs it: the TIME edit of the first `timed_validation` entry, then the
  original model's images (source + 5 positives + 5 negatives per seed; skipped when cached) and the edited model's,
  in pipeline calls of `batch_size` images (`time_core.generate`), cold (originals generated) and cached;
- the peak GPU memory (`torch.cuda.max_memory_allocated`) of each, to compare with a T4's 16 GB.

CLIP scoring is left out (it needs the ViT-B/32 weights; 22 images are scored in well under a second). Random
weights give the same shapes, hence the same time and memory, as the real checkpoint.

Usage: `python benchmarks/bench_gpu.py [--repeats 3]`; without CUDA it exits with a message.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import torch


def cuda_timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs (after one warm-up), synchronised with the GPU."""
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_gb(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU: torch.cuda.is_available() is False on this machine "
                         "(see docs/demo.md, 'Stable Diffusion on a Space', for the figures it would measure)")

    from bench_edit import build_sd14

    from time_core import compute_edit, generate
    from time_core.demo.config import DEFAULT_SD_MODEL, DemoConfig
    from time_core.models import with_scheduler
    from time_core.presets import load_preset

    config = DemoConfig.for_model(DEFAULT_SD_MODEL)
    pipe = with_scheduler(build_sd14(torch.get_num_threads()), config.scheduler).to("cuda", torch.float16)
    pipe.set_progress_bar_config(disable=True)
    entry = load_preset("timed_validation").entries[0]
    prompts = [entry.source, *(p.prompt for p in entry.positives), *(p.prompt for p in entry.negatives)]
    seeds = list(range(config.num_seeds))
    batch = config.batch_size or len(prompts) * len(seeds)
    print(f"{torch.cuda.get_device_name()}; SD 1.4 shapes, random weights, float16; demo defaults: scheduler "
          f"{config.scheduler}, {config.steps} steps, guidance {config.guidance}, {len(seeds)} seed(s), "
          f"{len(prompts)} prompts, batch size {batch}")

    unet = pipe.unet.config
    size = unet.sample_size * pipe.vae_scale_factor
    print(f"\none UNet step at {size} px (classifier-free guidance: 2 rows per image):")
    text = torch.randn(1, pipe.tokenizer.model_max_length, unet.cross_attention_dim, device="cuda", dtype=torch.float16)
    for images in sorted({1, 4, batch}):
        sample = torch.randn(2 * images, unet.in_channels, unet.sample_size, unet.sample_size, device="cuda",
                             dtype=torch.float16)
        context = text.expand(2 * images, -1, -1)

        def step(sample=sample, context=context):
            with torch.no_grad():
                pipe.unet(sample, 500, encoder_hidden_states=context)

        seconds = cuda_timed(step, args.repeats)
        print(f"  {images:>3} image(s): {1e3 * seconds:7.1f} ms, {images / seconds:6.1f} image-steps/s, "
              f"peak {peak_gb(step):5.2f} GB")

    settings = dict(num_inference_steps=config.steps, guidance_scale=config.guidance, batch_size=batch, progress=False)
    start = time.perf_counter()
    edit = compute_edit(pipe, entry.source, entry.destination, lam=config.lam)
    torch.cuda.synchronize()
    t_edit = time.perf_counter() - start
    with warnings.catch_warnings():  # random weights can decode to NaN pixels
        warnings.simplefilter("ignore", RuntimeWarning)
        cold = cuda_timed(lambda: generate(pipe, prompts, seeds, edit=edit, **settings), args.repeats)
        cached = cuda_timed(lambda: generate(pipe, prompts, seeds, edit=edit, original=False, **settings), args.repeats)
        memory = peak_gb(lambda: generate(pipe, prompts, seeds, edit=edit, **settings))
    images = 2 * len(prompts) * len(seeds)
    print(f"\nthe default Edit click ({images} images cold, {images // 2} cached; {config.steps} steps each):")
    print(f"  edit (text encoding + solve) {t_edit:6.2f} s")
    print(f"  cold   {cold:6.2f} s ({images * config.steps / cold:5.1f} image-steps/s)")
    print(f"  cached {cached:6.2f} s (originals from the cache)")
    print(f"  peak GPU memory {memory:5.2f} GB (a T4 has 16 GB)")


if __name__ == "__main__":
    sys.exit(main())
