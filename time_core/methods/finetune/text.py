"""The text side of the fine-tuning baseline: which text encoders a pipeline has, and the per-token embeddings its
UNet cross-attends to, computed as the pipeline's own `encode_prompt` computes them but with gradients.

- Stable Diffusion 1.x / 2.x: `text_encoder`'s `last_hidden_state` `(P, L, d)`, with the attention mask when the
  encoder's config sets `use_attention_mask`.
- Stable Diffusion XL: the *penultimate* hidden states of `text_encoder` `(P, L, d_1)` and `text_encoder_2`
  `(P, L, d_2)`, each from its own tokenizer, concatenated into `(P, L, d_1 + d_2)` (no attention mask). The pooled
  embedding (the projection of `text_encoder_2`'s final end-of-text state) is not read by cross-attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...models import TEXT_ENCODERS as ENCODERS
from ...models import text_components, text_tokenizer

__all__ = ["ENCODERS", "Tokens", "data_term", "embed", "family", "reads_penultimate", "text_components", "tokenize"]

Tokens = tuple[torch.Tensor, torch.Tensor | None]  # token ids (P, L) and the attention mask (P, L) or None


def family(components: Sequence[str]) -> str:
    """The model family that has these text encoders, for messages."""
    return {1: "Stable Diffusion 1.x / 2.x", 2: "Stable Diffusion XL"}.get(len(components), "no text encoder")


def reads_penultimate(pipe) -> bool:
    """Whether the pipeline feeds the UNet the penultimate hidden states of its encoders (SDXL) rather than the last."""
    from diffusers import StableDiffusionXLPipeline

    return isinstance(pipe, StableDiffusionXLPipeline)


def tokenize(pipe, components: Sequence[str], prompts: Sequence[str]) -> tuple[Tokens, ...]:
    """Per text encoder, the prompts' token ids `(P, L)` padded as the pipeline pads them, and the attention mask
    `(P, L)` when the encoder reads one.

    Raises:
        `UnsupportedModelError`: an encoder of `components` has no tokenizer in the pipeline.
    """
    tokens = []
    for name in components:
        tokenizer = text_tokenizer(pipe, name)
        inputs = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        masked = not reads_penultimate(pipe) and bool(getattr(getattr(pipe, name).config, "use_attention_mask", False))
        tokens.append((inputs.input_ids, inputs.attention_mask if masked else None))
    return tuple(tokens)


def embed(encoders: Sequence[torch.nn.Module], tokens: Sequence[Tokens], penultimate: bool) -> torch.Tensor:
    """The per-token embeddings the UNet cross-attends to (see the module docstring), differentiable.

    Args:
        encoders (`Sequence[torch.nn.Module]`): the text encoders, in `ENCODERS` order.
        tokens (`Sequence[Tokens]`): each encoder's token ids `(P, L)` and attention mask, from `tokenize`.
        penultimate (`bool`): read the penultimate hidden states (SDXL, `reads_penultimate`) instead of the last.

    Returns:
        `torch.Tensor`: `(P, L, w)` with `w` the sum of the encoders' widths, on the first encoder's device.
    """
    parts = []
    for encoder, (ids, mask) in zip(encoders, tokens, strict=True):
        device = next(encoder.parameters()).device
        if penultimate:
            parts.append(encoder(ids.to(device), output_hidden_states=True).hidden_states[-2])  # (P, L, d_k)
        else:
            parts.append(encoder(ids.to(device), attention_mask=None if mask is None else mask.to(device))[0])
    return torch.cat([part.to(parts[0].device) for part in parts], dim=-1)  # (P, L, Σ d_k)


def data_term(embeds: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 4's data term `Σ_i w_i ‖c_i − c*_i‖²` for embeddings and targets `(P, L, d)` and weights `(P, L)`."""
    return (weights * (embeds - targets).square().sum(-1)).sum()
