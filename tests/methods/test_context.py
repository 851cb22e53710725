"""Context sets of automatic preservation: the corpus, the frames, the alternatives, and the knob-free λ."""

import pytest
import torch

import time_core
from time_core.methods.context import GENERIC_CORPUS, context_set, load_corpus, read_corpus
from time_core.methods.words import added_words, is_inflection, replace_word
from time_core.models import TOY_PIPELINE_DIR
from time_core.presets import list_presets, load_preset
from time_core.prompts import build_pairs
from time_core.solver import build_system


@pytest.fixture(scope="module")
def toy():
    return time_core.load_pipeline("toy", device="cpu")


def test_read_corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("# a comment\n\na photo of a [red  circle]\ntwo [square]s\nplain caption\n")
    corpus = read_corpus(path)
    assert corpus.lines == ("a photo of a [red circle]", "two [square]s", "plain caption")
    assert corpus.name.startswith("c.txt:") and len(corpus.name) == len("c.txt:") + 12
    assert corpus.attribute_words() == {"red"}
    path.write_text("a [red circle] next to a [square]\n")
    with pytest.raises(ValueError, match="line 1: a caption marks at most one noun phrase"):
        read_corpus(path)
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no caption"):
        read_corpus(path)


def test_corpus_of_a_model_folder_and_the_generic_one(toy, sd1):
    assert load_corpus(toy) == read_corpus(TOY_PIPELINE_DIR / "edit_corpus.txt")
    assert load_corpus(sd1) == read_corpus(GENERIC_CORPUS)  # a pipeline built in memory: the shipped captions


def test_toy_corpus_holds_no_benchmark_prompt(toy):
    """No prompt of the context sets of any Shapes edit (test and validation) is a prompt of a shipped Shapes preset."""
    benchmark = set()
    for name in list_presets():
        if name.startswith("shapes"):
            preset = load_preset(name)
            for entry in preset.entries:
                benchmark.update((entry.source, entry.destination))
                for pair in (*getattr(entry, "positives", ()), *getattr(entry, "negatives", ())):
                    benchmark.update((pair.prompt, pair.destination))
    corpus = load_corpus(toy)
    for name in ("shapes", "shapes_validation"):
        for entry in load_preset(name).entries:
            context = context_set(toy, corpus, [entry.source], [entry.destination])
            prompts = {p for pair in context.generalise for p in pair} | set(context.keep) | set(context.generic)
            assert prompts and not prompts & benchmark, (entry.source, prompts & benchmark)


def test_context_set_of_a_toy_edit(toy):
    corpus = load_corpus(toy)
    context = context_set(toy, corpus, ["a circle"], ["a green circle"])
    assert context == context_set(toy, corpus, ["a circle"], ["a green circle"])  # deterministic
    # the alternatives are the corpus's attribute words (the colours) other than the added one
    assert set(context.alternatives["green"]) == {"red", "blue", "yellow", "purple", "orange"}
    assert len(context.generalise) == len(set(context.generalise_folds)) > 10
    for prompt, destination in context.generalise:
        assert "circle" in prompt and destination.count("green") == prompt.count("green") + 1
        assert prompt.replace("circle", "green circle", 1) == destination or "green circle" in destination
    # every frame keeps the destination's phrase and each alternative in it
    per_frame = {}
    for prompt, frame in zip(context.keep, context.keep_folds):
        per_frame.setdefault(frame, []).append(prompt)
    assert all(len(prompts) == 6 for prompts in per_frame.values())
    assert any("two purple circles" in p for p in context.keep) and any("a big red circle" in p for p in context.keep)
    assert all("circle" not in p for p in context.generic)
    assert any("oval" in p for p in context.generic)  # look-alikes are kept as they are
    # a pair without a shared article has no frame: λ cannot be chosen, and says why
    none = context_set(toy, corpus, ["circle"], ["green circle"])
    assert not none.generalise and not none.keep
    problem = time_core.prepare_edit(toy, "circle", "green circle", preserve="auto")
    assert problem.auto_lam is None
    with pytest.raises(ValueError, match="found no corpus caption that fits this edit"):
        problem.solve("auto")


