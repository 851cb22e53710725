"""From prompt pairs to the embedding pairs `(C, C*)` of Eq. 5: augmentation, token alignment, encoding.

Alignment (paper App. B): every one of the tokenizer's `L` positions (BOS, words, EOS, padding) contributes a pair.
Source tokens are matched greedily, left to right, to the next equal destination token ("an" counts as "a" for the
match only). The source EOS matches the destination EOS, and the `k`-th position after the source EOS maps to the
`k`-th position after the destination EOS, clamped at the last position `L - 1`.

Prompts longer than the tokenizer's limit are an error (never silently truncated): TIME aligns whole prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .models import encode_prompts

__all__ = [
    "AUGMENTATIONS",
    "AUTO_PRESERVE",
    "MAX_PROMPT_CHARS",
    "PromptError",
    "align_tokens",
    "as_prompts",
    "augment_pairs",
    "build_pairs",
    "check_preserve_weight",
    "check_prompt",
    "is_auto_preserve",
    "preserve_prompts",
    "token_ids",
]

AUGMENTATIONS: tuple[str, ...] = ("A photo of ", "An image of ", "A picture of ")

# Tokens that are interchangeable for matching only ("an apple" -> "a blue apple").
_EQUIVALENT_TOKENS = {"an</w>": "a</w>"}


# The longest prompt read, in characters, checked before any tokenizer or model is involved. CLIP reads 75 tokens
# between its start and end tokens, 5.7 characters each on average over its vocabulary (32 at most), so a longer
# prompt is all but certain to exceed them; it is refused before its tokenization costs anything.
MAX_PROMPT_CHARS = 1000


class PromptError(ValueError):
    """A prompt cannot be used for an edit (empty, too long, or not aligned with its destination)."""


def check_prompt(prompt: str, what: str = "prompt") -> str:
    """Returns `prompt` stripped, or raises `PromptError` when it is not a non-empty string of at most
    `MAX_PROMPT_CHARS` characters."""
    if not isinstance(prompt, str):
        raise PromptError(f"{what} must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise PromptError(f"{what} is empty")
    if len(prompt.strip()) > MAX_PROMPT_CHARS:
        raise PromptError(f"{what} has {len(prompt.strip())} characters; at most {MAX_PROMPT_CHARS} are read")
    return prompt.strip()


def as_prompts(
    prompts: str | Sequence[str], what: str = "prompts", item: str | None = None, allow_empty: bool = False
) -> tuple[str, ...]:
    """A prompt-list argument as a tuple of checked prompts; a bare string is ONE prompt, never its characters.

    Args:
        prompts (`str` or `Sequence[str]`): one prompt or several.
        what (`str`, *optional*, defaults to `"prompts"`): the argument's name, for messages.
        item (`str`, *optional*): the name of one element, for messages; defaults to `what`.
        allow_empty (`bool`, *optional*, defaults to `False`): accept an empty list.

    Raises:
        `PromptError`: an element is not a non-empty string, or the list is empty and `allow_empty` is `False`.
    """
    prompts = (prompts,) if isinstance(prompts, str) else tuple(prompts)
    if not prompts and not allow_empty:
        raise PromptError(f"{what} is an empty list")
    return tuple(check_prompt(p, item or what) for p in prompts)


AUTO_PRESERVE = "auto"


def is_auto_preserve(preserve: str | Sequence[str]) -> bool:
    """Whether a `preserve` argument asks for automatic preservation (`"auto"`, see `time_core.methods.preservation`)."""
    return isinstance(preserve, str) and preserve.strip() == AUTO_PRESERVE


def preserve_prompts(preserve: str | Sequence[str]) -> tuple[str, ...]:
    """The prompts of a `preserve` argument: a list, or one prompt as a bare string. `"auto"` must have been resolved
    into prompts by the editing method before (`time_core.methods.preservation`).

    Raises:
        `ValueError`: for `preserve="auto"` here.
        `PromptError`: for an empty prompt.
    """
    if is_auto_preserve(preserve):
        raise ValueError("preserve='auto' must be resolved into prompts by the editing method before building pairs")
    return as_prompts(preserve, "preserve", item="preserve prompt", allow_empty=True)


def check_preserve_weight(weight: float) -> float:
    """Returns `weight` as a float, or raises `ValueError` when it is not a finite number >= 0."""
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"preserve_weight must be a number, got {weight!r}") from None
    if not (weight >= 0 and weight < float("inf")):
        raise ValueError(f"preserve_weight must be finite and >= 0, got {weight}")
    return weight


def augment_pairs(
    sources: str | Sequence[str], destinations: str | Sequence[str], augment: bool = True
) -> list[tuple[str, str]]:
    """The (source, destination) prompt pairs of one solve: each pair, plus its augmentations when `augment`.

    A bare string is one prompt; `sources` and `destinations` must have the same length.
    """
    sources = (sources,) if isinstance(sources, str) else sources
    destinations = (destinations,) if isinstance(destinations, str) else destinations
    pairs = []
    for source, destination in zip(sources, destinations, strict=True):
        pairs.append((source, destination))
        if augment:
            pairs.extend((prefix + source, prefix + destination) for prefix in AUGMENTATIONS)
    return pairs


def token_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of `prompt` with BOS and EOS, unpadded; raises `PromptError` when longer than the tokenizer's limit."""
    ids = tokenizer(prompt, truncation=False, add_special_tokens=True).input_ids
    limit = tokenizer.model_max_length
    if len(ids) > limit:
        raise PromptError(
            f"prompt {prompt!r} has {len(ids)} tokens; the text encoder reads at most {limit} (including start and end)"
        )
    return ids


