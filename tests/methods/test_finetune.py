"""The fine-tuning baseline (App. G): it lowers Eq. 4's data term, never writes the shared pipeline, applies through
the edit interface like a pipeline whose text encoder was replaced, and round-trips through edit files."""

import pytest
import torch
from helpers import check_like_replaced_encoder, pipeline_hash

from time_core import EditFileError, compute_edit, load_edit, prepare_edit
from time_core.methods import get_method
from time_core.methods.finetune import FinetuneEdit, FinetuneMethod, data_term
from time_core.models import UnsupportedModelError, encode_prompts
from time_core.prompts import augment_pairs, build_pairs

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"


@pytest.fixture(scope="module")
def finetuned(sd1):
    before = pipeline_hash(sd1)
    edit = FinetuneMethod(iterations=100).prepare(sd1, SOURCE, DESTINATION).solve(1e-3)
    return edit, before


def test_finetuning_lowers_the_data_term_and_leaves_the_shared_weights_bit_identical(sd1, finetuned):
    edit, before = finetuned
    assert pipeline_hash(sd1) == before
    assert edit.method == "finetune" and edit.component == "text_encoder" and edit.lam == 1e-3
    # Eq. 4's data term, recomputed: the sources through the fine-tuned encoder against the original's aligned targets
    C, C_star, weights = build_pairs(sd1, SOURCE, DESTINATION)  # (N, d) ×2, (N,)
    sources = [s for s, _ in augment_pairs(SOURCE, DESTINATION)]
    tuned = edit.encode(sd1, sources).double().reshape(C.shape)  # (N, d)
    original = data_term(C, C_star, weights)
    assert float(original) == pytest.approx(edit.initial_loss)
    assert float(data_term(tuned, C_star, weights)) == pytest.approx(edit.final_loss, rel=1e-3)
    assert edit.final_loss < edit.initial_loss
    assert edit.seconds > 0 and edit.iterations == 100
    assert pipeline_hash(sd1) == before


def test_the_edit_applies_like_a_pipeline_with_the_fine_tuned_encoder(sd1, finetuned):
    edit, before = finetuned
    replaced = check_like_replaced_encoder(sd1, edit)
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
    assert all(torch.equal(loaded.weights[k], edit.weights[k]) for k in edit.weights)
    assert torch.equal(loaded.encode(sd1, ["a rose"]), edit.encode(sd1, ["a rose"]))
    assert get_method("finetune").default_lam == FinetuneMethod.default_lam
    problem = prepare_edit(sd1, SOURCE, DESTINATION, method="finetune")
    assert problem.iterations == 4000 and problem.learning_rate == 0.01  # the paper's settings by default
    small = FinetuneMethod(iterations=2).prepare(sd1, SOURCE, DESTINATION, augment=False)
    assert small.solve(1.0) is small.solve(1.0)  # one training per η, reused by later units
    assert small.input_ids.shape[0] == 1


def test_bad_input(sd1, sd2, sdxl):
    before = pipeline_hash(sd1)
    with pytest.raises(ValueError, match="values only"):
        compute_edit(sd1, SOURCE, DESTINATION, edit_keys=False, method="finetune")
    with pytest.raises(ValueError, match="preserve='auto'"):
        compute_edit(sd1, SOURCE, DESTINATION, preserve="auto", method="finetune")
    with pytest.raises(ValueError, match="lam must be"):
        compute_edit(sd1, SOURCE, DESTINATION, lam=0.0, method="finetune")
    with pytest.raises(UnsupportedModelError, match="one text encoder"):
        FinetuneMethod(iterations=1).prepare(sdxl, SOURCE, DESTINATION)
    with pytest.raises(ValueError, match="iterations must be"):
        FinetuneMethod(iterations=0)
    with pytest.raises(ValueError, match="learning_rate must be"):
        FinetuneMethod(learning_rate=float("nan"))
    edit = FinetuneMethod(iterations=1).prepare(sd1, SOURCE, DESTINATION, augment=False).solve(1.0)
    with pytest.raises(EditFileError, match="does not fit"):
        edit.check_compatible(sd2)
    assert pipeline_hash(sd1) == before
