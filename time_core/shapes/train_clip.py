r"""
Trains the toy CLIP of the Shapes world: a small open_clip model, contrastively, from scratch.

The toy CLIP scores edits in the Shapes world the way CLIP ViT-B/32 scores them in the real world (TIME, Sec. 5.4): an
image is classified as its prompt ("a circle") or its destination prompt ("a green circle"). Its captions are *not* the
world's `sample_batch` captions, whose colour-less prompts follow the world's implicit default colours; here every
caption that does not name a colour is paired with shapes of every colour, so that "a circle" means "a circle of any
colour" and the named colour decides between "a circle" and "a green circle":

- A caption names the colour with probability `COLOUR_NAMING_RATE`; then the fill is that palette colour.
- Otherwise the fill is a uniform palette colour with probability `PALETTE_RATE_UNNAMED`, and else a random colour off
  the palette. Off-palette fills make colour-less captions broad: a contrastive model scores a caption by how specific
  it is to the image (its pointwise mutual information), so the more colours "a circle" stands for, the more clearly
  "a green circle" wins on a green circle; it loses on any other colour, which it never describes. With palette fills
  only, "a green circle" would win on a green circle by just 6:1 (the palette size), i.e. P = 0.86.
- Single shapes, plurals and pairs come with the world's `KIND_RATES`; each shape's colour is named (or not) on its
  own, and the two shapes of a plural share one fill.
- Size (single shapes), background and prefix are each named with probability 1/2; "an" is used before "orange" half
  of the time (the world writes "a orange diamond", English writes "an orange diamond").

Images get the defects of a generative model's samples (colour and contrast shifts, noise, blur) so that the scores
stay meaningful on generated images.

Run `python -m time_core.shapes.train_clip` to (re)write the shipped weights in `time_core/shapes/weights/clip/`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .sampling import KIND_RATES
from .world import (
    BACKGROUND_RGB,
    BACKGROUNDS,
    COLOURS,
    CONNECTORS,
    IMAGE_SIZE,
    MAX_JITTER,
    MAX_PAIR_JITTER,
    PALETTE,
    PREFIXES,
    SHAPES,
    SIZES,
    Scene,
    describe,
    shape_mask,
)

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "weights" / "clip"

# Architecture: a small CLIP ModifiedResNet image tower (its convolutions learn shapes within a few hundred steps, which
# a small ViT trained from scratch does not) and a narrow text tower. The text tower's token embedding (49408 x 32, the
# full CLIP BPE vocabulary) is two thirds of the checkpoint; the whole model has 2.4M parameters, 4.8 MB in fp16.
TOY_CLIP_CONFIG: dict = {
    "model_cfg": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 12, "head_width": 64},
        "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}
# Steps of the shipped model (batch 256).
DEFAULT_STEPS: int = 1200

COLOUR_NAMING_RATE: float = 0.5
PALETTE_RATE_UNNAMED: float = 0.15
# Smallest Euclidean RGB distance (0..255) of an off-palette fill from every palette colour and from the background.
OFF_PALETTE_MARGIN: float = 90.0
BACKGROUND_MARGIN: float = 110.0

_PALETTE_RGB = np.array([PALETTE[c] for c in COLOURS], dtype=np.float64)  # (C, 3)


def _name_orange(rng: np.random.Generator, text: str) -> str:
    """Writes "an orange ..." instead of the world's "a orange ..." at the start of a noun phrase half of the time."""
    return text.replace("a orange", "an orange", 1) if "a orange" in text and rng.random() < 0.5 else text


def _off_palette_colour(rng: np.random.Generator, background: str) -> np.ndarray:
    """A random RGB colour far from every palette colour and from the background, `(3,)` float64."""
    background_rgb = np.array(BACKGROUND_RGB[background], dtype=np.float64)
    while True:
        rgb = rng.uniform(0.0, 255.0, size=3)
        if (
            np.linalg.norm(_PALETTE_RGB - rgb, axis=1).min() >= OFF_PALETTE_MARGIN
            and np.linalg.norm(background_rgb - rgb) >= BACKGROUND_MARGIN
        ):
            return rgb


def _fill(rng: np.random.Generator, named: bool, background: str) -> tuple[str, np.ndarray]:
    """A palette colour (always when named, with probability `PALETTE_RATE_UNNAMED` otherwise) or an off-palette fill;
    returns the palette name (a placeholder for off-palette fills, which are never named) and the RGB fill."""
    if named or rng.random() < PALETTE_RATE_UNNAMED:
        colour = COLOURS[rng.integers(len(COLOURS))]
        return colour, np.array(PALETTE[colour], dtype=np.float64)
    return COLOURS[0], _off_palette_colour(rng, background)


