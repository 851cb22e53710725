"""Diff-QuickFix: a closed-form edit of the text encoder's first self-attention output projection.

Diff-QuickFix (Basu et al., "Localizing and Editing Knowledge in Text-to-Image Generative Models", ICLR 2024) edits
one linear layer of the *text encoder*, the output projection of its first self-attention layer
(`encoder.layers.0.self_attn.out_proj` of a transformers `CLIPTextModel`), so that the source prompt's activations
there become the destination prompt's. It is implemented as the authors' release notebook does, with the bias handled
exactly (the notebook's fit is off by the bias; see `solve`).

- `layer`: finding the layer (`find_projection`, `projection_path`), a weight-edited view of an encoder that never
  writes it (`with_weight`, `encode_with_weight`), the layer's inputs and outputs (`projection_io`);
- `pairs`: the (key, value) pairs (`quickfix_pairs`) and preservation pairs (`preservation_pairs`);
- `solve`: the closed form, factorised once for every λ (`QuickFixProblem`, `solve_quickfix`, `prepare_quickfix`);
- `method`: the registered method (`DiffQuickFixMethod`), its problem (`QuickFixEditProblem`) and edit
  (`QuickFixEdit`: the conditioning `generate` uses, `edited_weights`, edit files); every text encoder of the
  pipeline is edited (both for Stable Diffusion XL).
"""

from .layer import OUT_PROJ_PATH, encode_with_weight, find_projection, projection_io, projection_path, with_weight
from .method import ENCODERS, DiffQuickFixMethod, QuickFixEdit, QuickFixEditProblem, text_encoders
from .pairs import pair_positions, preservation_pairs, quickfix_pairs, tokenize_prompts
from .solve import DEFAULT_LAM, QuickFixProblem, prepare_quickfix, solve_quickfix

__all__ = [
    "DEFAULT_LAM",
    "ENCODERS",
    "OUT_PROJ_PATH",
    "DiffQuickFixMethod",
    "QuickFixEdit",
    "QuickFixEditProblem",
    "QuickFixProblem",
    "encode_with_weight",
    "find_projection",
    "pair_positions",
    "prepare_quickfix",
    "preservation_pairs",
    "projection_io",
    "projection_path",
    "quickfix_pairs",
    "solve_quickfix",
    "text_encoders",
    "tokenize_prompts",
    "with_weight",
]
