"""The logic of the interactive demo (`app.py`): per-model defaults, input checks, cached originals, edit stacks, and
the edit and λ-sweep runs that the UI streams.

`app.py` only lays out components and wires events; everything it shows is computed here (and in
`time_core.debias`). Nothing in this module imports gradio: functions raise `DemoInputError`, `PromptError`,
`EditFileError` or `ValueError` with a message meant for the user, and the UI turns them into visible errors.

A run is a generator of updates, so the UI can show the original model's images before the edited model's:

```python
import time_core.demo as demo

config = demo.DemoConfig.for_model("toy")
runtime = demo.DemoRuntime.load(config)
prompts = demo.preset_prompts("shapes:0")              # "a circle" -> "a green circle", 5 positives, 5 negatives
settings = demo.parse_settings(config, num_seeds=4)
for update in demo.run_edit(runtime, demo.SessionEdits(), prompts, lam=0.1, settings=settings):
    print(update.stage, update.scores["original"], update.scores["edited"])
```
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .edit import Edit, EditFileError, EditProblem, prepare_edit
from .generate import generate
from .metrics import Scores, hits_from_probabilities, score
from .models import TOY_DEFAULTS
from .presets import DebiasEntry, DebiasPreset, EditPreset, PromptPair, load_preset
from .prompts import align_tokens, check_prompt
from .solver import check_lam

__all__ = [
    "DEFAULT_SD_MODEL",
    "DemoConfig",
    "DemoInputError",
    "DemoRuntime",
    "EditUpdate",
    "GenerationSettings",
    "OriginalCache",
    "PromptSet",
    "ScoredImage",
    "SessionEdits",
    "SweepPoint",
    "SweepUpdate",
    "add_cli_arguments",
    "config_from_cli",
    "edit_details",
    "format_lam",
    "lam_from_log",
    "lambda_grid",
    "load_edit_file",
    "log_from_lam",
    "original_images",
    "parse_lam",
    "parse_number",
    "parse_settings",
    "parse_test_prompts",
    "preset_choices",
    "preset_prompts",
    "resolve_model",
    "run_edit",
    "run_sweep",
    "save_edit_file",
    "scores_rows",
    "sweep_figure",
    "sweep_rows",
]


DEFAULT_SD_MODEL = "CompVis/stable-diffusion-v1-4"
TOY = "toy"
FAMILIES = ("toy", "sd")
ROLES = ("source", "positive", "negative")
TEST_HEADERS = ("role", "prompt", "destination")
SCORE_HEADERS = ("model", "efficacy", "generality", "specificity")
# The λ slider moves over log10 λ in this range.
LOG_LAM_MIN, LOG_LAM_MAX = -3.0, 6.0
# A λ sweep takes between these many values.
SWEEP_MIN_COUNT, SWEEP_MAX_COUNT = 2, 24

_PRESET_GROUPS: dict[str, str] = {
    "timed_test": "TIMED test",
    "timed_test_filtered_sd14": "TIMED test, filtered for SD 1.4",
    "timed_validation": "TIMED validation",
    "timed_professions": "Professions",
    "shapes": "Shapes",
    "shapes_debias": "Shapes debias",
}
_PRESET_ORDER: dict[str, tuple[str, ...]] = {
    "sd": ("timed_test", "timed_test_filtered_sd14", "timed_validation", "timed_professions"),
    "toy": ("shapes", "shapes_debias"),
}


class DemoInputError(ValueError):
    """A value typed into the demo cannot be used; the message names the field and the problem."""


# ----------------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    r"""
    Defaults and limits of the demo for one model.

    Args:
        model (`str`): `"toy"`, a hub id or a local folder (see `time_core.load_pipeline`).
        family (`str`): `"toy"` (Shapes-world prompts and presets) or `"sd"` (Stable Diffusion prompts and TIMED).
        size (`int`, *optional*): image side in pixels; `None` is the model's native size.
        steps (`int`): denoising steps.
        guidance (`float`): classifier-free guidance scale.
        num_seeds (`int`): images per prompt.
        lam (`float`): the default λ.
        max_seeds (`int`), max_steps (`int`), max_size (`int`): limits on what a user may ask for.
        max_upload_mb (`float`): the largest edit file accepted, in MB.
        scorer (`str`): the `time_core.scoring.load_scorer` name of the CLIP classifier.
        sweep_count (`int`), sweep_log_min (`float`), sweep_log_max (`float`): the default λ sweep (log10 bounds).
        sweep_seeds (`int`): images per prompt and λ in a sweep.
        debias_seeds (`int`): images per prompt when debiasing.
        debias_iterations (`int`): the cap on binary-search steps.
        cache_items (`int`): how many original images are kept in memory.
        safety_checker (`bool`): keep the pipeline's safety checker.
        num_threads (`int`, *optional*): CPU threads for torch; `None` keeps torch's default.
    """

    model: str = TOY
    family: str = "toy"
    size: int | None = None
    steps: int = 12
    guidance: float = 5.0
    num_seeds: int = 4
    lam: float = 0.1
    max_seeds: int = 16
    max_steps: int = 100
    max_size: int = 128
    max_upload_mb: float = 64.0
    scorer: str = "toy"
    sweep_count: int = 10
    sweep_log_min: float = LOG_LAM_MIN
    sweep_log_max: float = LOG_LAM_MAX
    sweep_seeds: int = 4
    debias_seeds: int = 16
    debias_iterations: int = 8
    cache_items: int = 4096
    safety_checker: bool = True
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        for name in ("steps", "num_seeds", "max_seeds", "max_steps", "max_size", "sweep_count", "sweep_seeds",
                     "debias_seeds", "debias_iterations", "cache_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.num_seeds > self.max_seeds or self.steps > self.max_steps:
            raise ValueError("the default number of seeds and steps must lie within max_seeds and max_steps")
        if self.size is not None and not 8 <= self.size <= self.max_size:
            raise ValueError(f"size must lie in [8, max_size={self.max_size}], got {self.size}")
        if not self.max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        check_lam(self.lam)

    @classmethod
    def for_model(cls, model: str = TOY, family: str | None = None, **overrides: Any) -> DemoConfig:
        r"""
        The defaults for a model: the toy model gets 64×64 images, 12 steps, guidance 5 and 4 seeds; Stable Diffusion
        gets its native size (512 for SD 1.4), 25 steps, guidance 7.5 and 2 seeds.

        Args:
            model (`str`, *optional*, defaults to `"toy"`): the model to load.
            family (`str`, *optional*): `"toy"` or `"sd"`; defaults to `"toy"` for `model="toy"` and `"sd"` otherwise
                (pass `"toy"` for a Shapes-world model saved in a folder).
            **overrides: any other `DemoConfig` field; `None` values are ignored.
        """
        family = family or (TOY if model == TOY else "sd")
        if family == TOY:
            defaults: dict[str, Any] = dict(size=TOY_DEFAULTS.size, steps=TOY_DEFAULTS.steps,
                                            guidance=TOY_DEFAULTS.guidance, num_seeds=TOY_DEFAULTS.seeds,
                                            max_seeds=16, max_steps=100,
                                            max_size=128, scorer="toy", sweep_seeds=4, debias_seeds=16,
                                            cache_items=4096)
        else:
            defaults = dict(size=None, steps=25, guidance=7.5, num_seeds=2, max_seeds=8, max_steps=100,
                            max_size=1024, scorer="ViT-B-32", sweep_seeds=1, debias_seeds=8, cache_items=512)
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model=model, family=family, **defaults)


def resolve_model(model: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    r"""
    The model the demo loads: `model` (the `--model` flag) if given, else the `TIME_MODEL` environment variable, else
    Stable Diffusion 1.4 when a CUDA GPU is present and the embedded toy model otherwise. Nothing falls back silently:
    a model that fails to load is an error.
    """
    import torch

    environ = os.environ if environ is None else environ
    if model:
        return model
    if environ.get("TIME_MODEL", "").strip():
        return environ["TIME_MODEL"].strip()
    return DEFAULT_SD_MODEL if torch.cuda.is_available() else TOY


def add_cli_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the demo's command-line flags (model, server, defaults and limits) to `parser`."""
    parser.add_argument("--model", default=None,
                        help="'toy', a hub id or a local folder (default: $TIME_MODEL, else SD 1.4 on a GPU, else toy)")
    parser.add_argument("--family", choices=FAMILIES, default=None,
                        help="prompts, presets and defaults to use (default: toy for --model toy, sd otherwise)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--no-safety-checker", action="store_true",
                        help="turn Stable Diffusion's safety checker off (local use only)")
    parser.add_argument("--scorer", default=None, help="CLIP scorer for load_scorer (default: toy or ViT-B-32)")
    parser.add_argument("--steps", type=int, default=None, help="default denoising steps")
    parser.add_argument("--seeds", type=int, default=None, help="default number of seeds")
    parser.add_argument("--size", type=int, default=None, help="default image side in pixels")
    parser.add_argument("--max-seeds", type=int, default=_env_int("TIME_MAX_SEEDS"), help="limit ($TIME_MAX_SEEDS)")
    parser.add_argument("--max-steps", type=int, default=_env_int("TIME_MAX_STEPS"), help="limit ($TIME_MAX_STEPS)")
    parser.add_argument("--max-size", type=int, default=_env_int("TIME_MAX_SIZE"), help="limit ($TIME_MAX_SIZE)")
    parser.add_argument("--max-upload-mb", type=float, default=_env_float("TIME_MAX_UPLOAD_MB"),
                        help="largest edit file accepted, in MB ($TIME_MAX_UPLOAD_MB)")
    parser.add_argument("--threads", type=int, default=_env_int("TIME_THREADS"),
                        help="CPU threads for torch ($TIME_THREADS)")
    return parser


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


