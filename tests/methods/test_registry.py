"""The method registry and interface: dispatch by name, the method's default λ, the method recorded in edit files, the
conditioning hook `generate` uses, and prompt-list arguments given as one string."""

import dataclasses
import json
import re
from typing import ClassVar

import pytest
import torch
from helpers import StandInEdit, check_like_replaced, pipeline_hash
from safetensors.torch import save_file

from time_core import METHODS, BaseEdit, Edit, EditFileError, compute_edit, generate, load_edit, prepare_edit
from time_core.edit import read_edit_file
from time_core.methods import get_method
from time_core.models import TextConditioning, encode_prompts
from time_core.prompts import PromptError, as_prompts, augment_pairs, build_pairs

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"


def test_registry_lists_time_and_refuses_unknown_methods(sd1):
    assert {"time", "diff-quickfix"} <= set(METHODS) and get_method("time").edit_class is Edit
    registered = re.escape(str(sorted(METHODS)))
    before = pipeline_hash(sd1)
    for call in (compute_edit, prepare_edit):
        with pytest.raises(ValueError, match=rf"unknown editing method 'uce'; registered methods: {registered}"):
            call(sd1, SOURCE, DESTINATION, method="uce")
    assert pipeline_hash(sd1) == before


def test_each_method_names_the_options_it_lacks():
    assert get_method("time").unsupported(values_only=True, auto_preserve=True) == []
    assert get_method("diff-quickfix").unsupported(values_only=True, auto_preserve=True) == [
        "--values-only is an option of TIME's edit; diff-quickfix has no keys and values to choose"]
    assert get_method("finetune").unsupported(values_only=True, auto_preserve=True) == [
        "--values-only is an option of TIME's edit; finetune has no keys and values to choose",
        "--preserve auto is not available for finetune; list the prompts to keep"]
    assert get_method("finetune").unsupported() == []
    assert get_method("diff-quickfix").unsupported(auto_lam=True) == []
    assert get_method("finetune").unsupported(auto_lam=True) == [
        "--lam auto is not available for finetune; give a number"]
    with pytest.raises(ValueError, match=r"^edit_keys=False \(values only\) is not available for finetune; it has no "
                                         r"keys and values to choose between; preserve='auto' is not available for "
                                         r"finetune; list the prompts to keep$"):
        get_method("finetune").check_options(values_only=True, auto_preserve=True)


def test_a_method_declaring_an_unknown_feature_is_refused_when_its_class_is_made():
    from time_core.methods import TimeMethod

    with pytest.raises(TypeError, match=r"Odd declares unknown features \['negative_lam'\]"):
        type("Odd", (TimeMethod,), {"features": frozenset({"values_only", "negative_lam"})})


def test_lam_none_is_the_methods_default(sd1):
    default = get_method("time").default_lam
    assert default == 0.1
    edit = compute_edit(sd1, SOURCE, DESTINATION)
    assert edit.lam == default and edit.method == "time"
    assert torch.equal(edit.M, compute_edit(sd1, SOURCE, DESTINATION, lam=0.1, method="time").M)
    assert prepare_edit(sd1, SOURCE, DESTINATION).solve().lam == default
    assert isinstance(edit, BaseEdit) and edit.component == "unet"


def test_edit_files_record_the_method_and_old_files_load_as_time(sd1, tmp_path):
    edit = compute_edit(sd1, SOURCE, DESTINATION, lam=0.5)
    path = edit.save(tmp_path / "edit.safetensors")
    assert edit.metadata()["method"] == "time"
    for loaded in (Edit.load(path), load_edit(path)):
        assert isinstance(loaded, Edit) and torch.equal(loaded.M, edit.M) and loaded.lam == 0.5
    # a file written before the method was recorded
    legacy = {k: v for k, v in edit.metadata().items() if k != "method"}
    save_file({"M": edit.M}, str(tmp_path / "legacy.safetensors"), metadata=legacy)
    assert torch.equal(load_edit(tmp_path / "legacy.safetensors").M, edit.M)
    assert torch.equal(Edit.load(tmp_path / "legacy.safetensors").M, edit.M)
    # a file of a method that is not registered
    save_file({"M": edit.M}, str(tmp_path / "other.safetensors"), metadata={**edit.metadata(), "method": "uce"})
    registered = re.escape(str(sorted(METHODS)))
    with pytest.raises(EditFileError, match=rf"other.safetensors holds a 'uce' edit; registered methods: {registered}"):
        load_edit(tmp_path / "other.safetensors")
    with pytest.raises(EditFileError, match="holds a 'uce' edit, not a 'time' one"):
        Edit.load(tmp_path / "other.safetensors")


