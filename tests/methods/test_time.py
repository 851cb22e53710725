"""TIME through `compute_edit` / `Edit` on tiny SD 1.x, SD 2.x and SDXL pipelines: Eq. 5 per layer, the embedding
map against the weight edit in the UNet, multi-edits, preservation, edit files, errors. What every method must do
(weights never written, images equal to the weight edit, files, λ sweeps, bad input) is `test_method_contract.py`."""

import copy

import pytest
import torch
from helpers import pipeline_hash

from time_core import Edit, EditFileError, PromptError, compute_edit, generate
from time_core.models import cross_attention_layers, encode_prompts
from time_core.prompts import build_pairs
from time_core.solver import edit_matrix, naive_edited_weight

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"


def test_edit_equals_literal_eq5_in_every_layer(any_pipe):
    """W·M equals a naive per-layer Eq. 5 in float64, for every attn2.to_k / to_v, on every architecture."""
    edit = compute_edit(any_pipe, SOURCE, DESTINATION, lam=0.1)
    C, C_star, _ = build_pairs(any_pipe, [SOURCE], [DESTINATION], augment=True)
    assert C.shape == (4 * 77, edit.text_width)  # 4 prompt pairs (source + 3 augmentations) × 77 positions
    weights = edit.edited_weights(any_pipe.unet)
    layers = cross_attention_layers(any_pipe.unet)
    assert len(weights) == 2 * len(layers) > 0
    params = dict(any_pipe.unet.named_parameters())
    for name, W_new in weights.items():
        W = params[name].detach().double()
        expected = naive_edited_weight(W, C, C_star, lam=0.1)
        assert torch.allclose(W_new.double(), expected, rtol=1e-5, atol=1e-6 * expected.abs().max()), name


def test_value_only_edits_only_values(sd1):
    edit = compute_edit(sd1, SOURCE, DESTINATION, edit_keys=False)
    names = set(edit.edited_weights(sd1.unet))
    assert names and all(n.endswith("attn2.to_v.weight") for n in names)


def _unet_out(unet, encoder_hidden_states, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(encoder_hidden_states.shape[0], unet.config.in_channels, 8, 8, generator=g)
    added = {}
    if unet.config.addition_embed_type == "text_time":
        n = encoder_hidden_states.shape[0]
        proj = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        added = {"added_cond_kwargs": {"text_embeds": torch.randn(n, proj, generator=g),
                                       "time_ids": torch.ones(n, 6) * 16}}
    with torch.no_grad():
        return unet(sample, 500, encoder_hidden_states=encoder_hidden_states, **added).sample


@pytest.mark.parametrize("edit_keys", [True, False])
def test_embedding_map_equals_weight_edit_in_the_unet(any_pipe, edit_keys):
    from time_core.attention import install_split_processors, split_key_value

    edit = compute_edit(any_pipe, SOURCE, DESTINATION, lam=0.1, edit_keys=edit_keys)
    c = encode_prompts(any_pipe, ["a pack of roses", "a rose in a vase"]).embeds  # (2, L, d)
    edited_unet = copy.deepcopy(any_pipe.unet)
    missing, unexpected = edited_unet.load_state_dict(edit.edited_weights(any_pipe.unet), strict=False)
    assert not unexpected
    expected = _unet_out(edited_unet, c)
    if edit_keys:
        got = _unet_out(any_pipe.unet, edit.map_embeddings(c))
    else:
        install_split_processors(any_pipe.unet)
        got = _unet_out(any_pipe.unet, split_key_value(c, edit.map_embeddings(c)))
        # at width d the wrapped processors are the original ones, bit for bit
        assert torch.equal(_unet_out(any_pipe.unet, c), _unet_out(copy.deepcopy(any_pipe.unet), c))
    assert torch.allclose(got, expected, atol=1e-5 * expected.abs().max())
    assert not torch.allclose(got, _unet_out(any_pipe.unet, c), atol=1e-4 * expected.abs().max())


def test_lambda_to_infinity_is_the_original_model(sd1):
    edit = compute_edit(sd1, SOURCE, DESTINATION, lam=1e12)
    assert torch.allclose(edit.M, torch.eye(edit.text_width, dtype=torch.float64), atol=1e-8)


def test_multi_edit_sums_both_factors(sd1):
    sources, destinations = ["a pack of roses", "an apple"], ["a pack of blue roses", "a red apple"]
    multi = compute_edit(sd1, sources, destinations, lam=0.1)
    C1, S1, _ = build_pairs(sd1, sources[:1], destinations[:1])
    C2, S2, _ = build_pairs(sd1, sources[1:], destinations[1:])
    expected = edit_matrix(torch.cat([C1, C2]), torch.cat([S1, S2]), 0.1)
    assert torch.allclose(multi.M, expected, atol=1e-10)
    assert multi.sources == tuple(sources) and multi.destinations == tuple(destinations)


def test_preservation_keeps_a_prompt(sd1):
    keep = "a rose in a vase"
    c = encode_prompts(sd1, [keep]).embeds.double()[0]  # (L, d)
    plain = compute_edit(sd1, SOURCE, DESTINATION)
    kept = compute_edit(sd1, SOURCE, DESTINATION, preserve=[keep], preserve_weight=100.0)
    drift_plain = (c @ plain.M.T - c).norm()
    drift_kept = (c @ kept.M.T - c).norm()
    assert drift_kept < 0.2 * drift_plain
    assert kept.preserve == (keep,)


def test_an_edit_file_holds_m_in_float64_and_little_else(sd1, tmp_path):
    """Round trips are the contract test's (`test_method_contract.py`); here the size of TIME's file."""
    edit = compute_edit(sd1, ["a pack of roses", "an apple"], ["a pack of blue roses", "a red apple"], lam=0.25,
                        edit_keys=False, preserve=["a car"], preserve_weight=2.0)
    path = edit.save(tmp_path / "edit.safetensors")
    assert Edit.load(path).M.dtype == torch.float64
    assert path.stat().st_size < 8 * edit.text_width**2 + 4096


def test_bad_edit_files(sd1, sd2, tmp_path):
    from safetensors.torch import save_file

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(EditFileError, match="not a readable safetensors file"):
        Edit.load(corrupt)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(foreign))
    with pytest.raises(EditFileError, match="not a TIME edit file"):
        Edit.load(foreign)
    with pytest.raises(EditFileError, match="no edit file"):
        Edit.load(tmp_path / "missing.safetensors")
    edit = compute_edit(sd1, SOURCE, DESTINATION)
    tampered = tmp_path / "tampered.safetensors"
    save_file({"M": torch.zeros(4, 4, dtype=torch.float64)}, str(tampered), metadata=edit.metadata())
    with pytest.raises(EditFileError, match=r"M has shape \(4, 4\), expected \(32, 32\)"):
        Edit.load(tampered)
    # an edit of another text width cannot be applied
    before = pipeline_hash(sd2)
    with pytest.raises(EditFileError, match="text width 32.*text width 1024"):
        generate(sd2, ["a rose"], [0], edit=edit, num_inference_steps=2, progress=False)
    with pytest.raises(EditFileError, match="width"):
        edit.edited_weights(sd2.unet)
    assert pipeline_hash(sd2) == before


def test_a_destination_must_repeat_the_source_words(sd1):
    """TIME aligns the tokens of the source in the destination; the contract test covers the other bad input."""
    before = pipeline_hash(sd1)
    with pytest.raises(PromptError, match="source word 'roses'"):
        compute_edit(sd1, "a pack of roses", "a pack of blue tulips")
    assert pipeline_hash(sd1) == before
