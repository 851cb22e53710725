"""LoRA state dicts in the two formats people load: PEFT / diffusers (`pipe.load_lora_weights`) and kohya
(AUTOMATIC1111, ComfyUI), built with peft's and diffusers' own utilities.

- PEFT: peft injects a `LoraConfig` (per-layer ranks in `rank_pattern`, `alpha = rank` so every layer's scale is 1)
  into a weightless skeleton of the edited layers (`nn.Linear` on the meta device at their module paths), the factors
  are set, and `get_peft_model_state_dict` names the tensors (`<path>.lora_A.weight`, `<path>.lora_B.weight`); the
  pipeline class's `save_lora_weights` packs them under `unet.` / `text_encoder.` / `text_encoder_2.` with the
  config as adapter metadata, as diffusers' training scripts do.
- kohya: diffusers' `convert_state_dict_to_kohya` turns the packed PEFT dict into `lora_unet_<path>.lora_down.weight`,
  `.lora_up.weight` and `.alpha` (scale 1 in every layer, see `kohya_state_dict`); a pipeline with one text encoder
  names it `lora_te_` as kohya's SD 1.x / 2.x files do (`lora_te1_` / `lora_te2_` for SDXL's two).

CLIP text encoders are flattened in recent transformers (`encoder.layers.0...`); LoRA files name their layers as CLIP
checkpoints do (`text_model.encoder.layers.0...`), which diffusers strips again when it loads into a flattened encoder.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from .factors import LayerFactors

__all__ = ["FORMATS", "check_format", "file_path", "kohya_state_dict", "lora_config", "peft_layers"]

FORMATS = ("peft", "kohya")
TEXT_MODEL_PREFIX = "text_model."


def check_format(lora_format: str) -> str:
    """`lora_format` after checking it is one of `FORMATS`; raises `ValueError` otherwise."""
    if lora_format not in FORMATS:
        raise ValueError(f"unknown LoRA format {lora_format!r}; expected one of {list(FORMATS)}")
    return lora_format


def file_path(pipe, layer: LayerFactors) -> str:
    """The layer's module path as LoRA files write it (`text_model.` before a flattened CLIP encoder's layers)."""
    module = getattr(pipe, layer.component)
    flattened = layer.component.startswith("text_encoder") and type(module).__name__.startswith("CLIPTextModel")
    if flattened and not hasattr(module, "text_model") and not layer.path.startswith("text_projection"):
        return TEXT_MODEL_PREFIX + layer.path
    return layer.path


def _skeleton(shapes: dict[str, tuple[int, int]]) -> nn.Module:
    """A module tree holding, at each path, an `nn.Linear(in, out)` without bias on the meta device (no memory)."""
    root = nn.Module()
    for path, (out_features, in_features) in shapes.items():
        *parents, leaf = path.split(".")
        node = root
        for name in parents:
            if not hasattr(node, name):
                node.add_module(name, nn.Module())
            node = getattr(node, name)
        node.add_module(leaf, nn.Linear(in_features, out_features, bias=False, device="meta"))
    return root


def lora_config(layers: Sequence[LayerFactors]):
    """The `peft.LoraConfig` of one component's layers: the most common rank as `r`, the others in `rank_pattern`, and
    `alpha = rank` everywhere (scale 1). Targets are the component's own module paths (peft matches them as suffixes,
    so they also find `text_model.`-prefixed layers)."""
    from peft import LoraConfig

    ranks = {layer.path: layer.rank for layer in layers}
    r = collections.Counter(ranks.values()).most_common(1)[0][0]
    pattern = {path: rank for path, rank in ranks.items() if rank != r}
    return LoraConfig(r=r, lora_alpha=r, target_modules=sorted(ranks), rank_pattern=pattern,
                      alpha_pattern=dict(pattern))


def peft_layers(pipe, layers: Sequence[LayerFactors], dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict]:
    """One component's LoRA in PEFT format: the state dict named by peft (`<path>.lora_A.weight` `(r, in)`,
    `<path>.lora_B.weight` `(out, r)`, in `dtype`) and the `LoraConfig` as a dict (the adapter metadata)."""
    from peft import get_peft_model_state_dict, inject_adapter_in_model

    config = lora_config(layers)
    # Taken before injecting: with 20 targets or more, peft rewrites `target_modules` into the shortest suffixes that
    # match the same modules *of the skeleton* (e.g. `to_k`), which would also match other layers of the real model.
    metadata = config.to_dict()
    paths = {layer.path: file_path(pipe, layer) for layer in layers}
    skeleton = _skeleton({paths[layer.path]: (layer.up.shape[0], layer.down.shape[1]) for layer in layers})
    inject_adapter_in_model(config, skeleton, adapter_name="default", low_cpu_mem_usage=True)
    for layer in layers:
        module = skeleton.get_submodule(paths[layer.path])
        if module.r["default"] != layer.rank or module.scaling["default"] != 1.0:
            raise RuntimeError(f"peft built {layer.name} with rank {module.r['default']} and scale "
                               f"{module.scaling['default']}, expected rank {layer.rank} and scale 1")
        module.lora_A["default"].weight = nn.Parameter(layer.down.to(dtype).contiguous(), requires_grad=False)
        module.lora_B["default"].weight = nn.Parameter(layer.up.to(dtype).contiguous(), requires_grad=False)
    state = get_peft_model_state_dict(skeleton, adapter_name="default")
    return {name: tensor.detach().contiguous() for name, tensor in state.items()}, metadata


def kohya_state_dict(pipe, layers: Sequence[LayerFactors], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The layers in kohya format: `lora_unet_<path>.lora_down.weight` `(r, in)`, `.lora_up.weight` `(out, r)` and
    `.alpha`.

    Every `alpha` is the largest rank `R` (loaders scale a layer by `alpha / r`; diffusers' kohya conversion keeps
    per-layer ranks but not per-layer alphas), and a layer of rank `r` stores its factors times `√(r / R)`, so that
    `alpha / r · up · down = ΔW` in every layer and every loader.
    """
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    alpha = max(layer.rank for layer in layers)
    packed = {}
    for component in dict.fromkeys(layer.component for layer in layers):
        scaled = [
            replace(layer, down=layer.down * (layer.rank / alpha) ** 0.5, up=layer.up * (layer.rank / alpha) ** 0.5)
            for layer in layers if layer.component == component
        ]
        state, _ = peft_layers(pipe, scaled, dtype)
        packed.update(type(pipe).pack_weights(state, component))
    state = convert_state_dict_to_kohya(packed)
    state = {name: torch.tensor(alpha) if name.endswith(".alpha") else tensor for name, tensor in state.items()}
    if getattr(pipe, "text_encoder_2", None) is None:  # one text encoder: kohya's SD 1.x / 2.x naming
        state = {("lora_te_" + k.removeprefix("lora_te1_") if k.startswith("lora_te1_") else k): v
                 for k, v in state.items()}
    return {name: tensor.contiguous() for name, tensor in state.items()}
