"""`export_lora`: any edit as a LoRA file that diffusers, AUTOMATIC1111 and ComfyUI load.

```python
from time_core.export import export_lora

report = export_lora(pipe, edit, "blue-roses-lora.safetensors")              # PEFT / diffusers, full rank
report = export_lora(pipe, edit, "blue-roses-kohya.safetensors", rank=64, lora_format="kohya")
report.max_error, report.errors                # relative Frobenius error of the truncated SVD, per layer

other = StableDiffusionPipeline.from_pretrained(...)
other.load_lora_weights("blue-roses-lora.safetensors")                       # stock diffusers (peft installed)
```

Beside the tensors, the file's safetensors metadata records the edit (`time_edit`, JSON) and the export:
`time_lora_format`, `time_lora_rank` (`"full"` or `k`), `time_lora_dtype`, `time_lora_ranks` / `time_lora_errors` (JSON
maps from `component.path` to each layer's rank and relative error), `time_lora_max_error`, `time_lora_mean_error`
(`read_lora_report` reads them back). The pipeline's weights are never written.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..files import check_writable_folder, write_atomic
from .factors import LayerFactors, check_rank, layer_factors
from .formats import check_format, kohya_state_dict, peft_layers

__all__ = ["DTYPES", "LoraExport", "export_lora", "read_lora_report"]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PEFT_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class LoraExport:
    """What `export_lora` wrote.

    Attributes:
        path (`Path`): the LoRA file.
        format (`str`): `"peft"` or `"kohya"`.
        rank (`int`, *optional*): the requested rank; `None` is full rank.
        dtype (`str`): the dtype of the stored factors.
        ranks (`dict[str, int]`): each layer's stored rank, by `component.path`.
        full_ranks (`dict[str, int]`): each layer's numerical rank.
        errors (`dict[str, float]`): each layer's relative error `‖ΔW − up · down‖_F / ‖ΔW‖_F` (float64 SVD).
        num_bytes (`int`): the file's size.
    """

    path: Path
    format: str
    rank: int | None
    dtype: str
    ranks: dict[str, int] = field(repr=False)
    full_ranks: dict[str, int] = field(repr=False)
    errors: dict[str, float] = field(repr=False)
    num_bytes: int = 0

    @property
    def max_error(self) -> float:
        return max(self.errors.values())

    @property
    def mean_error(self) -> float:
        return sum(self.errors.values()) / len(self.errors)


def _check_dtype(dtype) -> tuple[str, torch.dtype]:
    for name, value in DTYPES.items():
        if dtype in (name, value):
            return name, value
    raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")


def _check_path(path) -> Path:
    """The output path after checking it is a `.safetensors` file in an existing, writable folder."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"a LoRA file must end with .safetensors, got {str(path)!r}")
    folder = path.parent.resolve()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name ending with .safetensors")
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot write {path.name}: {folder} is not a folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path.name}: the folder {folder} does not exist")
    check_writable_folder(folder, f"cannot write {path.name}")
    return path


def _metadata(edit, layers: Sequence[LayerFactors], lora_format: str, rank: int | None, dtype: str) -> dict[str, str]:
    errors = {layer.name: layer.error for layer in layers}
    return {
        "time_edit": json.dumps(edit.metadata()),
        "time_lora_format": lora_format,
        "time_lora_rank": "full" if rank is None else str(rank),
        "time_lora_dtype": dtype,
        "time_lora_ranks": json.dumps({layer.name: layer.rank for layer in layers}),
        "time_lora_full_ranks": json.dumps({layer.name: layer.full_rank for layer in layers}),
        "time_lora_errors": json.dumps(errors),
        "time_lora_max_error": repr(max(errors.values())),
        "time_lora_mean_error": repr(sum(errors.values()) / len(errors)),
    }


def _by_component(layers: Sequence[LayerFactors]) -> dict[str, list[LayerFactors]]:
    groups: dict[str, list[LayerFactors]] = {}
    for layer in layers:
        groups.setdefault(layer.component, []).append(layer)
    return groups


