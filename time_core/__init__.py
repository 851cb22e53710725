"""TIME: editing implicit assumptions in text-to-image diffusion models (Orgad, Kawar, Belinkov, ICCV 2023).

The public API:

- `load_pipeline(model="toy" | hub id | folder, device=None, dtype=None)`: a diffusers Stable Diffusion pipeline.
- `compute_edit(pipe, source, destination, lam=None, edit_keys=True, augment=True, method="time")`: an `Edit` (TIME:
  the matrix `M` of Eq. 5 and its provenance) or, with `method="diff-quickfix"`, a `QuickFixEdit` (the update of the
  text encoder's first self-attention output projection); the pipeline's weights are never written.
- `compute_edit(..., lam="auto", preserve="auto")`: the knob-free edit — the edit's phrase put into the captions of a
  generic corpus (what must follow, what must keep its value) and λ chosen by cross-validation, no image generated
  (`time_core.methods.context`, docs/knob-free.md).
- `prepare_edit(...)`: the λ-independent problem; `.solve(lam)` gives an edit per λ (cheap λ sweeps), `.solve("auto")`
  the knob-free λ (`.auto_lam`).
- `generate(pipe, prompts, seeds, edit=...)`: original and edited images from one batched call, same seeds.
- `Edit.edited_weights(unet)`, `Edit.save(path)`, `Edit.load(path)`; `load_edit(path)` reads any method's file.

Layers, each importing only the ones before it: the core (`models`, `tokenizer`, `prompts`, `solver`, `attention`,
`edit`, `generate`, `presets`) ← `methods` ← `evaluation` ← `demo` ← the app (`app.py`).
"""

from .edit import BaseEdit, EditFileError
from .generate import GenerationResult, generate
from .methods import METHODS, Edit, EditProblem, QuickFixEdit, compute_edit, load_edit, prepare_edit
from .models import ModelLoadError, UnsupportedModelError, load_pipeline
from .prompts import PromptError

__all__ = [
    "METHODS",
    "BaseEdit",
    "Edit",
    "EditFileError",
    "EditProblem",
    "GenerationResult",
    "ModelLoadError",
    "PromptError",
    "QuickFixEdit",
    "UnsupportedModelError",
    "compute_edit",
    "generate",
    "load_edit",
    "load_pipeline",
    "prepare_edit",
]