def test_loaded_tensors_own_aligned_memory(sd1, tmp_path):
    """A file's tensors are views into one buffer at offsets aligned only to their element size; BLAS kernels may round
    differently on such data, so a loaded edit gets each tensor in an allocation of its own (torch aligns to 64 bytes)
    and computes exactly what the saved edit did."""
    edit = compute_edit(sd1, SOURCE, DESTINATION)
    odd = {"a": torch.randn(3), "b": torch.randn(5, 7), "M": edit.M}  # odd sizes push later tensors off alignment
    save_file(odd, str(tmp_path / "odd.safetensors"), metadata=edit.metadata())
    tensors, _ = read_edit_file(tmp_path / "odd.safetensors")
    assert all(tensors[k].data_ptr() % 64 == 0 and torch.equal(tensors[k], v) for k, v in odd.items())


@dataclasses.dataclass(frozen=True)
class RecordingEdit(Edit):
    """A TIME edit whose conditioning hook records its arguments and returns the original conditioning for both."""

    calls: list = dataclasses.field(default_factory=list, compare=False)

    def conditioning(self, pipe, original, prompts, negative_prompt):
        self.calls.append((tuple(prompts), negative_prompt, original.negative is not None))
        return original, original


def test_generate_takes_the_conditioning_from_the_edit(sd1):
    """`generate` never maps embeddings itself: the edit's hook gives both models' conditioning."""
    base = compute_edit(sd1, SOURCE, DESTINATION)
    edit = RecordingEdit(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Edit)})
    result = generate(sd1, ["a rose", "a car"], [0], edit=edit, num_inference_steps=2, negative_prompt="blurry",
                      output_type="np", progress=False)
    assert edit.calls == [(("a rose", "a car"), "blurry", True)]
    for original, edited in zip(result.original, result.edited):
        assert (original[0] == edited[0]).all()  # the hook's "edit" is the identity
    real = generate(sd1, ["a rose"], [0], edit=base, num_inference_steps=2, output_type="np", progress=False)
    assert abs(real.original[0][0] - real.edited[0][0]).max() > 1e-3


def test_a_bare_string_is_one_prompt_everywhere(sd1):
    assert as_prompts(" a rose ") == ("a rose",)
    assert augment_pairs("a rose", "a blue rose", augment=False) == [("a rose", "a blue rose")]
    assert encode_prompts(sd1, "a rose").embeds.shape[0] == 1
    C, C_star, weights = build_pairs(sd1, "a rose", "a blue rose", augment=False, preserve="a car")
    C2, C_star2, weights2 = build_pairs(sd1, ["a rose"], ["a blue rose"], augment=False, preserve=["a car"])
    assert torch.equal(C, C2) and torch.equal(C_star, C_star2) and torch.equal(weights, weights2)
    one = compute_edit(sd1, SOURCE, DESTINATION, preserve="a rose in a vase", preserve_weight=10.0)
    listed = compute_edit(sd1, SOURCE, DESTINATION, preserve=["a rose in a vase"], preserve_weight=10.0)
    assert one.preserve == ("a rose in a vase",) and torch.equal(one.M, listed.M)
    assert len(generate(sd1, "a rose", [0], num_inference_steps=1, progress=False).original) == 1
    with pytest.raises(PromptError, match="preserve prompt must be a string"):
        compute_edit(sd1, SOURCE, DESTINATION, preserve=[3])