def _word_of(tokens: list[str], index: int) -> str:
    """The whole word that token `index` belongs to (BPE splits words; `</w>` ends one)."""
    start = index
    while start > 1 and not tokens[start - 1].endswith("</w>"):  # tokens[0] is the start token, of no word
        start -= 1
    end = index
    while end < len(tokens) - 1 and not tokens[end].endswith("</w>"):
        end += 1
    return "".join(tokens[start : end + 1]).replace("</w>", "")


def align_tokens(tokenizer, source: str, destination: str) -> torch.Tensor:
    """For each of the `L` source positions, the destination position whose embedding is its target.

    Args:
        tokenizer: a `CLIPTokenizer` (its `model_max_length` is `L`).
        source (`str`): the source prompt.
        destination (`str`): the destination prompt; must contain the source's tokens in order.

    Returns:
        `torch.LongTensor` of shape `(L,)`.
    """
    source_ids, destination_ids = token_ids(tokenizer, source), token_ids(tokenizer, destination)
    source_tokens = tokenizer.convert_ids_to_tokens(source_ids)
    destination_tokens = tokenizer.convert_ids_to_tokens(destination_ids)
    length = tokenizer.model_max_length

    def key(token: str) -> str:
        return _EQUIVALENT_TOKENS.get(token, token)

    index: list[int] = []
    j = -1
    for i, token in enumerate(source_tokens):  # BOS, words, EOS
        j += 1
        while j < len(destination_tokens) and key(destination_tokens[j]) != key(token):
            j += 1
        if j == len(destination_tokens):
            after = f" after '{_word_of(source_tokens, i - 1)}'" if i > 1 else ""
            raise PromptError(
                f"destination {destination!r} does not contain the source word '{_word_of(source_tokens, i)}'{after}: "
                "it must repeat the source's words in order, adding words only"
            )
        index.append(j)
    # Padding: the k-th position after the source EOS maps to the k-th after the destination EOS.
    eos = index[-1]  # destination position of the source EOS
    index += [min(eos + k, length - 1) for k in range(1, length - len(source_ids) + 1)]
    return torch.tensor(index, dtype=torch.long)


def build_pairs(
    pipe,
    sources: str | Sequence[str],
    destinations: str | Sequence[str],
    augment: bool = True,
    preserve: str | Sequence[str] = (),
    preserve_weight: float = 1.0,
    augment_preserve: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The embedding pairs of Eq. 5 for a (multi-)edit.

    Args:
        pipe: the pipeline whose text encoder(s) produce the embeddings.
        sources (`str` or `Sequence[str]`): source prompt(s).
        destinations (`str` or `Sequence[str]`): destination prompt(s), one per source.
        augment (`bool`, *optional*, defaults to `True`): add the `AUGMENTATIONS` of every pair.
        preserve (`str` or `Sequence[str]`, *optional*): prompts whose embeddings should map to themselves.
        preserve_weight (`float`, *optional*, defaults to 1.0): the weight of each preservation pair.
        augment_preserve (`bool`, *optional*): add the augmentations of the preservation prompts; `None` follows
            `augment`.

    Returns:
        `C` `(N, d)`, `C_star` `(N, d)` in float64 and `weights` `(N,)`, with `N = L × number of prompt pairs`.
    """
    sources, destinations = as_prompts(sources, "source"), as_prompts(destinations, "destination")
    preserve = preserve_prompts(preserve)
    pairs = augment_pairs(sources, destinations, augment)
    pairs += augment_pairs(preserve, preserve, augment if augment_preserve is None else augment_preserve)
    alignments = [align_tokens(pipe.tokenizer, s, d) for s, d in pairs]  # each (L,)

    prompts = [p for pair in pairs for p in pair]  # s0, d0, s1, d1, ...
    unique = list(dict.fromkeys(prompts))  # a preservation prompt is its own target: encode it once
    encoded = encode_prompts(pipe, unique).embeds.to(torch.float64)  # (U, L, d)
    position = {p: i for i, p in enumerate(unique)}
    embeds = encoded[[position[p] for p in prompts]]  # (2P, L, d)
    C = embeds[0::2]  # (P, L, d)
    destination_embeds = embeds[1::2]  # (P, L, d)
    C_star = torch.stack([e[a.to(e.device)] for e, a in zip(destination_embeds, alignments)])  # (P, L, d)

    n_edit = len(augment_pairs(sources, destinations, augment))
    weights = torch.ones(C.shape[:2], dtype=torch.float64, device=C.device)  # (P, L)
    weights[n_edit:] = preserve_weight
    d = C.shape[-1]
    return C.reshape(-1, d), C_star.reshape(-1, d), weights.reshape(-1)