def test_knob_free_edit_round_trips_and_is_deterministic(toy, tmp_path):
    edit = time_core.compute_edit(toy, "a square", "a red square", lam="auto", preserve="auto")
    again = time_core.compute_edit(toy, "a square", "a red square", lam="auto", preserve="auto")
    assert torch.equal(edit.M, again.M) and edit.lam == again.lam
    edit.save(tmp_path / "e.safetensors")
    loaded = time_core.load_edit(tmp_path / "e.safetensors")
    assert loaded.lam_auto and loaded.auto_preserve and loaded.lam == edit.lam and loaded.context == edit.context
    settings = dict(num_inference_steps=3, guidance_scale=5.0, progress=False, output_type="np")
    first = time_core.generate(toy, ["two squares"], [0], edit=edit, **settings).edited[0][0]
    second = time_core.generate(toy, ["two squares"], [0], edit=loaded, **settings).edited[0][0]
    assert (first == second).all()


def test_auto_lam_needs_auto_preservation(toy):
    with pytest.raises(ValueError, match="lam='auto' needs preserve='auto'"):
        time_core.compute_edit(toy, "a circle", "a green circle", lam="auto")
    with pytest.raises(ValueError, match="lam='auto' needs preserve='auto'"):
        time_core.prepare_edit(toy, "a circle", "a green circle").solve("auto")
    with pytest.raises(ValueError, match="lam='auto' is not available for finetune"):
        time_core.compute_edit(toy, "a circle", "a green circle", lam="auto", preserve="auto", method="finetune")


def test_compute_edit_with_automatic_preservation(sd1):
    """TIME's `preserve="auto"` is Eq. 5 over the edit's pairs and its context sets, every prompt's rows at weight 1."""
    source, destination = "a pack of roses", "a pack of blue roses"
    problem = time_core.prepare_edit(sd1, source, destination, preserve="auto")
    edit = problem.solve(0.1)
    context = context_set(sd1, load_corpus(sd1), [source], [destination])
    assert context.generalise and context.keep and context.generic
    assert edit.preserve == context.keep and edit.context == context.summary() and not edit.lam_auto
    # the same rows built by hand: the edit augmented, the kept prompts and generic captions as they are, then the
    # generalisation pairs
    kept = (*context.keep, *context.generic)
    C, C_star, weights = build_pairs(sd1, [source], [destination], True, kept, 1.0, augment_preserve=False)
    G, G_star, _ = build_pairs(sd1, *zip(*context.generalise), augment=False)
    length = sd1.tokenizer.model_max_length
    assert C.shape[0] == (4 + len(kept)) * length and G.shape[0] == len(context.generalise) * length
    M = build_system(torch.cat([C, G]), torch.cat([C_star, G_star])).solve(0.1)
    assert torch.allclose(edit.M, M, atol=1e-10)
    # lam="auto": the cross-validated λ, recorded as chosen
    auto = time_core.compute_edit(sd1, source, destination, lam="auto", preserve="auto")
    assert auto.lam_auto and auto.lam == problem.auto_lam > 0
    assert torch.equal(auto.M, problem.solve(problem.auto_lam).M)
    # explicit lists keep working, and a bare string is one prompt
    one = time_core.compute_edit(sd1, "a pack of roses", "a pack of blue roses", preserve="a pack of red roses")
    assert one.preserve == ("a pack of red roses",)
    with pytest.raises(ValueError, match="preserve_weight"):
        time_core.compute_edit(sd1, "a pack of roses", "a pack of blue roses", preserve=["a dog"], preserve_weight=-1)


def test_words_of_an_edit(sd1):
    tokenizer = sd1.tokenizer
    assert added_words(tokenizer, "a pack of roses", "a pack of blue roses") == ["blue"]
    assert added_words(tokenizer, "an apple", "a big red apple") == ["big", "red"]  # "an" matches "a"
    assert is_inflection("circles", {"circle"}) and is_inflection("circle", {"circles"})
    assert not is_inflection("red", {"green"}) and not is_inflection("at", {"atom"})  # under 3 letters: never
    assert replace_word("a green circle and a green star", "green", "blue") == "a blue circle and a green star"
    assert replace_word("evergreen", "green", "blue") == "evergreen"  # whole words only
