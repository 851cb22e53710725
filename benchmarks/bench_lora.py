"""Benchmark the LoRA export: file sizes and truncation errors of a TIME edit, at the real SD 1.4 shapes or on the toy.

`--model sd14` (default): random weights from SD 1.4's known configs (`bench_edit.build_sd14`: UNet 860M parameters,
CLIP ViT-L/14 text encoder 123M), the real CLIP tokenizer, nothing downloaded; the edit "a pack of roses" -> "a pack
of blue roses" (λ = 0.1, K+V, augmentations: 308 embedding pairs). `--model toy`: the embedded Shapes-world model (a
trained text encoder) and "a circle" -> "a green circle". The edit is exported with `time_core.export.export_lora` at
full rank and at each `--ranks` value, in both formats and float32 / float16. Prints, per export: the stored ranks,
the file size, the relative error `‖ΔW − up · down‖_F / ‖ΔW‖_F` (max and mean over the `attn2.to_k` / `attn2.to_v`
layers) and the export time. With `--check`: on SD 1.4 shapes, the full-rank PEFT file is loaded by diffusers into a
copy of the UNet and one UNet step (latents `--check-size`) is compared with the edit's own (`M c` fed to the
original UNet); on the toy, each rank's LoRA is loaded and the colour reader counts, over 8 seeds, the colours of the
source, a positive and a negative prompt against the edit's own images.

Random weights make random text embeddings, whose edits spread over many singular directions: a real SD 1.4 edit's
truncation errors differ (the toy's trained encoder concentrates them). Usage:
`python benchmarks/bench_lora.py [--model sd14|toy] [--ranks 16 64] [--check] [--threads N]`
"""

from __future__ import annotations

import argparse
import collections
import copy
import tempfile
import time
from pathlib import Path

import torch
from bench_edit import DESTINATION, SOURCE, build_sd14

from time_core import compute_edit, generate, load_pipeline
from time_core.export import export_lora
from time_core.export.factors import layer_factors
from time_core.models import encode_prompts

TOY_EDIT = ("a circle", "a green circle")
TOY_PROMPTS = ("a circle", "a big circle", "a square")  # the source, a positive, a negative


def with_lora(pipe, path: Path, component: str = "unet"):
    """A pipeline sharing `pipe`'s models except a deep copy of `component`, with the LoRA file loaded by diffusers."""
    other = type(pipe)(**{**pipe.components, component: copy.deepcopy(getattr(pipe, component))})
    other.load_lora_weights(str(path))
    return other


def check_unet_step(pipe, edit, path: Path, size: int) -> float:
    """Relative difference between one step of a UNet copy with the LoRA loaded and the edit's own step."""
    other = with_lora(pipe, path)
    cond = encode_prompts(pipe, [SOURCE], with_negative=True)
    c = torch.cat([cond.negative, cond.embeds])  # (2, L, d)
    sample = torch.randn(2, 4, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = pipe.unet(sample, 500, encoder_hidden_states=edit.map_embeddings(c)).sample
        lora = other.unet(sample, 500, encoder_hidden_states=c).sample
    return float((lora - ours).norm() / ours.norm())


def toy_colours(pipe, edit=None, seeds=range(8)) -> list[str]:
    """For each of `TOY_PROMPTS`, the colours the colour reader finds over the seeds, e.g. `"green 8"`."""
    from time_core.shapes.colour_reader import read_colour

    result = generate(pipe, list(TOY_PROMPTS), list(seeds), edit=edit, original=edit is None, num_inference_steps=12,
                      guidance_scale=5.0, progress=False)
    rows = result.original if edit is None else result.edited
    return [", ".join(f"{c} {n}" for c, n in collections.Counter(read_colour(im) for im in row).most_common())
            for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("sd14", "toy"), default="sd14")
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--check", action="store_true", help="load the LoRA files and compare with the edit")
    parser.add_argument("--check-size", type=int, default=16, help="latent side of the checked UNet step (sd14)")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.model == "sd14":
        pipe, (source, destination) = build_sd14(args.threads), (SOURCE, DESTINATION)
    else:
        torch.set_num_threads(args.threads)
        pipe, (source, destination) = load_pipeline("toy", device="cpu"), TOY_EDIT
    print(f"{args.model}: built in {time.perf_counter() - start:.0f} s; {args.threads} threads; "
          f"edit {source!r} -> {destination!r}")
    with torch.no_grad():
        edit = compute_edit(pipe, source, destination, lam=0.1)
        start = time.perf_counter()
        layers = layer_factors(pipe, edit)
        print(f"ΔW and SVD of {len(layers)} layers: {time.perf_counter() - start:.1f} s; numerical ranks "
              f"{min(x.full_rank for x in layers)}-{max(x.full_rank for x in layers)}; float32 K/V weights "
              f"{sum(x.up.shape[0] * x.down.shape[1] for x in layers) * 4 / 2**20:.2f} MB")

    print(f"\n{'rank':>5} {'format':>6} {'dtype':>8} {'stored ranks':>13} {'size':>9} {'max error':>10} "
          f"{'mean error':>10} {'time':>6}")
    files = {}
    with tempfile.TemporaryDirectory() as folder:
        for rank in [None, *args.ranks]:
            for fmt in ("peft", "kohya"):
                for dtype in ("float32", "float16"):
                    path = Path(folder) / f"{rank}-{fmt}-{dtype}.safetensors"
                    start = time.perf_counter()
                    report = export_lora(pipe, edit, path, rank=rank, lora_format=fmt, dtype=dtype)
                    seconds = time.perf_counter() - start
                    ranks = sorted(set(report.ranks.values()))
                    stored = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"
                    print(f"{'full' if rank is None else rank:>5} {fmt:>6} {dtype:>8} {stored:>13} "
                          f"{report.num_bytes / 2**20:>6.2f} MB {report.max_error:>10.2e} {report.mean_error:>10.2e} "
                          f"{seconds:>5.1f}s")
                    if fmt == "peft" and dtype == "float32":
                        files[rank] = path
        if args.check and args.model == "sd14":
            difference = check_unet_step(pipe, edit, files[None], args.check_size)
            print(f"\nfull-rank PEFT LoRA loaded by diffusers: one UNet step differs from the edit's by "
                  f"{difference:.2e} (relative, latents {args.check_size}x{args.check_size})")
        elif args.check:
            print(f"\ncolours over 8 seeds of {', '.join(map(repr, TOY_PROMPTS))}:")
            print(f"  {'original':>12}: {' | '.join(toy_colours(pipe))}")
            print(f"  {'edit':>12}: {' | '.join(toy_colours(pipe, edit))}")
            for rank, path in files.items():
                label = "LoRA full" if rank is None else f"LoRA rank {rank}"
                print(f"  {label:>12}: {' | '.join(toy_colours(with_lora(pipe, path)))}")


if __name__ == "__main__":
    main()
