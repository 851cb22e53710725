"""The (key, value) pairs of Diff-QuickFix: the edited layer's inputs for the source prompts, its outputs for the
destination prompts, at positions counted from each prompt's last token before end-of-text; and preservation pairs.

For a (source, destination) prompt pair, with `L` the context length and `e` the position of a prompt's end-of-text
token, the keys are the layer's inputs `k_j` at the source positions `e_s − 1, …, L − 1` (the last token before
end-of-text, end-of-text and the padding). The values are the layer's outputs `v_j` for the destination at the same
offsets from *its* last token before end-of-text, `min(e_d − 1 + j, L − 1)` (offsets past the end of the context take
the last position). With `augment=True` the pairs of TIME's augmented prompts ("A photo of ", "An image of ",
"A picture of " + prompt) are added. Unlike TIME's, these pairs need no token alignment: any destination works.

A preservation prompt contributes its own inputs at every position as keys, and the layer's own outputs for them as
values, computed in float64 (`W k + b`), so their residual is exactly zero: they only hold the layer where it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...prompts import augment_pairs, check_prompt, preserve_prompts, token_ids
from .layer import OUT_PROJ_PATH, find_projection, projection_io

__all__ = ["pair_positions", "preservation_pairs", "quickfix_pairs", "tokenize_prompts"]


def _context_length(text_encoder: nn.Module, tokenizer) -> int:
    """The tokenizer's `model_max_length`, checked against the encoder's `max_position_embeddings` when it has one."""
    length = int(tokenizer.model_max_length)
    config = getattr(text_encoder, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and length > int(limit):
        raise ValueError(f"the tokenizer pads to {length} tokens but the text encoder reads at most {limit} "
                         "(max_position_embeddings)")
    return length


def tokenize_prompts(tokenizer, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenizes prompts as the pipeline does (padded to `tokenizer.model_max_length`), never truncating.

    Args:
        tokenizer: a `CLIPTokenizer`.
        prompts (`Sequence[str]`): non-empty prompts.

    Returns:
        `input_ids` `(P, L)` and, for each prompt, the position of its last token before end-of-text `(P,)`.

    Raises:
        `PromptError`: for an empty prompt or one longer than the tokenizer's limit.
    """
    prompts = [check_prompt(p) for p in prompts]
    lengths = [len(token_ids(tokenizer, p)) for p in prompts]  # start and end-of-text included
    length = int(tokenizer.model_max_length)
    ids = tokenizer(
        prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
    ).input_ids  # (P, L)
    return ids, torch.tensor([n - 2 for n in lengths], dtype=torch.long)


