"""Loading Stable Diffusion pipelines and checking the premise TIME's embedding-map form relies on.

TIME edits the cross-attention projections `attn2.to_k` / `attn2.to_v` of the UNet. Editing all of them with
`W' = W · M` is exactly the same as feeding `M c` instead of `c` to the UNet, *provided* that the text embeddings
reach the UNet only through those projections. `check_architecture` verifies that from the module tree and the
config, and raises `UnsupportedModelError` otherwise.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "TOY_PIPELINE_DIR",
    "TOY_WEIGHTS_DIR",
    "ModelLoadError",
    "TextConditioning",
    "UnsupportedModelError",
    "check_architecture",
    "check_model",
    "cross_attention_layers",
    "model_folder",
    "default_device",
    "encode_prompts",
    "GenerationDefaults",
    "generation_defaults",
    "load_pipeline",
    "model_id",
    "text_width",
    "with_scheduler",
    "thread_view",
    "check_scheduler",
    "SCHEDULERS",
    "TEXT_ENCODERS",
    "text_components",
    "text_tokenizer",
]

# The embedded Shapes-world weights: the diffusers pipeline and the toy CLIP (`time_core.evaluation.scoring`).
TOY_WEIGHTS_DIR = Path(__file__).resolve().parent / "shapes" / "weights"
TOY_PIPELINE_DIR = TOY_WEIGHTS_DIR / "pipeline"


class UnsupportedModelError(ValueError):
    """The pipeline's architecture breaks an assumption of TIME's closed form."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded (missing download, wrong folder, unsupported pipeline class)."""


# The text encoders a pipeline may have, each with its tokenizer, in the order `encode_prompt` concatenates them.
TEXT_ENCODERS: tuple[tuple[str, str], ...] = (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2"))


def text_components(pipe) -> tuple[str, ...]:
    """The names of the pipeline's text encoders in `TEXT_ENCODERS` order (`("text_encoder", "text_encoder_2")` in
    SDXL)."""
    return tuple(name for name, _ in TEXT_ENCODERS if getattr(pipe, name, None) is not None)


def text_tokenizer(pipe, component: str):
    """The tokenizer of the text encoder `component` (`"text_encoder"` or `"text_encoder_2"`).

    Raises:
        `UnsupportedModelError`: the pipeline has that encoder but not its tokenizer.
    """
    tokenizer_name = dict(TEXT_ENCODERS)[component]
    tokenizer = getattr(pipe, tokenizer_name, None)
    if tokenizer is None:
        raise UnsupportedModelError(f"the pipeline has a {component} but no {tokenizer_name}")
    return tokenizer


def default_device() -> str:
    """`"cuda"` when a CUDA GPU is available, else `"cpu"`."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cross_attention_layers(unet: nn.Module) -> dict[str, nn.Module]:
    """All cross-attention modules of a UNet, found by module path (`*.attn2` with `to_k` and `to_v`).

    Returns:
        `dict[str, nn.Module]`: module path (e.g. `"down_blocks.0.attentions.0.transformer_blocks.0.attn2"`) → module.
    """
    layers = {}
    for name, module in unet.named_modules():
        if name.split(".")[-1] == "attn2" and isinstance(getattr(module, "to_k", None), nn.Linear):
            if not isinstance(getattr(module, "to_v", None), nn.Linear):
                raise UnsupportedModelError(f"{name} has a to_k projection but no linear to_v")
            layers[name] = module
    return layers


def text_width(pipe) -> int:
    """The width `d` of the text embeddings the UNet cross-attends to, from the UNet config."""
    width = pipe.unet.config.cross_attention_dim
    if isinstance(width, (list, tuple)):
        if len(set(width)) != 1:
            raise UnsupportedModelError(f"the UNet uses different cross_attention_dim per block ({width})")
        width = width[0]
    return int(width)


def check_architecture(pipe) -> dict[str, nn.Module]:
    """Checks that text embeddings reach the UNet only through `attn2.to_k` / `attn2.to_v`.

    Returns:
        `dict[str, nn.Module]`: the cross-attention layers (see `cross_attention_layers`).

    Raises:
        `UnsupportedModelError`: when no cross-attention layer is found, when the text encoders' widths do not add up
        to the UNet's `cross_attention_dim`, or when some other module reads the text embeddings
        (`encoder_hid_proj`, text-based `addition_embed_type`, cross-attention in `attn1`).
    """
    unet = pipe.unet
    config = unet.config
    d = text_width(pipe)
    if getattr(unet, "encoder_hid_proj", None) is not None or config.get("encoder_hid_dim") is not None:
        raise UnsupportedModelError("the UNet projects the text embeddings with encoder_hid_proj before cross-attention")
    if config.get("addition_embed_type") in ("text", "text_image"):
        raise UnsupportedModelError(f"the UNet reads the text embeddings in its addition_embed_type={config.addition_embed_type!r}")
    only_cross = config.get("only_cross_attention")
    if only_cross is True or (isinstance(only_cross, (list, tuple)) and any(only_cross)):
        raise UnsupportedModelError("the UNet uses only_cross_attention: attn1 also reads the text embeddings")

    layers = cross_attention_layers(unet)
    if not layers:
        raise UnsupportedModelError("no cross-attention layer (attn2.to_k / attn2.to_v) found in the UNet")
    for name, module in layers.items():
        for proj in ("to_k", "to_v"):
            in_features = getattr(module, proj).in_features
            if in_features != d:
                raise UnsupportedModelError(f"{name}.{proj} reads {in_features} features, expected cross_attention_dim={d}")
        if getattr(module, "norm_cross", None) is not None:
            raise UnsupportedModelError(f"{name} normalises the text embeddings (norm_cross) before to_k / to_v")
        if getattr(module, "add_k_proj", None) is not None:
            raise UnsupportedModelError(f"{name} has added key/value projections (add_k_proj)")

    widths = [getattr(pipe, name).config.hidden_size for name in text_components(pipe)]
    if sum(widths) != d:
        raise UnsupportedModelError(f"text encoder width(s) {widths} do not add up to cross_attention_dim={d}")
    return layers


@dataclass(frozen=True)
class GenerationDefaults:
    """Sensible generation settings for a model: denoising steps, guidance scale, seeds per prompt, image size."""

    steps: int
    guidance: float
    seeds: int
    size: int


# The embedded Shapes-world model is sampled with a DDIM scheduler on trailing timesteps: few steps suffice.
TOY_DEFAULTS = GenerationDefaults(steps=12, guidance=5.0, seeds=4, size=64)


def _loaded_from(pipe) -> str:
    return str(getattr(pipe.config, "_name_or_path", "") or "")


def model_folder(pipe) -> str:
    """The local folder (or hub id) the pipeline was loaded from, as given to `from_pretrained`; empty when built in
    memory. For reading files that ship with a model (never written into edit files: see `model_id`)."""
    return _loaded_from(pipe)


def is_toy(pipe) -> bool:
    """Whether `pipe` was loaded from the embedded Shapes-world model."""
    name = _loaded_from(pipe)
    return bool(name) and Path(name).resolve() == TOY_PIPELINE_DIR


def generation_defaults(pipe) -> GenerationDefaults:
    """`TOY_DEFAULTS` for the embedded model; otherwise 50 steps, guidance 7.5, 2 seeds at the model's size."""
    if is_toy(pipe):
        return TOY_DEFAULTS
    return GenerationDefaults(steps=50, guidance=7.5, seeds=2, size=pipe.unet.config.sample_size * pipe.vae_scale_factor)


def model_id(pipe) -> str:
    """What the pipeline was loaded from, as edit files record it: `"toy"` for the embedded model, the hub id, or a
    local folder's name without its path (no file written for others carries a path of this machine); empty when built
    in memory."""
    name = _loaded_from(pipe)
    if is_toy(pipe):
        return "toy"
    return Path(name).name if name and (Path(name).is_absolute() or Path(name).is_dir()) else name


# A hub id: a name, or owner/name (letters, digits, '-', '_', '.'; neither part starts with '.').
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9_][\w.-]*/)?[A-Za-z0-9_][\w.-]*$")


