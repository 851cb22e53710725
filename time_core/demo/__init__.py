"""The logic of the interactive demo (`app.py`), without gradio: every function raises `DemoInputError`,
`PromptError`, `EditFileError` or `ValueError` with a message meant for the user, and the UI shows it.

- `config`: per-model defaults and limits (`DemoConfig`), the model to load, the command-line flags;
- `inputs`: what a user types (numbers, λ, generation settings, the test-prompt table, λ ranges);
- `methods`: the editing methods offered (TIME, Diff-QuickFix) and what choosing one sets;
- `prompt_sets`: the prompts of a run (`PromptSet`) and the presets of the dropdowns;
- `cache`, `runtime`: the cache of original images and the shared pipeline and classifier (`DemoRuntime`);
- `session`: a session's edit stack (`SessionEdits`);
- `exports`: edit files to download and upload (an upload is checked like typed input), LoRA files;
- `images`: original (cached), edited and scored images;
- `edit_run`, `sweep_run`, `debias_run`: the runs of the three tabs, generators of updates;
- `views`: status lines, tables, plots and image strips of those updates;
- `texts`: the page's texts, and how prompts are shown in it (`quote`, `toast`: as text, never markup).

A run yields updates, so the UI can show the original model's images before the edited model's:

```python
import time_core.demo as demo

config = demo.DemoConfig.for_model("toy")
runtime = demo.DemoRuntime.load(config)
prompts = demo.preset_prompts("shapes:0")              # "a circle" -> "a green circle", 5 positives, 5 negatives
settings = runtime.settings(num_seeds=4)
for update in demo.run_edit(runtime, demo.SessionEdits(), prompts, lam=0.1, settings=settings):
    print(update.stage, update.scores["original"], update.scores["edited"])
```
"""

from ..evaluation.search import LOG_LAM_MAX, LOG_LAM_MIN
from ..methods.time import DEFAULT_LAM as PAPER_LAM
from ..solver import AUTO_LAM
from .background import ExampleTask, GridRenderer, renderer_of
from .cache import OriginalCache
from .config import DEFAULT_SD_MODEL, FAMILIES, TOY, DemoConfig, add_cli_arguments, config_from_cli, resolve_model
from .debias_run import DebiasUpdate, run_debias
from .edit_run import EditUpdate, run_edit
from .exports import (
    LORA_FORMATS,
    check_uploaded_edit,
    export_session_lora,
    foreign_file_message,
    load_edit_file,
    save_edit_file,
)
from .grid import ImageFiles, comparison_html, row_verdict
from .images import ScoredImage, edited_images, original_images, score_images, scores_of
from .inputs import (
    LOG_LAM_LIMITS,
    SWEEP_MAX_COUNT,
    SWEEP_MIN_COUNT,
    DemoInputError,
    GenerationSettings,
    check_count,
    check_images,
    format_lam,
    lam_from_log,
    lam_text,
    lambda_grid,
    log_from_lam,
    parse_lam,
    parse_lam_or_auto,
    parse_number,
    parse_settings,
    parse_test_prompts,
)
from .live import LIVE_LOG_STEP, EditRequest, live_lams, preview_rows, run_live
from .methods import DEMO_METHODS, METHOD_LABELS, MethodFields, method_choices, method_fields, parse_method
from .prompt_sets import TEST_HEADERS, PromptSet, debias_entry, example_prompts, preset_choices, preset_prompts
from .runtime import DemoRuntime
from .session import SessionEdits
from .sweep_run import SweepPoint, SweepUpdate, run_sweep
from .texts import quote, toast
from .turns import PipelineTurns
from .views import (
    SCORE_HEADERS,
    debias_found,
    debias_search_rows,
    debias_status,
    debias_test_rows,
    edit_details,
    edit_status,
    gallery_items,
    knob_note,
    scores_rows,
    sweep_figure,
    sweep_rows,
    sweep_status,
    sweep_strip,
)

__all__ = [
    "AUTO_LAM",
    "PAPER_LAM",
    "DEFAULT_SD_MODEL",
    "DEMO_METHODS",
    "FAMILIES",
    "LOG_LAM_LIMITS",
    "LOG_LAM_MAX",
    "LOG_LAM_MIN",
    "METHOD_LABELS",
    "SCORE_HEADERS",
    "SWEEP_MAX_COUNT",
    "SWEEP_MIN_COUNT",
    "TEST_HEADERS",
    "TOY",
    "LIVE_LOG_STEP",
    "LORA_FORMATS",
    "DebiasUpdate",
    "EditRequest",
    "ExampleTask",
    "GridRenderer",
    "ImageFiles",
    "PipelineTurns",
    "DemoConfig",
    "DemoInputError",
    "DemoRuntime",
    "EditUpdate",
    "GenerationSettings",
    "MethodFields",
    "OriginalCache",
    "PromptSet",
    "ScoredImage",
    "SessionEdits",
    "SweepPoint",
    "SweepUpdate",
    "add_cli_arguments",
    "check_count",
    "check_images",
    "check_uploaded_edit",
    "comparison_html",
    "config_from_cli",
    "live_lams",
    "preview_rows",
    "row_verdict",
    "renderer_of",
    "run_live",
    "debias_entry",
    "debias_found",
    "debias_search_rows",
    "debias_status",
    "debias_test_rows",
    "edit_details",
    "example_prompts",
    "export_session_lora",
    "foreign_file_message",
    "edit_status",
    "edited_images",
    "format_lam",
    "gallery_items",
    "knob_note",
    "lam_from_log",
    "lam_text",
    "lambda_grid",
    "load_edit_file",
    "log_from_lam",
    "method_choices",
    "method_fields",
    "original_images",
    "parse_lam",
    "parse_lam_or_auto",
    "parse_method",
    "parse_number",
    "parse_settings",
    "parse_test_prompts",
    "preset_choices",
    "preset_prompts",
    "quote",
    "resolve_model",
    "run_debias",
    "run_edit",
    "run_sweep",
    "save_edit_file",
    "score_images",
    "scores_of",
    "scores_rows",
    "sweep_figure",
    "sweep_rows",
    "sweep_status",
    "sweep_strip",
    "toast",
]
