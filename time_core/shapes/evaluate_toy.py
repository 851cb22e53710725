"""Measures TIME edits of the toy Shapes-world model with the ground-truth colour reader.

```bash
python -m time_core.shapes.evaluate_toy [--pipeline time_core/shapes/weights/pipeline] [--seeds 8] [--steps 15]
```

For each entry "a <shape>" -> "a <colour> <shape>" and each seed (the same initial noise for every prompt):

- *baseline*: the unedited model on the source prompt already shows the colour (should be low);
- *oracle*: the unedited model on the destination prompt shows the colour (should be high);
- *efficacy*: the edited model on the source prompt shows the colour;
- *generality*: the edited model on the positives (the shape in other phrasings) shows the colour;
- *specificity*: the edited model on the negatives (the other shapes) keeps the colour the unedited model gives them
  for the same seed.

The edit is the TIME closed form applied to the text-encoder outputs (`c -> M c` for the prompt and the empty
negative prompt), which equals editing every cross-attention key/value projection.
"""

import os


# On a small shared CPU, OpenMP threads that spin while waiting slow training down by up to 10x when another process
# competes for the cores; sleeping waiters avoid that. It must be set before torch (and its OpenMP runtime) loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffusers import StableDiffusionPipeline

from . import world
from .colour_reader import read_colour
from .train import EDIT_AUGMENTATIONS, edit_pairs, time_edit_matrix


DEFAULT_PIPELINE: Path = Path(__file__).resolve().parent / "weights" / "pipeline"
# (shape, destination colour); the colour differs from the shape's implicit default.
ENTRIES: tuple[tuple[str, str], ...] = (
    ("circle", "green"),
    ("circle", "blue"),
    ("square", "red"),
    ("square", "yellow"),
    ("triangle", "purple"),
    ("triangle", "red"),
    ("star", "red"),
    ("star", "blue"),
    ("heart", "green"),
    ("heart", "yellow"),
    ("diamond", "blue"),
    ("diamond", "green"),
)
POSITIVE_TEMPLATES: tuple[str, ...] = (
    "a big {shape}",
    "a photo of a small {shape}",
    "a {shape} on a black background",
    "a drawing of a {shape}",
    "an image of a big {shape}",
)


@dataclass
class EntryResult:
    """Shares (in `[0, 1]`) of one entry over its seeds."""

    source: str
    destination: str
    baseline: float
    oracle: float
    efficacy: float
    generality: float
    specificity: float


def edit_matrix(pipe: StableDiffusionPipeline, source: str, destination: str, lam: float = 0.1) -> torch.Tensor:
    r"""
    The TIME map of an edit (with TIME's prompt augmentations), transposed: edit row vectors as `x @ M^T`.

    Returns:
        `torch.Tensor`: `(d, d)` float32 matrix.
    """
    sources = [source] + [f"{prefix} {source}" for prefix in EDIT_AUGMENTATIONS]
    destinations = [destination] + [f"{prefix} {destination}" for prefix in EDIT_AUGMENTATIONS]
    with torch.no_grad():
        c, c_star = edit_pairs(pipe.text_encoder, pipe.tokenizer, sources, destinations)  # (4 * 77, d)
        return time_edit_matrix(c.double(), c_star.double(), lam).float()


@torch.no_grad()
def generate(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    seeds: list[int],
    m_t: torch.Tensor | None = None,
    steps: int = 15,
    guidance_scale: float = 5.0,
) -> np.ndarray:
    r"""
    Generates every prompt with every seed, optionally with the text embeddings edited by `m_t`.

    Returns:
        `np.ndarray`: `(len(prompts) * len(seeds), H, W, 3)` uint8 images, prompt-major.
    """
    batch = [p for p in prompts for _ in seeds]
    prompt_embeds, negative_embeds = pipe.encode_prompt(batch, "cpu", 1, True)  # (N, 77, d) each
    if m_t is not None:
        prompt_embeds, negative_embeds = prompt_embeds @ m_t, negative_embeds @ m_t
    channels, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    latents = torch.cat(
        [torch.randn((1, channels, size, size), generator=torch.Generator().manual_seed(s)) for _ in prompts for s in seeds]
    )  # (N, C, h, w)
    images = pipe(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_embeds,
        latents=latents,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        output_type="np",
    ).images  # (N, H, W, 3) float in [0, 1]
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)


def evaluate(
    pipe: StableDiffusionPipeline,
    entries: tuple[tuple[str, str], ...] = ENTRIES,
    num_seeds: int = 8,
    steps: int = 15,
    guidance_scale: float = 5.0,
    lam: float = 0.1,
) -> list[EntryResult]:
    """Runs the benchmark; see the module docstring for the measures."""
    seeds = list(range(num_seeds))
    n = len(seeds)
    bare = [f"a {shape}" for shape in world.SHAPES]
    unedited = [read_colour(x) for x in generate(pipe, bare, seeds, None, steps, guidance_scale)]
    unedited_by_shape = {shape: unedited[k * n : (k + 1) * n] for k, shape in enumerate(world.SHAPES)}
    results = []
    for shape, colour in entries:
        source, destination = f"a {shape}", f"a {colour} {shape}"
        oracle = [read_colour(x) for x in generate(pipe, [destination], seeds, None, steps, guidance_scale)]
        positives = [t.format(shape=shape) for t in POSITIVE_TEMPLATES]
        negatives = [s for s in world.SHAPES if s != shape]
        prompts = [source] + positives + [f"a {s}" for s in negatives]
        m_t = edit_matrix(pipe, source, destination, lam)
        edited = [read_colour(x) for x in generate(pipe, prompts, seeds, m_t, steps, guidance_scale)]
        efficacy = edited[:n]
        generality = edited[n : n * (1 + len(positives))]
        kept = []
        for k, s in enumerate(negatives):
            block = edited[n * (1 + len(positives) + k) : n * (2 + len(positives) + k)]
            kept += [a == b for a, b in zip(block, unedited_by_shape[s])]
        results.append(
            EntryResult(
                source=source,
                destination=destination,
                baseline=float(np.mean([c == colour for c in unedited_by_shape[shape]])),
                oracle=float(np.mean([c == colour for c in oracle])),
                efficacy=float(np.mean([c == colour for c in efficacy])),
                generality=float(np.mean([c == colour for c in generality])),
                specificity=float(np.mean(kept)),
            )
        )
        print(results[-1], flush=True)
    return results


def summarize(results: list[EntryResult]) -> dict[str, float]:
    """Means of each measure over the entries."""
    keys = ("baseline", "oracle", "efficacy", "generality", "specificity")
    return {k: float(np.mean([getattr(r, k) for r in results])) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--entries", type=int, default=len(ENTRIES), help="Evaluate only the first N entries.")
    args = parser.parse_args()

    torch.set_num_threads(2)
    pipe = StableDiffusionPipeline.from_pretrained(args.pipeline, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    start = time.time()
    results = evaluate(pipe, ENTRIES[: args.entries], args.seeds, args.steps, args.guidance, args.lam)
    print(json.dumps(summarize(results), indent=2))
    print(f"evaluation took {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
