"""Edits that travel: any edit as a standard LoRA file (PEFT / diffusers and kohya formats).

- `export_lora(pipe, edit, path, rank=None, lora_format="peft", dtype="float32")` writes the file and returns a
  `LoraExport` (per-layer ranks and relative errors, file size); `read_lora_report(path)` reads them back.
- `layer_factors(pipe, edit, rank=None)` gives the factorised updates themselves (`LayerFactors`).

Layers: `factors` (`ΔW = W′ − W` from `edit.edited_weights`, truncated SVD in float64) ← `formats` (peft / kohya
state dicts) ← `lora` (files and metadata).
"""

from .factors import LayerFactors, layer_factors
from .formats import FORMATS
from .lora import DTYPES, LoraExport, export_lora, read_lora_report

__all__ = ["DTYPES", "FORMATS", "LayerFactors", "LoraExport", "export_lora", "layer_factors", "read_lora_report"]
