"""The prompts of a demo run, and the presets offered in the dropdowns (TIMED on Stable Diffusion, Shapes on the toy
model)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from ..presets import DebiasEntry, DebiasPreset, EditPreset, PromptPair, load_preset
from ..prompts import check_prompt
from .config import FAMILIES, DemoConfig
from .inputs import DemoInputError, check_count, check_images, parse_test_prompts

__all__ = ["TEST_HEADERS", "PromptSet", "debias_entry", "example_prompts", "preset_choices", "preset_prompts"]

TEST_HEADERS = ("role", "prompt", "destination", "type")
_PRESET_GROUPS: dict[str, str] = {
    "timed_test": "TIMED test",
    "timed_test_filtered_sd14": "TIMED test, filtered for SD 1.4",
    "timed_validation": "TIMED validation",
    "timed_professions": "Professions",
    "shapes": "Shapes (hard)",
    "shapes_easy": "Shapes (easy)",
    "shapes_debias": "Shapes debias",
}
_PRESET_ORDER: dict[str, tuple[str, ...]] = {
    "sd": ("timed_test", "timed_test_filtered_sd14", "timed_validation", "timed_professions"),
    "toy": ("shapes", "shapes_easy", "shapes_debias"),
}


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one edit run: the edit itself and the test prompts whose images are shown and scored.

    Args:
        source (`str`), destination (`str`): the edit.
        positives (`tuple[PromptPair, ...]`): prompts that should follow the edit (generality), with the destination
            each should turn into.
        negatives (`tuple[PromptPair, ...]`): prompts that should not change (specificity), with the destination each
            must not turn into.
    """

    source: str
    destination: str
    positives: tuple[PromptPair, ...] = ()
    negatives: tuple[PromptPair, ...] = ()

    @classmethod
    def from_fields(cls, source: str | None, destination: str | None, tests: Any) -> PromptSet:
        """The prompts typed into the Edit tab: the two prompt fields and the test-prompt table."""
        positives, negatives = parse_test_prompts(tests)
        return cls((source or "").strip(), (destination or "").strip(), positives, negatives)

    def check_test_prompts(self) -> None:
        """Raises `PromptError` naming an empty or too long test prompt (before anything is generated)."""
        for pair in self.positives + self.negatives:
            check_prompt(pair.prompt, "test prompt")
            check_prompt(pair.destination, "test prompt's destination")

    def check(self, config: DemoConfig, seeds: int, models: int) -> None:
        """Checks the test prompts and the click's images (`len(self.rows())` prompts × `seeds` × `models`) against the
        limits of `config`, before anything is generated; raises `DemoInputError` or `PromptError`."""
        check_count(len(self.positives) + len(self.negatives), config.max_test_prompts, "test prompts")
        self.check_test_prompts()
        check_images(config, len(self.rows()), seeds, models)

    def rows(self) -> list[tuple[str, str, str]]:
        """`(role, prompt, destination)` for the source and every test prompt, in display order."""
        return (
            [("source", self.source, self.destination)]
            + [("positive", p.prompt, p.destination) for p in self.positives]
            + [("negative", p.prompt, p.destination) for p in self.negatives]
        )

    def table(self) -> list[list[str]]:
        """The test prompts as rows `[role, prompt, destination, type]` (the UI's table; the type may be empty)."""
        tests = [("positive", p) for p in self.positives] + [("negative", p) for p in self.negatives]
        return [[role, p.prompt, p.destination, p.type or ""] for role, p in tests]


@functools.lru_cache(maxsize=None)
def _preset(name: str) -> EditPreset | DebiasPreset:
    return load_preset(name)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def preset_choices(family: str, kind: str = "edit") -> list[tuple[str, str]]:
    """The presets of a model family as dropdown choices `(label, key)`, grouped by benchmark in the label
    ("TIMED test · A banana → A blue banana").

    Args:
        family (`str`): `"sd"` or `"toy"`.
        kind (`str`, *optional*, defaults to `"edit"`): `"edit"` lists every preset (debias sets too, as edits);
            `"debias"` only the debiasing sets.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    choices = []
    for name in _PRESET_ORDER[family]:
        preset = _preset(name)
        if kind == "debias" and not isinstance(preset, DebiasPreset):
            continue
        group = _PRESET_GROUPS.get(name, name)
        for index, entry in enumerate(preset.entries):
            label = f"{group} · {_short(entry.source, 40)} → {_short(entry.destination, 50)}"
            choices.append((label, f"{name}:{index}"))
    return choices


def _preset_entry(key: str) -> tuple[EditPreset | DebiasPreset, Any]:
    name, _, index = str(key).rpartition(":")
    try:
        preset = _preset(name)
        return preset, preset.entries[int(index)]
    except (ValueError, IndexError):
        raise DemoInputError(f"unknown preset {key!r}") from None


def debias_entry(key: str) -> DebiasEntry:
    """The `DebiasEntry` of a dropdown key such as `"timed_professions:3"`."""
    _, entry = _preset_entry(key)
    if not isinstance(entry, DebiasEntry):
        raise DemoInputError(f"preset {key!r} is not a debiasing set")
    return entry


def _destination_of(prompt: str, source: str, destination: str) -> str:
    """`prompt` with the edit applied: the source phrase replaced by the destination, or the destination's new
    words inserted before the source's last word; falls back to `destination`."""
    match = re.search(re.escape(source), prompt, flags=re.IGNORECASE)
    if match:
        return prompt[: match.start()] + destination + prompt[match.end() :]
    source_words = source.lower().split()
    added = [w for w in destination.split() if w.lower() not in source_words]
    noun = source.split()[-1] if source.split() else ""
    words = prompt.split()
    for i, word in enumerate(words):
        if noun and word.lower() == noun.lower() and added:
            return " ".join(words[:i] + added + words[i:])
    return destination


def preset_prompts(key: str) -> PromptSet:
    """The `PromptSet` of a preset entry (`key` from `preset_choices`). For a debiasing entry, its test prompts become
    positives whose destination has the edit applied, and there are no negatives.
    """
    _, entry = _preset_entry(key)
    if isinstance(entry, DebiasEntry):
        positives = tuple(
            PromptPair(prompt=t, destination=_destination_of(t, entry.source, entry.destination)) for t in entry.tests
        )
        return PromptSet(entry.source, entry.destination, positives, ())
    return PromptSet(entry.source, entry.destination, tuple(entry.positives), tuple(entry.negatives))


def example_prompts(family: str, source: str, destination: str) -> PromptSet | None:
    """The prompts of the first preset of `family` whose edit is `source → destination` (an example's test prompts), or
    `None`."""
    for _, key in preset_choices(family):
        prompts = preset_prompts(key)
        if (prompts.source, prompts.destination) == ((source or "").strip(), (destination or "").strip()):
            return prompts
    return None