def check_model(model: str) -> str:
    """Returns `model` when it can name a model: `"toy"`, an existing folder or a hub id (`owner/name`); raises
    `ModelLoadError` for a path to a folder that does not exist, before anything is loaded or downloaded."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be 'toy', a hub id or a local folder, got {model!r}")
    if model == "toy" or Path(model).exists() or _HUB_ID.match(model):
        return model
    raise ModelLoadError(f"no folder {model}: a local model is a folder saved with save_pretrained, a hub id reads "
                         "owner/name")


def load_pipeline(
    model: str = "toy",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    safety_checker: bool = True,
):
    """Loads a Stable Diffusion pipeline that TIME can edit.

    Args:
        model (`str`, *optional*, defaults to `"toy"`):
            `"toy"` (the embedded offline Shapes-world model), a Hugging Face hub id such as
            `"CompVis/stable-diffusion-v1-4"`, or a local folder saved with `save_pretrained`.
        device (`str` or `torch.device`, *optional*): defaults to `"cuda"` when available, else `"cpu"`.
        dtype (`torch.dtype`, *optional*): defaults to float16 on CUDA and float32 otherwise.
        safety_checker (`bool`, *optional*, defaults to `True`): keep the pipeline's safety checker (when it has one).

    Returns:
        `StableDiffusionPipeline` or `StableDiffusionXLPipeline`, with its progress bar disabled (`generate` shows its own).
    """
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    check_model(model)
    if model == "toy":
        if not (TOY_PIPELINE_DIR / "model_index.json").is_file():
            raise ModelLoadError(
                f"the embedded Shapes-world model is missing from {TOY_PIPELINE_DIR}; "
                "train it with `python -m time_core.shapes.train`"
            )
        source = str(TOY_PIPELINE_DIR)
    else:
        source = model
    device = torch.device(device or default_device())
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32

    kwargs = {"dtype": dtype}
    if not safety_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
    except (OSError, ValueError, EnvironmentError) as error:
        local = Path(source).exists()
        hint = (
            f"the folder {source} is not a diffusers pipeline saved with save_pretrained"
            if local
            else f"'{source}' could not be downloaded from the Hugging Face hub. To work offline, download it once on a "
            f"connected machine (`huggingface-cli download {source} --local-dir FOLDER`) and pass FOLDER, or use model='toy'"
        )
        raise ModelLoadError(f"could not load model {model!r}: {hint} ({type(error).__name__}: {error})") from error
    if not isinstance(pipe, (StableDiffusionPipeline, StableDiffusionXLPipeline)):
        raise ModelLoadError(
            f"{model!r} loads as {type(pipe).__name__}; TIME supports StableDiffusionPipeline and StableDiffusionXLPipeline"
        )
    check_architecture(pipe)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# Samplers that `with_scheduler` can swap in ("default": the one the model was saved with).
SCHEDULERS: dict[str, str] = {
    "default": "",
    "ddim": "DDIMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
}


def check_scheduler(name: str) -> None:
    """Raises `ValueError` unless `name` is a key of `SCHEDULERS`."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {sorted(SCHEDULERS)}")