def test_preserve_auto_derives_prompts_and_a_bare_auto_in_a_list_is_a_prompt(sd1):
    before = pipeline_hash(sd1)
    automatic = compute_edit(sd1, SOURCE, DESTINATION, preserve="auto")
    assert automatic.preserve and "auto" not in automatic.preserve
    assert prepare_edit(sd1, SOURCE, DESTINATION, preserve=" auto ").solve(0.1).preserve == automatic.preserve
    assert pipeline_hash(sd1) == before
    assert compute_edit(sd1, SOURCE, DESTINATION, preserve=["auto"]).preserve == ("auto",)  # a list is taken as is


def test_edit_metadata_is_json(sd1):
    edit = compute_edit(sd1, [SOURCE, "an apple"], [DESTINATION, "a red apple"], preserve="a car")
    meta = edit.metadata()
    assert json.loads(meta["sources"]) == [SOURCE, "an apple"] and json.loads(meta["preserve"]) == ["a car"]


@pytest.mark.parametrize("method", ["time", "diff-quickfix"])
def test_edit_files_record_automatic_preservation(sd1, tmp_path, method):
    """Listing an automatic edit's derived prompts at its weight gives another edit (TIME uses them unaugmented,
    Diff-QuickFix reads them up to their end tokens), so the file records that they were derived."""
    auto = compute_edit(sd1, SOURCE, DESTINATION, method=method, preserve="auto")
    listed = compute_edit(sd1, SOURCE, DESTINATION, method=method, preserve=auto.preserve,
                          preserve_weight=auto.preserve_weight)
    assert auto.auto_preserve and not listed.auto_preserve and listed.preserve == auto.preserve and auto.preserve
    assert any(not torch.equal(a, b) for a, b in zip(auto.tensors().values(), listed.tensors().values()))
    for edit in (auto, listed):
        loaded = load_edit(edit.save(tmp_path / "edit.safetensors"))
        assert loaded.auto_preserve == edit.auto_preserve and json.loads(edit.metadata()["auto_preserve"]) is (
            edit is auto)
    tensors = auto.tensors()
    old = {k: v for k, v in auto.metadata().items() if k != "auto_preserve"}  # written before the flag
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    assert load_edit(tmp_path / "old.safetensors").auto_preserve is False
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**old, "auto_preserve": '"yes"'})
    with pytest.raises(EditFileError, match="auto_preserve must be true or false, got 'yes'"):
        load_edit(tmp_path / "bad.safetensors")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplacedEncoderWeight(StandInEdit):
    """A stand-in for a method that edits the text encoder (as Diff-QuickFix does): one weight replaced, applied with
    `torch.func.functional_call` to the prompts and to the negative prompt, never written."""

    method: ClassVar[str] = "replaced-encoder-weight"
    component: ClassVar[str] = "text_encoder"

    name: str
    weight: torch.Tensor

    def _encode(self, pipe, prompts):
        ids = pipe.tokenizer(list(prompts), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return torch.func.functional_call(pipe.text_encoder, {self.name: self.weight}, (ids,))[0]  # (P, L, d)

    def conditioning(self, pipe, original, prompts, negative_prompt):
        negative = None
        if original.negative is not None:
            negative = self._encode(pipe, [negative_prompt or ""] * len(prompts))
        return original, TextConditioning(self._encode(pipe, prompts), negative)

    def edited_weights(self, module):
        return {self.name: self.weight}

    def tensors(self):
        return {"weight": self.weight}

    def provenance(self):
        return {"name": self.name}

    @classmethod
    def from_file(cls, tensors, meta, name):
        return cls(name=meta["name"], weight=tensors["weight"])


def test_a_text_encoder_edit_fits_the_interface(sd1, tmp_path):
    """An edit of the text encoder goes through `generate` unchanged: its images equal those of a pipeline whose
    encoder weight was replaced, the negative prompt included, and the shared pipeline is never written."""
    name = "encoder.layers.0.self_attn.out_proj.weight"
    weight = dict(sd1.text_encoder.named_parameters())[name].detach()
    edit = ReplacedEncoderWeight(name=name, weight=-weight)
    check_like_replaced(sd1, edit)
    loaded = ReplacedEncoderWeight.load(edit.save(tmp_path / "encoder.safetensors"))
    assert loaded.name == name and torch.equal(loaded.weight, edit.weight)
