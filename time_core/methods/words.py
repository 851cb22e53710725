"""Words of an edit's prompts, read through the tokenizer: the words a destination adds, inflections, replacement.

Used by automatic preservation (`time_core.methods.context`) to find the edit's added attribute words ("green" in
"a circle" → "a green circle") and to put their alternatives in their place.
"""

from __future__ import annotations

import re

from ..prompts import align_tokens

__all__ = ["added_words", "is_inflection", "replace_word"]

_WORD_END = "</w>"


def _word(token: str) -> str | None:
    """The word of a whole-word alphabetic token (`"green</w>"` → `"green"`), else `None`."""
    if not token.endswith(_WORD_END):
        return None
    word = token[: -len(_WORD_END)]
    return word if word.isalpha() else None


def is_inflection(candidate: str, words: set[str]) -> bool:
    """Whether `candidate` and one of `words` (of at least 3 letters) are one a prefix of the other ("circles" and
    "circle"): inflections name the same concept."""
    return any(len(w) >= 3 and len(candidate) >= 3 and (candidate.startswith(w) or w.startswith(candidate))
               for w in words)


def replace_word(text: str, old: str, new: str) -> str:
    """`text` with the first whole-word occurrence of `old` (any case) replaced by `new`."""
    match = re.search(rf"\b{re.escape(old)}\b", text, flags=re.IGNORECASE)
    return text if match is None else text[: match.start()] + new + text[match.end() :]


def added_words(tokenizer, source: str, destination: str) -> list[str]:
    """The one-token words the destination adds to the source ("green" in "a circle" → "a green circle"), read
    through the project's token alignment (`time_core.prompts.align_tokens`), in order."""
    source_ids = tokenizer(source).input_ids
    destination_ids = tokenizer(destination).input_ids
    source_eos, destination_eos = len(source_ids) - 1, len(destination_ids) - 1  # the end-of-text positions
    matched = set(align_tokens(tokenizer, source, destination)[:source_eos].tolist())
    tokens = tokenizer.convert_ids_to_tokens(destination_ids[:destination_eos])
    added = []
    for position in range(1, destination_eos):
        whole = tokens[position - 1].endswith(_WORD_END) or position == 1  # the token starts a word
        word = _word(tokens[position])
        if position not in matched and whole and word:
            added.append(word)
    return added
