r"""
Automatic preservation (`preserve="auto"`): the prompts an edit should leave alone, derived from the model itself.

Preservation pairs (prompts whose target is themselves; the idea of UCE, Gandikota et al. 2024) fix what they name, but
a user does not know what to name. The automatic set names the two things an edit most often drags along:

1. **Other values of the edited attribute.** The destination's added words (those the token alignment does not match
   to a source token: "green" in "a circle" → "a green circle") are replaced, one at a time, by their
   `ATTRIBUTE_NEIGHBOURS` nearest words in the text encoder's token-embedding table ("a blue circle", "a yellow
   circle", ...): prompts that state another value and must keep it.
2. **Look-alike concepts.** The source's subject (its last word: "circle") is replaced by its `SUBJECT_NEIGHBOURS`
   nearest words ("a oval"): concepts the model holds close, which should keep their own assumptions.

Nearest words are ranked by cosine similarity of the input token embeddings among whole-word, alphabetic tokens of the
tokenizer's vocabulary whose embedding norm is at least `MIN_NORM_RATIO` times the query word's (rows the model hardly
trained — in a small model, most of a 49,408-token vocabulary — carry no meaning and are left out). Words of the edit's
own prompts are never candidates, nor inflections of the query word (one a prefix of the other: "circles" for
"circle"), which name the same concept and should follow the edit. Nothing here reads a benchmark: only the tokenizer, the embedding table and the edit's
own prompts.

The preservation prompts are used without augmentations (they are many, and each already names one alternative), and
their weight is picked per edit by `pick_preserve_weight`: the largest weight of `WEIGHT_GRID` that keeps the edit's
own fit within `MAX_FIT_LOSS` of the fit without preservation, in embedding space at the method's default λ.

The two neighbour counts were chosen on the Shapes world's validation set (`shapes_validation`: edits that no test
entry makes), comparing 2 and 3 (with 0 and 2) neighbours: more attribute neighbours kept more explicit colours but cut
the edit's reach into plurals and scenes (`time_core/shapes/TRAINING.md` has the numbers).

Cost: one `(V, d)` × `(d,)` product per query word, the tokenization of the vocabulary's strings, the encoding of the
preservation prompts (one text-encoder call each, batched with the edit's), and one factorisation per grid weight.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..prompts import align_tokens

__all__ = [
    "ATTRIBUTE_NEIGHBOURS",
    "AutoPreservation",
    "MAX_FIT_LOSS",
    "SUBJECT_NEIGHBOURS",
    "WEIGHT_GRID",
    "auto_preservation",
    "nearest_words",
    "pick_preserve_weight",
]

ATTRIBUTE_NEIGHBOURS: int = 2
SUBJECT_NEIGHBOURS: int = 2
MIN_NORM_RATIO: float = 0.6
WEIGHT_GRID: tuple[float, ...] = (10.0, 3.0, 1.0, 0.3, 0.1)
MAX_FIT_LOSS: float = 0.1
_WORD_END = "</w>"


@dataclass(frozen=True)
class AutoPreservation:
    r"""
    The automatically derived preservation prompts of an edit.

    Args:
        prompts (`tuple[str, ...]`): the prompts to keep as they are, in order of derivation.
        neighbours (`dict[str, tuple[str, ...]]`): for every query word (added words and subjects), its nearest words.
    """

    prompts: tuple[str, ...]
    neighbours: dict[str, tuple[str, ...]]


def _word(token: str) -> str | None:
    """The word of a whole-word alphabetic token (`"green</w>"` → `"green"`), else `None`."""
    if not token.endswith(_WORD_END):
        return None
    word = token[: -len(_WORD_END)]
    return word if word.isalpha() else None


def nearest_words(tokenizer, embeddings: torch.Tensor, word: str, k: int, exclude: Sequence[str] = ()) -> tuple[str, ...]:
    r"""
    The `k` words of the vocabulary nearest to `word` by cosine similarity of the input token embeddings.

    Args:
        tokenizer: the pipeline's CLIP tokenizer.
        embeddings (`torch.Tensor`): `(V, d)` the text encoder's token-embedding table.
        word (`str`): a word that is one token.
        k (`int`): how many neighbours.
        exclude (`Sequence[str]`, *optional*): words never returned.

    Returns:
        `tuple[str, ...]`: up to `k` words, nearest first (fewer when the vocabulary has fewer candidates).
    """
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(f"{word!r} is {len(ids)} tokens; nearest words are looked up for one-token words only")
    table = embeddings.detach().float()  # (V, d)
    norms = table.norm(dim=-1)  # (V,)
    query = table[ids[0]]  # (d,)
    similarity = (table @ query) / (norms * norms[ids[0]]).clamp_min(1e-12)  # (V,)
    similarity[norms < MIN_NORM_RATIO * norms[ids[0]]] = -2.0  # rows the model hardly trained
    excluded = {word, *exclude}
    found = []
    for index in similarity.argsort(descending=True).tolist():
        if len(found) == k or similarity[index] <= -2.0:
            break
        candidate = _word(tokenizer.convert_ids_to_tokens(index))
        inflection = candidate and (candidate.startswith(word) or word.startswith(candidate))  # "circles": same concept
        if candidate and candidate not in excluded and not inflection:
            found.append(candidate)
    return tuple(found)


def _replace(text: str, old: str, new: str, last: bool) -> str:
    """`text` with one whole-word occurrence of `old` (the first, or the last) replaced by `new`."""
    matches = list(re.finditer(rf"\b{re.escape(old)}\b", text, flags=re.IGNORECASE))
    if not matches:
        return text
    match = matches[-1] if last else matches[0]
    return text[: match.start()] + new + text[match.end() :]


def _edit_words(tokenizer, source: str, destination: str) -> tuple[list[str], str | None]:
    """The one-token words the destination adds to the source, and the source's subject (its last word when that is
    one token), read through the project's token alignment."""
    length = tokenizer.model_max_length
    source_ids = tokenizer(source, padding="max_length", max_length=length).input_ids
    destination_ids = tokenizer(destination, padding="max_length", max_length=length).input_ids
    source_eos = source_ids.index(tokenizer.eos_token_id)
    destination_eos = destination_ids.index(tokenizer.eos_token_id)
    matched = set(align_tokens(tokenizer, source, destination)[:source_eos].tolist())
    tokens = tokenizer.convert_ids_to_tokens(destination_ids[:destination_eos])
    added = []
    for position in range(1, destination_eos):
        whole = tokens[position - 1].endswith(_WORD_END) or position == 1  # the token starts a word
        word = _word(tokens[position])
        if position not in matched and whole and word:
            added.append(word)
    source_tokens = tokenizer.convert_ids_to_tokens(source_ids[:source_eos])
    last = source_eos - 1
    subject = _word(source_tokens[last]) if last >= 1 and (last == 1 or source_tokens[last - 1].endswith(_WORD_END)) else None
    return added, subject


