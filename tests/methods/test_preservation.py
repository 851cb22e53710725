"""Automatic preservation: nearest words from the embedding table, the derived prompts, the weight choice, the API."""

import pytest
import torch

import time_core
from time_core.methods.preservation import (
    WEIGHT_GRID,
    auto_preservation,
    nearest_words,
    pick_preserve_weight,
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
    with pytest.raises(ValueError, match="one-token words only"):
        nearest_words(tokenizer, table, "rectangle", 3)


def test_auto_preservation_substitutes_the_added_word_and_the_subject(sd1):
    plan = auto_preservation(sd1, ["a pack of roses"], ["a pack of blue roses"])
    assert set(plan.neighbours) == {"blue", "roses"}
    assert len(plan.neighbours["blue"]) == 2 and len(plan.neighbours["roses"]) == 2
    expected = [f"a pack of {w} roses" for w in plan.neighbours["blue"]]
    expected += [f"a pack of {w}" for w in plan.neighbours["roses"]]
    assert list(plan.prompts) == [p for p in dict.fromkeys(expected)]
    own = {"a", "pack", "of", "blue", "roses"}
    assert not own & {w for words in plan.neighbours.values() for w in words}


def test_pick_preserve_weight_keeps_the_edit_fit():
    generator = torch.Generator().manual_seed(1)
    d = 6
    c = torch.randn(3, d, generator=generator, dtype=torch.float64)
    c_star = c + torch.randn(3, d, generator=generator, dtype=torch.float64)
    p = c + 0.05 * torch.randn(3, d, generator=generator, dtype=torch.float64)  # preservation close to the source
    C, C_star = torch.cat([c, p]), torch.cat([c_star, p])
    # without a limit the largest weight wins; with no loss allowed at all, the smallest is the fallback
    assert pick_preserve_weight(C, C_star, 3, 0.1, max_fit_loss=float("inf")) == max(WEIGHT_GRID)
    assert pick_preserve_weight(C, C_star, 3, 0.1, max_fit_loss=-1.0) == min(WEIGHT_GRID)
    chosen = pick_preserve_weight(C, C_star, 3, 0.1)
    assert chosen in WEIGHT_GRID
    # the choice is the largest weight whose fit loss is within the limit: recompute the fits by hand
    from time_core.solver import build_system

    def fit(weight):
        M = build_system(C, C_star, torch.tensor([1.0] * 3 + [weight] * 3, dtype=torch.float64)).solve(0.1)
        return float(((c @ M.T - c_star) ** 2).sum() / ((c_star - c) ** 2).sum())

    allowed = [w for w in WEIGHT_GRID if fit(w) <= fit(0.0) + 0.1]
    assert chosen == (max(allowed) if allowed else min(WEIGHT_GRID))
    with pytest.raises(ValueError, match="num_edit_pairs"):
        pick_preserve_weight(C, C_star, 6, 0.1)


def test_compute_edit_with_automatic_preservation(sd1):
    edit = time_core.compute_edit(sd1, "a pack of roses", "a pack of blue roses", preserve="auto")
    plan = auto_preservation(sd1, ["a pack of roses"], ["a pack of blue roses"])
    assert edit.preserve == plan.prompts and edit.preserve_weight in WEIGHT_GRID
    # the same edit built by hand from the derived prompts, unaugmented, with the chosen weight
    C, C_star, weights = build_pairs(sd1, ["a pack of roses"], ["a pack of blue roses"], True, plan.prompts,
                                     edit.preserve_weight, augment_preserve=False)
    from time_core.solver import build_system

    M = build_system(C, C_star, weights).solve(0.1)
    assert torch.allclose(edit.M, M, atol=1e-10)
    # explicit lists keep working, and a bare string is one prompt
    one = time_core.compute_edit(sd1, "a pack of roses", "a pack of blue roses", preserve="a pack of red roses")
    assert one.preserve == ("a pack of red roses",)
    with pytest.raises(ValueError, match="preserve_weight"):
        time_core.compute_edit(sd1, "a pack of roses", "a pack of blue roses", preserve=["a dog"], preserve_weight=-1)
