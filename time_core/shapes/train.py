"""Trains the offline toy text-to-image model of the Shapes world and saves it as a `StableDiffusionPipeline`.

One command trains everything from scratch, reproducibly, on a CPU:

```bash
python -m time_core.shapes.train [--out time_core/shapes/weights] [--resume] [--skip-clip]
```

1. `stage_vae`: an `AutoencoderKL` (64x64 RGB images <-> 16x16x4 latents) whose first three latent channels are
   anchored to the image's chroma, so that colour is a large difference between latents.
2. `stage_text`: a small `CLIPTextModel` (real CLIP BPE vocabulary, `text_max_length` positions) whose every weight,
   token embeddings included, is learned from the world's images and captions (contrastive + caption attributes), then
   frozen. No objective of any stage involves an edit or an editing method.
3. `stage_diffusion`: a small `UNet2DConditionModel` trained on the latents with v-prediction, a zero-terminal-SNR noise
   schedule, min-SNR loss weighting, classifier-free-guidance dropout and EMA weights.
4. The toy CLIP of `time_core.shapes.train_clip` (unless `--skip-clip` is given).

The pipeline is written to `<out>/pipeline` with `save_pretrained` (safetensors) and loads offline with
`StableDiffusionPipeline.from_pretrained`. Data are drawn on the fly from `sampling.sample_batch` with generators seeded
by `(seed, stage, step)`, so a run resumed from its checkpoints (`--resume`) continues exactly.
"""

import os

# On a small shared CPU, OpenMP threads that spin while waiting slow training down by up to 10x when another process
# competes for the cores; sleeping waiters avoid that. It must be set before torch (and its OpenMP runtime) loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402

from ..tokenizer import build_clip_tokenizer  # noqa: E402
from .build import EMA, build_sampling_scheduler, build_seeded_text_encoder, build_seeded_unet, build_vae  # noqa: E402
from .config import CONFIG_PATH, TrainConfig, load_config  # noqa: E402
from .stage_diffusion import train_diffusion  # noqa: E402
from .stage_text import pretrain_text_encoder  # noqa: E402
from .stage_vae import train_vae  # noqa: E402

DEFAULT_OUT: Path = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINTS: Path = Path(__file__).resolve().parents[2] / "checkpoints" / "shapes"


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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Weights folder; the pipeline goes to OUT/pipeline.")
    parser.add_argument("--config", type=Path, default=CONFIG_PATH, help="Hyper-parameter JSON file.")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_CHECKPOINTS,
                        help="Checkpoint folder (not committed).")
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
