"""Trains the offline toy text-to-image model of the Shapes world and saves it as a `StableDiffusionPipeline`.

One command trains everything from scratch, reproducibly, on a CPU:

```bash
python -m time_core.shapes.train [--out time_core/shapes/weights] [--resume] [--skip-clip]
```

1. An `AutoencoderKL` (64x64 RGB images <-> 16x16x4 latents) whose first three latent channels are anchored to the
   image's chroma (`chroma_target`), so that colour is a large difference between latents; its `scaling_factor` is
   set from the latent std.
2. A small `CLIPTextModel` (real CLIP BPE vocabulary, `text_max_length` positions, token-embedding table frozen at its
   random init), pre-trained on the captions (`pretrain_text_encoder`) and then frozen.
3. A small `UNet2DConditionModel` trained on the latents with v-prediction, a zero-terminal-SNR noise schedule, min-SNR
   loss weighting, classifier-free-guidance dropout and EMA weights.
4. The toy CLIP of `time_core.shapes.train_clip` (unless `--skip-clip` is given).

The pipeline is written to `<out>/pipeline` with `save_pretrained` (safetensors) and loads offline with
`StableDiffusionPipeline.from_pretrained`. Data are drawn on the fly from `world.sample_batch` with generators seeded
by `(seed, step)`, so a run resumed from its checkpoint (`--resume`) continues exactly.
"""

import os


# On a small shared CPU, OpenMP threads that spin while waiting slow training down by up to 10x when another process
# competes for the cores; sleeping waiters avoid that. It must be set before torch (and its OpenMP runtime) loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy
import json
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..prompts import align_tokens, augment_pairs
from ..tokenizer import build_clip_tokenizer
from . import world


CONFIG_PATH: Path = Path(__file__).resolve().parent / "train_config.json"
DEFAULT_OUT: Path = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINTS: Path = Path(__file__).resolve().parents[2] / "checkpoints" / "shapes"


