r"""
Automatic preservation for Diff-QuickFix (`preserve="auto"`): the prompts an edit should leave alone, derived from the
model itself. (TIME's automatic preservation builds context sets from a corpus instead, `time_core.methods.context`,
which reuses this module's word helpers.)

Preservation pairs (prompts whose target is themselves; the idea of UCE, Gandikota et al. 2024) fix what they name, but
a user does not know what to name. The automatic set names what an edit most often drags along, **the other values of
the edited attribute**: the destination's added words (those the token alignment does not match to a source token:
"green" in "a circle" → "a green circle") are replaced, one at a time, by their neighbours in the text encoder's
token-embedding table ("a blue circle", "a yellow circle", ...): prompts that state another value and must keep it.

A word's neighbours are ranked by cosine similarity of the input token embeddings among whole-word, alphabetic tokens
of the tokenizer's vocabulary whose embedding norm is at least `MIN_NORM_RATIO` times the query word's (rows the model
hardly trained — in a small model, most of a 49,408-token vocabulary — carry no meaning and are left out). An added
word keeps its `MAX_ATTRIBUTE_NEIGHBOURS` nearest words with a similarity at least `ATTRIBUTE_CLUSTER` times the nearest
one's (0: every positively similar word; `nearest_words` can keep a tighter cluster). Words of the edit's own prompts
are never candidates, nor their inflections (one a prefix of the other, 3 letters at least: "greens" for "green",
"circles" for "circle"). Look-alike concepts of the source's subject (its nearest words, substituted into the source:
"a oval" for "a circle") can be added with `subject_neighbours`; they are off by default (see below).
Nothing here reads a benchmark: only the tokenizer, the embedding table and the edit's own prompts.

The preservation prompts are used by Diff-QuickFix with their augmentations (the method's `auto_preserve_augment`;
it reads them up to their end tokens, `auto_preserve_words_only`), at the weight of
`relative_preserve_weight`: `κ · λ / mean ‖c‖²` over their rows, κ the method's `auto_preserve_strength` and λ its
default, i.e. a preservation row weighs κ times what the regulariser `λ ‖W' − W‖²` weighs along it. A weight on this
scale is needed: a row of squared norm ‖c‖² ≫ λ pins `W` along itself already at weights far below 1, and so does
every row close to it — a fixed weight of 0.1 or more also froze the edit's plurals.

The settings (8 attribute neighbours, no cluster cut, no subject neighbours, Diff-QuickFix's strength) were chosen on
the Shapes world's validation set (`shapes_validation`, `presets/tune_auto_preservation.py`); `time_core/shapes/
TRAINING.md` has the tables.

Cost: one `(V, d)` × `(d,)` product per query word, the tokenization of the vocabulary's strings, and the encoding of
the preservation prompts (one text-encoder call each, batched with the edit's); the solve is that of any edit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..prompts import align_tokens

__all__ = [
    "ATTRIBUTE_CLUSTER",
    "AutoPreservation",
    "MAX_ATTRIBUTE_NEIGHBOURS",
    "SUBJECT_NEIGHBOURS",
    "auto_preservation",
    "nearest_words",
    "relative_preserve_weight",
]

ATTRIBUTE_CLUSTER: float = 0.0
MAX_ATTRIBUTE_NEIGHBOURS: int = 8
SUBJECT_NEIGHBOURS: int = 0
MIN_NORM_RATIO: float = 0.6
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


def _inflection(candidate: str, words: set[str]) -> bool:
    """Whether `candidate` and one of `words` (of at least 3 letters) are one a prefix of the other ("circles" and
    "circle"): inflections name the same concept."""
    return any(len(w) >= 3 and len(candidate) >= 3 and (candidate.startswith(w) or w.startswith(candidate))
               for w in words)


def nearest_words(tokenizer, embeddings: torch.Tensor, word: str, k: int, exclude: Sequence[str] = (),
                  cluster: float | None = None) -> tuple[str, ...]:
    r"""
    The `k` words of the vocabulary nearest to `word` by cosine similarity of the input token embeddings.

    Args:
        tokenizer: the pipeline's CLIP tokenizer.
        embeddings (`torch.Tensor`): `(V, d)` the text encoder's token-embedding table.
        word (`str`): a word that is one token.
        k (`int`): how many neighbours.
        exclude (`Sequence[str]`, *optional*): words never returned, nor their inflections (nor the query word's).
        cluster (`float`, *optional*): keep only the words whose similarity is at least this fraction of the nearest
            word's (`None`: no such limit).

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
    found, nearest = [], None
    for index in similarity.argsort(descending=True).tolist():
        if len(found) == k or similarity[index] <= -2.0:
            break
        candidate = _word(tokenizer.convert_ids_to_tokens(index))
        if candidate and candidate not in excluded and not _inflection(candidate, excluded):
            nearest = float(similarity[index]) if nearest is None else nearest
            if cluster is not None and float(similarity[index]) < cluster * nearest:
                break
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
    ends_word = last >= 1 and (last == 1 or source_tokens[last - 1].endswith(_WORD_END))
    subject = _word(source_tokens[last]) if ends_word else None
    return added, subject


def auto_preservation(
    pipe,
    sources: Sequence[str],
    destinations: Sequence[str],
    attribute_neighbours: int = MAX_ATTRIBUTE_NEIGHBOURS,
    subject_neighbours: int = SUBJECT_NEIGHBOURS,
    cluster: float = ATTRIBUTE_CLUSTER,
) -> AutoPreservation:
    r"""
    Derives the preservation prompts of an edit from the model's tokenizer and token embeddings (see the module
    docstring).

    Args:
        pipe: the pipeline (its `tokenizer` and `text_encoder` are read, never written).
        sources (`Sequence[str]`): the edit's source prompts.
        destinations (`Sequence[str]`): their destinations.
        attribute_neighbours (`int`, *optional*, defaults to `MAX_ATTRIBUTE_NEIGHBOURS`): the most neighbours per
            added word.
        subject_neighbours (`int`, *optional*, defaults to `SUBJECT_NEIGHBOURS`): neighbours per subject (0: none).
        cluster (`float`, *optional*, defaults to `ATTRIBUTE_CLUSTER`): an added word keeps the neighbours whose
            similarity is at least this fraction of its nearest neighbour's.

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
            neighbours[word] = nearest_words(tokenizer, embeddings, word, attribute_neighbours, own, cluster)
            prompts.update(dict.fromkeys(_replace(destination, word, other, last=False) for other in neighbours[word]))
        if subject is not None and subject_neighbours > 0:
            neighbours[subject] = nearest_words(tokenizer, embeddings, subject, subject_neighbours, own)
            prompts.update(dict.fromkeys(_replace(source, subject, other, last=True) for other in neighbours[subject]))
    kept = tuple(p for p in prompts if p not in set(sources) | set(destinations))
    return AutoPreservation(prompts=kept, neighbours=neighbours)


def relative_preserve_weight(C_keep: torch.Tensor, lam: float, strength: float) -> float:
    r"""
    The weight of automatic preservation pairs: `strength · λ / mean ‖c‖²` over their rows, so that each pair weighs
    `strength` times what the regulariser `λ ‖W' − W‖²` weighs along it, whatever the scale of the embeddings.

    Args:
        C_keep (`torch.Tensor`): `(M, d)` the preservation pairs' embeddings (their own targets).
        lam (`float`): the λ the weight is set against (the method's default).
        strength (`float`): the ratio to the regulariser (each method's `auto_preserve_strength`).

    Returns:
        `float`: the weight of every preservation pair.
    """
    if C_keep.ndim != 2 or C_keep.shape[0] == 0:
        raise ValueError(f"C_keep must be a non-empty (M, d) matrix, got shape {tuple(C_keep.shape)}")
    if not (lam > 0 and strength > 0):
        raise ValueError(f"lam and strength must be > 0, got lam={lam}, strength={strength}")
    mean_square = float((C_keep.double() ** 2).sum(dim=-1).mean())
    return strength * lam / max(mean_square, 1e-12)
