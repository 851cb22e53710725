"""Automatic preservation: nearest words from the embedding table, the derived prompts, the weight choice, the API."""

import pytest
import torch

import time_core
from time_core.methods.context import context_set, load_corpus
from time_core.methods.preservation import (
    ATTRIBUTE_CLUSTER,
    auto_preservation,
    nearest_words,
    relative_preserve_weight,
)
from time_core.prompts import build_pairs


def _table(tokenizer, vectors: dict[str, list[float]], dim: int = 4) -> torch.Tensor:
    """An embedding table whose rows are tiny noise except the given words' (each must be one token)."""
    table = 1e-3 * torch.randn(len(tokenizer), dim, generator=torch.Generator().manual_seed(0))
    for word, vector in vectors.items():
        (index,) = tokenizer(word, add_special_tokens=False).input_ids
        table[index] = torch.tensor(vector)
    return table


def test_nearest_words_by_hand(tokenizer):
    table = _table(tokenizer, {
        "green": [1.0, 0.0, 0.0, 0.0],
        "blue": [0.9, 0.1, 0.0, 0.0],
        "yellow": [0.7, 0.7, 0.0, 0.0],
        "greens": [1.0, 0.01, 0.0, 0.0],  # an inflection: the same concept, never a neighbour
        "dog": [0.0, 0.0, 1.0, 0.0],
        "red": [0.8, -0.2, 0.0, 0.0],
    })
    assert nearest_words(tokenizer, table, "green", 3) == ("blue", "red", "yellow")
    assert nearest_words(tokenizer, table, "green", 2, exclude=["blue"]) == ("red", "yellow")
    # rows far smaller than the query's (untrained) are never candidates, however they point
    assert nearest_words(tokenizer, table, "green", 10) == ("blue", "red", "yellow", "dog")
    # inflections of excluded words (the edit's own) are left out too: "dog" excludes "dogs"
    assert "dog" not in nearest_words(tokenizer, table, "green", 10, exclude=["dogs"])
    # the cluster: only the words at least `cluster` times as similar as the nearest one (cosines 0.99, 0.97, 0.71, 0)
    assert nearest_words(tokenizer, table, "green", 10, cluster=0.9) == ("blue", "red")
    assert nearest_words(tokenizer, table, "green", 10, cluster=0.5) == ("blue", "red", "yellow")
    assert nearest_words(tokenizer, table, "green", 1, cluster=0.5) == ("blue",)
    with pytest.raises(ValueError, match="one-token words only"):
        nearest_words(tokenizer, table, "rectangle", 3)


def test_auto_preservation_substitutes_the_added_word_and_optionally_the_subject(sd1):
    plan = auto_preservation(sd1, ["a pack of roses"], ["a pack of blue roses"])
    assert set(plan.neighbours) == {"blue"}  # subjects are off by default
    assert plan.neighbours["blue"] and len(plan.neighbours["blue"]) <= 8
    assert list(plan.prompts) == [f"a pack of {w} roses" for w in plan.neighbours["blue"]]
    table = sd1.text_encoder.get_input_embeddings().weight
    own = ["a", "pack", "of", "roses"]
    assert plan.neighbours["blue"] == nearest_words(sd1.tokenizer, table, "blue", 8, own, ATTRIBUTE_CLUSTER)

    both = auto_preservation(sd1, ["a pack of roses"], ["a pack of blue roses"], subject_neighbours=2)
    assert set(both.neighbours) == {"blue", "roses"} and len(both.neighbours["roses"]) == 2
    expected = [f"a pack of {w} roses" for w in both.neighbours["blue"]]
    expected += [f"a pack of {w}" for w in both.neighbours["roses"]]
    assert list(both.prompts) == [p for p in dict.fromkeys(expected)]
    own = {"a", "pack", "of", "blue", "roses"}
    assert not own & {w for words in both.neighbours.values() for w in words}


def test_relative_preserve_weight():
    generator = torch.Generator().manual_seed(1)
    C_keep = 3.0 * torch.randn(5, 6, generator=generator, dtype=torch.float64)
    mean_square = float((C_keep**2).sum(dim=1).mean())
    assert relative_preserve_weight(C_keep, 0.1, 0.5) == pytest.approx(0.5 * 0.1 / mean_square, rel=1e-12)
    assert relative_preserve_weight(C_keep, 0.1, 4.0) == pytest.approx(4.0 * 0.1 / mean_square, rel=1e-12)
    # scale-free: embeddings 10× larger get a weight 100× smaller, so the solve is the same up to the scale
    assert relative_preserve_weight(10 * C_keep, 0.1, 1.0) == pytest.approx(relative_preserve_weight(C_keep, 0.1,
                                                                                                     1.0) / 100)
    with pytest.raises(ValueError, match="non-empty"):
        relative_preserve_weight(C_keep[:0], 0.1, 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        relative_preserve_weight(C_keep, 0.0, 1.0)


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
    from time_core.solver import build_system

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
