"""The fine-tuning baseline (App. G) on tiny SD 1.x and SDXL pipelines: it lowers Eq. 4's data term (for SDXL on the
concatenated embeddings of both encoders, trained jointly), never writes the shared pipeline, applies through the edit
interface like a pipeline whose text encoder(s) were replaced (SDXL's pooled embedding included), round-trips through
edit files (old single-encoder files included), and refuses a pipeline of the other family."""

import numpy as np
import pytest
import torch
from helpers import check_like_replaced, pipeline_hash
from safetensors.torch import save_file

from time_core import EditFileError, generate, load_edit, prepare_edit
from time_core.methods import get_method
from time_core.methods.finetune import FinetuneEdit, FinetuneMethod, data_term
from time_core.models import UnsupportedModelError, encode_prompts
from time_core.prompts import augment_pairs, build_pairs

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"
XL = ("text_encoder", "text_encoder_2")
KWARGS = dict(num_inference_steps=3, output_type="np", progress=False)


def hooks(module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


@pytest.fixture(scope="module")
def finetuned(sd1):
    before = pipeline_hash(sd1)
    edit = FinetuneMethod(iterations=100).prepare(sd1, SOURCE, DESTINATION).solve(1e-3)
    return edit, before


@pytest.fixture(scope="module")
def finetuned_xl(sdxl):
    """An SDXL edit (few iterations at a smaller learning rate: the tiny encoders' loss drops at once) and the shared
    pipeline's weight hash and hook count from before it, after a first encoding (transformers hooks the encoders the
    first time the pipeline asks for hidden states)."""
    encode_prompts(sdxl, "a rose")
    before = pipeline_hash(sdxl), [hooks(getattr(sdxl, name)) for name in XL]
    edit = FinetuneMethod(iterations=40, learning_rate=1e-3).prepare(sdxl, SOURCE, DESTINATION).solve(1e-3)
    return edit, before


def check_data_term(pipe, edit):
    """Eq. 4's data term, recomputed: the sources through the fine-tuned encoder(s), as the pipeline's `encode_prompt`
    gives them to the UNet, against the original encoder(s)' aligned targets; it fell."""
    C, C_star, weights = build_pairs(pipe, SOURCE, DESTINATION)  # (N, w) ×2, (N,)
    sources = [s for s, _ in augment_pairs(SOURCE, DESTINATION)]
    tuned = edit.encode(pipe, sources).double().reshape(C.shape)  # (N, w)
    assert float(data_term(C, C_star, weights)) == pytest.approx(edit.initial_loss)
    assert float(data_term(tuned, C_star, weights)) == pytest.approx(edit.final_loss, rel=1e-3)
    assert edit.final_loss < edit.initial_loss


def test_finetuning_lowers_the_data_term_and_leaves_the_shared_weights_bit_identical(sd1, finetuned):
    edit, before = finetuned
    assert pipeline_hash(sd1) == before
    assert edit.method == "finetune" and edit.component == "text_encoder" and edit.lam == 1e-3
    assert edit.components == ("text_encoder",)
    check_data_term(sd1, edit)
    assert edit.seconds > 0 and edit.iterations == 100
    assert pipeline_hash(sd1) == before


def test_the_edit_applies_like_a_pipeline_with_the_fine_tuned_encoder(sd1, finetuned):
    edit, before = finetuned
    replaced = check_like_replaced(sd1, edit, atol=1e-4)
    # the prompts' embeddings equal the replaced pipeline's own encode_prompt, the negative prompt included
    mine = edit.conditioning(sd1, encode_prompts(sd1, ["a rose"], "blurry", True), ["a rose"], "blurry")[1]
    theirs = encode_prompts(replaced, ["a rose"], "blurry", True)
    assert torch.allclose(mine.embeds, theirs.embeds, atol=1e-6)
    assert torch.allclose(mine.negative, theirs.negative, atol=1e-6)
    assert pipeline_hash(sd1) == before


def test_edit_files_and_the_registry(sd1, finetuned, tmp_path):
    edit, _ = finetuned
    path = edit.save(tmp_path / "finetune.safetensors")
    loaded = load_edit(path)
    assert isinstance(loaded, FinetuneEdit) and loaded.lam == edit.lam and loaded.final_loss == edit.final_loss
    assert loaded.components == ("text_encoder",)
    assert all(torch.equal(loaded.weights["text_encoder"][k], v) for k, v in edit.weights["text_encoder"].items())
    assert torch.equal(loaded.encode(sd1, ["a rose"]), edit.encode(sd1, ["a rose"]))
    assert get_method("finetune").default_lam == FinetuneMethod.default_lam
    problem = prepare_edit(sd1, SOURCE, DESTINATION, method="finetune")
    assert problem.iterations == 4000 and problem.learning_rate == 0.01  # the paper's settings by default
    small = FinetuneMethod(iterations=2).prepare(sd1, SOURCE, DESTINATION, augment=False)
    assert small.solve(1.0) is small.solve(1.0)  # one training per η, reused by later units
    assert small.components == ("text_encoder",) and small.tokens[0][0].shape[0] == 1


def test_a_file_of_the_single_encoder_format_still_loads(sd1, finetuned, tmp_path):
    """Files written before SDXL was supported: the encoder's bare parameter names, no component list."""
    edit, _ = finetuned
    meta = {k: v for k, v in edit.metadata().items() if k != "components"}
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in edit.weights["text_encoder"].items()}, str(path), metadata=meta)
    loaded = load_edit(path)
    assert loaded.components == ("text_encoder",)
    assert set(loaded.weights["text_encoder"]) == set(sd1.text_encoder.state_dict())
    assert torch.equal(loaded.encode(sd1, ["a rose"]), edit.encode(sd1, ["a rose"]))