@dataclass(frozen=True)
class TrainConfig:
    r"""
    Hyper-parameters of the toy model; loaded from `train_config.json` by `load_config` (unknown keys are an error).

    Args:
        seed (`int`): Seed of every random draw (initialisation, data, noise).
        image_size (`int`): Side of the square training images.
        vae_block_out_channels (`list[int]`): Channels of the VAE encoder/decoder levels; `n` levels downsample by
            `2 ** (n - 1)`.
        vae_norm_num_groups (`int`): Group-norm groups of the VAE.
        vae_latent_channels (`int`): Latent channels.
        vae_steps (`int`): VAE optimisation steps.
        vae_batch_size (`int`): VAE batch size.
        vae_lr (`float`): VAE learning rate (AdamW, cosine decay).
        vae_kl_weight (`float`): Weight of the KL term of the VAE loss.
        vae_scaling_batches (`int`): Batches used to estimate the latent std for `scaling_factor`.
        vae_chroma_channels (`int`): Latent channels anchored to the image's chroma (0 or 3; see `chroma_target`).
        vae_chroma_scale (`float`): Amplitude of that chroma target.
        vae_chroma_weight (`float`): Weight of the chroma-anchor loss.
        text_hidden_size (`int`): Width of the text encoder (= `cross_attention_dim` of the UNet).
        text_intermediate_size (`int`): MLP width of the text encoder.
        text_num_layers (`int`): Transformer layers of the text encoder.
        text_num_heads (`int`): Attention heads of the text encoder.
        text_token_embedding_std (`float`): Std of the random initialisation of the token-embedding table.
        text_freeze_token_embedding (`bool`): Keep the token-embedding table at its random initialisation.
        text_max_length (`int`): Context length of the tokenizer and text encoder (`model_max_length`).
        text_pretrain_steps (`int`): Steps of the text-encoder pre-training (stage 2).
        text_pretrain_batch_size (`int`): Captions per pre-training step.
        text_pretrain_lr (`float`): Learning rate of the text-encoder pre-training (AdamW, cosine decay).
        unet_block_out_channels (`list[int]`): Channels of the UNet levels.
        unet_down_block_types (`list[str]`): diffusers down-block types, one per level.
        unet_up_block_types (`list[str]`): diffusers up-block types, one per level.
        unet_layers_per_block (`int`): ResNet layers per UNet block.
        unet_attention_head_dim (`int`): Passed as `attention_head_dim` to `UNet2DConditionModel`.
        unet_norm_num_groups (`int`): Group-norm groups of the UNet.
        unet_addition_embed_type (`str`, *optional*): `"text"` adds an attention-pooled summary of the text-encoder
            outputs to the timestep embedding of every ResNet block (a global conditioning path next to cross-attention);
            `None` for the plain Stable Diffusion 1.x UNet.
        unet_addition_embed_type_num_heads (`int`): Heads of that attention pooling.
        num_train_timesteps (`int`): Diffusion steps of the noise schedule.
        beta_start (`float`): First beta of the schedule.
        beta_end (`float`): Last beta of the schedule.
        beta_schedule (`str`): diffusers beta schedule name.
        prediction_type (`str`): `"epsilon"` or `"v_prediction"`.
        rescale_betas_zero_snr (`bool`): Rescale the schedule to zero terminal SNR.
        snr_gamma (`float`): Min-SNR-gamma truncation of the loss weight (`<= 0` disables it).
        steps (`int`): Diffusion training steps.
        batch_size (`int`): Diffusion batch size.
        lr (`float`): Learning rate of the UNet (linear warm-up, then constant).
        lr_decay_from (`int`, *optional*): From this step on, the learning rate decays linearly to 10% at `steps`;
            `None` keeps it constant to the end.
        weight_decay (`float`): AdamW weight decay.
        warmup_steps (`int`): Linear warm-up steps of the diffusion stage.
        ema_decay (`float`): Largest EMA decay of the saved weights.
        cfg_dropout (`float`): Probability of training on the empty caption.
        edit_lambda (`float`): The regulariser lambda of the TIME closed form used by the auxiliary losses.
        edit_locality_weight (`float`): Weight of the edit-locality loss (0 disables the auxiliary losses).
        edit_generality_weight (`float`): Weight of the edit-generality loss.
        checkpoint_minutes (`float`): Wall-clock minutes between checkpoints.
        save_fp16 (`bool`): Store the pipeline weights in float16.
    """

    seed: int
    image_size: int
    vae_block_out_channels: list[int]
    vae_norm_num_groups: int
    vae_latent_channels: int
    vae_steps: int
    vae_batch_size: int
    vae_lr: float
    vae_kl_weight: float
    vae_scaling_batches: int
    vae_chroma_channels: int
    vae_chroma_scale: float
    vae_chroma_weight: float
    text_hidden_size: int
    text_intermediate_size: int
    text_num_layers: int
    text_num_heads: int
    text_token_embedding_std: float
    text_freeze_token_embedding: bool
    text_max_length: int
    text_pretrain_steps: int
    text_pretrain_batch_size: int
    text_pretrain_lr: float
    unet_block_out_channels: list[int]
    unet_down_block_types: list[str]
    unet_up_block_types: list[str]
    unet_layers_per_block: int
    unet_attention_head_dim: int
    unet_norm_num_groups: int
    unet_addition_embed_type: str | None
    unet_addition_embed_type_num_heads: int
    num_train_timesteps: int
    beta_start: float
    beta_end: float
    beta_schedule: str
    prediction_type: str
    rescale_betas_zero_snr: bool
    snr_gamma: float
    steps: int
    batch_size: int
    lr: float
    lr_decay_from: int | None
    weight_decay: float
    warmup_steps: int
    ema_decay: float
    cfg_dropout: float
    edit_lambda: float
    edit_locality_weight: float
    edit_generality_weight: float
    checkpoint_minutes: float
    save_fp16: bool


def load_config(path: str | Path = CONFIG_PATH) -> TrainConfig:
    r"""
    Loads a `TrainConfig` from JSON; a missing or unknown key raises `ValueError`.

    Args:
        path (`str` or `Path`, *optional*, defaults to `CONFIG_PATH`): The JSON file.

    Returns:
        `TrainConfig`: The hyper-parameters.
    """
    data = json.loads(Path(path).read_text())
    names = {f.name for f in fields(TrainConfig)}
    unknown, missing = sorted(set(data) - names), sorted(names - set(data))
    if unknown or missing:
        raise ValueError(f"{path}: unknown keys {unknown}, missing keys {missing}.")
    return TrainConfig(**data)


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------