def with_scheduler(pipe, name: str):
    """The pipeline with another sampler, as a new pipeline object sharing every model (the given one is unchanged).

    Args:
        pipe: a `StableDiffusionPipeline` or `StableDiffusionXLPipeline`.
        name (`str`): a key of `SCHEDULERS`; `"dpm"` (DPM-Solver++) gives SD 1.4 images of 50-step quality in
            20-25 steps.

    Returns:
        the same `pipe` for `"default"`, else a new pipeline of the same class.
    """
    import diffusers

    check_scheduler(name)
    if name == "default":
        return pipe
    scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(pipe.scheduler.config)
    new = type(pipe)(**{**pipe.components, "scheduler": scheduler})
    new.set_progress_bar_config(disable=True)
    return new


def thread_view(pipe):
    """A pipeline for one more thread: a new pipeline object sharing every model's weights with `pipe`, with its own
    copies of the tokenizer(s) and the scheduler.

    One pipeline object serves one call at a time: its scheduler keeps the current call's timesteps, and a fast
    tokenizer keeps each call's padding and truncation settings, so a call from another thread can change what this
    one tokenizes or samples. Threads that each generate (or edit) with their own view do not cross; the UNet, VAE and
    text encoders are shared, never copied, and never written.
    """
    private = {name: copy.deepcopy(module) for name, module in pipe.components.items()
               if name == "scheduler" or name in dict(TEXT_ENCODERS).values()}
    new = type(pipe)(**{**pipe.components, **private})
    new.set_progress_bar_config(disable=True)
    return new


@dataclass(frozen=True)
class TextConditioning:
    """What the pipeline feeds the UNet for a list of prompts (see `encode_prompts`).

    Attributes:
        embeds (`torch.Tensor`): `(n, L, d)` prompt embeddings (the `c` of TIME).
        negative (`torch.Tensor` or `None`): `(n, L, d)` embeddings of the negative / unconditional prompt.
        pooled (`torch.Tensor` or `None`): `(n, p)` pooled embeddings (SDXL only; not read by cross-attention).
        negative_pooled (`torch.Tensor` or `None`): `(n, p)` (SDXL only).
    """

    embeds: torch.Tensor
    negative: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    negative_pooled: torch.Tensor | None = None

    def with_embeddings(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TextConditioning:
        """A copy with `fn` applied to the cross-attention embeddings (`embeds` and `negative`); pooled ones are kept."""
        return replace(self, embeds=fn(self.embeds), negative=None if self.negative is None else fn(self.negative))


@torch.no_grad()
def encode_prompts(
    pipe, prompts: str | Sequence[str], negative_prompt: str | None = None, with_negative: bool = False
) -> TextConditioning:
    """Encodes prompts exactly as the pipeline itself does (its own `encode_prompt`).

    Args:
        pipe: a `StableDiffusionPipeline` or `StableDiffusionXLPipeline`.
        prompts (`str` or `Sequence[str]`): the prompts (a bare string is one prompt).
        negative_prompt (`str`, *optional*): the negative prompt; `None` is the pipeline's default (empty prompt, or
            zeros for SDXL's `force_zeros_for_empty_prompt`).
        with_negative (`bool`, *optional*, defaults to `False`): also encode the negative prompt (needed for
            classifier-free guidance).
    """
    from diffusers import StableDiffusionXLPipeline

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    device = pipe._execution_device
    negative_prompts = None if negative_prompt is None else [negative_prompt] * len(prompts)
    if isinstance(pipe, StableDiffusionXLPipeline):
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompts,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=with_negative,
            negative_prompt=negative_prompts,
        )
        return TextConditioning(embeds, negative if with_negative else None, pooled, negative_pooled if with_negative else None)
    embeds, negative = pipe.encode_prompt(prompts, device, 1, with_negative, negative_prompt=negative_prompts)
    return TextConditioning(embeds, negative if with_negative else None)
