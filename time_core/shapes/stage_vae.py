"""Stage 1 of the toy model: the `AutoencoderKL` (64x64 RGB images <-> 16x16x4 latents), whose first three latent
channels are anchored to the image's chroma so that colour is a large difference between latents."""

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from .build import build_vae, lr_factor, resume_from, save_checkpoint, step_rng, to_tensor
from .config import TrainConfig
from .sampling import sample_batch


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
        raise ValueError(f"vae_chroma_channels must be 0 or 3 (the chroma target is RGB), got "
                         f"{cfg.vae_chroma_channels}")
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
        images, _ = sample_batch(rng, cfg.vae_batch_size, cfg.image_size)
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
            images, _ = sample_batch(rng, 64, cfg.image_size)
            latents.append(vae.encode(to_tensor(images)).latent_dist.sample(generator=generator))
        std = torch.cat(latents).std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    return vae