def _peft_file(pipe, layers: Sequence[LayerFactors], dtype: torch.dtype, folder: Path) -> tuple[dict, dict]:
    """The tensors and metadata that the pipeline class's `save_lora_weights` writes for these layers."""
    save = type(pipe).save_lora_weights
    accepted = inspect.signature(save).parameters
    kwargs = {}
    for component, group in _by_component(layers).items():
        if f"{component}_lora_layers" not in accepted:
            raise ValueError(f"{type(pipe).__name__}.save_lora_weights cannot save LoRA layers of the {component}")
        state, config = peft_layers(pipe, group, dtype)
        kwargs[f"{component}_lora_layers"] = state
        kwargs[f"{component}_lora_adapter_metadata"] = config
    save(str(folder), weight_name=PEFT_WEIGHT_NAME, **kwargs)
    written = folder / PEFT_WEIGHT_NAME
    with safe_open(str(written), framework="pt") as handle:
        meta = handle.metadata() or {}
    return load_file(str(written)), meta


def export_lora(
    pipe,
    edit,
    path: str | Path,
    rank: int | None = None,
    lora_format: str = "peft",
    dtype: str | torch.dtype = "float32",
    progress: bool = False,
) -> LoraExport:
    """Writes an edit (of any method) as a LoRA file; the pipeline's weights are never written.

    Every linear weight the edit changes (`edit.edited_weights`) becomes a LoRA layer `ΔW = W′ − W ≈ lora_up ·
    lora_down`, from an SVD in float64: exact at full rank, a truncated SVD with `rank=k`.

    Args:
        pipe: the pipeline the edit was computed for (its current weights are the `W` of `ΔW`).
        edit (`BaseEdit`): the edit.
        path (`str` or `Path`): the `.safetensors` file to write (its folder must exist); replaced atomically.
        rank (`int`, *optional*): the largest rank per layer; `None` is full rank (every singular value above the
            rounding level of the edited weights).
        lora_format (`str`, *optional*, defaults to `"peft"`): `"peft"` (diffusers' `pipe.load_lora_weights`) or
            `"kohya"` (AUTOMATIC1111, ComfyUI; diffusers converts it when loading).
        dtype (`str` or `torch.dtype`, *optional*, defaults to `"float32"`): the stored factors' dtype
            (`"float16"` halves the file).
        progress (`bool`, *optional*, defaults to `False`): show a progress bar over the layers.

    Returns:
        `LoraExport`: the path, per-layer ranks and relative errors, and the file size.

    Raises:
        `ValueError`: a bad rank, format, dtype or file name, or an edit that changes no linear weight.
        `OSError`: the folder does not exist or is not writable.
    """
    lora_format = check_format(lora_format)
    rank = check_rank(rank)
    dtype_name, torch_dtype = _check_dtype(dtype)
    path = _check_path(path)
    layers = layer_factors(pipe, edit, rank, progress)
    meta = _metadata(edit, layers, lora_format, rank, dtype_name)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".lora-") as tmp:
        if lora_format == "peft":
            tensors, file_meta = _peft_file(pipe, layers, torch_dtype, Path(tmp))
        else:
            tensors, file_meta = kohya_state_dict(pipe, layers, torch_dtype), {"format": "pt"}
        write_atomic(path, lambda staged: save_file(tensors, str(staged), metadata={**file_meta, **meta}))
    return LoraExport(
        path=path, format=lora_format, rank=rank, dtype=dtype_name,
        ranks={layer.name: layer.rank for layer in layers},
        full_ranks={layer.name: layer.full_rank for layer in layers},
        errors={layer.name: layer.error for layer in layers},
        num_bytes=path.stat().st_size,
    )


def read_lora_report(path: str | Path) -> dict:
    """The export metadata of a LoRA file written by `export_lora` (read with safetensors, never pickle).

    Returns:
        `dict` with `format`, `rank` (`None` for full rank), `dtype`, `ranks`, `full_ranks`, `errors`, `max_error`,
        `mean_error` and `edit` (the edit's own metadata).

    Raises:
        `ValueError`: the file is not a readable safetensors file or was not written by `export_lora`.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path.name} is not a readable safetensors file ({error})") from error
    if "time_lora_format" not in meta:
        raise ValueError(f"{path.name} was not written by export_lora (no time_lora_format in its metadata)")
    return {
        "format": meta["time_lora_format"],
        "rank": None if meta["time_lora_rank"] == "full" else int(meta["time_lora_rank"]),
        "dtype": meta["time_lora_dtype"],
        "ranks": json.loads(meta["time_lora_ranks"]),
        "full_ranks": json.loads(meta["time_lora_full_ranks"]),
        "errors": json.loads(meta["time_lora_errors"]),
        "max_error": float(meta["time_lora_max_error"]),
        "mean_error": float(meta["time_lora_mean_error"]),
        "edit": json.loads(meta["time_edit"]),
    }
