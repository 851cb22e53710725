"""Hyper-parameters of the toy Shapes-world model (`train_config.json`), loaded strictly: a missing or unknown key is an
error."""

import json
from dataclasses import dataclass, fields
from pathlib import Path

CONFIG_PATH: Path = Path(__file__).resolve().parent / "train_config.json"


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
        text_token_embedding_std (`float`): Std of the random initialisation of the token-embedding table (learned
            in stage 2 from the captions and images, as CLIP's is).
        text_max_length (`int`): Context length of the tokenizer and text encoder (`model_max_length`).
        text_pretrain_steps (`int`): Steps of the text-encoder pre-training (stage 2).
        text_pretrain_batch_size (`int`): Captions per pre-training step.
        text_pretrain_lr (`float`): Learning rate of the text-encoder pre-training (AdamW, cosine decay).
        text_contrastive_weight (`float`): Weight of the image-caption contrastive loss of stage 2.
        text_image_channels (`list[int]`): Channels of the stride-2 convolutions of stage 2's image tower (discarded
            after stage 2).
        unet_block_out_channels (`list[int]`): Channels of the UNet levels.
        unet_down_block_types (`list[str]`): diffusers down-block types, one per level.
        unet_up_block_types (`list[str]`): diffusers up-block types, one per level.
        unet_layers_per_block (`int`): ResNet layers per UNet block.
        unet_attention_head_dim (`int`): Passed as `attention_head_dim` to `UNet2DConditionModel`.
        unet_norm_num_groups (`int`): Group-norm groups of the UNet.
        unet_addition_embed_type (`str`, *optional*): `"text"` adds an attention-pooled summary of the text-encoder
            outputs to the timestep embedding of every ResNet block (a global conditioning path next to
            cross-attention);
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
    text_max_length: int
    text_pretrain_steps: int
    text_pretrain_batch_size: int
    text_pretrain_lr: float
    text_contrastive_weight: float
    text_image_channels: list[int]
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
