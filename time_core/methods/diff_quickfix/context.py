"""Diff-QuickFix with automatic preservation: its pairs from the edit's context sets (`time_core.methods.context`).

The same sets as TIME's: the edit's own pairs (augmented as asked), the generalisation pairs, the kept prompts and the
generic captions (unaugmented, every position), every row at weight 1; λ chosen by cross-validation by frame on the
layer's own rows (`solver.cross_validated_lam`), summed over the edited encoders. The text encoder runs only up to
the edited layer, once per fold and kind of pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...solver import cross_validated_lam, smallest_error_lam
from ..context import ContextSet
from .layer import find_projection
from .pairs import preservation_pairs, quickfix_pairs
from .solve import QuickFixProblem

__all__ = ["CV_FOLDS", "context_quickfix"]

CV_FOLDS = 4


def _rows(encoder, tokenizer, path: str, sources, destinations, augment: bool, context: ContextSet):
    """Keys, values and the fold of every row (−1: the edit's own pairs) for one encoder."""
    K, V = quickfix_pairs(encoder, tokenizer, sources, destinations, augment, path)  # (N, d_in), (N, d_out)
    keys, values, folds = [K], [V], [torch.full((K.shape[0],), -1, dtype=torch.long)]
    kept = (*zip(context.keep, context.keep_folds), *zip(context.generic, context.generic_folds))
    for fold in range(CV_FOLDS):
        pairs = [pair for pair, f in zip(context.generalise, context.generalise_folds) if f % CV_FOLDS == fold]
        prompts = [prompt for prompt, f in kept if f % CV_FOLDS == fold]
        for Kf, Vf in (quickfix_pairs(encoder, tokenizer, *zip(*pairs), False, path) if pairs else (None, None),
                       preservation_pairs(encoder, tokenizer, prompts, False, path) if prompts else (None, None)):
            if Kf is not None and Kf.shape[0]:
                keys.append(Kf.to(K.device))
                values.append(Vf.to(V.device))
                folds.append(torch.full((Kf.shape[0],), fold, dtype=torch.long))
    return torch.cat(keys), torch.cat(values), torch.cat(folds)


def context_quickfix(encoders: Sequence[tuple], sources: Sequence[str], destinations: Sequence[str], augment: bool,
                     context: ContextSet) -> tuple[tuple[QuickFixProblem, ...], float | None]:
    """One `QuickFixProblem` per `(component, encoder, tokenizer, path)` of `encoders` over the edit's pairs and its
    context sets, and the cross-validated λ (`None` when the context sets are empty)."""
    problems, errors, lams = [], None, None
    for _, encoder, tokenizer, path in encoders:
        K, V, folds = _rows(encoder, tokenizer, path, sources, destinations, augment, context)
        layer = find_projection(encoder, path)
        problems.append(QuickFixProblem.from_pairs(K, V, layer.weight, layer.bias))
        if (folds >= 0).any():
            W = layer.weight.detach().to(torch.float64)
            R = V.to(torch.float64) - K.to(torch.float64) @ W.T  # (N, d_out): residuals of the unedited layer
            if layer.bias is not None:
                R = R - layer.bias.detach().to(torch.float64)
            if lams is None:  # one grid for every encoder, relative to the first one's keys
                lams = float((K.double() ** 2).sum(dim=1).mean()) * torch.logspace(-6, 3, 37, dtype=torch.float64)
            _, error = cross_validated_lam(K, R, torch.ones(K.shape[0], dtype=torch.float64), folds, lams)
            errors = error if errors is None else errors + error
    if errors is None:
        return tuple(problems), None
    return tuple(problems), smallest_error_lam(lams, errors)
