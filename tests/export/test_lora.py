"""LoRA export of TIME edits on tiny SD 1.x / 2.x / XL pipelines: a pipeline copy with the loaded LoRA (PEFT and kohya
formats, through stock diffusers) draws the edit's own images at full rank; a truncated export's error is what its
metadata says; bad input raises before anything is written; the pipeline's weights are never written."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import ClassVar

import pytest
import torch
from helpers import StandInEdit, pipeline_hash
from safetensors import safe_open
from safetensors.torch import load_file

from time_core import compute_edit, generate
from time_core.export import export_lora, read_lora_report

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"
PROMPTS = ["a pack of roses", "a car"]
SETTINGS = dict(num_inference_steps=3, output_type="np", progress=False, negative_prompt="blurry")


def max_difference(a, b) -> float:
    return max(float(abs(x - y).max()) for row_a, row_b in zip(a, b) for x, y in zip(row_a, row_b))


def with_lora(pipe, path):
    """A deep copy of `pipe` with the LoRA file loaded by stock diffusers (the pipeline itself is not touched)."""
    other = copy.deepcopy(pipe)
    other.load_lora_weights(str(path))
    return other


def file_products(path, fmt: str) -> dict[str, torch.Tensor]:
    """The update each layer of a LoRA file stands for, float64: `lora_B · lora_A` (PEFT) or `alpha / r · up · down`
    (kohya), keyed by the file's layer name."""
    tensors = load_file(str(path))
    products = {}
    for name, down in tensors.items():
        if fmt == "peft" and name.endswith(".lora_A.weight"):
            layer = name.removesuffix(".lora_A.weight")
            products[layer] = tensors[f"{layer}.lora_B.weight"].double() @ down.double()
        elif fmt == "kohya" and name.endswith(".lora_down.weight"):
            layer = name.removesuffix(".lora_down.weight")
            scale = float(tensors[f"{layer}.alpha"]) / down.shape[0]
            products[layer] = scale * tensors[f"{layer}.lora_up.weight"].double() @ down.double()
    return products


def file_layer(name: str, fmt: str) -> str:
    """A `component.path` layer name as each format writes it (UNet layers only)."""
    return name if fmt == "peft" else "lora_" + name.replace(".", "_")


@pytest.fixture(scope="module")
def edits():
    """One TIME edit per tiny pipeline kind, with its own images."""
    cache = {}

    def get(kind: str, pipe, **kwargs):
        key = (kind, tuple(sorted(kwargs.items())))
        if key not in cache:
            edit = compute_edit(pipe, SOURCE, DESTINATION, **kwargs)
            cache[key] = edit, generate(pipe, PROMPTS, [0, 1], edit=edit, **SETTINGS)
        return cache[key]

    return get


@pytest.mark.parametrize("fmt", ["peft", "kohya"])
@pytest.mark.parametrize("kind", ["sd1", "sd2", "sdxl"])
def test_a_full_rank_lora_draws_the_edits_images(kind, fmt, edits, request, tmp_path):
    pipe = request.getfixturevalue(kind)
    edit, images = edits(kind, pipe)
    before = pipeline_hash(pipe)
    report = export_lora(pipe, edit, tmp_path / "edit-lora.safetensors", lora_format=fmt)
    assert pipeline_hash(pipe) == before
    assert report.rank is None and report.max_error < 1e-6 and report.num_bytes == report.path.stat().st_size
    assert len(report.ranks) == 2 * len([n for n, _ in pipe.unet.named_modules() if n.endswith("attn2")])
    lora = generate(with_lora(pipe, report.path), PROMPTS, [0, 1], **SETTINGS)
    assert max_difference(lora.original, images.edited) < 1e-4
    assert max_difference(images.original, images.edited) > 1e-3  # the edit shows
    assert pipeline_hash(pipe) == before


def test_a_value_only_edit_exports_only_the_values(sd1, edits, tmp_path):
    edit, images = edits("sd1", sd1, edit_keys=False)
    report = export_lora(sd1, edit, tmp_path / "values.safetensors")
    assert report.ranks and all(name.endswith("attn2.to_v") for name in report.ranks)
    lora = generate(with_lora(sd1, report.path), PROMPTS, [0, 1], **SETTINGS)
    assert max_difference(lora.original, images.edited) < 1e-4


@pytest.mark.parametrize("fmt", ["peft", "kohya"])
def test_the_truncated_error_is_what_the_metadata_says(sd1, edits, fmt, tmp_path):
    edit, _ = edits("sd1", sd1)
    report = export_lora(sd1, edit, tmp_path / "rank3.safetensors", rank=3, lora_format=fmt)
    meta = read_lora_report(report.path)
    assert meta["format"] == fmt and meta["rank"] == 3 and meta["dtype"] == "float32"
    assert meta["ranks"] == report.ranks and set(report.ranks.values()) == {3}
    assert meta["errors"] == pytest.approx(report.errors, rel=1e-12)
    assert meta["max_error"] == pytest.approx(max(meta["errors"].values()))
    assert meta["mean_error"] == pytest.approx(sum(meta["errors"].values()) / len(meta["errors"]))
    assert meta["edit"]["method"] == "time" and meta["edit"]["sources"] == f'["{SOURCE}"]'

    products = file_products(report.path, fmt)
    weights = {name: tensor.detach() for name, tensor in sd1.unet.named_parameters()}
    for name, error in meta["errors"].items():
        path = name.removeprefix("unet.")
        delta = edit.edited_weights(sd1.unet)[f"{path}.weight"].double() - weights[f"{path}.weight"].double()
        measured = float((delta - products[file_layer(name, fmt)]).norm() / delta.norm())
        assert measured == pytest.approx(error, rel=1e-4, abs=1e-6), name
    assert 0.05 < meta["max_error"] < 1  # rank 3 of 16-31 really truncates
    full = export_lora(sd1, edit, tmp_path / "full.safetensors", lora_format=fmt)
    assert report.num_bytes < full.num_bytes / 3


