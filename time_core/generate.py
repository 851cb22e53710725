"""Original and edited images from one batched pipeline call, with the same seeds and initial latents.

Rows of the batch are `(model, prompt, seed)` with model ∈ {original, edited}. They differ only in the text
conditioning handed to the UNet, which the edit provides (`BaseEdit.conditioning`): for TIME `c` for the original
model and `M c` for a key+value edit, `[c, c]` and `[c, M c]` (keys read `c`, values `M c`) for a value-only edit; a
method that edits the text encoder encodes the prompts and the negative prompt through it. The initial latents of
seed `s` are those the pipeline itself would draw with `torch.Generator("cpu").manual_seed(s)`, so an original
image equals a plain `pipe(prompt, generator=...)` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .edit import BaseEdit
from .models import TextConditioning, encode_prompts
from .prompts import as_prompts

__all__ = ["GenerationResult", "generate", "initial_latents"]


@dataclass(frozen=True)
class GenerationResult:
    """Images indexed `[prompt][seed]`; `original` / `edited` are `None` when not requested.

    Images are `PIL.Image.Image` for `output_type="pil"`, `(H, W, 3)` float arrays in [0, 1] for `"np"`.
    """

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    original: list[list] | None
    edited: list[list] | None


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seeds must be integers in [0, 2**63), got {seed!r}")
    return seeds


def _check_settings(pipe, num_inference_steps, guidance_scale, height, width, batch_size, output_type) -> tuple:
    """`(guidance_scale, height, width)` after checking every generation setting; raises `ValueError` otherwise."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
    guidance_scale = float(guidance_scale)
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be finite, got {guidance_scale}")
    if output_type not in ("pil", "np"):
        raise ValueError(f"output_type must be 'pil' or 'np', got {output_type!r}")
    default_size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    height, width = height or default_size, width or default_size
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or value <= 0 or value % pipe.vae_scale_factor:
            raise ValueError(f"{name} must be a positive multiple of {pipe.vae_scale_factor}, got {value!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return guidance_scale, height, width


def initial_latents(pipe, seeds: Sequence[int], height: int, width: int) -> torch.Tensor:
    """The initial latents for each seed, as the pipeline draws them from a CPU generator: `(S, c, h, w)`."""
    from diffusers.utils.torch_utils import randn_tensor

    channels = pipe.unet.config.in_channels
    shape = (1, channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    return torch.cat(
        [randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=pipe.unet.dtype) for s in seeds]
    )  # (S, c, h, w)


def _rows(conditionings: Sequence[TextConditioning], num_seeds: int) -> dict[str, torch.Tensor]:
    """The pipeline's embedding arguments for rows `(model, prompt, seed)`: each `(P, ...)` tensor → `(M·P·S, ...)`."""
    names = {"embeds": "prompt_embeds", "negative": "negative_prompt_embeds", "pooled": "pooled_prompt_embeds",
             "negative_pooled": "negative_pooled_prompt_embeds"}  # SDXL's pooled embeddings skip cross-attention
    rows = {}
    for field, argument in names.items():
        parts = [getattr(c, field) for c in conditionings]
        if parts[0] is not None:
            rows[argument] = torch.cat([part.repeat_interleave(num_seeds, dim=0) for part in parts])
    return rows


@torch.no_grad()
def generate(
    pipe,
    prompts: str | Sequence[str],
    seeds: Sequence[int],
    edit: BaseEdit | None = None,
    original: bool = True,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    negative_prompt: str | None = None,
    batch_size: int | None = None,
    output_type: str = "pil",
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> GenerationResult:
    """Generates every prompt × seed with the original model and/or the edited one, in batched pipeline calls.

    Args:
        pipe: a `StableDiffusionPipeline` or `StableDiffusionXLPipeline`; its weights are never written.
        prompts (`str` or `Sequence[str]`): the prompts.
        seeds (`Sequence[int]`): one image per seed and prompt; a seed gives the same initial latents to every prompt
            and to both models.
        edit (`BaseEdit`, *optional*): the edit (of any method); `None` generates only the original model.
        original (`bool`, *optional*, defaults to `True`): also generate the original model's images.
        num_inference_steps (`int`, *optional*, defaults to 50): denoising steps.
        guidance_scale (`float`, *optional*, defaults to 7.5): classifier-free guidance scale (≤ 1 disables it).
        height (`int`, *optional*), width (`int`, *optional*): image size; defaults to the model's.
        negative_prompt (`str`, *optional*): the negative prompt; it is edited too, like the unconditional prompt.
        batch_size (`int`, *optional*): rows per pipeline call; defaults to all rows in one call.
        output_type (`str`, *optional*, defaults to `"pil"`): `"pil"` or `"np"`.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar over all denoising steps.
        callback (`Callable[[int, int], None]`, *optional*): called as `callback(done, total)` after every step.

    Returns:
        `GenerationResult`
    """
    prompts = as_prompts(prompts, "prompts", item="prompt", allow_empty=True)
    if not prompts:
        raise ValueError("prompts is empty: give at least one prompt")
    seeds = _check_seeds(seeds)
    if not original and edit is None:
        raise ValueError("nothing to generate: original=False and no edit given")
    guidance_scale, height, width = _check_settings(
        pipe, num_inference_steps, guidance_scale, height, width, batch_size, output_type
    )
    if edit is not None:
        edit.check_compatible(pipe)

    cond = encode_prompts(pipe, prompts, negative_prompt, with_negative=guidance_scale > 1.0)
    conditionings = [cond]
    if edit is not None:
        unedited, edited = edit.conditioning(pipe, cond, prompts, negative_prompt)
        conditionings = ([unedited] if original else []) + [edited]
    rows = _rows(conditionings, len(seeds))  # rows: (model, prompt, seed), in that nesting order
    latents = initial_latents(pipe, seeds, height, width).repeat(len(conditionings) * len(prompts), 1, 1, 1)
    rows["latents"] = latents  # (R, c, h, w)
    row_seeds = [s for _ in conditionings for _ in prompts for s in seeds]
    settings = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, height=height,
                    width=width, output_type=output_type)
    images = _run_batches(pipe, rows, row_seeds, batch_size or len(row_seeds), settings, progress, callback)

    per_model = len(prompts) * len(seeds)
    grids = [
        [images[m * per_model + p * len(seeds) : m * per_model + (p + 1) * len(seeds)] for p in range(len(prompts))]
        for m in range(len(conditionings))
    ]
    return GenerationResult(
        prompts=prompts,
        seeds=seeds,
        original=grids[0] if original else None,
        edited=grids[-1] if edit is not None else None,
    )


def _run_batches(pipe, rows: dict[str, torch.Tensor], row_seeds: list[int], batch_size: int, settings: dict,
                 progress: bool, callback: Callable[[int, int], None] | None) -> list:
    """Runs the pipeline on consecutive chunks of `batch_size` rows; returns the images in row order."""
    chunks = [(start, min(start + batch_size, len(row_seeds))) for start in range(0, len(row_seeds), batch_size)]
    progress_bar = _StepCounter(len(chunks) * settings["num_inference_steps"], progress, callback)
    images = []
    pipe.set_progress_bar_config(disable=True)
    try:
        for start, end in chunks:
            out = pipe(
                **{name: value[start:end] for name, value in rows.items()},
                generator=[torch.Generator("cpu").manual_seed(s) for s in row_seeds[start:end]],
                callback_on_step_end=progress_bar.on_step_end,
                **settings,
            )
            images.extend(list(out.images))
    finally:
        progress_bar.close()
    return images


class _StepCounter:
    """Counts denoising steps over every chunk: a tqdm bar and `callback(done, total)` after each step."""

    def __init__(self, total: int, progress: bool, callback: Callable[[int, int], None] | None) -> None:
        self.total, self.done, self.callback = total, 0, callback
        self.bar = tqdm(total=total, desc="denoising", unit="step", disable=not progress)

    def on_step_end(self, _pipe, _step, _timestep, callback_kwargs):
        self.done += 1
        self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total)
        return callback_kwargs

    def close(self) -> None:
        self.bar.close()