def test_sdxl_trains_both_encoders_jointly_on_their_concatenated_embeddings(sdxl, finetuned_xl):
    edit, (before, _) = finetuned_xl
    assert edit.components == XL and pipeline_hash(sdxl) == before
    check_data_term(sdxl, edit)
    for name, module in zip(XL, edit.encoders(sdxl)):
        shared = dict(getattr(sdxl, name).named_parameters())
        changed = {k for k, p in module.named_parameters() if not torch.equal(p, shared[k])}
        # the data term reads the penultimate layer: everything before it is trained, the last layer is not reached
        assert any(".layers.0." in k for k in changed) and not any(".layers.1." in k for k in changed), name
        assert any("token_embedding" in k for k in changed), name
    assert pipeline_hash(sdxl) == before


@pytest.mark.parametrize("negative_prompt", [None, "blurry"])
def test_sdxl_images_equal_a_pipeline_with_both_encoders_replaced(sdxl, finetuned_xl, negative_prompt):
    """The prompts, the negative prompt and the pooled embeddings go through both fine-tuned encoders; SDXL's zero
    unconditional embedding (`negative_prompt=None`) stays zero; the shared pipeline is never written nor hooked."""
    edit, before = finetuned_xl
    replaced = check_like_replaced(sdxl, edit, negative_prompt, atol=1e-4)
    prompts = ["a pack of roses", "a car"]
    original = encode_prompts(sdxl, prompts, negative_prompt, with_negative=True)
    _, edited = edit.conditioning(sdxl, original, prompts, negative_prompt)
    expected = encode_prompts(replaced, prompts, negative_prompt, with_negative=True)
    for field in ("embeds", "negative", "pooled", "negative_pooled"):
        assert torch.allclose(getattr(edited, field), getattr(expected, field), atol=1e-6), field
    assert (edited.pooled - original.pooled).abs().max() > 1e-3  # the pooled embedding follows the fine-tuned copy
    assert (negative_prompt is None) == (edited.negative.abs().max() == 0)
    assert (pipeline_hash(sdxl), [hooks(getattr(sdxl, name)) for name in XL]) == before


def test_sdxl_edit_files_round_trip_to_identical_images(sdxl, finetuned_xl, tmp_path):
    edit, (before, _) = finetuned_xl
    loaded = load_edit(edit.save(tmp_path / "xl.safetensors"))
    assert isinstance(loaded, FinetuneEdit) and loaded.components == XL and loaded.final_loss == edit.final_loss
    assert {k.split(".")[0] for k in loaded.tensors()} == set(XL)  # keys name their encoder
    for name in XL:
        assert all(torch.equal(loaded.weights[name][k], v) for k, v in edit.weights[name].items())
        module = getattr(sdxl, name)
        assert set(loaded.edited_weights(module)) == set(module.state_dict())  # found by its names and shapes
        assert set(loaded.edited_weights(module, component=name)) == set(module.state_dict())
    ours = generate(sdxl, ["a rose"], [0, 1], edit=edit, negative_prompt="blurry", **KWARGS)
    theirs = generate(sdxl, ["a rose"], [0, 1], edit=loaded, negative_prompt="blurry", **KWARGS)
    assert all(np.array_equal(a, b) for a, b in zip(ours.edited[0], theirs.edited[0]))
    with pytest.raises(ValueError, match="replaces"):
        loaded.edited_weights(sdxl.text_encoder, component="unet")
    assert pipeline_hash(sdxl) == before


def test_an_edit_of_the_other_model_family_is_refused(sd1, sdxl, finetuned, finetuned_xl):
    xl, sd = finetuned_xl[0], finetuned[0]
    with pytest.raises(EditFileError, match=r"Stable Diffusion XL; the loaded pipeline has \['text_encoder'\]"):
        generate(sd1, ["a rose"], [0], edit=xl, **KWARGS)
    with pytest.raises(EditFileError, match=r"Stable Diffusion 1.x / 2.x; .* \['text_encoder', 'text_encoder_2'\]"):
        sd.check_compatible(sdxl)
    with pytest.raises(EditFileError, match="not a text encoder this edit was fine-tuned from"):
        sd.edited_weights(sdxl.text_encoder_2)


def test_bad_input(sd1, sd2, tmp_path):
    before = pipeline_hash(sd1)
    with pytest.raises(ValueError, match="iterations must be"):
        FinetuneMethod(iterations=0)
    with pytest.raises(ValueError, match="learning_rate must be"):
        FinetuneMethod(learning_rate=float("nan"))
    no_tokenizer = type(sd1)(**{**sd1.components, "tokenizer": None})
    with pytest.raises(UnsupportedModelError, match="no tokenizer"):
        FinetuneMethod(iterations=1).prepare(no_tokenizer, SOURCE, DESTINATION)
    edit = FinetuneMethod(iterations=1).prepare(sd1, SOURCE, DESTINATION, augment=False).solve(1.0)
    with pytest.raises(EditFileError, match="does not fit"):
        edit.check_compatible(sd2)
    meta = {**edit.metadata(), "components": '["text_encoder_2"]'}
    save_file({f"text_encoder_2.{k}": v.contiguous() for k, v in edit.weights["text_encoder"].items()},
              str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(EditFileError, match=r"components must list \[.text_encoder.\] or"):
        load_edit(tmp_path / "bad.safetensors")
    assert pipeline_hash(sd1) == before
