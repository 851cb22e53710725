"""CLIP zero-shot scoring of edited text-to-image models (TIME, Sec. 5.4).

Each generated image is classified as its (source) prompt or its destination prompt by CLIP:
`P(destination) = softmax(logit_scale * [cos(image, prompt), cos(image, destination)])[1]`. Efficacy, generality and
specificity are shares of images classified one way. The paper's classifier is OpenAI's CLIP ViT-B/32
(`load_scorer("ViT-B-32")`); the offline Shapes world has its own small CLIP (`load_scorer("toy")`).

Every checkpoint is read from `.safetensors` files only: pickle-based checkpoints (`.bin`, `.pt`, `.pth`) are refused.
`load_scorer` builds a new model on every call and keeps no global cache: hold on to the returned `ClipScorer`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..models import TOY, TOY_WEIGHTS_DIR, default_device

__all__ = ["TOY_CLIP_DIR", "ClipScorer", "ScorerWeightsUnavailableError", "load_scorer"]

TOY_CLIP_DIR = TOY_WEIGHTS_DIR / "clip"
_OPEN_CLIP_PREFIX = "open_clip:"
_LOCAL_DIR_PREFIX = "local-dir:"
_CONFIG_NAME = "open_clip_config.json"
_WEIGHTS_NAME = "open_clip_model.safetensors"
_VALID_NAMES = (
    '"ViT-B-32" (OpenAI CLIP ViT-B/32, the paper\'s classifier), '
    '"open_clip:MODEL:PRETRAINED" (any open_clip model; PRETRAINED is a tag such as "openai" or a .safetensors file), '
    '"toy" (the Shapes-world CLIP shipped in time_core/shapes/weights/clip/), '
    '"local-dir:PATH" (a folder with open_clip_config.json and open_clip_model.safetensors)'
)

ImageLike = Image.Image | np.ndarray


class ScorerWeightsUnavailableError(RuntimeError):
    """The weights of a CLIP scorer could not be downloaded or found locally."""


class ClipScorer:
    """CLIP zero-shot classifier of images between text prompts.

    Text features are cached per string on this object; images are encoded in batches of `batch_size`.

    Args:
        model (`torch.nn.Module`): An open_clip CLIP model with `encode_image`, `encode_text` and `logit_scale`.
        preprocess (`Callable`): The model's evaluation transform, PIL image -> `(3, H, W)` tensor.
        tokenizer (`Callable`): The model's tokenizer, `list[str]` -> `(N, L)` token ids.
        device (`torch.device` or `str`): Device the model lives on.
        name (`str`, *optional*): The `load_scorer` name of the model, for display.
        batch_size (`int`, *optional*, defaults to 64): Images per forward pass.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        device: torch.device | str,
        name: str = "",
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.name = name
        self.batch_size = batch_size
        self._text_features: dict[str, torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r})"

    @property
    def logit_scale(self) -> float:
        """The model's learned softmax temperature `exp(logit_scale)` (100 for OpenAI CLIP)."""
        return float(self.model.logit_scale.detach().exp().item())

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Unit-norm image features.

        Args:
            images (`Sequence[PIL.Image.Image | np.ndarray]`): RGB images (arrays: `(H, W, 3)` `uint8`).

        Returns:
            `torch.Tensor`: `(N, D)` float32 features on the CPU.
        """
        if len(images) == 0:
            raise ValueError("images is empty")
        features = []
        for start in range(0, len(images), self.batch_size):
            chunk = [self.preprocess(_to_pil(image)) for image in images[start : start + self.batch_size]]
            pixels = torch.stack(chunk).to(self.device)  # (B, 3, H, W)
            encoded = self.model.encode_image(pixels).float()  # (B, D)
            features.append(torch.nn.functional.normalize(encoded, dim=-1).cpu())
        return torch.cat(features)  # (N, D)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text features, computed once per distinct string and cached.

        Args:
            texts (`str` or `Sequence[str]`): Prompts (a bare string is one prompt).

        Returns:
            `torch.Tensor`: `(K, D)` float32 features on the CPU.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if len(texts) == 0:
            raise ValueError("texts is empty")
        missing = [text for text in dict.fromkeys(texts) if text not in self._text_features]
        if missing:
            tokens = self.tokenizer(missing).to(self.device)  # (M, L)
            encoded = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()  # (M, D)
            self._text_features.update(zip(missing, encoded))
        return torch.stack([self._text_features[text] for text in texts])  # (K, D)

    def clear_cache(self) -> None:
        """Forgets the cached text features."""
        self._text_features.clear()

    def classify(self, images: Sequence[ImageLike], class_texts: Sequence[str]) -> torch.Tensor:
        """Zero-shot classification of every image among the same class prompts.

        Args:
            images (`Sequence[PIL.Image.Image | np.ndarray]`): `N` images.
            class_texts (`Sequence[str]`): `K >= 2` class prompts, e.g. `["a female doctor", "a male doctor"]`.

        Returns:
            `torch.Tensor`: `(N, K)` class probabilities; rows sum to 1.
        """
        if isinstance(class_texts, str):
            raise ValueError(f"class_texts must be a list of at least 2 prompts, got the single string {class_texts!r}")
        if len(class_texts) < 2:
            raise ValueError(f"classify needs at least 2 class texts, got {len(class_texts)}")
        image_features = self.encode_images(images)  # (N, D)
        text_features = self.encode_texts(class_texts)  # (K, D)
        logits = self.logit_scale * image_features @ text_features.T  # (N, K)
        return logits.softmax(dim=-1)

    def prob_destination(
        self,
        images: Sequence[ImageLike],
        prompts: str | Sequence[str],
        destinations: str | Sequence[str],
    ) -> torch.Tensor:
        """Probability that each image shows its destination prompt rather than its prompt (two-way zero-shot CLIP).

        Args:
            images (`Sequence[PIL.Image.Image | np.ndarray]`): `N` images.
            prompts (`str` or `Sequence[str]`): The prompt of each image (one string is used for all).
            destinations (`str` or `Sequence[str]`): The destination prompt of each image (one string for all).

        Returns:
            `torch.Tensor`: `(N,)` probabilities in `[0, 1]`.
        """
        n = len(images)
        prompts = _broadcast(prompts, n, "prompts")
        destinations = _broadcast(destinations, n, "destinations")
        image_features = self.encode_images(images)  # (N, D)
        source_features = self.encode_texts(prompts)  # (N, D)
        destination_features = self.encode_texts(destinations)  # (N, D)
        cosines = torch.stack(
            [(image_features * source_features).sum(-1), (image_features * destination_features).sum(-1)], dim=-1
        )  # (N, 2)
        return (self.logit_scale * cosines).softmax(dim=-1)[:, 1]


def _broadcast(texts: str | Sequence[str], n: int, what: str) -> list[str]:
    """Repeats one string `n` times or checks that a sequence has `n` strings."""
    if isinstance(texts, str):
        return [texts] * n
    texts = list(texts)
    if len(texts) != n:
        raise ValueError(f"got {n} images but {len(texts)} {what}")
    return texts


def _to_pil(image: ImageLike) -> Image.Image:
    """Converts an `(H, W, 3)` `uint8` array to a PIL image; passes PIL images through as RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected a PIL image or an (H, W, 3) uint8 array, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def _hub_offline() -> bool:
    """Whether the Hugging Face Hub is to be used offline (`HF_HUB_OFFLINE` as set now, not at import time)."""
    import huggingface_hub.constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE) or any(f.upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _safetensors_name(filename: str) -> str:
    """The safetensors counterpart of an open_clip Hub checkpoint name."""
    if filename in ("", "open_clip_pytorch_model.bin"):
        return _WEIGHTS_NAME
    stem, suffix = os.path.splitext(filename)
    return filename if suffix == ".safetensors" else stem + ".safetensors"


def _download_safetensors(model_name: str, tag: str) -> tuple[str, dict[str, Any]]:
    """Resolves an open_clip pretrained tag to a local `.safetensors` file (downloading it) and the tag's config."""
    import open_clip
    from huggingface_hub import hf_hub_download

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(f"unknown open_clip pretrained tag {tag!r} for {model_name!r}; known tags: {tags}")
    if not cfg.get("hf_hub"):
        raise ValueError(
            f"open_clip publishes {model_name}:{tag} only as a pickle checkpoint ({cfg.get('url')}); convert it to "
            f"safetensors and pass 'open_clip:{model_name}:/path/to/weights.safetensors'"
        )
    # open_clip writes "org/repo/file" or "org/repo/" (its default checkpoint name).
    repo_id, filename = os.path.split(cfg["hf_hub"])
    filename = _safetensors_name(filename)
    offline = _hub_offline()
    try:
        path = hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=offline)
    except Exception as error:
        raise ScorerWeightsUnavailableError(
            f"could not download the CLIP weights {model_name}:{tag} ({repo_id}/{filename}) from the Hugging Face Hub"
            f"{' (HF_HUB_OFFLINE is set and they are not cached)' if offline else ''}. To work offline, fetch them "
            f"once on a machine with network access (`huggingface-cli download {repo_id} {filename}`) and copy the "
            "Hugging Face cache (HF_HOME), or pass 'open_clip:MODEL:/path/to/weights.safetensors'; the Shapes world "
            "scores offline with load_scorer('toy')"
        ) from error
    return path, cfg


