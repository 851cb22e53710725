r"""
The context sets of automatic preservation (`preserve="auto"`): an edit's source and its alternatives, placed in the
captions of a generic prompt corpus.

An edit "a circle" → "a green circle" is solved on its own prompts, so it reaches only the token states those prompts
produce; a prompt that names another colour ("a big purple circle") or puts the shape elsewhere ("a star and a circle")
produces states the solve never saw, and Eq. 5 maps them with the same matrix. Here the edit's noun phrase is put into
the frames of a corpus (captions in which one noun phrase is marked, `a photo of a big [red circle]`), which gives
three sets, symmetric by construction:

- **generalisation pairs**: the frame holding the source's phrase → the frame holding the destination's ("a big
  circle on a black background" → "a big green circle on a black background", "two circles" → "two green circles");
- **kept prompts**: the frame holding the destination's phrase with its added word replaced by each of its
  **alternatives** ("a big purple circle on a black background"), and holding the destination's phrase itself; the
  alternatives are the added word's nearest words in the token-embedding table (`nearest_attributes`) among the
  words the corpus uses in the same place, before a marked noun (its attribute words), so "purple" may come back
  for "green" but "heart" does not;
- **generic captions**: corpus captions that do not name the subject at all, kept as they are (a prior over the
  corpus, as MEMIT's key covariance is; it holds look-alikes and other objects).

A frame is used only where its words outside the slot name no edited subject (or an inflection of one: in a
multi-edit a frame naming another edit's subject would hold that subject unedited), the source
and the destination start with the same article, and the prompts fit the tokenizer and align; plural frames
(`two [circle]s`) only where the phrase ends with the subject and the subject takes a plain "s". Everything is
deterministic: corpus lines are read in file order.

Which corpus: the model folder's own `edit_corpus.txt` when it has one (the Shapes-world model ships the world's
caption sampler's captions, every benchmark prompt and frame removed: `presets/make_edit_corpus.py`), else the
generic captions shipped in `time_core/data/corpus/generic.txt`. Nothing here reads a benchmark.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import model_folder
from ..prompts import PromptError, align_tokens, token_ids
from .words import added_words, is_inflection, replace_word

__all__ = ["CORPUS_FILE", "ContextSet", "Corpus", "GENERIC_CORPUS", "context_set", "fold_ids", "load_corpus",
           "nearest_attributes", "read_corpus"]

CORPUS_FILE = "edit_corpus.txt"
GENERIC_CORPUS: Path = Path(__file__).resolve().parent.parent / "data" / "corpus" / "generic.txt"
MAX_FRAMES = 48  # frames per edit pair
MAX_GENERIC = 48  # generic captions per edit
MAX_ALTERNATIVES = 8  # alternatives per added word
_SLOT = re.compile(r"\[([^\]]+)\](\w*)")
_ARTICLES = ("a ", "an ", "the ")


@dataclass(frozen=True)
class Corpus:
    r"""
    A generic prompt corpus.

    Args:
        name (`str`): where it comes from (the file's name and the first 12 hex digits of its SHA-256).
        lines (`tuple[str, ...]`): captions, each with at most one marked noun phrase (`[...]`).
    """

    name: str
    lines: tuple[str, ...]

    def attribute_words(self) -> frozenset[str]:
        """The words the corpus puts before a marked noun (in `[red circle]`: "red")."""
        words = set()
        for line in self.lines:
            match = _SLOT.search(line)
            if match:
                words.update(w.lower() for w in match.group(1).split()[:-1])
        return frozenset(words)


def read_corpus(path: str | Path) -> Corpus:
    """Reads a corpus file (one caption per line; `#` starts a comment line). Raises `ValueError` for a line with more
    than one marked phrase or an empty file."""
    path = Path(path)
    data = path.read_bytes()
    lines = []
    for number, raw in enumerate(data.decode("utf-8").splitlines(), start=1):
        line = " ".join(raw.split())
        if not line or line.startswith("#"):
            continue
        if len(_SLOT.findall(line)) > 1 or line.count("[") != line.count("]"):
            raise ValueError(f"{path.name}, line {number}: a caption marks at most one noun phrase, got {raw!r}")
        lines.append(line)
    if not lines:
        raise ValueError(f"{path.name} holds no caption")
    return Corpus(name=f"{path.name}:{hashlib.sha256(data).hexdigest()[:12]}", lines=tuple(lines))


def load_corpus(pipe) -> Corpus:
    """The pipeline folder's `edit_corpus.txt` when it has one, else `GENERIC_CORPUS`."""
    name = model_folder(pipe)
    folder = Path(name) if name else None
    if folder is not None and (folder / CORPUS_FILE).is_file():
        return read_corpus(folder / CORPUS_FILE)
    return read_corpus(GENERIC_CORPUS)


@dataclass(frozen=True)
class ContextSet:
    r"""
    The context sets of an edit (see the module docstring).

    Args:
        generalise (`tuple[tuple[str, str], ...]`): (prompt, destination) pairs that should follow the edit.
        keep (`tuple[str, ...]`): prompts naming an alternative (or the destination's value) in context, kept as they are.
        generic (`tuple[str, ...]`): corpus captions that do not name the subject, kept as they are.
        generalise_folds, keep_folds, generic_folds (`tuple[int, ...]`): the frame (or caption) index of each prompt,
            for cross-validation by frame.
        alternatives (`dict[str, tuple[str, ...]]`): for every added word, the alternatives used.
        corpus (`str`): the corpus's name.
    """

    generalise: tuple[tuple[str, str], ...]
    keep: tuple[str, ...]
    generic: tuple[str, ...]
    generalise_folds: tuple[int, ...]
    keep_folds: tuple[int, ...]
    generic_folds: tuple[int, ...]
    alternatives: dict[str, tuple[str, ...]]
    corpus: str

    def summary(self) -> str:
        """One line for edit files and status lines."""
        return (f"corpus {self.corpus}: {len(self.generalise)} generalisation pairs, {len(self.keep)} kept prompts, "
                f"{len(self.generic)} generic captions")


def _strip_article(text: str) -> tuple[str, str] | None:
    lower = text.lower()
    for article in _ARTICLES:
        if lower.startswith(article):
            return text[: len(article)], text[len(article) :]
    return None


def _subject(source: str) -> str | None:
    """The source's last word (however many tokens it takes), lower-cased; `None` for none."""
    words = re.findall(r"[A-Za-z]+", source)
    return words[-1].lower() if words else None


def _names(text: str, word: str) -> bool:
    """Whether `text` names `word` or an inflection of it."""
    return any(w == word or is_inflection(w, {word}) for w in re.findall(r"[a-z]+", text.lower()))


def _fits(tokenizer, *prompts: str) -> bool:
    try:
        for prompt in prompts:
            token_ids(tokenizer, prompt)
        return True
    except PromptError:
        return False


def nearest_attributes(tokenizer, embeddings: torch.Tensor, word: str, attributes: frozenset[str],
                       exclude: set[str], k: int = MAX_ALTERNATIVES) -> tuple[str, ...]:
    """The `k` one-token `attributes` nearest to `word` by cosine similarity of the input token embeddings (`(V, d)`),
    nearest first; never one of `exclude` or an inflection of one."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        return ()
    table = embeddings.detach().float()  # (V, d)
    query = table[ids[0]]  # (d,)
    scored = []
    for candidate in sorted(attributes):
        candidate_ids = tokenizer(candidate, add_special_tokens=False).input_ids
        if len(candidate_ids) != 1 or candidate in exclude or is_inflection(candidate, exclude):
            continue
        row = table[candidate_ids[0]]  # (d,)
        scored.append((float(row @ query / (row.norm() * query.norm()).clamp_min(1e-12)), candidate))
    return tuple(c for _, c in sorted(scored, key=lambda x: (-x[0], x[1]))[:k])


def context_set(pipe, corpus: Corpus, sources: Sequence[str], destinations: Sequence[str],
                max_frames: int = MAX_FRAMES, max_generic: int = MAX_GENERIC) -> ContextSet:
    r"""
    Builds the context sets of an edit from a corpus (see the module docstring).

    Args:
        pipe: the pipeline (its `tokenizer` and the text encoder's token embeddings are read, never written).
        corpus (`Corpus`): the generic prompt corpus (`load_corpus`).
        sources (`Sequence[str]`): the edit's source prompts.
        destinations (`Sequence[str]`): their destinations.
        max_frames (`int`, *optional*, defaults to `MAX_FRAMES`): frames per (source, destination) pair.
        max_generic (`int`, *optional*, defaults to `MAX_GENERIC`): generic captions.

    Returns:
        `ContextSet`; empty sets where no frame applies (a pair without a shared article, say).
    """
    tokenizer = pipe.tokenizer
    embeddings = pipe.text_encoder.get_input_embeddings().weight  # (V, d)
    own = {w.lower() for text in (*sources, *destinations) for w in re.findall(r"[A-Za-z]+", text)}
    attributes = corpus.attribute_words()
    protected = set(sources) | set(destinations)
    generalise: dict[tuple[str, str], int] = {}
    keep: dict[str, int] = {}
    alternatives: dict[str, tuple[str, ...]] = {}
    subjects = {_subject(source) for source in sources} - {None}  # a frame naming any of them holds it unedited
    for source, destination in zip(sources, destinations):
        added = added_words(tokenizer, source, destination)
        subject = _subject(source)
        split_source, split_destination = _strip_article(source), _strip_article(destination)
        if subject is None or split_source is None or split_destination is None:
            continue
        if split_source[0].lower() != split_destination[0].lower():
            continue
        phrase, new_phrase = split_source[1], split_destination[1]
        values = {}
        for word in added:
            if word not in alternatives:
                alternatives[word] = nearest_attributes(tokenizer, embeddings, word, attributes, own)
            values[word] = alternatives[word]
        variants = [replace_word(new_phrase, word, other) for word, others in values.items() for other in others]
        plural_ok = phrase.lower().endswith(subject) and new_phrase.lower().endswith(subject) and not subject.endswith("s")
        frames, seen = 0, set()
        for line in corpus.lines:
            if frames == max_frames:
                break
            match = _SLOT.search(line)
            if match is None:
                continue
            before, suffix, after = line[: match.start()], match.group(2), line[match.end() :]
            if (before, suffix, after) in seen:
                continue
            seen.add((before, suffix, after))
            if any(_names(before + " " + after, s) for s in subjects) or (suffix and not plural_ok):
                continue
            prompt, target = before + phrase + suffix + after, before + new_phrase + suffix + after
            kept = [before + v + suffix + after for v in (*variants, new_phrase)]
            if not _fits(tokenizer, prompt, target, *kept):
                continue
            try:
                align_tokens(tokenizer, prompt, target)
            except PromptError:
                continue
            if prompt not in protected:
                generalise.setdefault((prompt, target), frames)
            for text in kept:
                if text not in protected:
                    keep.setdefault(text, frames)
            frames += 1
    generic: dict[str, int] = {}
    if generalise or keep:  # without a frame of its own the edit has nothing to weigh the corpus against
        for line in corpus.lines:
            if len(generic) == max_generic:
                break
            text = line.replace("[", "").replace("]", "")
            if not any(_names(text, s) for s in subjects) and text not in protected and _fits(tokenizer, text):
                generic.setdefault(text, len(generic))
    return ContextSet(
        generalise=tuple(generalise), keep=tuple(keep), generic=tuple(generic),
        generalise_folds=tuple(generalise.values()), keep_folds=tuple(keep.values()),
        generic_folds=tuple(generic.values()), alternatives=alternatives, corpus=corpus.name,
    )


def fold_ids(folds: Sequence[int], length: int, num_folds: int) -> torch.Tensor:
    """The cross-validation fold of each row: every prompt's `length` rows in the fold of its frame, `(P · length,)`."""
    return (torch.as_tensor(list(folds), dtype=torch.long) % num_folds).repeat_interleave(length)
