"""What several test modules share: tiny random-weight Stable Diffusion pipelines (SD 1.x, SD 2.x, SDXL shapes) with
the real CLIP tokenizer, bit-exact weight hashes, stand-in scorers and edits, and starting `app.py` on a free port.

Fixtures live in `tests/conftest.py`; test modules import helpers from here, never from each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from time_core.edit import BaseEdit

ROOT = Path(__file__).resolve().parents[1]
MAX_UPLOAD_MB = 0.5  # the upload limit of the served app in tests
CHROMIUM = Path("/usr/bin/chromium")  # the browser tests' Chromium (Debian's; `make test` installs it)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def state_hash(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, bit for bit."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def pipeline_hash(pipe) -> str:
    return "".join(state_hash(m) for m in pipe.components.values() if isinstance(m, torch.nn.Module))


def _text_encoder(hidden_size: int, with_projection: bool = False, projection_dim: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden_size,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        hidden_act="gelu",
    )
    return CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )


def make_tiny_pipeline(kind: str = "sd1", seed: int = 0):
    """A random-weight pipeline: `"sd1"` (text width 32), `"sd2"` (1024, linear projections) or `"sdxl"` (32 + 64)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    from time_core.tokenizer import build_clip_tokenizer

    torch.manual_seed(seed)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1
    )
    common = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8,
    )
    if kind in ("sd1", "sd2"):
        width = 32 if kind == "sd1" else 1024
        extra = dict(attention_head_dim=4) if kind == "sd1" else dict(attention_head_dim=(2, 4), use_linear_projection=True)
        unet = UNet2DConditionModel(cross_attention_dim=width, **common, **extra)
        return StableDiffusionPipeline(
            vae=_vae(),
            text_encoder=_text_encoder(width),
            tokenizer=build_clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        ).to("cpu")
    if kind == "sdxl":
        text_encoder, text_encoder_2 = _text_encoder(32), _text_encoder(64, with_projection=True, projection_dim=32)
        unet = UNet2DConditionModel(
            cross_attention_dim=96,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=6 * 8 + 32,
            **common,
        )
        return StableDiffusionXLPipeline(
            vae=_vae(),
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=build_clip_tokenizer(),
            tokenizer_2=build_clip_tokenizer(pad_token="!"),
            unet=unet,
            scheduler=scheduler,
        ).to("cpu")
    raise ValueError(kind)


@dataclasses.dataclass(frozen=True)
class StandInEdit(BaseEdit):
    """A base for test edits: `BaseEdit`'s provenance fields with defaults, compatible with every pipeline, no file.

    Subclasses declare their own fields with `@dataclasses.dataclass(frozen=True, kw_only=True)` and implement
    `conditioning` and `edited_weights`.
    """

    sources: tuple[str, ...] = ("a rose",)
    destinations: tuple[str, ...] = ("a blue rose",)
    lam: float = 1.0
    augment: bool = False
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    model: str = ""

    def check_compatible(self, pipe):
        pass

    def tensors(self):
        return {}

    def provenance(self):
        return {}

    @classmethod
    def from_file(cls, tensors, meta, name):
        raise NotImplementedError("a stand-in edit has no file")


def replaced_pipeline(pipe, edit):
    """A pipeline sharing `pipe`'s components but deep copies of the edited text encoder(s) with the edited weights
    loaded: the classic weight edit. `edit.components` names the encoders when the method defines it (both SDXL
    encoders), else `edit.component`."""
    import copy

    components = dict(pipe.components)
    for name in getattr(edit, "components", None) or (edit.component,):
        encoder = copy.deepcopy(getattr(pipe, name))
        encoder.load_state_dict(edit.edited_weights(encoder), strict=False)
        components[name] = encoder
    return type(pipe)(**components)


def check_like_replaced_encoder(pipe, edit, negative_prompt: str | None = "blurry"):
    """Checks that a text-encoder edit applies like a pipeline whose text encoder(s) hold `edit.edited_weights`
    (`replaced_pipeline`): the edited images of two prompts × two seeds (with `negative_prompt`) equal that
    pipeline's, differ from the original ones, and the shared pipeline stays bit-identical. Returns the replaced
    pipeline."""
    from time_core import generate

    before = pipeline_hash(pipe)
    kwargs = dict(num_inference_steps=3, negative_prompt=negative_prompt, output_type="np", progress=False)
    ours = generate(pipe, ["a rose", "a car"], [0, 1], edit=edit, **kwargs)
    assert pipeline_hash(pipe) == before
    replaced = replaced_pipeline(pipe, edit)
    reference = generate(replaced, ["a rose", "a car"], [0, 1], **kwargs)
    for p in range(2):
        for s in range(2):
            assert abs(ours.edited[p][s] - reference.original[p][s]).max() < 1e-4
            assert abs(ours.original[p][s] - ours.edited[p][s]).max() > 1e-3
    return replaced


class BrightnessScorer:
    """A stand-in for `ClipScorer`: P(destination) is the image's mean brightness; classify by brightness too."""

    name = "brightness"

    def prob_destination(self, images, prompts, destinations):
        return torch.tensor([float(np.asarray(im, dtype=np.float64).mean() / 255.0) for im in images])

    def classify(self, images, classes):
        p = self.prob_destination(images, None, None)
        return torch.stack([p, 1 - p], dim=-1)


class MeanPixelClassifier:
    """A deterministic stand-in classifier: P(destination) = mean pixel value of the image."""

    name = "mean-pixel"

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def prob_destination(self, images, prompts, destinations):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        return np.array([np.asarray(img, dtype=np.float64).mean() / 255.0 for img in images])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(model: str = "toy", *extra: str, timeout: float = 240.0) -> tuple[subprocess.Popen, str]:
    """Starts `python app.py` on 127.0.0.1 and a free port; returns the process and its URL once it answers."""
    from time_core.models import TOY_PIPELINE_DIR

    if model == "toy" and not (TOY_PIPELINE_DIR / "model_index.json").is_file():
        pytest.fail(
            f"the embedded toy model is missing from {TOY_PIPELINE_DIR}: the app tests run against it. "
            "Train it with `python -m time_core.shapes.train` (or restore time_core/shapes/weights/).",
            pytrace=False,
        )
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"time-app-{port}.log", "w")
    command = [sys.executable, str(ROOT / "app.py"), "--model", model, "--host", "127.0.0.1", "--port", str(port),
               *extra]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            log.flush()
            pytest.fail(f"app.py exited with code {process.returncode}:\n{Path(log.name).read_text()[-3000:]}",
                        pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    pytest.fail(f"app.py did not answer on {url} within {timeout:.0f} s", pytrace=False)


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