def test_float16_factors_halve_the_file(sd1, edits, tmp_path):
    edit, images = edits("sd1", sd1)
    full = export_lora(sd1, edit, tmp_path / "fp32.safetensors")
    half = export_lora(sd1, edit, tmp_path / "fp16.safetensors", dtype=torch.float16)
    assert half.dtype == "float16" and half.num_bytes < 0.6 * full.num_bytes
    with safe_open(str(half.path), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}
    lora = generate(with_lora(sd1, half.path), PROMPTS, [0, 1], **SETTINGS)
    assert max_difference(lora.original, images.edited) < 1e-2


def test_the_kohya_file_uses_kohya_names(sd1, edits, tmp_path):
    edit, _ = edits("sd1", sd1)
    report = export_lora(sd1, edit, tmp_path / "kohya.safetensors", lora_format="kohya")
    keys = set(load_file(str(report.path)))
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    assert {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"} <= keys
    assert all(k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha"))
               for k in keys)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FixedWeights(StandInEdit):
    """An edit whose `edited_weights` is a given dict (to test what the export accepts)."""

    method: ClassVar[str] = "fixed-weights"
    component: ClassVar[str] = "unet"

    weights: dict

    def conditioning(self, pipe, original, prompts, negative_prompt):
        raise NotImplementedError

    def edited_weights(self, module):
        return dict(self.weights)


def test_the_adapter_config_targets_exactly_the_exported_layers(sd1, tmp_path):
    """With 20 layers or more peft shortens a config's targets to suffixes matching its model; the file's config must
    name the exported layers of the real UNet, no others (attn1 has `to_k` too)."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    g = torch.Generator().manual_seed(0)
    weights = {name: p.detach() + 0.1 * torch.randn(p.shape[0], 1, generator=g) @ torch.randn(1, p.shape[1],
                                                                                              generator=g)
               for name, p in sd1.unet.named_parameters()
               if (".attn2." in name or ".ff." in name) and name.endswith(".weight")}  # attn1 left out
    assert len(weights) >= 20
    report = export_lora(sd1, FixedWeights(weights=weights), tmp_path / "many.safetensors")
    assert set(report.ranks.values()) == {1}
    with safe_open(str(report.path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["lora_adapter_metadata"])
    config = LoraConfig(**{k.removeprefix("unet."): v for k, v in meta.items()})
    targeted = {name for name, _ in sd1.unet.named_modules() if check_target_module_exists(config, name)}
    assert targeted == {name.removesuffix(".weight") for name in weights}
    other = with_lora(sd1, report.path)
    loaded = {name for name, module in other.unet.named_modules() if hasattr(module, "lora_A")}
    assert loaded == targeted


def test_bad_input_raises_before_anything_is_written(sd1, edits, tmp_path):
    edit, _ = edits("sd1", sd1)
    before = pipeline_hash(sd1)
    target = tmp_path / "lora.safetensors"
    for rank in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="rank must be an integer >= 1 or None"):
            export_lora(sd1, edit, target, rank=rank)
    with pytest.raises(ValueError, match="unknown LoRA format 'diffusers'; expected one of"):
        export_lora(sd1, edit, target, lora_format="diffusers")
    with pytest.raises(ValueError, match="dtype must be one of"):
        export_lora(sd1, edit, target, dtype="int8")
    with pytest.raises(ValueError, match="must end with .safetensors"):
        export_lora(sd1, edit, tmp_path / "lora.bin")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_lora(sd1, edit, tmp_path / "missing" / "lora.safetensors")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        export_lora(sd1, edit, tmp_path / "file" / "lora.safetensors")
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        export_lora(sd1, edit, tmp_path / "folder.safetensors")

    parameters = dict(sd1.unet.named_parameters())
    norm = "down_blocks.0.attentions.0.norm.weight"
    bias = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.bias"
    weight = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    with pytest.raises(ValueError, match="changes no weight"):
        export_lora(sd1, FixedWeights(weights={}), target)
    with pytest.raises(ValueError, match="changes no weight"):
        export_lora(sd1, FixedWeights(weights={weight: parameters[weight].detach().clone()}), target)
    with pytest.raises(ValueError, match=f"cannot export unet.{norm} as a LoRA: .* is a GroupNorm"):
        export_lora(sd1, FixedWeights(weights={norm: parameters[norm].detach() + 1}), target)
    with pytest.raises(ValueError, match="whose bias the edit changes"):
        export_lora(sd1, FixedWeights(weights={bias: parameters[bias].detach() + 1}), target)
    with pytest.raises(ValueError, match="not a parameter of the unet"):
        export_lora(sd1, FixedWeights(weights={"nothing.weight": torch.zeros(2, 2)}), target)
    with pytest.raises(ValueError, match=r"the shape \(2, 2\), not \(16, 32\)"):
        export_lora(sd1, FixedWeights(weights={weight: torch.zeros(2, 2)}), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.safetensors"]
    assert pipeline_hash(sd1) == before
    with pytest.raises(ValueError, match="was not written by export_lora"):
        read_lora_report(edit.save(tmp_path / "edit.safetensors"))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_lora_report(tmp_path / "file")