def build_vae(cfg: TrainConfig) -> AutoencoderKL:
    """A small `AutoencoderKL` without mid-block attention."""
    levels = len(cfg.vae_block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.vae_block_out_channels),
        layers_per_block=1,
        latent_channels=cfg.vae_latent_channels,
        norm_num_groups=cfg.vae_norm_num_groups,
        sample_size=cfg.image_size,
        mid_block_add_attention=False,
    )


def build_text_encoder(cfg: TrainConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A small `CLIPTextModel` over the full CLIP vocabulary (49408 tokens, `text_max_length` positions)."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden_size,
        intermediate_size=cfg.text_intermediate_size,
        projection_dim=cfg.text_hidden_size,
        num_hidden_layers=cfg.text_num_layers,
        num_attention_heads=cfg.text_num_heads,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_unet(cfg: TrainConfig) -> UNet2DConditionModel:
    """A small `UNet2DConditionModel` with cross-attention to the text encoder's outputs."""
    levels = len(cfg.vae_block_out_channels)
    return UNet2DConditionModel(
        sample_size=cfg.image_size // 2 ** (levels - 1),
        in_channels=cfg.vae_latent_channels,
        out_channels=cfg.vae_latent_channels,
        down_block_types=tuple(cfg.unet_down_block_types),
        up_block_types=tuple(cfg.unet_up_block_types),
        block_out_channels=tuple(cfg.unet_block_out_channels),
        layers_per_block=cfg.unet_layers_per_block,
        cross_attention_dim=cfg.text_hidden_size,
        attention_head_dim=cfg.unet_attention_head_dim,
        norm_num_groups=cfg.unet_norm_num_groups,
        addition_embed_type=cfg.unet_addition_embed_type,
        addition_embed_type_num_heads=cfg.unet_addition_embed_type_num_heads,
    )


def scheduler_kwargs(cfg: TrainConfig) -> dict:
    """The noise-schedule arguments shared by the training and the sampling scheduler."""
    return dict(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        rescale_betas_zero_snr=cfg.rescale_betas_zero_snr,
        timestep_spacing="trailing",
        clip_sample=False,
    )


def build_sampling_scheduler(cfg: TrainConfig) -> DDIMScheduler:
    """The DDIM scheduler stored with the pipeline (trailing timesteps, so 10-20 steps suffice)."""
    return DDIMScheduler(**scheduler_kwargs(cfg), set_alpha_to_one=False, steps_offset=1)


# ----------------------------------------------------------------------------------------------------------------------
# Data and helpers
# ----------------------------------------------------------------------------------------------------------------------


def step_rng(cfg: TrainConfig, stage: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """The numpy (data) and torch (noise) generators of one training step; the same arguments give the same draws."""
    rng = np.random.default_rng([cfg.seed, stage, step])
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return rng, generator


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """`(N, H, W, 3)` uint8 -> `(N, 3, H, W)` float in `[-1, 1]`."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids `(N, L)`, padded with the end-of-text token as in Stable Diffusion."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def lr_factor(step: int, warmup: int, total: int | None = None) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak at `total`, or constant when `total` is `None`."""
    if step < warmup:
        return (step + 1) / warmup
    if total is None:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def resume_from(path: Path, resume: bool, **stateful) -> int:
    """When `resume` and `path` exists, loads each `stateful[name]` from the checkpoint's `name` entry (tensors and
    plain values only: `weights_only=True`) and returns the checkpoint's step; otherwise returns 0."""
    if not (resume and path.exists()):
        return 0
    state = torch.load(path, weights_only=True)
    for name, obj in stateful.items():
        obj.load_state_dict(state[name])
    return state["step"]


def save_checkpoint(path: Path, state: dict) -> None:
    """Writes a checkpoint atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


# ----------------------------------------------------------------------------------------------------------------------
# TIME closed form, differentiable (the library's `time_core.solver` is exact float64 without gradients), used by the
# edit-locality loss of the text-encoder pre-training
# ----------------------------------------------------------------------------------------------------------------------


def edit_pairs(
    text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, sources: list[str], destinations: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    The aligned (source, destination) output vectors of prompt pairs.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `(N * L, d)` source vectors and their `(N * L, d)` destination vectors.
    """
    source_ids, destination_ids = tokenize(tokenizer, sources), tokenize(tokenizer, destinations)  # (N, L)
    hidden = text_encoder(torch.cat([source_ids, destination_ids])).last_hidden_state  # (2N, L, d)
    c, c_star = hidden[: len(sources)], hidden[len(sources) :]  # (N, L, d)
    rows = []
    for k in range(len(sources)):
        mapping = align_tokens(tokenizer, sources[k], destinations[k])  # (L,) the library's TIME alignment
        rows.append(c_star[k, mapping])  # (L, d)
    return c.reshape(-1, c.shape[-1]), torch.stack(rows).reshape(-1, c.shape[-1])


def time_edit_matrix(c: torch.Tensor, c_star: torch.Tensor, lam: float) -> torch.Tensor:
    r"""
    The TIME map `M = (lam I + sum c*_i c_i^T)(lam I + sum c_i c_i^T)^-1`, returned transposed.

    Args:
        c (`torch.Tensor`): `(N, d)` source vectors.
        c_star (`torch.Tensor`): `(N, d)` destination vectors.
        lam (`float`): The regulariser lambda.

    Returns:
        `torch.Tensor`: `(d, d)` matrix `M^T`, so that row vectors are edited as `x @ M^T`.
    """
    eye = torch.eye(c.shape[-1], dtype=c.dtype, device=c.device)
    a = lam * eye + c_star.T @ c  # (d, d) = lam I + sum c*_i c_i^T
    b = lam * eye + c.T @ c  # (d, d), symmetric
    return torch.linalg.solve(b, a.T)  # (d, d) = b^-1 a^T = M^T


def edit_locality_loss(
    text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, rng: np.random.Generator, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    Auxiliary losses that keep concepts separable for TIME-style edits of the text embeddings.

    A random edit "a <shape>" -> "a <colour> <shape>" (with TIME's prompt augmentations) is solved in closed form on
    the current text encoder. The *locality* loss is the change `||(M - I) x||^2` that the edit causes on the outputs
    `x` of prompts about the other shapes, relative to the change `||c* - c||^2` it makes on its own source prompts
    (so it cannot be lowered by making colour words weaker); the *generality* loss is the relative error
    `||M c - c*||^2 / ||c* - c||^2` of the edit on a positive ("a big <shape>" -> "a big <colour> <shape>").
    Means run over all L positions.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: The scalar locality and generality losses.
    """
    shape = world.SHAPES[rng.integers(len(world.SHAPES))]
    colour = world.COLOURS[rng.integers(len(world.COLOURS))]
    sources, destinations = map(list, zip(*augment_pairs([f"a {shape}"], [f"a {colour} {shape}"])))
    c, c_star = edit_pairs(text_encoder, tokenizer, sources, destinations)  # (4 * L, d)
    m_t = time_edit_matrix(c, c_star, lam)  # (d, d)

    # Negatives: the other shapes, bare or in a random template (never naming the edited shape).
    others = [s for s in world.SHAPES if s != shape]
    negatives = [f"a {s}" for s in others]
    for s in others:
        scene = world.Scene(
            shape=s,
            colour=world.COLOURS[rng.integers(len(world.COLOURS))],
            size=world.SIZES[rng.integers(len(world.SIZES))],
            background=world.BACKGROUNDS[rng.integers(len(world.BACKGROUNDS))],
        )
        prefix = world.PREFIXES[rng.integers(len(world.PREFIXES))] if rng.random() < 0.5 else None
        negatives.append(world.caption(scene, world.TEMPLATES[rng.integers(len(world.TEMPLATES))], prefix))
    x = text_encoder(tokenize(tokenizer, negatives)).last_hidden_state  # (K, L, d)
    edit_size = ((c_star - c) ** 2).sum(-1).mean().clamp_min(1e-6)
    locality = ((x @ m_t - x) ** 2).sum(-1).mean() / edit_size

    size = world.SIZES[rng.integers(len(world.SIZES))]
    p, p_star = edit_pairs(text_encoder, tokenizer, [f"a {size} {shape}"], [f"a {size} {colour} {shape}"])  # (L, d)
    generality = ((p @ m_t - p_star) ** 2).sum(-1).mean() / ((p_star - p) ** 2).sum(-1).mean().clamp_min(1e-6)
    return locality, generality


# ----------------------------------------------------------------------------------------------------------------------
# Stage 1: VAE
# ----------------------------------------------------------------------------------------------------------------------


def chroma_target(x: torch.Tensor, factor: int, scale: float) -> torch.Tensor:
    r"""
    The chroma of images, average-pooled to the latent grid: `scale * avgpool(x - mean_rgb(x))`.

    White and black (the backgrounds) have zero chroma, and the palette colours differ strongly in it, so latent
    channels anchored to this target make the colour of the shape one of the largest differences between latents.
    Without it the autoencoder packs colour into small latent differences (yellow vs orange 10-20x smaller than white vs
    black background), and the diffusion loss, dominated by background, size and shape, hardly sees the colour.

    Args:
        x (`torch.Tensor`): `(B, 3, H, W)` images in `[-1, 1]`.
        factor (`int`): Downsampling factor of the autoencoder.
        scale (`float`): Amplitude of the target.

    Returns:
        `torch.Tensor`: `(B, 3, H / factor, W / factor)`.
    """
    return scale * F.avg_pool2d(x - x.mean(dim=1, keepdim=True), factor)


def train_vae(cfg: TrainConfig, checkpoint_dir: Path, resume: bool) -> AutoencoderKL:
    r"""
    Trains the `AutoencoderKL` (L1 + MSE reconstruction, small KL) and sets its `scaling_factor` from the latent std.

    Returns:
        `AutoencoderKL`: The trained VAE (in eval mode).
    """
    if cfg.vae_chroma_channels not in (0, 3):
        raise ValueError(f"vae_chroma_channels must be 0 or 3 (the chroma target is RGB), got {cfg.vae_chroma_channels}")
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    path = checkpoint_dir / "vae.pt"
    start = resume_from(path, resume, vae=vae, optimizer=optimizer)
    last_save = time.time()
    bar = tqdm(range(start, cfg.vae_steps), initial=start, total=cfg.vae_steps, desc="vae")
    vae.train()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cfg.vae_lr * lr_factor(step, 100, cfg.vae_steps)
        rng, generator = step_rng(cfg, 1, step)
        images, _ = world.sample_batch(rng, cfg.vae_batch_size, cfg.image_size)
        x = to_tensor(images)  # (B, 3, H, W)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample  # (B, 3, H, W)
        kl = posterior.kl().mean() / x[0].numel()
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + cfg.vae_kl_weight * kl
        if cfg.vae_chroma_channels:
            factor = 2 ** (len(cfg.vae_block_out_channels) - 1)
            anchor = chroma_target(x, factor, cfg.vae_chroma_scale)  # (B, 3, h, w)
            loss = loss + cfg.vae_chroma_weight * F.mse_loss(posterior.mean[:, : cfg.vae_chroma_channels], anchor)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1 == cfg.vae_steps
        if done or time.time() - last_save > 60 * cfg.checkpoint_minutes:
            save_checkpoint(path, {"vae": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1})
            last_save = time.time()

    vae.eval()
    with torch.no_grad():
        latents = []
        for k in range(cfg.vae_scaling_batches):
            rng, generator = step_rng(cfg, 2, k)
            images, _ = world.sample_batch(rng, 64, cfg.image_size)
            latents.append(vae.encode(to_tensor(images)).latent_dist.sample(generator=generator))
        std = torch.cat(latents).std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    return vae


# ----------------------------------------------------------------------------------------------------------------------
# Stage 2: text encoder + UNet
# ----------------------------------------------------------------------------------------------------------------------


class EMA:
    """Exponential moving average of a list of parameters, with the `(1 + n) / (10 + n)` warm-up of diffusers."""

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.shadow = [p.detach().clone() for p in parameters]
        self.updates = 0

    @torch.no_grad()
    def update(self, parameters: list[torch.nn.Parameter]) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in parameters], 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, parameters: list[torch.nn.Parameter]) -> None:
        for shadow, p in zip(self.shadow, parameters):
            p.copy_(shadow)

    def state_dict(self) -> dict:
        return {"shadow": self.shadow, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.shadow, self.updates = state["shadow"], state["updates"]


def build_seeded_text_encoder(cfg: TrainConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """The text encoder at its seeded initialisation (token-embedding table frozen if configured)."""
    torch.manual_seed(cfg.seed + 1)
    text_encoder = build_text_encoder(cfg, tokenizer)
    # Random high-dimensional token vectors are nearly orthogonal: unrelated words start (and, frozen, stay) apart.
    torch.nn.init.normal_(text_encoder.get_input_embeddings().weight, std=cfg.text_token_embedding_std)
    if cfg.text_freeze_token_embedding:
        text_encoder.get_input_embeddings().weight.requires_grad_(False)
    return text_encoder


def build_seeded_unet(cfg: TrainConfig) -> UNet2DConditionModel:
    """The UNet at its seeded initialisation."""
    torch.manual_seed(cfg.seed + 2)
    return build_unet(cfg)


# The attributes a caption may name, and the classes the pre-training heads tell apart ("none" = not named).
ATTRIBUTE_CLASSES: dict[str, tuple[str | None, ...]] = {
    "shape": world.SHAPES,
    "colour": (None, *world.COLOURS),
    "size": (None, *world.SIZES),
    "background": (None, *world.BACKGROUNDS),
}


def attribute_labels(captions: list[str]) -> dict[str, torch.Tensor]:
    """For each attribute, the `(N,)` class index of every caption (see `ATTRIBUTE_CLASSES`)."""
    parsed = [world.parse_caption(text) for text in captions]
    return {
        name: torch.tensor([classes.index(p[name]) for p in parsed]) for name, classes in ATTRIBUTE_CLASSES.items()
    }


def pretrain_text_encoder(
    cfg: TrainConfig, tokenizer: CLIPTokenizer, checkpoint_dir: Path, resume: bool
) -> CLIPTextModel:
    r"""
    Pre-trains the text encoder on the captions, then freezes it (as Stable Diffusion freezes its CLIP text encoder).

    Two losses:

    - *attributes*: linear heads read the shape, colour, size and background a caption names (or "none") from every
      output position from the end-of-text token on, so the padding positions that make up most of the context carry
      the whole caption, as a pre-trained CLIP text encoder's do;
    - *edit locality* (`edit_locality_loss`): a closed-form TIME edit "a S" -> "a C S" must change the other shapes'
      prompts little and carry over to "a big S".

    Returns:
        `CLIPTextModel`: The pre-trained text encoder (eval mode, no gradients).
    """
    text_encoder = build_seeded_text_encoder(cfg, tokenizer)
    width = cfg.text_hidden_size
    torch.manual_seed(cfg.seed + 3)
    heads = torch.nn.ModuleDict({name: torch.nn.Linear(width, len(c)) for name, c in ATTRIBUTE_CLASSES.items()})
    parameters = [p for p in text_encoder.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=cfg.text_pretrain_lr, weight_decay=cfg.weight_decay)
    path = checkpoint_dir / "text.pt"
    start = resume_from(path, resume, text_encoder=text_encoder, heads=heads, optimizer=optimizer)
    text_encoder.train()
    bar = tqdm(range(start, cfg.text_pretrain_steps), initial=start, total=cfg.text_pretrain_steps, desc="text")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cfg.text_pretrain_lr * lr_factor(step, 50, cfg.text_pretrain_steps)
        rng, _ = step_rng(cfg, 4, step)
        captions = [world.sample_scene(rng)[1] for _ in range(cfg.text_pretrain_batch_size)]
        ids = tokenize(tokenizer, captions)  # (B, L)
        hidden = text_encoder(ids).last_hidden_state  # (B, L, d)
        eos = (ids == tokenizer.eos_token_id).int().argmax(dim=1)  # (B,) first end-of-text position
        positions = torch.arange(ids.shape[1])  # (L,)
        summary = (positions[None] >= eos[:, None]).float()  # (B, L) 1 from the end-of-text token on
        labels = attribute_labels(captions)
        attribute_loss = 0.0
        for name, head in heads.items():
            logits = head(hidden)  # (B, L, classes)
            target = labels[name][:, None].expand(-1, ids.shape[1])  # (B, L)
            per_token = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
            attribute_loss = attribute_loss + (per_token * summary).sum() / summary.sum()
        loss, logs = attribute_loss, {"attr": f"{attribute_loss.item():.3f}"}
        if cfg.edit_locality_weight > 0 or cfg.edit_generality_weight > 0:  # the last draws of this step's rng
            locality, generality = edit_locality_loss(text_encoder, tokenizer, rng, cfg.edit_lambda)
            loss = loss + cfg.edit_locality_weight * locality + cfg.edit_generality_weight * generality
            logs.update(loc=f"{locality.item():.4f}", gen=f"{generality.item():.4f}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(logs)
    if start < cfg.text_pretrain_steps:
        save_checkpoint(
            path,
            {
                "text_encoder": text_encoder.state_dict(),
                "heads": heads.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": cfg.text_pretrain_steps,
            },
        )
    return text_encoder.eval().requires_grad_(False)


class TextCache:
    """Text-encoder outputs of captions, computed once each (the text encoder is frozen during diffusion training)."""

    def __init__(self, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer) -> None:
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.hidden: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = sorted({text for text in captions if text not in self.hidden})
        if missing:
            out = self.text_encoder(tokenize(self.tokenizer, missing)).last_hidden_state  # (K, L, d)
            self.hidden.update(zip(missing, out))
        return torch.stack([self.hidden[text] for text in captions])  # (B, L, d)


def train_diffusion(
    cfg: TrainConfig,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    checkpoint_dir: Path,
    resume: bool,
) -> UNet2DConditionModel:
    r"""
    Trains the UNet on VAE latents, conditioned on the frozen text encoder; returns it with its EMA weights loaded.

    Returns:
        `UNet2DConditionModel`: The trained UNet (in eval mode).
    """
    unet = build_seeded_unet(cfg)
    parameters = list(unet.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(parameters, cfg.ema_decay)
    noise_scheduler = DDPMScheduler(**scheduler_kwargs(cfg))
    alphas_cumprod = noise_scheduler.alphas_cumprod  # (T,)
    snr_all = alphas_cumprod / (1.0 - alphas_cumprod).clamp_min(1e-8)  # (T,)
    encode_text = TextCache(text_encoder, tokenizer)

    path = checkpoint_dir / "diffusion.pt"
    start = resume_from(path, resume, unet=unet, optimizer=optimizer, ema=ema)

    def checkpoint(step: int) -> None:
        state = {"unet": unet.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema.state_dict()}
        save_checkpoint(path, {**state, "step": step, "scaling_factor": vae.config.scaling_factor})

    vae.eval().requires_grad_(False)
    unet.train()
    last_save = time.time()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="diffusion")
    for step in bar:
        # Constant after the warm-up (until `lr_decay_from`): a longer run extends a shorter one exactly.
        factor = lr_factor(step, cfg.warmup_steps)
        if cfg.lr_decay_from is not None and step >= cfg.lr_decay_from:
            factor *= 1.0 - 0.9 * (step - cfg.lr_decay_from) / max(1, cfg.steps - cfg.lr_decay_from)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * factor
        rng, generator = step_rng(cfg, 3, step)
        images, captions = world.sample_batch(rng, cfg.batch_size, cfg.image_size)
        captions = ["" if drop else text for drop, text in zip(rng.random(len(captions)) < cfg.cfg_dropout, captions)]
        with torch.no_grad():
            latents = vae.encode(to_tensor(images)).latent_dist.sample(generator=generator)  # (B, 4, h, w)
            latents = latents * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator)  # (B, 4, h, w)
        timesteps = torch.randint(0, cfg.num_train_timesteps, (len(latents),), generator=generator)  # (B,)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        if cfg.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        prediction = unet(noisy, timesteps, encode_text(captions)).sample  # (B, 4, h, w)
        per_sample = ((prediction - target) ** 2).mean(dim=(1, 2, 3))  # (B,)
        if cfg.snr_gamma > 0:
            snr = snr_all[timesteps]  # (B,)
            if cfg.prediction_type == "v_prediction":
                weight = (snr.clamp(max=cfg.snr_gamma) + 1.0) / (snr + 1.0)
            else:
                weight = snr.clamp(max=cfg.snr_gamma) / snr.clamp_min(1e-8)
            per_sample = per_sample * weight
        loss = per_sample.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(parameters)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step + 1 == cfg.steps or time.time() - last_save > 60 * cfg.checkpoint_minutes:
            checkpoint(step + 1)
            last_save = time.time()

    ema.copy_to(parameters)
    return unet.eval()


# ----------------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------------


def save_pipeline(
    cfg: TrainConfig,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    unet: UNet2DConditionModel,
    tokenizer: CLIPTokenizer,
    out_dir: Path,
) -> StableDiffusionPipeline:
    r"""
    Assembles the `StableDiffusionPipeline` and writes it with `save_pretrained` (safetensors, float16 if configured).

    Returns:
        `StableDiffusionPipeline`: The float32 pipeline that was saved.
    """
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_sampling_scheduler(cfg),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if cfg.save_fp16:
        copy.deepcopy(pipe).to(dtype=torch.float16).save_pretrained(out_dir, safe_serialization=True)
    else:
        pipe.save_pretrained(out_dir, safe_serialization=True)
    return pipe


def export_from_checkpoint(cfg: TrainConfig, checkpoint_dir: Path, out_dir: Path) -> StableDiffusionPipeline:
    """Writes a pipeline from the current checkpoints (EMA weights), e.g. to evaluate a run that is still going."""
    tokenizer = build_clip_tokenizer(model_max_length=cfg.text_max_length)
    vae = build_vae(cfg)
    vae.load_state_dict(torch.load(checkpoint_dir / "vae.pt", weights_only=True)["vae"])
    text_encoder = build_seeded_text_encoder(cfg, tokenizer)
    text_encoder.load_state_dict(torch.load(checkpoint_dir / "text.pt", weights_only=True)["text_encoder"])
    state = torch.load(checkpoint_dir / "diffusion.pt", weights_only=True)
    vae.register_to_config(scaling_factor=state["scaling_factor"])
    unet = build_seeded_unet(cfg)
    ema = EMA(list(unet.parameters()), cfg.ema_decay)
    ema.load_state_dict(state["ema"])
    ema.copy_to(list(unet.parameters()))
    print(f"exporting step {state['step']} to {out_dir}")
    return save_pipeline(cfg, vae.eval(), text_encoder.eval(), unet.eval(), tokenizer, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Weights folder; the pipeline goes to OUT/pipeline.")
    parser.add_argument("--config", type=Path, default=CONFIG_PATH, help="Hyper-parameter JSON file.")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_CHECKPOINTS, help="Checkpoint folder (not committed).")
    parser.add_argument("--resume", action="store_true", help="Continue from the checkpoints in --checkpoints.")
    parser.add_argument("--skip-clip", action="store_true", help="Do not train the toy CLIP.")
    parser.add_argument("--clip-steps", type=int, default=None, help="Toy-CLIP steps (default: its own default).")
    parser.add_argument("--export-only", action="store_true", help="Only write the pipeline from the checkpoints.")
    args = parser.parse_args()

    torch.set_num_threads(2)
    cfg = load_config(args.config)
    if args.export_only:
        export_from_checkpoint(cfg, args.checkpoints, args.out / "pipeline")
        return

    start = time.time()
    tokenizer = build_clip_tokenizer(model_max_length=cfg.text_max_length)
    vae = train_vae(cfg, args.checkpoints, args.resume)
    print(f"vae done after {(time.time() - start) / 60:.1f} min, scaling_factor={vae.config.scaling_factor:.4f}")
    text_encoder = pretrain_text_encoder(cfg, tokenizer, args.checkpoints, args.resume)
    print(f"text encoder done after {(time.time() - start) / 60:.1f} min")
    unet = train_diffusion(cfg, vae, text_encoder, tokenizer, args.checkpoints, args.resume)
    save_pipeline(cfg, vae, text_encoder, unet, tokenizer, args.out / "pipeline")
    print(f"pipeline saved to {args.out / 'pipeline'} after {(time.time() - start) / 60:.1f} min")

    if not args.skip_clip:
        from .train_clip import DEFAULT_STEPS, train_clip

        train_clip(out_dir=args.out / "clip", steps=args.clip_steps or DEFAULT_STEPS, seed=cfg.seed, num_threads=2)
        print(f"toy CLIP done after {(time.time() - start) / 60:.1f} min")
    print(f"total {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