def pair_positions(source_last: int, destination_last: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The aligned positions of one prompt pair.

    Args:
        source_last (`int`): position of the source's last token before end-of-text.
        destination_last (`int`): the same for the destination.
        length (`int`): the context length `L`.

    Returns:
        source positions `source_last, …, L − 1` and destination positions `min(destination_last + j, L − 1)`,
        both `(L − source_last,)`.
    """
    source_last, destination_last, length = int(source_last), int(destination_last), int(length)
    if not (0 <= source_last < length and 0 <= destination_last < length):
        raise ValueError(f"positions {source_last}, {destination_last} are outside a context of {length} tokens")
    offsets = torch.arange(length - source_last)  # (n,)
    return source_last + offsets, (destination_last + offsets).clamp(max=length - 1)


def _as_prompt_list(prompts: str | Sequence[str], what: str) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError(f"{what} is an empty list")
    return [check_prompt(p, what) for p in prompts]


def quickfix_pairs(
    text_encoder: nn.Module,
    tokenizer,
    sources: str | Sequence[str],
    destinations: str | Sequence[str],
    augment: bool = True,
    path: str = OUT_PROJ_PATH,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (key, value) pairs of Diff-QuickFix: the layer's inputs for the sources, its outputs for the destinations.

    For each prompt pair (and, with `augment`, its three augmentations) the keys are the layer's inputs at the source
    positions `e_s − 1, …, L − 1` and the values its outputs for the destination at `min(e_d − 1 + j, L − 1)` (see
    `pair_positions`), `e` being the end-of-text position. Pairs are concatenated in the order of
    `time_core.prompts.augment_pairs`.

    Args:
        text_encoder (`nn.Module`): a transformers `CLIPTextModel`.
        tokenizer: its `CLIPTokenizer` (`model_max_length` is `L`).
        sources (`str` or `Sequence[str]`): source prompts.
        destinations (`str` or `Sequence[str]`): destination prompts, one per source.
        augment (`bool`, *optional*, defaults to `True`): add the pairs of the augmented prompts.
        path (`str`, *optional*, defaults to `OUT_PROJ_PATH`): the module path of the edited layer.

    Returns:
        `K` `(N, d_in)` and `V` `(N, d_out)`, float64, with `N = Σ (L − e_s + 1)` over the prompt pairs.

    Raises:
        `PromptError`: for an empty or over-long prompt. `ValueError`: for mismatched or empty prompt lists.
    """
    sources = _as_prompt_list(sources, "source")
    destinations = _as_prompt_list(destinations, "destination")
    if len(sources) != len(destinations):
        raise ValueError(f"got {len(sources)} source prompts but {len(destinations)} destination prompts")
    find_projection(text_encoder, path)
    length = _context_length(text_encoder, tokenizer)

    pairs = augment_pairs(sources, destinations, augment)
    prompts = [p for pair in pairs for p in pair]  # s0, d0, s1, d1, ...
    ids, last = tokenize_prompts(tokenizer, prompts)  # (2P, L), (2P,)
    inputs, outputs = projection_io(text_encoder, ids, path)  # (2P, L, d_in), (2P, L, d_out)

    keys, values = [], []
    for p in range(len(pairs)):
        src, dst = pair_positions(last[2 * p], last[2 * p + 1], length)  # (n,), (n,)
        keys.append(inputs[2 * p, src.to(inputs.device)])  # (n, d_in)
        values.append(outputs[2 * p + 1, dst.to(outputs.device)])  # (n, d_out)
    return torch.cat(keys), torch.cat(values)


def preservation_pairs(
    text_encoder: nn.Module,
    tokenizer,
    preserve: str | Sequence[str],
    augment: bool = True,
    path: str = OUT_PROJ_PATH,
    words_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs that keep the layer as it is on `preserve`: its inputs at all `L` positions of each prompt (and, with
    `augment`, of its augmentations) as keys, `W k + b` in float64 as values.

    Args:
        text_encoder (`nn.Module`): the text encoder.
        tokenizer: its tokenizer.
        preserve (`str` or `Sequence[str]`): the prompts (a bare string is one prompt; may be empty).
        augment (`bool`, *optional*, defaults to `True`): add the augmentations of every prompt.
        path (`str`, *optional*, defaults to `OUT_PROJ_PATH`): the module path of the edited layer.
        words_only (`bool`, *optional*, defaults to `False`): keep only the positions from the start token to the
            end-of-text token of each prompt, not its padding. The encoder then reads the prompts cut after the
            longest one's end token: its attention is causal, so these positions' inputs are those of the full
            context.

    Returns:
        `K` `(N, d_in)` and `V` `(N, d_out)`, float64, `N = L ×` the number of prompts (0 for none; with `words_only`,
        the sum of the prompts' token counts).
    """
    preserve = preserve_prompts(preserve)
    layer = find_projection(text_encoder, path)
    W = layer.weight.detach().to(torch.float64)  # (d_out, d_in)
    if not preserve:
        empty = W.new_zeros((0, W.shape[1]))
        return empty, W.new_zeros((0, W.shape[0]))
    _context_length(text_encoder, tokenizer)
    prompts = [p for p, _ in augment_pairs(preserve, preserve, augment)]
    ids, last = tokenize_prompts(tokenizer, prompts)  # (P, L), (P,)
    if words_only:
        counts = last + 2  # start token … end-of-text token
        ids = ids[:, : int(counts.max())]  # (P, T)
    inputs, _ = projection_io(text_encoder, ids, path)  # (P, L or T, d_in)
    if words_only:
        inputs = torch.cat([row[: int(n)] for row, n in zip(inputs, counts)])  # (Σ counts, d_in)
    K = inputs.reshape(-1, inputs.shape[-1])  # (N, d_in)
    V = K @ W.T  # (N, d_out)
    if layer.bias is not None:
        V = V + layer.bias.detach().to(torch.float64)
    return K, V
