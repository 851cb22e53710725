"""Edits that travel from the page: the session's edit as a LoRA file (diffusers / PEFT, or kohya for AUTOMATIC1111
and ComfyUI) with the export's error report, and what to say about a file dropped on the upload that is not an edit
file (a LoRA, another safetensors file)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ..edit import BaseEdit
from ..export import FORMATS, export_lora
from .inputs import DemoInputError, lam_text

__all__ = ["LORA_FORMATS", "export_session_lora", "foreign_file_message"]

LORA_FORMATS = {"peft": "diffusers / PEFT (pipe.load_lora_weights)", "kohya": "kohya (AUTOMATIC1111, ComfyUI)"}
_LORA_KEYS = ("lora_A", "lora_B", "lora_up", "lora_down", "lora_unet_", "lora_te")


def export_session_lora(runtime, edit: BaseEdit | None, lora_format: str) -> tuple[Path, str]:
    """Writes `edit` (the session's last edit) as a full-rank float32 LoRA in a new folder of the runtime's work
    folder, in one turn on the pipeline (it reads the weights, never writes them).

    Returns:
        `(path, report)`: the file and one line of Markdown (layers, largest relative error, size).

    Raises:
        `DemoInputError`: no edit yet, or an unknown format.
    """
    if edit is None:
        raise DemoInputError("no edit to export yet: press Edit and generate first")
    if lora_format not in FORMATS:
        raise DemoInputError(f"LoRA format must be one of {list(FORMATS)}, got {lora_format!r}")
    folder = Path(tempfile.mkdtemp(dir=runtime.workdir))
    name = f"{edit.method}-lam{lam_text(edit.lam)}-lora-{lora_format}.safetensors"
    with runtime.turns.turn():
        export = export_lora(runtime.pipe, edit, folder / name, lora_format=lora_format)
    report = (f"**LoRA ({LORA_FORMATS[lora_format]})**: {len(export.ranks)} layers, full rank, largest relative "
              f"error {export.max_error:.1e} (mean {export.mean_error:.1e}), {export.num_bytes / 1e6:.2f} MB")
    return export.path, report


def foreign_file_message(path: str | Path) -> str | None:
    """What a safetensors file that is not an edit file is, and what to do with it; `None` for an edit file or a
    file that is not safetensors at all (the edit reader's message says that). Reads only the header."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta, keys = handle.metadata() or {}, list(handle.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None
    if meta.get("format") == "time-edit":
        return None
    tensors = f"{len(keys)} tensor{'s' if len(keys) != 1 else ''}"
    if "time_lora_format" in meta:
        return (f"{path.name} is a LoRA exported from a {meta.get('time_lora_format')} TIME edit, not an edit file: "
                "load it in diffusers (pipe.load_lora_weights) or AUTOMATIC1111 / ComfyUI; to continue the edit here, "
                "upload the edit file (.safetensors) downloaded beside it")
    if any(marker in key for key in keys for marker in _LORA_KEYS):
        return (f"{path.name} is a LoRA ({tensors}), not an edit file: this page applies TIME and "
                "Diff-QuickFix edit files (downloaded from it or written by time-edit); load a LoRA in diffusers "
                "(pipe.load_lora_weights) or AUTOMATIC1111 / ComfyUI")
    return (f"{path.name} is a safetensors file of {tensors} without edit metadata (a model or weights, not "
            "an edit): upload an edit file downloaded from this page or written by time-edit")
