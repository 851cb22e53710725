"""The models of the toy Shapes-world pipeline, built from `TrainConfig`, and the training helpers every stage shares
(seeded per-step random sources, checkpoints, learning-rate schedule, EMA)."""

import math
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .config import TrainConfig


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


def build_seeded_text_encoder(cfg: TrainConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """The text encoder at its seeded initialisation; stage 2 learns every weight, the token embeddings included."""
    torch.manual_seed(cfg.seed + 1)
    text_encoder = build_text_encoder(cfg, tokenizer)
    torch.nn.init.normal_(text_encoder.get_input_embeddings().weight, std=cfg.text_token_embedding_std)
    return text_encoder


def build_seeded_unet(cfg: TrainConfig) -> UNet2DConditionModel:
    """The UNet at its seeded initialisation."""
    torch.manual_seed(cfg.seed + 2)
    return build_unet(cfg)


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
