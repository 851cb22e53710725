"""The demo's configuration: per-model defaults and limits, the model to load, and the command-line flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..evaluation.search import LOG_LAM_MAX, LOG_LAM_MIN
from ..methods import TimeMethod
from ..models import SCHEDULERS, TOY_DEFAULTS, check_scheduler
from ..solver import check_lam

__all__ = ["DEFAULT_SD_MODEL", "FAMILIES", "TOY", "DemoConfig", "add_cli_arguments", "config_from_cli", "resolve_model"]

DEFAULT_SD_MODEL = "CompVis/stable-diffusion-v1-4"
TOY = "toy"
FAMILIES = ("toy", "sd")


@dataclass(frozen=True)
class DemoConfig:
    """Defaults and limits of the demo for one model.

    Args:
        model (`str`): `"toy"`, a hub id or a local folder (see `time_core.load_pipeline`).
        family (`str`): `"toy"` (Shapes-world prompts and presets) or `"sd"` (Stable Diffusion prompts and TIMED).
        size (`int`, *optional*): image side in pixels; `None` is the model's native size.
        steps (`int`): denoising steps.
        guidance (`float`): classifier-free guidance scale.
        scheduler (`str`): the sampler, a key of `time_core.models.SCHEDULERS` (`"default"`: the model's own).
        num_seeds (`int`): images per prompt.
        batch_size (`int`, *optional*): images per pipeline call (bounds GPU memory); `None` is all in one call.
        lam (`float`): the default λ.
        max_seeds (`int`), max_steps (`int`), max_size (`int`): limits on what a user may ask for.
        max_upload_mb (`float`): the largest edit file accepted, in MB.
        max_pairs (`int`): prompt pairs in one edit: the session's stack and the current pair, or an uploaded file's.
            Each costs the Edit click that solves it time and memory while it holds the shared pipeline (toy model:
            about 1 MB and 6 ms per pair, measured in docs/errors.md).
        max_preserve (`int`): preserved prompts listed in an uploaded edit file (each costs about what a pair does).
        max_test_prompts (`int`): rows of the test-prompt table.
        max_images (`int`): images one click generates: prompts × seeds × models (original and edited, or the
            original and each λ of a sweep).
        max_edit_files (`int`): edit files (and as many LoRA files) kept in the work folder for download; older ones
            are removed.
        scorer (`str`): the `time_core.evaluation.scoring.load_scorer` name of the CLIP classifier.
        sweep_count (`int`), sweep_log_min (`float`), sweep_log_max (`float`): the default λ sweep (log10 bounds).
        sweep_seeds (`int`): images per prompt and λ in a sweep.
        debias_seeds (`int`): images per prompt when debiasing.
        debias_iterations (`int`): the cap on binary-search steps.
        cache_items (`int`): how many original images are kept in memory.
        safety_checker (`bool`): keep the pipeline's safety checker.
        num_threads (`int`, *optional*): CPU threads for torch; `None` keeps torch's default.
    """

    model: str = TOY
    family: str = TOY
    size: int | None = None
    steps: int = 12
    guidance: float = 5.0
    scheduler: str = "default"
    num_seeds: int = 4
    batch_size: int | None = None
    lam: float = TimeMethod.default_lam
    max_seeds: int = 16
    max_steps: int = 100
    max_size: int = 128
    max_upload_mb: float = 64.0
    max_pairs: int = 32
    max_preserve: int = 64
    max_test_prompts: int = 20
    max_images: int = 1200
    max_edit_files: int = 256
    scorer: str = "toy"
    sweep_count: int = 10
    sweep_log_min: float = LOG_LAM_MIN
    sweep_log_max: float = LOG_LAM_MAX
    sweep_seeds: int = 4
    debias_seeds: int = 16
    debias_iterations: int = 8
    cache_items: int = 4096
    safety_checker: bool = True
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        for name in ("steps", "num_seeds", "max_seeds", "max_steps", "max_size", "sweep_count", "sweep_seeds",
                     "debias_seeds", "debias_iterations", "cache_items", "max_pairs", "max_preserve",
                     "max_test_prompts", "max_images", "max_edit_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        check_scheduler(self.scheduler)
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise ValueError(f"batch_size must be an integer >= 1 or None, got {self.batch_size!r}")
        if self.num_seeds > self.max_seeds or self.steps > self.max_steps:
            raise ValueError("the default number of seeds and steps must lie within max_seeds and max_steps")
        if self.size is not None and not 8 <= self.size <= self.max_size:
            raise ValueError(f"size must lie in [8, max_size={self.max_size}], got {self.size}")
        if not self.max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        check_lam(self.lam)

    @classmethod
    def for_model(cls, model: str = TOY, family: str | None = None, **overrides: Any) -> DemoConfig:
        """The defaults for a model: the toy model gets 64×64 images, 12 steps, guidance 5 and 4 seeds; Stable Diffusion
        gets its native size (512 for SD 1.4), DPM-Solver++ with 20 steps, guidance 7.5, 1 seed and pipeline calls of
        12 images, so that the default Edit click (11 prompts, original and edited) takes about 18 s on an A10G and
        under 8 GB on a T4 (the arithmetic is in the README, "Stable Diffusion on a Space"). A click may generate
        1200 images on the toy model (the preset's 11 prompts × 4 seeds × 25 models: the original and a sweep of 24 λ
        values; about 90 s on 2 CPU cores) and 300 on Stable Diffusion (the same sweep at 1 seed).

        Args:
            model (`str`, *optional*, defaults to `"toy"`): the model to load.
            family (`str`, *optional*): `"toy"` or `"sd"`; defaults to `"toy"` for `model="toy"` and `"sd"` otherwise
                (pass `"toy"` for a Shapes-world model saved in a folder).
            **overrides: any other `DemoConfig` field; `None` values are ignored.
        """
        family = family or (TOY if model == TOY else "sd")
        if family == TOY:
            defaults: dict[str, Any] = dict(size=TOY_DEFAULTS.size, steps=TOY_DEFAULTS.steps,
                                            guidance=TOY_DEFAULTS.guidance, num_seeds=TOY_DEFAULTS.seeds,
                                            max_seeds=16, max_steps=100,
                                            max_size=128, scorer="toy", sweep_seeds=4, debias_seeds=16,
                                            cache_items=4096, max_images=1200)
        else:
            defaults = dict(size=None, steps=20, scheduler="dpm", guidance=7.5, num_seeds=1, batch_size=12, max_seeds=2,
                            max_steps=50, max_size=1024, scorer="ViT-B-32", sweep_seeds=1, debias_seeds=8,
                            cache_items=512, max_images=300)
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model=model, family=family, **defaults)


def resolve_model(model: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The model the demo loads: `model` (the `--model` flag) if given, else the `TIME_MODEL` environment variable, else
    Stable Diffusion 1.4 when a CUDA GPU is present and the embedded toy model otherwise. Nothing falls back silently:
    a model that fails to load is an error.
    """
    import torch

    environ = os.environ if environ is None else environ
    if model:
        return model
    if environ.get("TIME_MODEL", "").strip():
        return environ["TIME_MODEL"].strip()
    return DEFAULT_SD_MODEL if torch.cuda.is_available() else TOY


def add_cli_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the demo's command-line flags (model, server, defaults and limits) to `parser`."""
    parser.add_argument("--model", default=None,
                        help="'toy', a hub id or a local folder (default: $TIME_MODEL, else SD 1.4 on a GPU, else toy)")
    parser.add_argument("--family", choices=FAMILIES, default=None,
                        help="prompts, presets and defaults to use (default: toy for --model toy, sd otherwise)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--no-safety-checker", action="store_true",
                        help="turn Stable Diffusion's safety checker off (local use only)")
    parser.add_argument("--scorer", default=None, help="CLIP scorer for load_scorer (default: toy or ViT-B-32)")
    parser.add_argument("--steps", type=int, default=None, help="default denoising steps")
    parser.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None,
                        help="sampler (default: dpm on Stable Diffusion, the model's own on the toy model)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per pipeline call (GPU memory)")
    parser.add_argument("--seeds", type=int, default=None, help="default number of seeds")
    parser.add_argument("--size", type=int, default=None, help="default image side in pixels")
    parser.add_argument("--max-seeds", type=int, default=_env_int("TIME_MAX_SEEDS"), help="limit ($TIME_MAX_SEEDS)")
    parser.add_argument("--max-steps", type=int, default=_env_int("TIME_MAX_STEPS"), help="limit ($TIME_MAX_STEPS)")
    parser.add_argument("--max-size", type=int, default=_env_int("TIME_MAX_SIZE"), help="limit ($TIME_MAX_SIZE)")
    parser.add_argument("--max-upload-mb", type=float, default=_env_float("TIME_MAX_UPLOAD_MB"),
                        help="largest edit file accepted, in MB ($TIME_MAX_UPLOAD_MB)")
    parser.add_argument("--max-pairs", type=int, default=_env_int("TIME_MAX_PAIRS"),
                        help="prompt pairs in one edit: stack, current pair, uploaded file ($TIME_MAX_PAIRS)")
    parser.add_argument("--max-images", type=int, default=_env_int("TIME_MAX_IMAGES"),
                        help="images one click generates: prompts x seeds x models ($TIME_MAX_IMAGES)")
    parser.add_argument("--threads", type=int, default=_env_int("TIME_THREADS"),
                        help="CPU threads for torch ($TIME_THREADS)")
    return parser


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


def _env_float(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    return float(value) if value else None


def config_from_cli(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> DemoConfig:
    """The `DemoConfig` for parsed command-line arguments (see `add_cli_arguments`)."""
    model = resolve_model(args.model, environ)
    return DemoConfig.for_model(
        model,
        family=args.family,
        scorer=args.scorer,
        steps=args.steps,
        scheduler=args.scheduler,
        batch_size=args.batch_size,
        num_seeds=args.seeds,
        size=args.size,
        max_seeds=args.max_seeds,
        max_steps=args.max_steps,
        max_size=args.max_size,
        max_upload_mb=args.max_upload_mb,
        max_pairs=args.max_pairs,
        max_images=args.max_images,
        safety_checker=not args.no_safety_checker,
        num_threads=args.threads,
    )
