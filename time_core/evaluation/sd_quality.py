"""The generation-quality scorer of Stable Diffusion (`time_core.evaluation.quality`, the paper's Table 2): the FID
features of torchmetrics' Inception-v3 and the CLIP score of `torchmetrics.multimodal.CLIPScore`, from local weights
or from the defaults (downloaded on first use).

- Inception (`load_inception`): torch-fidelity's FID weights by default; a local file instead
  (`--quality-inception-weights`) holds the state dict of torch-fidelity's `FeatureExtractorInceptionV3`
  (torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`, or any `torch.save` / `.safetensors` file of that
  state dict). It is read with `torch.load(weights_only=True)` or safetensors, never by unpickling arbitrary objects.
- CLIP (`load_clip_score`): `openai/clip-vit-base-patch32` by default; a Hugging Face name or a local folder instead
  (`--quality-clip`), holding a `transformers.CLIPModel` and `CLIPProcessor` written by `save_pretrained`.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["DEFAULT_CLIP", "QualityModelError", "TorchmetricsQualityScorer", "load_clip_score", "load_inception",
           "read_state_dict"]

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
_HUB_NAME = re.compile(r"[\w][\w.-]*/[\w.-]+")  # owner/name


class QualityModelError(ValueError):
    """A local Inception weights file or CLIP folder is missing or not in the expected format."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a state dict safely: `.safetensors` with safetensors, anything else with `torch.load(weights_only=True)`.

    Raises:
        `QualityModelError`: when `path` is not a file, or not a mapping of names to tensors (or would need unsafe
            unpickling).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise QualityModelError(f"no such weights file: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, a pickle with other objects than tensors, a bad safetensors file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise QualityModelError(f"{path} cannot be read as a state dict of tensors (torch.load with "
                                f"weights_only=True, or .safetensors): {reason}") from error
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise QualityModelError(f"{path} holds a {type(state).__name__}, not a state dict (a mapping of names to "
                                "tensors)")
    return dict(state)


def load_inception(weights: str | Path | None = None) -> torch.nn.Module:
    """torchmetrics' FID feature extractor (`NoTrainInceptionV3`, 2048-d pool features; needs torch-fidelity).

    Args:
        weights (`str` or `Path`, *optional*): a state dict of torch-fidelity's `FeatureExtractorInceptionV3` (see the
            module's docstring); `None`: torch-fidelity's weights, downloaded on first use and cached by `torch.hub`.

    Raises:
        `QualityModelError`: when `weights` is missing, unreadable or not an Inception state dict.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if weights is None:
        return FrechetInceptionDistance(feature=2048).inception
    state = read_state_dict(weights)
    # torch-fidelity reads `feature_extractor_weights_path` with `torch.load(weights_only=False)`: it is handed this
    # in-memory copy of the tensors read safely above, never the user's file.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        return FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=buffer).inception
    except RuntimeError as error:  # load_state_dict: missing, unexpected or misshapen tensors
        raise QualityModelError(f"{weights} is not a state dict of torch-fidelity's FeatureExtractorInceptionV3 (the "
                                f"FID Inception-v3): {str(error)[:300]}") from error


def _projected(features) -> torch.Tensor:
    """The projected embedding: transformers >= 5 returns it as the `pooler_output` of a model output."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


class _CLIPFeatures(torch.nn.Module):
    """A `transformers.CLIPModel` whose `get_image_features` and `get_text_features` return tensors, as torchmetrics'
    CLIP score expects (up to torchmetrics 1.9 it fails on transformers >= 5's model outputs: Lightning-AI/torchmetrics
    issue 3407)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        self.config = model.config

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        return _projected(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        return _projected(self.model.get_text_features(*args, **kwargs))


def _clip_source(model: str | Path) -> tuple[str, bool]:
    """`(name or folder, whether it is a local folder)`; `QualityModelError` for a path that is no CLIP folder."""
    source = str(model)
    folder = Path(source).expanduser()
    if folder.is_dir():
        try:
            model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):  # no config.json, not JSON, not an object
            model_type = None
        if model_type != "clip":
            raise QualityModelError(f"{folder} holds no CLIP model (config.json with model_type 'clip'; got "
                                    f"{model_type!r}): expected a folder written by CLIPModel.save_pretrained and "
                                    "CLIPProcessor.save_pretrained")
        return str(folder), True
    if folder.exists() or not _HUB_NAME.fullmatch(source):
        raise QualityModelError(f"{model} is neither a CLIP folder nor a Hugging Face model name (owner/name)")
    return source, False


def load_clip_score(model: str | Path = DEFAULT_CLIP):
    """`torchmetrics.multimodal.CLIPScore` of a CLIP model: a Hugging Face name (downloaded on first use) or a local
    folder with a `transformers.CLIPModel` and its `CLIPProcessor` (both written by `save_pretrained`).

    Raises:
        `QualityModelError`: when `model` is neither a folder nor shaped like a Hugging Face name (`owner/name`), or
            when the folder holds no CLIP model and processor.
    """
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    source, local = _clip_source(model)

    def model_and_processor():
        try:
            return _CLIPFeatures(CLIPModel.from_pretrained(source)), CLIPProcessor.from_pretrained(source)
        except (OSError, ValueError) as error:
            if not local:
                raise
            raise QualityModelError(f"cannot load a CLIP model and processor from {source}: {error}") from error

    return CLIPScore(model_name_or_path=model_and_processor)


def _uint8_batch(images: Sequence) -> torch.Tensor:
    """PIL images or `(H, W, 3)` arrays → `(N, 3, H, W)` uint8."""
    arrays = [np.asarray(image.convert("RGB") if hasattr(image, "convert") else image) for image in images]
    arrays = [(a * 255).round().clip(0, 255).astype(np.uint8) if a.dtype != np.uint8 else a for a in arrays]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class TorchmetricsQualityScorer:
    """Inception-v3 pool features (torchmetrics' FID extractor, `load_inception`) and the CLIP score of a CLIP model
    (`torchmetrics.multimodal.CLIPScore`, `load_clip_score`).

    Args:
        device (`str` or `torch.device`, *optional*): where both models run.
        inception_weights (`str` or `Path`, *optional*): a local state dict of the FID Inception; `None`:
            torch-fidelity's weights.
        clip_model (`str` or `Path`, *optional*, defaults to `"openai/clip-vit-base-patch32"`): a Hugging Face name or
            a local folder.

    Raises:
        `QualityModelError`: when a local file or folder is missing or not in the expected format.
        `RuntimeError`: when torch-fidelity is missing or default weights cannot be downloaded.
    """

    def __init__(self, device: str | torch.device | None = None, inception_weights: str | Path | None = None,
                 clip_model: str | Path = DEFAULT_CLIP) -> None:
        _clip_source(clip_model)  # a bad folder fails before anything loads
        try:
            self.inception = load_inception(inception_weights).to(device)
            self.clip = load_clip_score(clip_model).to(device)
        except QualityModelError:
            raise
        except Exception as error:  # missing torch-fidelity, no network for the weights, ...
            raise RuntimeError(
                "the Stable Diffusion quality scorer needs torch-fidelity (pip install torch-fidelity) and, on first "
                "use, downloads the FID Inception weights and the CLIP model; run once with network access to cache "
                "them, or give local copies (--quality-inception-weights FILE, --quality-clip FOLDER) "
                f"({type(error).__name__}: {error})"
            ) from error
        self.device = device
        weights = "torch-fidelity's weights" if inception_weights is None else f"weights {inception_weights}"
        self.name = f"Inception-v3 FID features ({weights}), CLIP score of {clip_model} (torchmetrics)"

    @torch.no_grad()
    def features(self, images: Sequence) -> np.ndarray:
        """`(N, 2048)` float64 Inception pool features."""
        return self.inception(_uint8_batch(images).to(self.device)).double().cpu().numpy()

    @torch.no_grad()
    def clip_scores(self, images: Sequence, captions: Sequence[str]) -> np.ndarray:
        """`(N,)` float64: `100 · max(cos(image, caption), 0)`."""
        pixels = _uint8_batch(images).to(self.device)  # (N, 3, H, W)
        scores = [float(self.clip(pixels[i : i + 1], [caption])) for i, caption in enumerate(captions)]
        return np.asarray(scores, dtype=np.float64)
