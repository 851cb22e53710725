"""Token alignment with the real CLIP tokenizer (SD 1.4's ids), augmentations and prompt errors."""

import pytest
import torch

from time_core.presets import load_preset
from time_core.prompts import (
    AUGMENTATIONS,
    MAX_PROMPT_CHARS,
    PromptError,
    align_tokens,
    augment_pairs,
    check_prompt,
    token_ids,
)

L = 77


def expected(head: list[int], eos: int) -> list[int]:
    """`head` covers BOS..EOS of the source; padding continues after the destination EOS, clamped at L - 1."""
    n = len(head)
    return head + [min(eos + k, L - 1) for k in range(1, L - n + 1)]


def test_tokenizer_gives_sd14_ids(tokenizer):
    ids = tokenizer("a pack of roses", padding="max_length", max_length=L).input_ids
    assert ids[:6] == [49406, 320, 3420, 539, 9061, 49407]
    assert ids[6:] == [49407] * (L - 6)


def test_inserted_adjective(tokenizer):
    # source: BOS a pack of roses EOS -> destination: BOS a pack of blue roses EOS
    index = align_tokens(tokenizer, "a pack of roses", "a pack of blue roses")
    assert index.tolist() == expected([0, 1, 2, 3, 5, 6], eos=6)
    assert index.shape == (L,) and index.dtype == torch.long
    assert index[-1] == L - 1


def test_an_matches_a(tokenizer):
    assert align_tokens(tokenizer, "an apple", "a blue apple").tolist() == expected([0, 1, 3, 4], eos=4)
    assert align_tokens(tokenizer, "An attendant", "a female attendant").tolist() == expected([0, 1, 3, 4], eos=4)


def test_multi_word_insertions(tokenizer):
    index = align_tokens(tokenizer, "a pack of roses", "a big pack of dark blue roses")
    assert index.tolist() == expected([0, 1, 3, 4, 7, 8], eos=8)
    # Insertion at the start and a multi-token word (BPE splits "baloo").
    assert align_tokens(tokenizer, "Baloo", "Sand Baloo").tolist() == expected([0, 2, 3, 4], eos=4)


def test_identical_prompts_align_to_themselves(tokenizer):
    assert align_tokens(tokenizer, "a red car", "a red car").tolist() == list(range(L))


@pytest.mark.parametrize(
    "source,destination,word",
    [
        ("a pack of roses", "a pack of blue tulips", "roses"),
        ("a red car", "a car that is red", "car"),  # "red" matched the last word, nothing is left for "car"
        ("a bowl of fruits", "a bowl", "of"),
    ],
)
def test_missing_word_is_named(tokenizer, source, destination, word):
    with pytest.raises(PromptError, match=f"does not contain the source word '{word}'"):
        align_tokens(tokenizer, source, destination)


def test_a_prompt_longer_than_the_character_limit_is_refused_before_tokenizing():
    assert check_prompt("  " + "a" * MAX_PROMPT_CHARS + " ") == "a" * MAX_PROMPT_CHARS
    with pytest.raises(PromptError, match=f"source has 10000 characters; at most {MAX_PROMPT_CHARS} are read"):
        check_prompt("a" * 10_000, "source")


def test_too_long_prompt_is_an_error(tokenizer):
    long_prompt = "a " + "very " * 80 + "long prompt"
    with pytest.raises(PromptError, match=r"has \d+ tokens; the text encoder reads at most 77"):
        token_ids(tokenizer, long_prompt)
    with pytest.raises(PromptError, match="at most 77"):
        align_tokens(tokenizer, "a prompt", long_prompt)
    # exactly at the limit is fine: 75 words + BOS + EOS
    assert len(token_ids(tokenizer, " ".join(["cat"] * 75))) == L


def test_augmentations():
    pairs = augment_pairs(["a rose"], ["a blue rose"])
    assert pairs == [("a rose", "a blue rose")] + [(p + "a rose", p + "a blue rose") for p in AUGMENTATIONS]
    assert AUGMENTATIONS == ("A photo of ", "An image of ", "A picture of ")
    assert augment_pairs(["a", "b"], ["a x", "b x"], augment=False) == [("a", "a x"), ("b", "b x")]
    with pytest.raises(ValueError):
        augment_pairs(["a", "b"], ["a x"])


@pytest.mark.parametrize("name", ["timed_test", "timed_validation", "shapes"])
def test_every_benchmark_entry_aligns(tokenizer, name):
    preset = load_preset(name)
    for entry in preset.entries:
        for source, destination in augment_pairs([entry.source], [entry.destination]):
            index = align_tokens(tokenizer, source, destination)
            assert index.shape == (L,)
            assert bool((index[1:] >= index[:-1]).all())  # monotone


def test_every_profession_aligns(tokenizer):
    for entry in load_preset("timed_professions").entries:
        assert align_tokens(tokenizer, entry.source, entry.destination)[0] == 0