def _load_open_clip(model_name: str, pretrained: str, device: torch.device, name: str) -> ClipScorer:
    """Builds an open_clip model from a pretrained tag or a local `.safetensors` file."""
    import open_clip

    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    kwargs: dict[str, Any] = {}
    if os.path.isfile(pretrained):
        if not pretrained.endswith(".safetensors"):
            raise ValueError(f"refusing to load {pretrained!r}: only .safetensors checkpoints are loaded (no pickle)")
        path = pretrained
    else:
        path, cfg = _download_safetensors(model_name, pretrained)
        # What open_clip would take from the tag's config with `pretrained=tag`.
        kwargs = {
            "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
            "image_mean": cfg.get("mean"),
            "image_std": cfg.get("std"),
            "image_interpolation": cfg.get("interpolation"),
            "image_resize_mode": cfg.get("resize_mode"),
        }
    # open_clip reads a path ending in ".safetensors" with safetensors.torch.load_file (no pickle), then loads it
    # with load_state_dict(strict=True).
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=path, device=device, **kwargs)
    return ClipScorer(model, preprocess, open_clip.get_tokenizer(model_name), device, name=name)


def _load_local_dir(directory: Path, device: torch.device, name: str) -> ClipScorer:
    """Builds an open_clip model from a folder with `open_clip_config.json` and `open_clip_model.safetensors`."""
    import open_clip

    missing = [f for f in (_CONFIG_NAME, _WEIGHTS_NAME) if not (directory / f).is_file()]
    if missing:
        hint = "; train it with `python -m time_core.shapes.train_clip`" if directory == TOY_CLIP_DIR else ""
        raise FileNotFoundError(f"CLIP folder {directory} lacks {', '.join(missing)}{hint}")
    # With the "local-dir:" schema open_clip reads the config from the folder and loads `open_clip_model.safetensors`
    # (first in its preference order) with safetensors.torch.load_file and `load_state_dict(strict=True)`.
    model_id = f"{_LOCAL_DIR_PREFIX}{directory}"
    model, _, preprocess = open_clip.create_model_and_transforms(model_id, device=device)
    return ClipScorer(model, preprocess, open_clip.get_tokenizer(model_id), device, name=name)


