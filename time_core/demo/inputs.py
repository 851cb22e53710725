"""Reading what a user types into the demo: numbers, λ, generation settings, the test-prompt table, λ ranges.

Every function raises `DemoInputError` (a `ValueError`) with a message that names the field and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..evaluation.search import LOG_LAM_MAX, LOG_LAM_MIN
from ..presets import PromptPair
from ..solver import AUTO_LAM, is_auto
from .config import DemoConfig

__all__ = [
    "LOG_LAM_LIMITS",
    "SWEEP_MAX_COUNT",
    "SWEEP_MIN_COUNT",
    "DemoInputError",
    "GenerationSettings",
    "check_count",
    "check_images",
    "format_lam",
    "lam_text",
    "lam_from_log",
    "lambda_grid",
    "log_from_lam",
    "parse_lam",
    "parse_lam_or_auto",
    "parse_log_lam_range",
    "parse_number",
    "parse_settings",
    "parse_test_prompts",
]

# The log10 λ bounds a user may type for a sweep or a debiasing search.
LOG_LAM_LIMITS = (-6.0, 8.0)
# A λ sweep takes between these many values.
SWEEP_MIN_COUNT, SWEEP_MAX_COUNT = 2, 24


class DemoInputError(ValueError):
    """A value typed into the demo cannot be used; the message names the field and the problem."""


def parse_number(
    value: Any,
    name: str,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    limit_hint: str = "",
    positive: bool = False,
) -> int | float:
    """Reads a number typed into a field, or raises `DemoInputError` naming the field.

    Args:
        value (`Any`): what the field holds (number or text).
        name (`str`): the field's name, for the message.
        integer (`bool`, *optional*, defaults to `False`): require a whole number.
        minimum (`float`, *optional*), maximum (`float`, *optional*): inclusive bounds.
        limit_hint (`str`, *optional*): appended to the message when `maximum` is exceeded (how to raise the limit).
        positive (`bool`, *optional*, defaults to `False`): require a number > 0.
    """
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise DemoInputError(f"{name} is empty: enter a number")
    requirement = " > 0" if positive else ""
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DemoInputError(f"{name} must be a number{requirement}, got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise DemoInputError(f"{name} must be a finite number{requirement}, got {value!r}")
    if integer:
        if number != int(number):
            raise DemoInputError(f"{name} must be a whole number, got {value!r}")
        number = int(number)
    if minimum is not None and number < minimum:
        raise DemoInputError(f"{name} must be at least {_fmt(minimum)}, got {_fmt(number)}")
    if maximum is not None and number > maximum:
        hint = f" ({limit_hint})" if limit_hint else ""
        raise DemoInputError(f"{name} is {_fmt(number)}, more than the limit of {_fmt(maximum)}{hint}")
    return number


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def parse_lam(value: Any) -> float:
    """λ from a text field: a finite number > 0, e.g. `"0.1"` or `"1e-2"`; raises `DemoInputError` otherwise."""
    if isinstance(value, str) and not value.strip():
        raise DemoInputError("λ is empty: enter a number > 0, e.g. 0.1")
    return float(parse_number(value, "λ", positive=True))


def parse_lam_or_auto(value: Any) -> float | str:
    """λ from the λ field, which also takes `"auto"` (the knob-free edit: λ chosen for each edit)."""
    return AUTO_LAM if is_auto(value) else parse_lam(value)


def format_lam(lam: float) -> str:
    """λ as shown next to the slider: 3 significant digits (`0.1`, `3.16`, `1e+04`)."""
    return f"{lam:.3g}"


def lam_text(lam: float) -> str:
    """λ as a text field holds it, exactly: the shortest text that reads back as the same float (`0.12345`, `1000`),
    so a λ put in the field (from an uploaded edit, a search) runs unchanged."""
    text = repr(float(lam))
    return text[:-2] if text.endswith(".0") else text


def lam_from_log(log_lam: float) -> str:
    """The text of the λ field for a position of the log10 slider."""
    return format_lam(10.0 ** float(log_lam))


def log_from_lam(value: Any) -> float:
    """The position of the log10 slider for a λ typed in the text field (clamped to the slider's range)."""
    return float(min(max(math.log10(parse_lam(value)), LOG_LAM_MIN), LOG_LAM_MAX))


@dataclass(frozen=True)
class GenerationSettings:
    """How images are generated: seeds, steps, guidance and size (checked against the configuration's limits).

    Args:
        seeds (`tuple[int, ...]`): one image per seed and prompt.
        steps (`int`): denoising steps.
        guidance (`float`): classifier-free guidance scale.
        size (`int`): image side in pixels.
    """

    seeds: tuple[int, ...]
    steps: int
    guidance: float
    size: int

    def original_key(self, model: str, prompt: str, seed: int) -> tuple:
        """The `OriginalCache` key of one original image."""
        return (model, prompt, seed, self.steps, self.guidance, self.size, self.size)


def parse_settings(
    config: DemoConfig,
    num_seeds: Any = None,
    first_seed: Any = 0,
    steps: Any = None,
    guidance: Any = None,
    size: Any = None,
    size_step: int = 8,
    max_seeds: int | None = None,
    default_size: int | None = None,
) -> GenerationSettings:
    """Checks the "Advanced" fields against the limits of `config`; empty arguments take the configuration's defaults.

    Raises:
        `DemoInputError`: a field is not a number or breaks a limit; the message names it.
    """
    max_seeds = max_seeds or config.max_seeds
    n = parse_number(_default(num_seeds, config.num_seeds), "number of seeds", integer=True, minimum=1,
                     maximum=max_seeds, limit_hint="start the app with --max-seeds or $TIME_MAX_SEEDS to change it")
    first = parse_number(_default(first_seed, 0), "first seed", integer=True, minimum=0, maximum=2**31 - 1)
    steps = parse_number(_default(steps, config.steps), "steps", integer=True, minimum=1, maximum=config.max_steps,
                         limit_hint="start the app with --max-steps or $TIME_MAX_STEPS to change it")
    guidance = parse_number(_default(guidance, config.guidance), "guidance scale", minimum=0.0, maximum=50.0)
    size = parse_number(_default(size, default_size or config.size), "image size", integer=True, minimum=size_step,
                        maximum=config.max_size,
                        limit_hint="start the app with --max-size or $TIME_MAX_SIZE to change it")
    if size % size_step:
        raise DemoInputError(f"image size must be a multiple of {size_step} for this model, got {size}")
    return GenerationSettings(seeds=tuple(range(first, first + n)), steps=steps, guidance=float(guidance), size=size)


def _default(value: Any, default: Any) -> Any:
    return default if value is None or (isinstance(value, str) and not value.strip()) else value


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def parse_test_prompts(rows: Any) -> tuple[tuple[PromptPair, ...], tuple[PromptPair, ...]]:
    """Reads the test-prompt table: rows `[role, prompt, destination, type]` with role `positive` or `negative`; the
    type (e.g. `plural`, `related`) is optional and may be left out or empty.

    Empty rows are skipped. A `pandas.DataFrame`, a list of lists or a `{"data": ...}` dict are accepted.

    Returns:
        `(positives, negatives)`.

    Raises:
        `DemoInputError`: unknown role, or a prompt without destination (or the reverse); the message names the row.
    """
    if rows is None:
        return (), ()
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # pandas
        rows = rows.values.tolist()
    elif isinstance(rows, Mapping):
        rows = rows.get("data") or []
    positives, negatives = [], []
    for number, row in enumerate(rows, start=1):
        cells = [_cell(c) for c in list(row)[:4]] + [""] * max(0, 4 - len(row))
        role, prompt, destination, kind = cells
        if not prompt and not destination:
            continue
        role = role.lower()
        if role in ("positive", "pos", "+"):
            target = positives
        elif role in ("negative", "neg", "-"):
            target = negatives
        else:
            raise DemoInputError(f"test prompt row {number}: role must be 'positive' or 'negative', got {role!r}")
        if not prompt:
            raise DemoInputError(f"test prompt row {number}: the prompt is empty (destination {destination!r})")
        if not destination:
            raise DemoInputError(f"test prompt row {number}: {prompt!r} has no destination to score against")
        target.append(PromptPair(prompt=prompt, destination=destination, type=kind or None))
    return tuple(positives), tuple(negatives)


def check_count(count: int, limit: int, what: str, flag: str = "") -> int:
    """Returns `count`, or raises `DemoInputError` when it exceeds `limit`: `what` names the things counted ("pairs
    in the edit"), `flag` the app's option that sets the limit."""
    if count > limit:
        hint = f" (start the app with {flag} to change it)" if flag else ""
        raise DemoInputError(f"{count} {what}, more than the limit of {limit}{hint}")
    return count


def check_images(config: DemoConfig, prompts: int, seeds: int, models: int) -> int:
    """The images of one click, `prompts × seeds × models`, or `DemoInputError` when more than `config.max_images`."""
    images = prompts * seeds * models
    if images > config.max_images:
        raise DemoInputError(
            f"this click would generate {images} images ({prompts} prompts × {seeds} seeds × {models} models), more "
            f"than the limit of {config.max_images}: use fewer seeds, test prompts or λ values (start the app with "
            "--max-images or $TIME_MAX_IMAGES to change it)")
    return images


def parse_log_lam_range(log_min: Any, log_max: Any, what: str = "") -> tuple[float, float]:
    """Two log10 λ bounds within `LOG_LAM_LIMITS`, the first below the second; `what` prefixes the messages."""
    lo = parse_number(log_min, f"{what}smallest log10 λ", minimum=LOG_LAM_LIMITS[0], maximum=LOG_LAM_LIMITS[1])
    hi = parse_number(log_max, f"{what}largest log10 λ", minimum=LOG_LAM_LIMITS[0], maximum=LOG_LAM_LIMITS[1])
    if lo >= hi:
        raise DemoInputError(f"{what}the smallest log10 λ ({_fmt(lo)}) must be below the largest ({_fmt(hi)})")
    return float(lo), float(hi)


def lambda_grid(log_min: Any, log_max: Any, count: Any) -> tuple[float, ...]:
    """`count` log-spaced λ values from `10**log_min` to `10**log_max`.

    Raises:
        `DemoInputError`: non-numeric fields, `log_min >= log_max`, bounds outside `LOG_LAM_LIMITS` or `count` outside
        [`SWEEP_MIN_COUNT`, `SWEEP_MAX_COUNT`].
    """
    lo, hi = parse_log_lam_range(log_min, log_max, "sweep: ")
    n = parse_number(count, "sweep: number of λ values", integer=True, minimum=SWEEP_MIN_COUNT,
                     maximum=SWEEP_MAX_COUNT)
    return tuple(float(x) for x in np.logspace(lo, hi, int(n)))
