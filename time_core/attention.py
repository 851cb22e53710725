"""Value-only edits without writing weights: cross-attention whose keys and values read different embeddings.

A value-only TIME edit changes `attn2.to_v` to `W_V · M` and keeps `attn2.to_k`. Equivalently, the keys read `c`
and the values read `M c`. `SplitKeyValueProcessor` wraps a layer's own attention processor: when the text
embeddings it receives have width `2 d` (`[c, M c]` concatenated on the last axis), `to_k` reads the first half
and `to_v` the second; at width `d` it is the wrapped processor, unchanged. Installing it therefore changes
nothing for ordinary calls, and no weight is ever written.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import cross_attention_layers

__all__ = ["SplitKeyValueProcessor", "install_split_processors", "split_key_value"]


class _SplitProjections:
    """A view of an `Attention` module whose `to_k` / `to_v` read the two halves of a `2 d`-wide input."""

    def __init__(self, attn: nn.Module, width: int):
        self._attn = attn
        self._width = width

    def __getattr__(self, name: str):
        return getattr(self._attn, name)

    def to_k(self, x: torch.Tensor) -> torch.Tensor:
        return self._attn.to_k(x[..., : self._width])  # keys read c

    def to_v(self, x: torch.Tensor) -> torch.Tensor:
        return self._attn.to_v(x[..., self._width :])  # values read M c


class SplitKeyValueProcessor:
    """Runs `processor` with keys from the first and values from the second half of `2 d`-wide text embeddings.

    Args:
        processor: the attention processor to wrap (the layer's current one).
        width (`int`): `d`, the `in_features` of the layer's `to_k` / `to_v`.
    """

    def __init__(self, processor, width: int):
        self.processor = processor
        self.width = width

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None and encoder_hidden_states.shape[-1] == 2 * self.width:
            attn = _SplitProjections(attn, self.width)
        return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


def install_split_processors(unet: nn.Module) -> int:
    """Wraps the processor of every `attn2` layer in `SplitKeyValueProcessor` (idempotent). Returns the layer count."""
    layers = cross_attention_layers(unet)
    for module in layers.values():
        if not isinstance(module.processor, SplitKeyValueProcessor):
            module.set_processor(SplitKeyValueProcessor(module.processor, module.to_k.in_features))
    return len(layers)


def split_key_value(keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`[keys, values]` concatenated on the last axis: `(..., d)` ×2 → `(..., 2 d)`."""
    return torch.cat([keys, values], dim=-1)