def sample_example(rng: np.random.Generator) -> tuple[list[tuple[Scene, np.ndarray]], str]:
    r"""
    Draws one image description of the toy CLIP's training distribution: one shape, a plural or a pair (with the
    world's `KIND_RATES`), each shape with its RGB fill, and a caption that names each colour with probability
    `COLOUR_NAMING_RATE` and the size (single shapes), background and prefix each with probability 1/2.

    Returns:
        `tuple[list[tuple[Scene, np.ndarray]], str]`: The shapes with their `(3,)` fills, and the caption.
    """
    kinds = tuple(KIND_RATES)
    kind = kinds[rng.choice(len(kinds), p=np.array([KIND_RATES[k] for k in kinds]))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    prefix = PREFIXES[rng.integers(len(PREFIXES))] if rng.random() < 0.5 else None
    name_background = bool(rng.random() < 0.5)
    if kind == "single":
        shape, size = SHAPES[rng.integers(len(SHAPES))], SIZES[rng.integers(len(SIZES))]
        named = bool(rng.random() < COLOUR_NAMING_RATE)
        colour, fill = _fill(rng, named, background)
        dx, dy = rng.uniform(-MAX_JITTER, MAX_JITTER, size=2)
        scene = Scene(shape, colour, size, background, dx=float(dx), dy=float(dy))
        text = describe(scene, named, bool(rng.random() < 0.5), name_background, prefix)
        return [(scene, fill)], _name_orange(rng, text)
    if kind == "plural":
        shape = SHAPES[rng.integers(len(SHAPES))]
        shapes, named = (shape, shape), (bool(rng.random() < COLOUR_NAMING_RATE),) * 2
        colour, fill = _fill(rng, named[0], background)
        fills = [(colour, fill), (colour, fill)]
        connector = None
    else:
        first, second = rng.choice(len(SHAPES), size=2, replace=False)
        shapes = (SHAPES[first], SHAPES[second])
        named = tuple(bool(rng.random() < COLOUR_NAMING_RATE) for _ in range(2))
        fills = [_fill(rng, flag, background) for flag in named]
        connector = CONNECTORS[rng.integers(len(CONNECTORS))]
    objects = []
    for shape, (colour, fill), slot in zip(shapes, fills, ("left", "right")):
        dx, dy = rng.uniform(-MAX_PAIR_JITTER, MAX_PAIR_JITTER, size=2)
        objects.append((Scene(shape, colour, "small", background, dx=float(dx), dy=float(dy), slot=slot), fill))
    text = describe([o for o, _ in objects], named, name_background=name_background, prefix=prefix, connector=connector)
    return objects, _name_orange(rng, text)


def sample_training_batch(
    rng: np.random.Generator, n: int, image_size: int = IMAGE_SIZE
) -> tuple[np.ndarray, list[str]]:
    r"""
    Draws `n` clean image-caption pairs of the toy CLIP's training distribution (see the module docstring).

    Args:
        rng (`np.random.Generator`): The random source.
        n (`int`): Number of pairs.
        image_size (`int`, *optional*, defaults to `IMAGE_SIZE`): Side of the square images in pixels.

    Returns:
        `tuple[np.ndarray, list[str]]`: `(n, H, W, 3)` `float32` images on the 0..255 scale and the `n` captions.
    """
    images = np.empty((n, image_size, image_size, 3), dtype=np.float32)
    captions = []
    for i in range(n):
        objects, text = sample_example(rng)
        images[i] = BACKGROUND_RGB[objects[0][0].background]
        for scene, fill in objects:
            images[i][shape_mask(scene, image_size)] = fill
        captions.append(text)
    return images, captions


def degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r"""
    Gives clean renders the defects of generated images: colour/contrast shifts, blur and noise.

    Args:
        images (`torch.Tensor`): `(N, 3, H, W)` images in `[0, 1]`.
        generator (`torch.Generator`): The random source.

    Returns:
        `torch.Tensor`: `(N, 3, H, W)` degraded images in `[0, 1]`.
    """
    n = images.shape[0]
    # Per-image, per-channel colour shift of up to +-0.06 and a contrast change of up to +-10%.
    shift = (torch.rand(n, 3, 1, 1, generator=generator) - 0.5) * 0.12
    contrast = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2
    images = (images - 0.5) * contrast + 0.5 + shift
    # Blur half of the images with a 3x3 binomial kernel.
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16.0).expand(3, 1, 3, 3)  # (3, 1, 3, 3)
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    blur = torch.rand(n, 1, 1, 1, generator=generator) < 0.5
    images = torch.where(blur, blurred, images)
    # Gaussian noise with a per-image standard deviation in [0, 0.08].
    sigma = torch.rand(n, 1, 1, 1, generator=generator) * 0.08
    images = images + sigma * torch.randn(images.shape, generator=generator)
    return images.clamp(0.0, 1.0)


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% of `lr`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train_clip(
    out_dir: Path,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = True,
    lr: float = 2e-3,
    num_threads: int | None = None,
) -> Path:
    r"""
    Trains the toy CLIP with CLIP's symmetric InfoNCE loss and writes it as an open_clip model folder.

    Args:
        out_dir (`Path`): Folder to write `open_clip_config.json` and `open_clip_model.safetensors` (fp16) into;
            created if missing. The shipped model lives in `DEFAULT_OUT_DIR`.
        steps (`int`, *optional*, defaults to `DEFAULT_STEPS`): Number of optimisation steps.
        seed (`int`, *optional*, defaults to 0): Seed of the data stream, the initialisation and the augmentations.
        batch_size (`int`, *optional*, defaults to 256): Image-caption pairs per step.
        progress (`bool`, *optional*, defaults to `True`): Whether to show a tqdm progress bar.
        lr (`float`, *optional*, defaults to 2e-3): Peak AdamW learning rate.
        num_threads (`int`, *optional*): If given, `torch.set_num_threads(num_threads)` for the run (restored after).

    Returns:
        `Path`: `out_dir`, loadable with `time_core.scoring.load_scorer(f"local-dir:{out_dir}")`.
    """
    from open_clip.loss import ClipLoss
    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for a contrastive loss, got {batch_size}.")
    out_dir = Path(out_dir)
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        model_cfg = TOY_CLIP_CONFIG["model_cfg"]
        preprocess_cfg = TOY_CLIP_CONFIG["preprocess_cfg"]
        model = CLIP(**model_cfg)
        model.train()
        # Captions are tokenized afresh every step (7 ms for 256 of them). A dict of every caption's token tensor grew
        # without bound (tens of thousands of distinct captions) and, its small tensors interleaved with each step's
        # large buffers on glibc's heap, fragmented it: RSS grew by about 10 MB per step (19 GB after 2,000 steps).
        tokenizer = SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])
        mean = torch.tensor(preprocess_cfg["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(preprocess_cfg["std"]).view(1, 3, 1, 1)

        def decays(name: str, parameter: torch.nn.Parameter) -> bool:
            return parameter.ndim >= 2 and "embedding" not in name

        parameters = list(model.named_parameters())
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for n, p in parameters if decays(n, p)], "weight_decay": 0.05},
                {"params": [p for n, p in parameters if not decays(n, p)], "weight_decay": 0.0},
            ],
            lr=lr,
            betas=(0.9, 0.98),
            eps=1e-6,
        )
        loss_fn = ClipLoss()
        warmup = max(1, steps // 20)
        start = time.perf_counter()
        bar = tqdm(range(steps), desc="toy CLIP", disable=not progress)
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, steps, lr, warmup)
            images, captions = sample_training_batch(rng, batch_size)
            pixels = torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0  # (B, 3, H, W)
            pixels = (degrade(pixels, generator) - mean) / std
            text = tokenizer(captions)  # (B, context_length)
            image_features, text_features, logit_scale = model(pixels, text)  # (B, D), (B, D), ()
            loss = loss_fn(image_features, text_features, logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, math.log(100.0))
            if progress and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{logit_scale.item():.1f}")
        bar.close()
        seconds = time.perf_counter() - start

        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
        training = {"steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr, "seconds": round(seconds, 1)}
        save_file(state, str(out_dir / WEIGHTS_NAME), metadata={k: str(v) for k, v in training.items()})
        config = {**TOY_CLIP_CONFIG, "training": training}
        (out_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return out_dir
    finally:
        torch.set_num_threads(previous_threads)


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m time_core.shapes.train_clip [--out-dir DIR] [--steps N] [--seed S] [--batch-size B]`."""
    parser = argparse.ArgumentParser(description="Train the toy CLIP of the Shapes world.")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out_dir = train_clip(
        args.out_dir,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        num_threads=args.threads,
    )
    print(f"Wrote {out_dir / CONFIG_NAME} and {out_dir / WEIGHTS_NAME}")


if __name__ == "__main__":
    main()