def _env_float(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    return float(value) if value else None


def config_from_cli(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> DemoConfig:
    """The `DemoConfig` for parsed command-line arguments (see `add_cli_arguments`)."""
    model = resolve_model(args.model, environ)
    return DemoConfig.for_model(
        model,
        family=args.family,
        scorer=args.scorer,
        steps=args.steps,
        num_seeds=args.seeds,
        size=args.size,
        max_seeds=args.max_seeds,
        max_steps=args.max_steps,
        max_size=args.max_size,
        max_upload_mb=args.max_upload_mb,
        safety_checker=not args.no_safety_checker,
        num_threads=args.threads,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Cached original images
# ----------------------------------------------------------------------------------------------------------------------


class OriginalCache:
    r"""
    A thread-safe LRU cache of the original model's images, keyed by `(model, prompt, seed, steps, guidance, height,
    width)`: an image of the unedited model depends on nothing else, so changing λ or the edit only regenerates the
    edited side.

    Args:
        max_items (`int`, *optional*, defaults to 4096): images kept; the least recently used go first.
    """

    def __init__(self, max_items: int = 4096) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: tuple) -> bool:
        """Whether `key` is cached (without counting a hit or a miss, or refreshing it)."""
        with self._lock:
            return key in self._items

    def get(self, key: tuple) -> Any | None:
        """The cached image for `key`, or `None` (counted as a hit or a miss)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key: tuple, image: Any) -> None:
        """Stores an image, evicting the least recently used ones beyond `max_items`."""
        with self._lock:
            self._items[key] = image
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


# ----------------------------------------------------------------------------------------------------------------------
# Runtime: the loaded pipeline and scorer, shared read-only by every session
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class DemoRuntime:
    r"""
    What every session shares: the pipeline (never written), the CLIP scorer, the configuration and the cache of
    original images. Sessions keep their own edits in `SessionEdits`.

    Args:
        pipe: the diffusers pipeline.
        scorer (`time_core.scoring.ClipScorer`): the zero-shot classifier of Sec. 5.4.
        config (`DemoConfig`): defaults and limits.
        cache (`OriginalCache`): original images.
        workdir (`Path`): where edit files for download are written.
    """

    pipe: Any
    scorer: Any
    config: DemoConfig
    cache: OriginalCache
    workdir: Path

    @classmethod
    def load(cls, config: DemoConfig, device: str | None = None) -> DemoRuntime:
        """Loads the pipeline and the scorer of `config` (raises `ModelLoadError` / `ScorerWeightsUnavailableError`)."""
        import torch

        from .models import load_pipeline
        from .scoring import load_scorer

        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        pipe = load_pipeline(config.model, device=device, safety_checker=config.safety_checker)
        scorer = load_scorer(config.scorer, device=device)
        workdir = Path(tempfile.mkdtemp(prefix="time-demo-"))
        return cls(pipe=pipe, scorer=scorer, config=config, cache=OriginalCache(config.cache_items), workdir=workdir)

    @property
    def native_size(self) -> int:
        return int(self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor)

    @property
    def default_size(self) -> int:
        return self.config.size or self.native_size

    @property
    def size_step(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def model_label(self) -> str:
        if self.config.model == TOY:
            return "toy Shapes-world model (embedded)"
        return self.config.model

    def settings(
        self,
        num_seeds: Any = None,
        first_seed: Any = 0,
        steps: Any = None,
        guidance: Any = None,
        size: Any = None,
        max_seeds: int | None = None,
    ) -> GenerationSettings:
        """`parse_settings` with this model's default size and size step."""
        return parse_settings(self.config, num_seeds, first_seed, steps, guidance, size, size_step=self.size_step,
                              max_seeds=max_seeds, default_size=self.default_size)

    def describe(self) -> str:
        """One line of Markdown: model, device, dtype and scorer."""
        device = self.pipe.device
        name = str(device)
        if device.type == "cuda":
            import torch

            name = f"{device} ({torch.cuda.get_device_name(device)})"
        dtype = str(self.pipe.unet.dtype).replace("torch.", "")
        return (
            f"**Model:** `{self.model_label}` · **device:** {name} · **dtype:** {dtype} · "
            f"**scorer:** CLIP `{self.config.scorer}`"
        )


# ----------------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------------


def parse_number(
    value: Any,
    name: str,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    limit_hint: str = "",
) -> int | float:
    r"""
    Reads a number typed into a field, or raises `DemoInputError` naming the field.

    Args:
        value (`Any`): what the field holds (number or text).
        name (`str`): the field's name, for the message.
        integer (`bool`, *optional*, defaults to `False`): require a whole number.
        minimum (`float`, *optional*), maximum (`float`, *optional*): inclusive bounds.
        limit_hint (`str`, *optional*): appended to the message when `maximum` is exceeded (how to raise the limit).
    """
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise DemoInputError(f"{name} is empty: enter a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DemoInputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise DemoInputError(f"{name} must be a finite number, got {value!r}")
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
    try:
        lam = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DemoInputError(f"λ must be a number > 0, got {value!r}") from None
    if not (math.isfinite(lam) and lam > 0):
        raise DemoInputError(f"λ must be a finite number > 0, got {value!r}")
    return lam


def format_lam(lam: float) -> str:
    """λ as shown next to the slider: 3 significant digits (`0.1`, `3.16`, `1e+04`)."""
    return f"{lam:.3g}"


def lam_from_log(log_lam: float) -> str:
    """The text of the λ field for a position of the log10 slider."""
    return format_lam(10.0 ** float(log_lam))


def log_from_lam(value: Any) -> float:
    """The position of the log10 slider for a λ typed in the text field (clamped to the slider's range)."""
    return float(min(max(math.log10(parse_lam(value)), LOG_LAM_MIN), LOG_LAM_MAX))


@dataclass(frozen=True)
class GenerationSettings:
    r"""
    How images are generated: seeds, steps, guidance and size (checked against the configuration's limits).

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
    r"""
    Checks the "Advanced" fields against the limits of `config`; empty arguments take the configuration's defaults.

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


# ----------------------------------------------------------------------------------------------------------------------
# Prompts and presets
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSet:
    r"""
    The prompts of one edit run: the edit itself and the test prompts whose images are shown and scored.

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

    def rows(self) -> list[tuple[str, str, str]]:
        """`(role, prompt, destination)` for the source and every test prompt, in display order."""
        return (
            [("source", self.source, self.destination)]
            + [("positive", p.prompt, p.destination) for p in self.positives]
            + [("negative", p.prompt, p.destination) for p in self.negatives]
        )

    def table(self) -> list[list[str]]:
        """The test prompts as rows `[role, prompt, destination]` (the UI's table)."""
        return [list(row) for row in self.rows()[1:]]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def parse_test_prompts(rows: Any) -> tuple[tuple[PromptPair, ...], tuple[PromptPair, ...]]:
    r"""
    Reads the test-prompt table: rows `[role, prompt, destination]` with role `positive` or `negative`.

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
        cells = [_cell(c) for c in list(row)[:3]] + [""] * max(0, 3 - len(row))
        role, prompt, destination = cells
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
        target.append(PromptPair(prompt=prompt, destination=destination))
    return tuple(positives), tuple(negatives)


@functools.lru_cache(maxsize=None)
def _preset(name: str) -> EditPreset | DebiasPreset:
    return load_preset(name)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def preset_choices(family: str, kind: str = "edit") -> list[tuple[str, str]]:
    r"""
    The presets of a model family as dropdown choices `(label, key)`, grouped by benchmark in the label
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
    r"""
    The `PromptSet` of a preset entry (`key` from `preset_choices`). For a debiasing entry, its test prompts become
    positives whose destination has the edit applied, and there are no negatives.
    """
    _, entry = _preset_entry(key)
    if isinstance(entry, DebiasEntry):
        positives = tuple(
            PromptPair(prompt=t, destination=_destination_of(t, entry.source, entry.destination)) for t in entry.tests
        )
        return PromptSet(entry.source, entry.destination, positives, ())
    return PromptSet(entry.source, entry.destination, tuple(entry.positives), tuple(entry.negatives))


# ----------------------------------------------------------------------------------------------------------------------
# Per-session edits: the stack of applied edits, solved together as one multi-edit
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionEdits:
    r"""
    The edits of one session (kept in the UI's per-session state; never shared).

    The stacked pairs and the current pair are solved together as one multi-edit, `compute_edit(pipe, [sources],
    [destinations], ...)`. Every method returns a new object; the old one is unchanged.

    Args:
        stack (`tuple[tuple[str, str], ...]`): applied `(source, destination)` pairs, oldest first.
        preserve (`tuple[str, ...]`): prompts to keep as they are (from an uploaded edit file).
        preserve_weight (`float`): their weight.
        edit (`Edit`, *optional*): the edit of the last run (what "download" saves).
    """

    stack: tuple[tuple[str, str], ...] = ()
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    edit: Edit | None = None

    def push(self, pipe, source: str, destination: str) -> SessionEdits:
        """Adds a pair to the stack, after checking that it aligns (raises `PromptError`); a repeat is ignored."""
        pair = (check_prompt(source, "source"), check_prompt(destination, "destination"))
        align_tokens(pipe.tokenizer, *pair)
        if pair in self.stack:
            return self
        return replace(self, stack=self.stack + (pair,))

    def undo(self) -> SessionEdits:
        """Removes the last stacked pair."""
        return replace(self, stack=self.stack[:-1])

    def reset(self) -> SessionEdits:
        """Forgets every stacked pair, preserved prompt and the last edit."""
        return SessionEdits()

    def with_edit(self, edit: Edit) -> SessionEdits:
        return replace(self, edit=edit)

    def pairs(self, source: str = "", destination: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
        r"""
        The sources and destinations of the multi-edit: the stack plus the current pair.

        An empty current pair is allowed only when the stack is not empty; half a pair raises `PromptError`.
        """
        source, destination = (source or "").strip(), (destination or "").strip()
        pairs = list(self.stack)
        if source or destination or not pairs:
            pair = (check_prompt(source, "source"), check_prompt(destination, "destination"))
            if pair not in pairs:
                pairs.append(pair)
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)

    def prepare(self, pipe, source: str, destination: str, edit_keys: bool = True, augment: bool = True) -> EditProblem:
        """The λ-independent `EditProblem` of the stack plus the current pair (one eigendecomposition)."""
        sources, destinations = self.pairs(source, destination)
        return prepare_edit(pipe, list(sources), list(destinations), edit_keys=edit_keys, augment=augment,
                            preserve=self.preserve, preserve_weight=self.preserve_weight)

    def build(self, pipe, source: str, destination: str, lam: float, edit_keys: bool = True,
              augment: bool = True) -> Edit:
        """The multi-edit of the stack plus the current pair, for one λ."""
        return self.prepare(pipe, source, destination, edit_keys, augment).solve(check_lam(lam))

    @classmethod
    def from_edit(cls, edit: Edit) -> SessionEdits:
        """The session state after uploading an edit: all pairs but the last are stacked; the last is the current."""
        pairs = tuple(zip(edit.sources, edit.destinations))
        return cls(stack=pairs[:-1], preserve=tuple(edit.preserve), preserve_weight=edit.preserve_weight, edit=edit)

    def stack_rows(self) -> list[list[Any]]:
        """The stack as table rows `[number, source, destination]`."""
        return [[i + 1, s, d] for i, (s, d) in enumerate(self.stack)]


def _slug(text: str, width: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:width] or "edit"


def save_edit_file(edit: Edit, directory: str | Path) -> Path:
    """Writes `edit` as a safetensors file with a descriptive name in a new folder under `directory`."""
    folder = Path(tempfile.mkdtemp(dir=directory))
    name = f"time-{_slug(edit.destinations[-1])}-lam{format_lam(edit.lam)}.safetensors"
    return edit.save(folder / name)


def load_edit_file(path: str | Path, pipe, max_bytes: int) -> Edit:
    r"""
    Reads an uploaded edit file and checks that it fits the loaded model.

    Raises:
        `EditFileError`: too large, corrupt, not an edit file, or computed for another text width.
    """
    path = Path(path)
    if not path.is_file():
        raise EditFileError("no file was uploaded")
    size = path.stat().st_size
    if size > max_bytes:
        raise EditFileError(f"{path.name} is {size / 1e6:.1f} MB; edit files may be at most {max_bytes / 1e6:.1f} MB")
    edit = Edit.load(path)
    edit.check_compatible(pipe)
    return edit


# ----------------------------------------------------------------------------------------------------------------------
# Generation and scoring
# ----------------------------------------------------------------------------------------------------------------------

ProgressFn = Callable[..., Any]


class _StageProgress:
    """Maps `generate`'s `callback(done, total)` onto a slice `[start, start + span]` of an overall progress bar."""

    def __init__(self, report: ProgressFn | None, start: float, span: float, desc: str) -> None:
        self.report, self.start, self.span, self.desc = report, start, span, desc

    def __call__(self, done: int, total: int) -> None:
        if self.report is not None and total:
            self.report(min(1.0, self.start + self.span * done / total), desc=self.desc)


@dataclass(frozen=True)
class ScoredImage:
    r"""
    One generated image and its CLIP score.

    Args:
        role (`str`): `"source"`, `"positive"` or `"negative"`.
        prompt (`str`): the prompt it was generated from.
        destination (`str`): what the scorer compares the prompt with.
        seed (`int`): the seed.
        image (`PIL.Image.Image`): the image.
        p_destination (`float`): CLIP's P(destination) between `prompt` and `destination`.
    """

    role: str
    prompt: str
    destination: str
    seed: int
    image: Any
    p_destination: float

    @property
    def caption(self) -> str:
        return f"P={self.p_destination:.2f} · {self.prompt} · seed {self.seed}"


def original_images(
    runtime: DemoRuntime,
    prompts: Sequence[str],
    settings: GenerationSettings,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[list[Any]], int]:
    r"""
    The original model's images `[prompt][seed]`, from the cache where possible; the missing ones are generated in
    one batched call and cached.

    Returns:
        `(images, cached)`: the images and how many came from the cache.
    """
    model = runtime.config.model
    keys = [[settings.original_key(model, p, s) for s in settings.seeds] for p in prompts]
    images = [[runtime.cache.get(k) for k in row] for row in keys]
    cached = sum(image is not None for row in images for image in row)
    missing_prompts = [p for p, row in zip(prompts, images) if any(image is None for image in row)]
    if missing_prompts:
        missing_seeds = sorted({s for row, p in zip(images, prompts) if p in missing_prompts
                                for s, image in zip(settings.seeds, row) if image is None})
        unique = list(dict.fromkeys(missing_prompts))
        result = generate(runtime.pipe, unique, missing_seeds, num_inference_steps=settings.steps,
                          guidance_scale=settings.guidance, height=settings.size, width=settings.size,
                          progress=False, callback=progress)
        for prompt, row in zip(unique, result.original):
            for seed, image in zip(missing_seeds, row):
                runtime.cache.put(settings.original_key(model, prompt, seed), image)
        fresh = {(p, s): image for p, row in zip(unique, result.original) for s, image in zip(missing_seeds, row)}
        images = [[image if image is not None else fresh[(p, s)] for s, image in zip(settings.seeds, row)]
                  for p, row in zip(prompts, images)]
    return images, cached


def edited_images(
    runtime: DemoRuntime,
    prompts: Sequence[str],
    settings: GenerationSettings,
    edit: Edit,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Any]]:
    """The edited model's images `[prompt][seed]` (never cached: they depend on the edit)."""
    result = generate(runtime.pipe, list(prompts), settings.seeds, edit=edit, original=False,
                      num_inference_steps=settings.steps, guidance_scale=settings.guidance, height=settings.size,
                      width=settings.size, progress=False, callback=progress)
    return result.edited


def score_images(runtime: DemoRuntime, rows: Sequence[tuple[str, str, str]], images: Sequence[Sequence[Any]],
                 seeds: Sequence[int]) -> list[ScoredImage]:
    """CLIP's P(destination) for every image of `rows` (`(role, prompt, destination)`) × seeds, flattened."""
    flat = [image for row in images for image in row]
    prompts = [prompt for _, prompt, _ in rows for _ in seeds]
    destinations = [dest for _, _, dest in rows for _ in seeds]
    probabilities = runtime.scorer.prob_destination(flat, prompts, destinations).tolist()
    out, k = [], 0
    for (role, prompt, destination), row in zip(rows, images):
        for seed, image in zip(seeds, row):
            out.append(ScoredImage(role, prompt, destination, seed, image, float(probabilities[k])))
            k += 1
    return out


def scores_of(images: Sequence[ScoredImage], num_seeds: int) -> Scores:
    """Efficacy / generality / specificity of scored images (hit: P(destination) > 0.5), mean ± std over seeds."""

    def hits(role: str) -> np.ndarray | None:
        p = [im.p_destination for im in images if im.role == role]
        if not p:
            return None
        return hits_from_probabilities(np.asarray(p).reshape(-1, num_seeds))  # (prompts, seeds)

    return score(hits("source"), hits("positive"), hits("negative"))


@dataclass(frozen=True)
class EditUpdate:
    r"""
    One step of an edit run.

    Args:
        stage (`str`): `"original"` (originals ready, edited pending) or `"edited"` (done).
        edit (`Edit`): the edit.
        original (`list[ScoredImage]`): the original model's images, prompt-major.
        edited (`list[ScoredImage]`, *optional*): the edited model's images, same order.
        scores (`dict`): `{"original": Scores, "edited": Scores | None}`.
        num_seeds (`int`): images per prompt.
        cached (`int`): original images taken from the cache.
        seconds (`dict[str, float]`): wall time of the stages so far.
    """

    stage: str
    edit: Edit
    original: list[ScoredImage]
    edited: list[ScoredImage] | None
    scores: dict[str, Scores | None]
    num_seeds: int
    cached: int
    seconds: dict[str, float]

    def status(self) -> str:
        """A one-line Markdown summary of the run."""
        edit = self.edit
        mode = "keys + values" if edit.edit_keys else "values only"
        aug = "augmented" if edit.augment else "not augmented"
        pairs = len(edit.sources)
        what = f"{pairs} pairs (multi-edit)" if pairs > 1 else "1 pair"
        total = len(self.original)
        parts = [f"**λ = {format_lam(edit.lam)}**", what, mode, aug,
                 f"originals: {self.cached}/{total} from cache ({self.seconds.get('original', 0.0):.1f} s)"]
        if self.edited is None:
            parts.append("edited: generating…")
        else:
            parts.append(f"edited: {self.seconds.get('edited', 0.0):.1f} s")
        return " · ".join(parts)


def run_edit(
    runtime: DemoRuntime,
    session: SessionEdits,
    prompts: PromptSet,
    lam: float,
    settings: GenerationSettings,
    edit_keys: bool = True,
    augment: bool = True,
    progress: ProgressFn | None = None,
) -> Iterator[EditUpdate]:
    r"""
    Computes the edit (the session's stack plus `prompts.source → prompts.destination`), then yields the original
    model's scored images and, once generated, the edited model's, with the same seeds.

    Everything is checked before any image is generated: bad prompts raise `PromptError`, a bad λ `ValueError`.

    Args:
        runtime (`DemoRuntime`): the shared pipeline, scorer and cache.
        session (`SessionEdits`): the session's stacked edits.
        prompts (`PromptSet`): the edit and its test prompts.
        lam (`float`): λ.
        settings (`GenerationSettings`): seeds, steps, guidance, size.
        edit_keys (`bool`, *optional*, defaults to `True`), augment (`bool`, *optional*, defaults to `True`): see
            `compute_edit`.
        progress (`Callable`, *optional*): called as `progress(fraction, desc=...)` after every denoising step.

    Yields:
        `EditUpdate`: stage `"original"`, then stage `"edited"`.
    """
    lam = check_lam(lam)
    for pair in prompts.positives + prompts.negatives:
        check_prompt(pair.prompt, "test prompt")
    edit = session.build(runtime.pipe, prompts.source, prompts.destination, lam, edit_keys, augment)
    rows = prompts.rows()
    texts = [prompt for _, prompt, _ in rows]
    seeds = settings.seeds

    model = runtime.config.model
    missing = sum(settings.original_key(model, p, s) not in runtime.cache for p in texts for s in seeds)
    share = missing / (missing + len(texts) * len(seeds))  # of the denoising work, for the progress bar
    start = time.perf_counter()
    report = _StageProgress(progress, 0.0, share, "original model")
    originals, cached = original_images(runtime, texts, settings, report)
    original = score_images(runtime, rows, originals, seeds)
    seconds = {"original": time.perf_counter() - start}
    scores: dict[str, Scores | None] = {"original": scores_of(original, len(seeds)), "edited": None}
    yield EditUpdate("original", edit, original, None, dict(scores), len(seeds), cached, dict(seconds))

    start = time.perf_counter()
    report = _StageProgress(progress, share, 1.0 - share, "edited model")
    edited_raw = edited_images(runtime, texts, settings, edit, report)
    edited = score_images(runtime, rows, edited_raw, seeds)
    seconds["edited"] = time.perf_counter() - start
    scores["edited"] = scores_of(edited, len(seeds))
    yield EditUpdate("edited", edit, original, edited, scores, len(seeds), cached, seconds)


def _metric(value) -> str:
    return "—" if value is None else str(value)


def scores_rows(scores: Mapping[str, Scores | None]) -> list[list[str]]:
    """The metrics table (`SCORE_HEADERS`), in percent, mean ± std over seeds; pending rows show "…"."""
    rows = []
    for name in ("original", "edited"):
        s = scores.get(name)
        label = f"{name} model"
        if s is None:
            rows.append([label, "…", "…", "…"])
        else:
            rows.append([label, _metric(s.efficacy), _metric(s.generality), _metric(s.specificity)])
    return rows


def edit_details(update: EditUpdate) -> dict[str, Any]:
    """A JSON-ready summary of a run: the edit, the metrics and every image's P(destination)."""
    edit = update.edit
    images = []
    for k, original in enumerate(update.original):
        item = {"role": original.role, "prompt": original.prompt, "destination": original.destination,
                "seed": original.seed, "p_destination_original": round(original.p_destination, 4)}
        if update.edited is not None:
            item["p_destination_edited"] = round(update.edited[k].p_destination, 4)
        images.append(item)
    return {
        "stage": update.stage,
        "edit": {"sources": list(edit.sources), "destinations": list(edit.destinations), "lam": edit.lam,
                 "edit_keys": edit.edit_keys, "augment": edit.augment, "model": edit.model},
        "scores": {k: (None if v is None else v.as_dict()) for k, v in update.scores.items()},
        "seconds": {k: round(v, 3) for k, v in update.seconds.items()},
        "cached_originals": update.cached,
        "images": images,
    }


# ----------------------------------------------------------------------------------------------------------------------
# λ sweep
# ----------------------------------------------------------------------------------------------------------------------


def lambda_grid(log_min: Any, log_max: Any, count: Any) -> tuple[float, ...]:
    r"""
    `count` log-spaced λ values from `10**log_min` to `10**log_max`.

    Raises:
        `DemoInputError`: non-numeric fields, `log_min >= log_max`, bounds outside [-6, 8] or `count` outside
        [`SWEEP_MIN_COUNT`, `SWEEP_MAX_COUNT`].
    """
    lo = parse_number(log_min, "sweep: smallest log10 λ", minimum=-6, maximum=8)
    hi = parse_number(log_max, "sweep: largest log10 λ", minimum=-6, maximum=8)
    n = parse_number(count, "sweep: number of λ values", integer=True, minimum=SWEEP_MIN_COUNT,
                     maximum=SWEEP_MAX_COUNT)
    if lo >= hi:
        raise DemoInputError(f"sweep: the smallest log10 λ ({_fmt(lo)}) must be below the largest ({_fmt(hi)})")
    return tuple(float(x) for x in np.logspace(lo, hi, int(n)))


@dataclass(frozen=True)
class SweepPoint:
    r"""
    The result for one λ of a sweep.

    Args:
        lam (`float`): λ.
        scores (`Scores`): the edited model's metrics.
        strip (`tuple[ScoredImage, ...]`): the edited images of the strip prompts (first seed).
    """

    lam: float
    scores: Scores
    strip: tuple[ScoredImage, ...]


@dataclass(frozen=True)
class SweepUpdate:
    r"""
    The state of a λ sweep after some λ values.

    Args:
        lams (`tuple[float, ...]`): every λ of the sweep.
        points (`tuple[SweepPoint, ...]`): the λ values done so far, in order.
        original_scores (`Scores`): the original model's metrics.
        original_strip (`tuple[ScoredImage, ...]`): the original images of the strip prompts (first seed).
        seconds (`float`): wall time so far.
    """

    lams: tuple[float, ...]
    points: tuple[SweepPoint, ...]
    original_scores: Scores
    original_strip: tuple[ScoredImage, ...]
    seconds: float

    @property
    def done(self) -> bool:
        return len(self.points) == len(self.lams)


def _strip_rows(prompts: PromptSet) -> list[tuple[str, str, str]]:
    """The prompts of the image strip: the first positive and the first negative (the source when missing)."""
    rows = prompts.rows()
    chosen = [next((r for r in rows if r[0] == role), None) for role in ("positive", "negative")]
    chosen = [r for r in chosen if r is not None]
    return chosen or rows[:1]


def run_sweep(
    runtime: DemoRuntime,
    session: SessionEdits,
    prompts: PromptSet,
    lams: Sequence[float],
    settings: GenerationSettings,
    edit_keys: bool = True,
    augment: bool = True,
    progress: ProgressFn | None = None,
) -> Iterator[SweepUpdate]:
    r"""
    Sweeps λ for one edit: ONE text encoding and eigendecomposition (`prepare_edit`), `.solve(λ)` per value, the
    original images from the cache; yields after the originals and after every λ.

    Args:
        lams (`Sequence[float]`): the λ values (see `lambda_grid`).
        Other arguments as for `run_edit`.
    """
    lams = tuple(check_lam(lam) for lam in lams)
    if not lams:
        raise DemoInputError("sweep: no λ values")
    for pair in prompts.positives + prompts.negatives:
        check_prompt(pair.prompt, "test prompt")
    problem = session.prepare(runtime.pipe, prompts.source, prompts.destination, edit_keys, augment)
    rows = prompts.rows()
    texts = [prompt for _, prompt, _ in rows]
    seeds = settings.seeds
    strip_rows = _strip_rows(prompts)
    strip_index = [rows.index(r) for r in strip_rows]
    start = time.perf_counter()
    steps_total = len(lams) + 1
    originals, _ = original_images(runtime, texts, settings, _StageProgress(progress, 0.0, 1 / steps_total,
                                                                              "original model"))
    original = score_images(runtime, rows, originals, seeds)
    original_scores = scores_of(original, len(seeds))
    original_strip = tuple(original[i * len(seeds)] for i in strip_index)
    points: list[SweepPoint] = []
    yield SweepUpdate(lams, (), original_scores, original_strip, time.perf_counter() - start)
    for k, lam in enumerate(lams):
        edit = problem.solve(lam)
        report = _StageProgress(progress, (k + 1) / steps_total, 1 / steps_total, f"λ = {format_lam(lam)}")
        edited = score_images(runtime, rows, edited_images(runtime, texts, settings, edit, report), seeds)
        strip = tuple(edited[i * len(seeds)] for i in strip_index)
        points.append(SweepPoint(lam, scores_of(edited, len(seeds)), strip))
        yield SweepUpdate(lams, tuple(points), original_scores, original_strip, time.perf_counter() - start)


_METRIC_COLOURS = {"efficacy": "#1f77b4", "generality": "#2ca02c", "specificity": "#d62728"}


def sweep_figure(update: SweepUpdate):
    r"""
    Efficacy, generality and specificity of the edited model against λ (log axis), mean ± std over seeds, with the
    original model's values as dashed lines.

    Returns:
        `matplotlib.figure.Figure` (built without pyplot, so no global figure state).
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    lams = [p.lam for p in update.points]
    for name, colour in _METRIC_COLOURS.items():
        original = getattr(update.original_scores, name)
        if original is not None:
            axes.axhline(100 * original.mean, color=colour, linestyle="--", linewidth=1, alpha=0.6)
        values = [getattr(p.scores, name) for p in update.points]
        if not values or values[0] is None:
            continue
        mean = np.array([100 * v.mean for v in values])
        std = np.array([100 * v.std for v in values])
        axes.plot(lams, mean, marker="o", color=colour, label=name)
        axes.fill_between(lams, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
    axes.set_xscale("log")
    axes.set_xlim(min(update.lams) / 1.5, max(update.lams) * 1.5)
    axes.set_ylim(-3, 103)
    axes.set_xlabel("λ (log scale)")
    axes.set_ylabel("% of images")
    axes.set_title("edited model (solid) vs original model (dashed)", fontsize=10)
    axes.grid(True, which="major", alpha=0.3)
    if update.points:
        axes.legend(loc="best", fontsize=9)
    return figure


def sweep_rows(update: SweepUpdate) -> list[list[str]]:
    """The sweep as table rows `[λ, efficacy, generality, specificity]`, the original model first."""
    s = update.original_scores
    rows = [["original (λ = ∞)", _metric(s.efficacy), _metric(s.generality), _metric(s.specificity)]]
    for p in update.points:
        rows.append([format_lam(p.lam), _metric(p.scores.efficacy), _metric(p.scores.generality),
                     _metric(p.scores.specificity)])
    return rows


def sweep_strip(update: SweepUpdate, pending: bool = True) -> list[tuple[Any, str]]:
    r"""
    The image strip of a sweep (paper Fig. 7), row-major: one row per strip prompt, the original image first, then one
    image per λ. Items are `(image, caption)`; with `pending`, λ values not done yet get a grey placeholder, so the
    rows keep their alignment in a grid of `len(update.lams) + 1` columns.
    """
    from PIL import Image

    items = []
    for r, original in enumerate(update.original_strip):
        items.append((original.image, f"original · P={original.p_destination:.2f} · {original.prompt}"))
        for k, lam in enumerate(update.lams):
            if k < len(update.points):
                image = update.points[k].strip[r]
                items.append((image.image, f"λ = {format_lam(lam)} · P={image.p_destination:.2f}"))
            elif pending:
                blank = Image.new("RGB", original.image.size, (236, 236, 240))
                items.append((blank, f"λ = {format_lam(lam)} · pending"))
    return items