def load_scorer(name: str = "ViT-B-32", device: torch.device | str | None = None) -> ClipScorer:
    """Loads a CLIP zero-shot scorer.

    Args:
        name (`str`, *optional*, defaults to `"ViT-B-32"`):
            - `"ViT-B-32"`: OpenAI CLIP ViT-B/32 (open_clip `pretrained="openai"`), the classifier of the paper.
            - `"open_clip:MODEL:PRETRAINED"`: any open_clip model, with a pretrained tag (`"open_clip:ViT-L-14:openai"`)
              or a local `.safetensors` checkpoint.
            - `"toy"`: the Shapes-world CLIP shipped in `time_core/shapes/weights/clip/`.
            - `"local-dir:PATH"`: an open_clip folder (`open_clip_config.json` + `open_clip_model.safetensors`), such
              as one written by `time_core.shapes.train_clip.train_clip`.
        device (`torch.device` or `str`, *optional*): Defaults to CUDA when available, else the CPU.

    Returns:
        `ClipScorer`: A new scorer (nothing is cached across calls).

    Raises:
        `ValueError`: For an unknown name, tag or a non-safetensors checkpoint.
        `ScorerWeightsUnavailableError`: When pretrained weights cannot be downloaded (e.g. offline).
    """
    device = torch.device(device or default_device())
    if name == "ViT-B-32":
        return _load_open_clip("ViT-B-32", "openai", device, name)
    if name == TOY:
        return _load_local_dir(TOY_CLIP_DIR, device, name)
    if name.startswith(_LOCAL_DIR_PREFIX) and len(name) > len(_LOCAL_DIR_PREFIX):
        return _load_local_dir(Path(name[len(_LOCAL_DIR_PREFIX) :]), device, name)
    if name.startswith(_OPEN_CLIP_PREFIX):
        parts = name[len(_OPEN_CLIP_PREFIX) :].split(":", 1)
        if len(parts) == 2 and all(parts):
            return _load_open_clip(parts[0], parts[1], device, name)
    raise ValueError(f"unknown scorer {name!r}; expected one of: {_VALID_NAMES}")
