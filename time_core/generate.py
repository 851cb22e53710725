"""Original and edited images from one batched pipeline call, with the same seeds and initial latents.

Rows of the batch are `(model, prompt, seed)` with model ∈ {original, edited}. They differ only in the text
conditioning handed to the UNet: `c` for the original model, `M c` for a key+value edit, `[c, M c]` (keys read `c`,
values `M c`) for a value-only edit. The initial latents of seed `s` are those the pipeline itself would draw with
`torch.Generator("cpu").manual_seed(s)`, so an original image equals a plain `pipe(prompt, generator=...)` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .attention import install_split_processors, split_key_value
from .edit import Edit
from .models import TextConditioning, encode_prompts
from .prompts import check_prompt

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


def initial_latents(pipe, seeds: Sequence[int], height: int, width: int) -> torch.Tensor:
    """The initial latents for each seed, as the pipeline draws them from a CPU generator: `(S, c, h, w)`."""
    from diffusers.utils.torch_utils import randn_tensor

    channels = pipe.unet.config.in_channels
    shape = (1, channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    return torch.cat(
        [randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=pipe.unet.dtype) for s in seeds]
    )  # (S, c, h, w)


def _conditioning(cond: TextConditioning, edit: Edit | None, split: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The `(P, L, d or 2d)` embeddings of the positive and negative prompts for one model."""

    def one(embeds: torch.Tensor | None) -> torch.Tensor | None:
        if embeds is None:
            return None
        if edit is None:
            return split_key_value(embeds, embeds) if split else embeds
        mapped = edit.map_embeddings(embeds)  # (P, L, d): M c
        return split_key_value(embeds, mapped) if split else mapped

    return one(cond.embeds), one(cond.negative)


@torch.no_grad()
def generate(
    pipe,
    prompts: str | Sequence[str],
    seeds: Sequence[int],
    edit: Edit | None = None,
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
        edit (`Edit`, *optional*): the edit; `None` generates only the original model.
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
    prompts = (prompts,) if isinstance(prompts, str) else tuple(prompts)
    if not prompts:
        raise ValueError("prompts is empty: give at least one prompt")
    prompts = tuple(check_prompt(p) for p in prompts)
    seeds = _check_seeds(seeds)
    if not original and edit is None:
        raise ValueError("nothing to generate: original=False and no edit given")
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
    if edit is not None:
        edit.check_compatible(pipe)

    split = edit is not None and not edit.edit_keys  # value-only edit: keys read c, values M c
    if split:
        install_split_processors(pipe.unet)
    use_cfg = guidance_scale > 1.0
    cond = encode_prompts(pipe, list(prompts), negative_prompt, with_negative=use_cfg)
    models = ([None] if original else []) + ([edit] if edit is not None else [])

    # Rows: (model, prompt, seed), in that nesting order.
    embeds, negatives = [], []
    for model_edit in models:
        pos, neg = _conditioning(cond, model_edit, split)  # (P, L, ·)
        embeds.append(pos.repeat_interleave(len(seeds), dim=0))  # (P·S, L, ·)
        if neg is not None:
            negatives.append(neg.repeat_interleave(len(seeds), dim=0))
    embeds = torch.cat(embeds)  # (R, L, ·)
    negatives = torch.cat(negatives) if negatives else None
    rows = embeds.shape[0]
    latents = initial_latents(pipe, seeds, height, width).repeat(len(models) * len(prompts), 1, 1, 1)  # (R, c, h, w)
    row_seeds = [s for _ in models for _ in prompts for s in seeds]
    extra = {}
    if cond.pooled is not None:  # SDXL: pooled embeddings go to the added time/text embedding, not cross-attention
        extra["pooled_prompt_embeds"] = cond.pooled.repeat_interleave(len(seeds), dim=0).repeat(len(models), 1)
        if cond.negative_pooled is not None:
            extra["negative_pooled_prompt_embeds"] = cond.negative_pooled.repeat_interleave(len(seeds), dim=0).repeat(
                len(models), 1
            )

    batch_size = batch_size or rows
    chunks = [(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]
    total = len(chunks) * num_inference_steps
    bar = tqdm(total=total, desc="denoising", unit="step", disable=not progress)
    done = 0

    def on_step_end(_pipe, _step, _timestep, callback_kwargs):
        nonlocal done
        done += 1
        bar.update(1)
        if callback is not None:
            callback(done, total)
        return callback_kwargs

    images = []
    pipe.set_progress_bar_config(disable=True)
    try:
        for start, end in chunks:
            out = pipe(
                prompt_embeds=embeds[start:end],
                negative_prompt_embeds=None if negatives is None else negatives[start:end],
                latents=latents[start:end],
                generator=[torch.Generator("cpu").manual_seed(s) for s in row_seeds[start:end]],
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                height=height,
                width=width,
                output_type=output_type,
                callback_on_step_end=on_step_end,
                **{k: v[start:end] for k, v in extra.items()},
            )
            images.extend(list(out.images))
    finally:
        bar.close()

    per_model = len(prompts) * len(seeds)
    grids = [
        [images[m * per_model + p * len(seeds) : m * per_model + (p + 1) * len(seeds)] for p in range(len(prompts))]
        for m in range(len(models))
    ]
    return GenerationResult(
        prompts=prompts,
        seeds=seeds,
        original=grids[0] if original else None,
        edited=grids[-1] if edit is not None else None,
    )
