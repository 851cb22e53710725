"""Stage 3 of the toy model: the `UNet2DConditionModel`, trained on VAE latents with v-prediction, a zero-terminal-SNR
noise schedule, min-SNR loss weighting, classifier-free-guidance dropout and EMA weights, conditioned on the frozen text
encoder of stage 2."""

import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from .build import (
    EMA,
    build_seeded_unet,
    lr_factor,
    resume_from,
    save_checkpoint,
    scheduler_kwargs,
    step_rng,
    to_tensor,
    tokenize,
)
from .config import TrainConfig
from .sampling import sample_batch


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
        images, captions = sample_batch(rng, cfg.batch_size, cfg.image_size)
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