def auto_preservation(
    pipe,
    sources: Sequence[str],
    destinations: Sequence[str],
    attribute_neighbours: int = ATTRIBUTE_NEIGHBOURS,
    subject_neighbours: int = SUBJECT_NEIGHBOURS,
) -> AutoPreservation:
    r"""
    Derives the preservation prompts of an edit from the model's tokenizer and token embeddings (see the module
    docstring).

    Args:
        pipe: the pipeline (its `tokenizer` and `text_encoder` are read, never written).
        sources (`Sequence[str]`): the edit's source prompts.
        destinations (`Sequence[str]`): their destinations.
        attribute_neighbours (`int`, *optional*, defaults to `ATTRIBUTE_NEIGHBOURS`): neighbours per added word.
        subject_neighbours (`int`, *optional*, defaults to `SUBJECT_NEIGHBOURS`): neighbours per subject.

    Returns:
        `AutoPreservation`: the prompts (never one of the edit's own prompts) and the neighbours found.
    """
    tokenizer = pipe.tokenizer
    embeddings = pipe.text_encoder.get_input_embeddings().weight  # (V, d)
    own = {w.lower() for text in (*sources, *destinations) for w in re.findall(r"[A-Za-z]+", text)}
    prompts: dict[str, None] = {}
    neighbours: dict[str, tuple[str, ...]] = {}
    for source, destination in zip(sources, destinations):
        added, subject = _edit_words(tokenizer, source, destination)
        for word in added:
            neighbours[word] = nearest_words(tokenizer, embeddings, word, attribute_neighbours, own)
            prompts.update(dict.fromkeys(_replace(destination, word, other, last=False) for other in neighbours[word]))
        if subject is not None:
            neighbours[subject] = nearest_words(tokenizer, embeddings, subject, subject_neighbours, own)
            prompts.update(dict.fromkeys(_replace(source, subject, other, last=True) for other in neighbours[subject]))
    kept = tuple(p for p in prompts if p not in set(sources) | set(destinations))
    return AutoPreservation(prompts=kept, neighbours=neighbours)


def pick_preserve_weight(
    C: torch.Tensor,
    C_star: torch.Tensor,
    num_edit_pairs: int,
    lam: float,
    grid: Sequence[float] = WEIGHT_GRID,
    max_fit_loss: float = MAX_FIT_LOSS,
) -> float:
    r"""
    The largest weight of `grid` for the preservation pairs that keeps the edit's own fit: the relative residual
    `Σ ‖M c − c*‖² / Σ ‖c − c*‖²` over the edit's pairs grows by at most `max_fit_loss` over its value without
    preservation. Solved in embedding space (TIME's `M`), one factorisation per weight.

    Args:
        C (`torch.Tensor`): `(N, d)` source embeddings, the edit's `num_edit_pairs` pairs first, then the preservation
            pairs.
        C_star (`torch.Tensor`): `(N, d)` their targets (a preservation pair's target is itself).
        num_edit_pairs (`int`): how many of the pairs belong to the edit.
        lam (`float`): the λ at which the fit is measured (the method's default).
        grid (`Sequence[float]`, *optional*): candidate weights, tried from the largest.
        max_fit_loss (`float`, *optional*): the allowed growth of the relative residual.

    Returns:
        `float`: the chosen weight (the smallest of `grid` when none keeps the fit).
    """
    from ..solver import build_system

    if not 0 < num_edit_pairs < C.shape[0]:
        raise ValueError(f"num_edit_pairs must lie in (0, {C.shape[0]}), got {num_edit_pairs}")
    c, c_star = C[:num_edit_pairs].double(), C_star[:num_edit_pairs].double()  # (n, d)
    reach = ((c_star - c) ** 2).sum().clamp_min(1e-12)

    def fit(weight: float) -> float:
        weights = torch.ones(C.shape[0], dtype=torch.float64, device=C.device)
        weights[num_edit_pairs:] = weight
        M = build_system(C, C_star, weights).solve(lam)  # (d, d)
        return float(((c @ M.T - c_star) ** 2).sum() / reach)

    baseline = fit(0.0)
    for weight in sorted(grid, reverse=True):
        if fit(weight) <= baseline + max_fit_loss:
            return float(weight)
    return float(min(grid))
