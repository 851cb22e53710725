"""Diff-QuickFix as a registered method on tiny SD 1.x, SD 2.x and SDXL pipelines: the literal formula, images equal
to those of a weight-replaced pipeline, weights never written, λ sweeps, multi-edits, edit files, bad input,
concurrent sessions of different methods."""

from __future__ import annotations

import copy
import dataclasses
import threading

import numpy as np
import pytest
import torch
from helpers import pipeline_hash, replaced_pipeline
from safetensors.torch import save_file

from time_core import METHODS, Edit, EditFileError, PromptError, QuickFixEdit, compute_edit, generate, load_edit
from time_core import prepare_edit
from time_core.methods.diff_quickfix import OUT_PROJ_PATH, QuickFixProblem, find_projection, prepare_quickfix
from time_core.models import encode_prompts, thread_view

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"
DQF = "diff-quickfix"
KWARGS = dict(num_inference_steps=3, output_type="np", progress=False)


def hooks(module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def capture(encoder, tokenizer, prompts, path):
    """Inputs and outputs of the edited layer, from a plain forward hook on a deep copy of the encoder."""
    encoder = copy.deepcopy(encoder)
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    records = []
    encoder.get_submodule(path).register_forward_hook(lambda m, a, o: records.append((a[0].double(), o.double())))
    with torch.no_grad():
        encoder(ids)
    return records[0]


def literal_weight(encoder, tokenizer, path, pairs, lam, preserve=(), preserve_weight=1.0):
    """`W' = (λ W + Σ w_j (v_j − b) k_jᵀ)(λ I + Σ w_j k_j k_jᵀ)⁻¹`, the pairs collected by hand."""
    layer = encoder.get_submodule(path)
    W, b = layer.weight.detach().double(), layer.bias.detach().double()
    L = tokenizer.model_max_length
    numerator, gram = lam * W.clone(), lam * torch.eye(W.shape[1], dtype=torch.float64)
    for source, destination in pairs:
        inputs, outputs = capture(encoder, tokenizer, [source, destination], path)
        e_s, e_d = (len(tokenizer(p).input_ids) - 2 for p in (source, destination))  # last token before end-of-text
        for j in range(L - e_s):
            k, v = inputs[0, e_s + j], outputs[1, min(e_d + j, L - 1)]
            numerator += torch.outer(v - b, k)
            gram += torch.outer(k, k)
    for prompt in preserve:  # every position, the layer's own output
        inputs, _ = capture(encoder, tokenizer, [prompt], path)
        for k in inputs[0]:
            numerator += preserve_weight * torch.outer(W @ k, k)
            gram += preserve_weight * torch.outer(k, k)
    return numerator @ torch.inverse(gram)


def test_registered_with_its_default_lambda(sd1):
    method = METHODS[DQF]
    assert method.default_lam == 0.01 and method.edit_class is QuickFixEdit
    edit = compute_edit(sd1, SOURCE, DESTINATION, method=DQF)
    assert isinstance(edit, QuickFixEdit) and edit.lam == 0.01 and edit.method == DQF
    assert edit.component == "text_encoder" and edit.components == ("text_encoder",)
    assert prepare_edit(sd1, SOURCE, DESTINATION, method=DQF).solve().lam == 0.01


def test_edit_equals_the_literal_formula(sd1):
    """One pair with augmentations, a multi-edit, and preservation prompts, against the formula written out."""
    encoder, tokenizer = sd1.text_encoder, sd1.tokenizer
    cases = [
        (dict(source=SOURCE, destination=DESTINATION), [(p + SOURCE, p + DESTINATION) for p in
                                                        ("", "A photo of ", "An image of ", "A picture of ")], ()),
        (dict(source=["a rose", "an apple"], destination=["a blue rose", "a red apple"], augment=False),
         [("a rose", "a blue rose"), ("an apple", "a red apple")], ()),
        (dict(source="a rose", destination="a car", augment=False, preserve=["a red car"], preserve_weight=3.0),
         [("a rose", "a car")], ("a red car",)),
    ]
    for kwargs, pairs, preserve in cases:
        edit = compute_edit(sd1, lam=0.05, method=DQF, **kwargs)
        expected = literal_weight(encoder, tokenizer, OUT_PROJ_PATH, pairs, 0.05, preserve, 3.0)
        got = find_projection(encoder).weight.detach().double() + edit.deltas[0]
        assert torch.allclose(got, expected, rtol=0, atol=1e-8 * expected.abs().max()), kwargs
        (name, weight), = edit.edited_weights(encoder).items()
        assert name == OUT_PROJ_PATH + ".weight" and weight.dtype == torch.float32
        assert torch.equal(weight, got.float())


def test_sdxl_edits_both_encoders(sdxl):
    edit = compute_edit(sdxl, SOURCE, DESTINATION, lam=0.05, augment=False, method=DQF)
    assert edit.components == ("text_encoder", "text_encoder_2")
    for (component, path), delta in zip(edit.layers, edit.deltas):
        encoder, tokenizer = getattr(sdxl, component), getattr(sdxl, component.replace("text_encoder", "tokenizer"))
        expected = literal_weight(encoder, tokenizer, path, [(SOURCE, DESTINATION)], 0.05)
        got = find_projection(encoder, path).weight.detach().double() + delta
        assert torch.allclose(got, expected, rtol=0, atol=1e-8 * expected.abs().max()), component
        weights = edit.edited_weights(encoder)
        assert set(weights) <= set(encoder.state_dict()) and set(weights) == {path + ".weight"}
    assert edit.layers[1][1] == "text_model." + OUT_PROJ_PATH


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
@pytest.mark.parametrize("negative_prompt", [None, "blurry"])
def test_images_equal_the_weight_replaced_pipeline(request, kind, negative_prompt):
    """The prompts and the negative / unconditional prompt go through the edited encoder(s); SDXL's pooled embeddings
    follow; the pipeline is never written, not even by hooks."""
    pipe = request.getfixturevalue(kind)
    edit = compute_edit(pipe, [SOURCE, "an apple"], [DESTINATION, "a red apple"], method=DQF)
    encode_prompts(pipe, "a rose")  # transformers hooks the encoders the first time the pipeline asks for hidden states
    before, before_hooks = pipeline_hash(pipe), [hooks(getattr(pipe, c)) for c in edit.components]
    prompts = ["a pack of roses", "a car"]
    ours = generate(pipe, prompts, [0, 1], edit=edit, negative_prompt=negative_prompt, **KWARGS)
    assert pipeline_hash(pipe) == before and [hooks(getattr(pipe, c)) for c in edit.components] == before_hooks
    replaced = replaced_pipeline(pipe, edit)
    reference = generate(replaced, prompts, [0, 1], negative_prompt=negative_prompt, **KWARGS)
    for p in range(2):
        for s in range(2):
            assert np.abs(ours.edited[p][s] - reference.original[p][s]).max() < 1e-5
            assert np.abs(ours.original[p][s] - ours.edited[p][s]).max() > 1e-3  # the edit does something
    cond = encode_prompts(pipe, prompts, negative_prompt, with_negative=True)
    _, edited = edit.conditioning(pipe, cond, prompts, negative_prompt)
    expected = encode_prompts(replaced, prompts, negative_prompt, with_negative=True)
    for field in ("embeds", "negative", "pooled", "negative_pooled"):
        if getattr(expected, field) is not None:
            assert torch.allclose(getattr(edited, field), getattr(expected, field), atol=1e-6), field
    if kind == "sdxl":
        assert not torch.allclose(edited.pooled, cond.pooled)  # the pooled embeddings follow the edited encoder


def test_sweep_reuses_one_factorisation(sd1):
    layer = sd1.text_encoder.encoder.layers[0]
    calls = []
    handle = layer.register_forward_pre_hook(lambda *args: calls.append(1))  # copied into the edited views too
    try:
        problem = prepare_edit(sd1, SOURCE, DESTINATION, method=DQF)
        encoded = len(calls)
        edits = [problem.solve(lam) for lam in (1e-3, 0.01, 1.0, 100.0)]
        assert encoded > 0 and len(calls) == encoded  # solving encodes nothing
    finally:
        handle.remove()
    for edit in edits:
        direct = compute_edit(sd1, SOURCE, DESTINATION, lam=edit.lam, method=DQF)
        assert torch.allclose(edit.deltas[0], direct.deltas[0], atol=1e-10)
    norms = [float(e.deltas[0].norm()) for e in edits]
    assert norms == sorted(norms, reverse=True)  # a larger λ is a smaller edit
    assert compute_edit(sd1, SOURCE, DESTINATION, lam=1e12, method=DQF).deltas[0].abs().max() < 1e-8


def test_multi_edit_solves_all_pairs_together(sd1):
    sources, destinations = ["a pack of roses", "an apple"], ["a pack of blue roses", "a red apple"]
    multi = compute_edit(sd1, sources, destinations, lam=0.1, method=DQF)
    problem = prepare_quickfix(sd1.text_encoder, sd1.tokenizer, sources, destinations)
    assert torch.allclose(multi.deltas[0], problem.update(0.1), atol=1e-12)
    assert multi.sources == tuple(sources) and multi.destinations == tuple(destinations)
    single = compute_edit(sd1, sources[:1], destinations[:1], lam=0.1, method=DQF)
    assert not torch.allclose(multi.deltas[0], single.deltas[0])


def test_weights_are_never_written_by_either_method(sd1):
    before = pipeline_hash(sd1)
    edits = [compute_edit(sd1, SOURCE, DESTINATION, method=DQF), compute_edit(sd1, SOURCE, DESTINATION),
             compute_edit(sd1, SOURCE, DESTINATION, edit_keys=False)]
    for edit in edits:
        edit.edited_weights(getattr(sd1, edit.component))
        generate(sd1, ["a rose"], [0], edit=edit, negative_prompt="blurry", **KWARGS)
    assert pipeline_hash(sd1) == before


def test_edit_file_round_trip(sdxl, tmp_path):
    edit = compute_edit(sdxl, ["a pack of roses", "an apple"], ["a pack of blue roses", "a red apple"], lam=0.25,
                        preserve=["a car"], preserve_weight=2.0, method=DQF)
    path = edit.save(tmp_path / "dqf.safetensors")
    assert edit.metadata()["method"] == DQF
    for loaded in (load_edit(path), QuickFixEdit.load(path)):
        assert isinstance(loaded, QuickFixEdit)
        assert all(torch.equal(a, b) and a.dtype == torch.float64 for a, b in zip(loaded.deltas, edit.deltas))
        for field in ("layers", "sources", "destinations", "lam", "augment", "preserve", "preserve_weight",
                      "text_width", "model"):
            assert getattr(loaded, field) == getattr(edit, field), field
    again = generate(sdxl, ["a rose"], [0], edit=load_edit(path), **KWARGS)
    first = generate(sdxl, ["a rose"], [0], edit=edit, **KWARGS)
    assert np.array_equal(again.edited[0][0], first.edited[0][0])


def test_edit_files_of_one_method_are_refused_by_the_other(sd1, tmp_path):
    dqf = compute_edit(sd1, SOURCE, DESTINATION, method=DQF).save(tmp_path / "dqf.safetensors")
    time_file = compute_edit(sd1, SOURCE, DESTINATION).save(tmp_path / "time.safetensors")
    with pytest.raises(EditFileError, match="holds a 'diff-quickfix' edit, not a 'time' one"):
        Edit.load(dqf)
    with pytest.raises(EditFileError, match="holds a 'time' edit, not a 'diff-quickfix' one"):
        QuickFixEdit.load(time_file)


def test_edits_for_another_model_are_refused(sd1, sd2, sdxl, tmp_path):
    from transformers import CLIPTextModelWithProjection

    edit = compute_edit(sd1, SOURCE, DESTINATION, method=DQF)
    for other, message in ((sd2, "text width 32.*text width 1024"), (sdxl, "text width 32.*text width 96")):
        before = pipeline_hash(other)
        with pytest.raises(EditFileError, match=message):
            generate(other, ["a rose"], [0], edit=load_edit(edit.save(tmp_path / "sd1.safetensors")), **KWARGS)
        assert pipeline_hash(other) == before
    with pytest.raises(EditFileError, match="has none of the layers this edit changes"):
        edit.edited_weights(sd2.text_encoder)
    # the same text width, another encoder layout: the layer is elsewhere, or has another shape
    projected = type(sd1)(**{**sd1.components,
                             "text_encoder": CLIPTextModelWithProjection(sd1.text_encoder.config)})
    with pytest.raises(EditFileError, match="does not fit the loaded text_encoder.*no module"):
        edit.check_compatible(projected)
    tampered = tmp_path / "tampered.safetensors"
    save_file({"text_encoder": torch.zeros(16, 32, dtype=torch.float64)}, str(tampered), metadata=edit.metadata())
    with pytest.raises(EditFileError, match=r"shape \(16, 32\).*shape \(32, 32\)"):
        load_edit(tampered).check_compatible(sd1)
    # an SDXL edit on a one-encoder pipeline of the same widths
    sdxl_edit = compute_edit(sdxl, SOURCE, DESTINATION, method=DQF)
    with pytest.raises(EditFileError, match=r"changes the text encoder\(s\) \['text_encoder', 'text_encoder_2'\]"):
        dataclasses.replace(sdxl_edit, text_width=32).check_compatible(sd1)


def test_bad_edit_files(sd1, tmp_path):
    edit = compute_edit(sd1, SOURCE, DESTINATION, method=DQF)
    cases = {
        "missing.safetensors": ({}, edit.metadata(), "one tensor per edited text encoder"),
        "nan.safetensors": ({"text_encoder": torch.full((32, 32), float("nan"), dtype=torch.float64)},
                            edit.metadata(), "NaN"),
        "layers.safetensors": (edit.tensors(), {**edit.metadata(), "layers": "[1, 2]"}, "invalid edit metadata"),
        "lam.safetensors": (edit.tensors(), {**edit.metadata(), "lam": "-1"}, "invalid edit metadata"),
        "unknown.safetensors": ({"unet": edit.deltas[0]}, {**edit.metadata(), "layers": '{"unet": "x"}'},
                                "one tensor per edited text encoder"),
    }
    for name, (tensors, meta, message) in cases.items():
        save_file(tensors, str(tmp_path / name), metadata=meta)
        with pytest.raises(EditFileError, match=message):
            load_edit(tmp_path / name)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(edit_keys=False), ValueError, "edit_keys=False.*diff-quickfix edits one text-encoder layer"),
        (dict(lam=0), ValueError, "lam must be finite and > 0"),
        (dict(source=["a rose", "a car"]), ValueError, "2 source prompts but 1"),
        (dict(source=""), PromptError, "source is empty"),
        (dict(destination="a " + "very " * 80 + "rose"), PromptError, "at most 77"),
        (dict(preserve_weight=float("nan")), ValueError, "preserve_weight"),
        (dict(preserve=[""]), PromptError, "preserve prompt is empty"),
        (dict(method="quickfix"), ValueError, r"unknown editing method 'quickfix'; registered methods: \[.*'diff"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(sd1, kwargs, error, message):
    arguments = dict(source=SOURCE, destination=DESTINATION, method=DQF) | kwargs
    before = pipeline_hash(sd1)
    with pytest.raises(error, match=message):
        compute_edit(sd1, **arguments)
    assert pipeline_hash(sd1) == before


def test_a_destination_need_not_repeat_the_source(sd1):
    """The pairs are counted from the end of each prompt: no token alignment, unlike TIME."""
    edit = compute_edit(sd1, "a rose", "a car", method=DQF)
    assert edit.deltas[0].abs().max() > 0
    with pytest.raises(PromptError, match="source word"):
        compute_edit(sd1, "a rose", "a car")


def test_sessions_with_different_methods_do_not_cross(sd1):
    """Threads generating with a Diff-QuickFix, a TIME and a value-only TIME edit at once get the images each gets
    alone. Each thread has its own `thread_view`: the text encoder, the UNet and the VAE are shared; the tokenizer and
    the scheduler, which keep per-call state (a fast tokenizer's padding settings, the scheduler's timesteps) and are
    not thread-safe, are the view's own."""
    edits = [compute_edit(sd1, SOURCE, DESTINATION, method=DQF), compute_edit(sd1, SOURCE, DESTINATION),
             compute_edit(sd1, SOURCE, DESTINATION, edit_keys=False), None]
    prompts = ["a pack of roses", "a car"]

    def images(pipe, edit):
        result = generate(pipe, prompts, [0], edit=edit, original=edit is None, negative_prompt="blurry", **KWARGS)
        return np.stack([row[0] for row in (result.original if edit is None else result.edited)])

    alone = [images(sd1, edit) for edit in edits]
    results: dict[int, list] = {i: [] for i in range(len(edits))}

    def run(i):
        session = thread_view(sd1)
        assert session.unet is sd1.unet and session.tokenizer is not sd1.tokenizer  # weights shared, state private
        for _ in range(3):
            results[i].append(images(session, edits[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(edits))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, expected in enumerate(alone):
        assert len(results[i]) == 3 and all(np.abs(got - expected).max() < 1e-5 for got in results[i]), i
    assert np.abs(alone[0] - alone[3]).max() > 1e-3 and np.abs(alone[0] - alone[1]).max() > 1e-3


def test_automatic_preservation_solves_over_the_context_sets(sd1):
    """Diff-QuickFix's `preserve="auto"`: the layer's rows of the edit (augmented), of the generalisation pairs and of
    the kept prompts and generic captions (every position), at weight 1; `lam="auto"` solves at the chosen λ."""
    from time_core.methods.context import context_set, load_corpus
    from time_core.methods.diff_quickfix import preservation_pairs, quickfix_pairs

    source, destination = "a pack of roses", "a pack of blue roses"
    problem = prepare_edit(sd1, source, destination, preserve="auto", method="diff-quickfix")
    context = context_set(sd1, load_corpus(sd1), [source], [destination])
    auto = problem.solve(0.01)
    assert auto.preserve == context.keep and auto.context == context.summary() and not auto.lam_auto
    encoder, tokenizer = sd1.text_encoder, sd1.tokenizer
    K, V = quickfix_pairs(encoder, tokenizer, source, destination, True, OUT_PROJ_PATH)
    K_g, V_g = quickfix_pairs(encoder, tokenizer, *zip(*context.generalise), False, OUT_PROJ_PATH)
    K_k, V_k = preservation_pairs(encoder, tokenizer, [*context.keep, *context.generic], False, OUT_PROJ_PATH)
    layer = find_projection(encoder, OUT_PROJ_PATH)
    by_hand = QuickFixProblem.from_pairs(torch.cat([K, K_g, K_k]), torch.cat([V, V_g, V_k]), layer.weight,
                                         layer.bias).update(0.01)
    assert torch.allclose(auto.deltas[0], by_hand, atol=1e-9)
    chosen = problem.solve("auto")
    assert chosen.lam_auto and chosen.lam == problem.auto_lam > 0
    assert torch.equal(chosen.deltas[0], problem.solve(problem.auto_lam).deltas[0])


@pytest.mark.parametrize("component", ["text_encoder", "text_encoder_2"])
def test_preservation_pairs_words_only_equal_the_full_context_rows(sd1, sdxl, component):
    from time_core.methods.diff_quickfix import preservation_pairs, projection_path
    from time_core.prompts import augment_pairs

    pipe = sd1 if component == "text_encoder" else sdxl
    encoder = getattr(pipe, component)
    tokenizer = pipe.tokenizer if component == "text_encoder" else pipe.tokenizer_2
    path = projection_path(encoder)
    prompts = ["a red rose", "a very long prompt about a pack of blue roses"]
    K_all, V_all = preservation_pairs(encoder, tokenizer, prompts, augment=True, path=path)
    K, V = preservation_pairs(encoder, tokenizer, prompts, augment=True, path=path, words_only=True)
    length = tokenizer.model_max_length
    rows = [i * length + t for i, (p, _) in enumerate(augment_pairs(prompts, prompts, True))
            for t in range(len(tokenizer(p).input_ids))]  # start token … end-of-text token of every prompt
    assert K.shape == (len(rows), K_all.shape[1]) and V.shape == (len(rows), V_all.shape[1])
    # the encoder read the prompts cut after the longest end token; causal attention leaves these rows unchanged
    assert torch.allclose(K, K_all[rows], atol=1e-5) and torch.allclose(V, V_all[rows], atol=1e-5)
