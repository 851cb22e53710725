"""Edits that travel to and from the page: edit files to download (`save_edit_file`, in bounded folders) and to upload
(`load_edit_file`, `check_uploaded_edit`: checked like typed input), the session's edit as a LoRA file (diffusers /
PEFT, or kohya for AUTOMATIC1111 and ComfyUI) with the export's error report, and what to say about a file dropped on
the upload that is not an edit file (a LoRA, another safetensors file)."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ..edit import BaseEdit, EditFileError
from ..export import FORMATS, export_lora
from ..methods import get_method, load_edit
from ..prompts import PromptError, check_prompt, token_ids
from .config import DemoConfig
from .inputs import DemoInputError, check_count, lam_text

__all__ = ["LORA_FORMATS", "PAIRS_FLAG", "check_uploaded_edit", "download_folder", "export_session_lora",
           "foreign_file_message", "load_edit_file", "save_edit_file"]

PAIRS_FLAG = "--max-pairs or $TIME_MAX_PAIRS"  # what sets `DemoConfig.max_pairs`

LORA_FORMATS = {"peft": "diffusers / PEFT (pipe.load_lora_weights)", "kohya": "kohya (AUTOMATIC1111, ComfyUI)"}
_LORA_KEYS = ("lora_A", "lora_B", "lora_up", "lora_down", "lora_unet_", "lora_te")


def download_folder(directory: str | Path, kind: str, keep: int | None = None) -> Path:
    """A new folder under `directory` for one file to download, named `{kind}-{time in ns}-{random}` so that the
    folders of a kind sort by age; with `keep`, the oldest folders of that kind beyond `keep` are removed."""
    directory = Path(directory)
    folder = Path(tempfile.mkdtemp(prefix=f"{kind}-{time.time_ns():020d}-", dir=directory))
    if keep is not None:
        for old in sorted(directory.glob(f"{kind}-*"))[:-keep]:
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    return folder


def export_session_lora(runtime, edit: BaseEdit | None, lora_format: str) -> tuple[Path, str]:
    """Writes `edit` (the session's last edit) as a full-rank float32 LoRA in a new folder of the runtime's work
    folder (the newest `config.max_edit_files` LoRA files are kept), in one turn on the pipeline (it reads the
    weights, never writes them).

    Returns:
        `(path, report)`: the file and one line of Markdown (layers, largest relative error, size).

    Raises:
        `DemoInputError`: no edit yet, or an unknown format.
    """
    if edit is None:
        raise DemoInputError("no edit to export yet: press Edit and generate first")
    if lora_format not in FORMATS:
        raise DemoInputError(f"LoRA format must be one of {list(FORMATS)}, got {lora_format!r}")
    folder = download_folder(runtime.workdir, "lora", runtime.config.max_edit_files)
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


def _slug(text: str, width: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:width] or "edit"


def check_uploaded_edit(edit: BaseEdit, config: DemoConfig, tokenizer, name: str = "the edit file") -> BaseEdit:
    """Checks an uploaded edit like typed input: its number of pairs and preserved prompts against the limits of
    `config`, and every prompt (non-empty, not too long, each pair taken by the edit's method with `tokenizer`:
    `EditingMethod.check_pair`).

    Raises:
        `EditFileError`: naming the file, the pair or prompt, and the problem.
    """
    try:
        check_count(len(edit.sources), config.max_pairs, f"prompt pairs in {name}", PAIRS_FLAG)
        if not edit.auto_preserve:
            check_count(len(edit.preserve), config.max_preserve, f"preserved prompts in {name}")
    except ValueError as error:
        raise EditFileError(str(error)) from None
    method = get_method(edit.method)
    for number, (source, destination) in enumerate(zip(edit.sources, edit.destinations), start=1):
        try:
            method.check_pair(tokenizer, source, destination)
        except PromptError as error:
            raise EditFileError(f"{name}, pair {number}: {error}") from None
    for number, prompt in enumerate(() if edit.auto_preserve else edit.preserve, start=1):
        try:
            token_ids(tokenizer, check_prompt(prompt, "prompt"))
        except PromptError as error:
            raise EditFileError(f"{name}, preserved prompt {number}: {error}") from None
    return edit


def save_edit_file(edit: BaseEdit, directory: str | Path, keep: int | None = None) -> Path:
    """Writes `edit` as a safetensors file with a descriptive name in a new folder under `directory`; with `keep`, the
    oldest edit files there beyond `keep` are removed (`download_folder`)."""
    folder = download_folder(directory, "edit", keep)
    name = f"{edit.method}-{_slug(edit.destinations[-1])}-lam{lam_text(edit.lam)}.safetensors"
    return edit.save(folder / name)


def load_edit_file(path: str | Path, pipe, max_bytes: int) -> BaseEdit:
    """Reads an uploaded edit file (of any registered method) and checks that it fits the loaded model.

    Raises:
        `EditFileError`: too large, corrupt, not an edit file (a LoRA or another safetensors file is named as such,
            with what to do), or computed for another text width.
    """
    if not path or not Path(path).is_file():
        raise EditFileError("no file was uploaded")
    path = Path(path)
    foreign = foreign_file_message(path)  # a LoRA or another safetensors file (its header only): what it is, what to do
    if foreign is not None:
        raise EditFileError(foreign)
    size = path.stat().st_size
    if size > max_bytes:
        raise EditFileError(f"{path.name} is {size / 1e6:.1f} MB; edit files may be at most {max_bytes / 1e6:.1f} MB")
    edit = load_edit(path)
    edit.check_compatible(pipe)
    return edit
