"""LoRA export of edits of the text encoder(s): a stand-in edit of SD 1.x's encoder and of both SDXL encoders, and
Diff-QuickFix when it is registered. The loaded LoRA draws the edit's own images; the files name the layers as
kohya and CLIP checkpoints do (`text_model.encoder...`)."""

from __future__ import annotations

import copy
import dataclasses
from typing import ClassVar

import pytest
import torch
from helpers import StandInEdit, pipeline_hash
from safetensors.torch import load_file

import time_core
from time_core import generate
from time_core.export import export_lora
from time_core.models import encode_prompts

PROMPTS = ["a pack of roses", "a car"]
SETTINGS = dict(num_inference_steps=3, output_type="np", progress=False, negative_prompt="blurry")
OUT_PROJ = "encoder.layers.0.self_attn.out_proj.weight"  # the layer Diff-QuickFix edits, in a flattened CLIPTextModel


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncoderEdit(StandInEdit):
    """A stand-in for a method that edits text encoders: `W′ = W + ΔW` for each `(component, parameter)` of
    `updates`, applied for `generate` by encoding through weight-replaced copies of the encoders (the pipeline is
    never written)."""

    method: ClassVar[str] = "encoder-stand-in"
    component: ClassVar[str] = "text_encoder"

    updates: dict  # (component, parameter name) -> ΔW (out, in)

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(component for component, _ in self.updates))

    @classmethod
    def random(cls, pipe, names: dict[str, list[str]], rank: int = 2, scale: float = 0.5):
        """Random rank-`rank` updates of the named weights, `scale` times each weight's norm."""
        g = torch.Generator().manual_seed(0)
        updates = {}
        for component, weights in names.items():
            parameters = dict(getattr(pipe, component).named_parameters())
            for name in weights:
                W = parameters[name].detach()  # (out, in)
                delta = torch.randn(W.shape[0], rank, generator=g) @ torch.randn(rank, W.shape[1], generator=g)
                updates[(component, name)] = scale * delta * W.norm() / delta.norm()
        return cls(updates=updates)

    def _edited(self, component: str, module) -> dict[str, torch.Tensor]:
        parameters = dict(module.named_parameters())
        return {name: parameters[name].detach() + delta for (c, name), delta in self.updates.items() if c == component}

    def conditioning(self, pipe, original, prompts, negative_prompt):
        components = dict(pipe.components)
        for component in self.components:
            components[component] = copy.deepcopy(components[component])
            components[component].load_state_dict(self._edited(component, components[component]), strict=False)
        edited = encode_prompts(type(pipe)(**components), prompts, negative_prompt,
                                with_negative=original.negative is not None)
        return original, edited

    def edited_weights(self, module):
        parameters = dict(module.named_parameters())
        for component in self.components:  # the component whose edited weights `module` has
            deltas = {name: delta for (c, name), delta in self.updates.items() if c == component}
            if all(name in parameters and parameters[name].shape == d.shape for name, d in deltas.items()):
                return self._edited(component, module)
        raise ValueError(f"{type(module).__name__} is none of the edited components {self.components}")


def check_lora_images(pipe, edit, path, fmt: str):
    """Exports `edit` and checks that a pipeline copy with the loaded LoRA draws the edit's images; returns the keys."""
    images = generate(pipe, PROMPTS, [0, 1], edit=edit, **SETTINGS)
    before = pipeline_hash(pipe)
    report = export_lora(pipe, edit, path, lora_format=fmt)
    assert pipeline_hash(pipe) == before and report.max_error < 1e-6
    other = copy.deepcopy(pipe)
    other.load_lora_weights(str(report.path))
    lora = generate(other, PROMPTS, [0, 1], **SETTINGS)
    for p in range(len(PROMPTS)):
        for s in range(2):
            assert abs(lora.original[p][s] - images.edited[p][s]).max() < 1e-4
            assert abs(images.original[p][s] - images.edited[p][s]).max() > 1e-3  # the edit shows
    return report, set(load_file(str(report.path)))


@pytest.mark.parametrize("fmt", ["peft", "kohya"])
def test_an_sd1_text_encoder_edit(sd1, fmt, tmp_path):
    edit = EncoderEdit.random(sd1, {"text_encoder": [OUT_PROJ]})
    report, keys = check_lora_images(sd1, edit, tmp_path / "encoder.safetensors", fmt)
    assert report.ranks == {"text_encoder.encoder.layers.0.self_attn.out_proj": 2}
    if fmt == "peft":
        assert keys == {f"text_encoder.text_model.{OUT_PROJ.removesuffix('.weight')}.lora_{ab}.weight" for ab in "AB"}
    else:
        name = "lora_te_text_model_encoder_layers_0_self_attn_out_proj"
        assert keys == {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"}


@pytest.mark.parametrize("fmt", ["peft", "kohya"])
def test_an_edit_of_both_sdxl_text_encoders(sdxl, fmt, tmp_path):
    edit = EncoderEdit.random(sdxl, {
        "text_encoder": [OUT_PROJ],
        "text_encoder_2": ["text_model.encoder.layers.1.self_attn.out_proj.weight",
                           "text_model.encoder.layers.0.mlp.fc1.weight"],
    })
    report, keys = check_lora_images(sdxl, edit, tmp_path / "encoders.safetensors", fmt)
    assert len(report.ranks) == 3
    if fmt == "kohya":
        assert {k.split(".")[0] for k in keys} == {
            "lora_te1_text_model_encoder_layers_0_self_attn_out_proj",
            "lora_te2_text_model_encoder_layers_1_self_attn_out_proj",
            "lora_te2_text_model_encoder_layers_0_mlp_fc1",
        }
    else:
        assert {k.split(".")[0] for k in keys} == {"text_encoder", "text_encoder_2"}


@pytest.mark.parametrize("fmt", ["peft", "kohya"])
@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_a_diff_quickfix_edit(kind, fmt, request, tmp_path):
    pipe = request.getfixturevalue(kind)
    edit = time_core.compute_edit(pipe, "a pack of roses", "a pack of blue roses", method="diff-quickfix")
    report, _ = check_lora_images(pipe, edit, tmp_path / "quickfix.safetensors", fmt)
    encoders = ["text_encoder"] if kind == "sd1" else ["text_encoder", "text_encoder_2"]
    assert sorted({name.split(".")[0] for name in report.ranks}) == encoders
    assert all(name.endswith(".layers.0.self_attn.out_proj") for name in report.ranks)
