"""The fine-tuning baseline as a registered method: `FinetuneProblem` (the source prompts' tokens and their targets;
`.solve(η)` trains) and `FinetuneMethod`."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...edit import BaseEdit, EditRequest
from ...models import UnsupportedModelError
from ...prompts import augment_pairs, build_pairs
from ...solver import check_lam
from ..base import BaseProblem, EditingMethod
from .edit import DEFAULT_ITERATIONS, DEFAULT_LEARNING_RATE, DEFAULT_WEIGHT_DECAY, FinetuneEdit
from .text import Tokens, data_term, embed, reads_penultimate, text_components, tokenize

__all__ = ["FinetuneMethod", "FinetuneProblem"]


@dataclass(frozen=True, eq=False)
class FinetuneProblem(BaseProblem):
    """The λ-independent part of a fine-tuning edit: the source prompts' token ids and their targets.

    `solve(η)` trains private copies of the text encoder(s) (the cost of the method); each η is trained once and its
    edit kept, so an evaluation that asks again for the same η (another block of seeds) reuses it.
    """

    text_encoders: tuple[torch.nn.Module, ...] = field(repr=False)  # the pipeline's encoders: copied, never written
    components: tuple[str, ...]  # their names: ("text_encoder",), or ("text_encoder", "text_encoder_2") for SDXL
    tokens: tuple[Tokens, ...]  # per encoder: ids (P, L) of the sources (augmentations, preservation prompts), mask
    penultimate: bool  # the UNet reads the encoders' penultimate hidden states (SDXL)
    targets: torch.Tensor  # (P, L, w) float32: the aligned destination embeddings of the original encoder(s)
    weights: torch.Tensor  # (P, L) float32
    initial_loss: float
    request: EditRequest
    iterations: int = DEFAULT_ITERATIONS
    learning_rate: float = DEFAULT_LEARNING_RATE
    _solved: dict = field(default_factory=dict, repr=False)

    def solve(self, lam: float | None = None) -> FinetuneEdit:
        """Fine-tunes copies of the text encoder(s) with weight decay η = `lam` (`None`: `DEFAULT_WEIGHT_DECAY`)."""
        eta = check_lam(DEFAULT_WEIGHT_DECAY if lam is None else lam)
        if eta not in self._solved:
            self._solved[eta] = self._train(eta)
        return self._solved[eta]

    def _train(self, eta: float) -> FinetuneEdit:
        start = time.perf_counter()
        dtypes = [next(encoder.parameters()).dtype for encoder in self.text_encoders]
        # private float32 copies, trained jointly: one Adam over every parameter of every encoder
        encoders = [copy.deepcopy(encoder).float().eval().requires_grad_(True) for encoder in self.text_encoders]
        device = next(encoders[0].parameters()).device
        targets, weights = self.targets.to(device), self.weights.to(device)  # (P, L, w), (P, L)
        parameters = [p for encoder in encoders for p in encoder.parameters()]
        fused = device.type in ("cpu", "cuda")  # the fused kernel: same update, several times faster
        optimizer = torch.optim.Adam(parameters, lr=self.learning_rate, weight_decay=eta, fused=fused)
        with torch.enable_grad():
            for _ in range(self.iterations):
                optimizer.zero_grad(set_to_none=True)
                loss = data_term(embed(encoders, self.tokens, self.penultimate), targets, weights)
                loss.backward()
                optimizer.step()
        del optimizer
        encoders = [encoder.requires_grad_(False).to(dtype) for encoder, dtype in zip(encoders, dtypes)]
        with torch.no_grad():
            final = data_term(embed(encoders, self.tokens, self.penultimate).float(), targets, weights)
        edit = FinetuneEdit(
            weights={name: encoder.state_dict() for name, encoder in zip(self.components, encoders)},
            request=self.request, lam=eta, iterations=self.iterations, learning_rate=self.learning_rate,
            initial_loss=self.initial_loss,
            final_loss=float(final), seconds=time.perf_counter() - start,
        )
        edit._encoders.update(zip(self.components, encoders))
        return edit


class FinetuneMethod(EditingMethod):
    """The fine-tuning baseline (App. G): Adam on the text encoder(s)' parameters; λ is the weight decay η.

    Args:
        iterations (`int`, *optional*, defaults to 4000): Adam iterations per edit (the paper's 4000).
        learning_rate (`float`, *optional*, defaults to 0.01): Adam's learning rate (the paper's).
    """

    name: ClassVar[str] = "finetune"
    label: ClassVar[str] = "Fine-tuning"
    edits: ClassVar[str] = "text encoder, trained"
    closed_form: ClassVar[bool] = False  # an edit trains for thousands of iterations
    lam_weighs_change: ClassVar[bool] = False  # λ is Adam's weight decay η, which pulls θ towards 0
    options: ClassVar[tuple[str, ...]] = ("iterations",)
    default_lam: ClassVar[float] = DEFAULT_WEIGHT_DECAY
    edit_class: ClassVar[type[BaseEdit]] = FinetuneEdit
    summary: ClassVar[str] = ("baseline (App. G): fine-tune the text encoder(s) with Adam on Eq. 4's data term; "
                              "λ is the weight decay η")

    def __init__(self, iterations: int = DEFAULT_ITERATIONS, learning_rate: float = DEFAULT_LEARNING_RATE) -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
        if not (isinstance(learning_rate, (int, float)) and 0 < learning_rate < math.inf):
            raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate!r}")
        self.iterations, self.learning_rate = iterations, float(learning_rate)

    def build(self, pipe, request: EditRequest, edit_keys: bool) -> FinetuneProblem:
        """Encodes the pairs of Eq. 4 with the original encoder(s); see `time_core.compute_edit` for the arguments.

        Raises:
            `UnsupportedModelError`: for a pipeline without `text_encoder`, or with an encoder but not its tokenizer.
        """
        components = text_components(pipe)
        if components[:1] != ("text_encoder",):
            raise UnsupportedModelError("the fine-tuning baseline needs the pipeline's text_encoder and its tokenizer")
        sources, destinations, augment = request.sources, request.destinations, request.augment
        prompts = [s for s, _ in augment_pairs(sources, destinations, augment)
                   + augment_pairs(request.preserve, request.preserve, augment)]
        tokens = tokenize(pipe, components, prompts)  # per encoder: (P, L)
        C, C_star, weights = build_pairs(pipe, sources, destinations, augment, request.preserve,
                                         request.preserve_weight)  # (N, w) ×2
        shape = (*tokens[0][0].shape, C.shape[-1])  # (P, L, w): w the UNet's text width (both encoders for SDXL)
        weights = weights.reshape(shape[:2])
        return FinetuneProblem(
            text_encoders=tuple(getattr(pipe, name) for name in components), components=components, tokens=tokens,
            penultimate=reads_penultimate(pipe), targets=C_star.reshape(shape).float(), weights=weights.float(),
            initial_loss=float(data_term(C.reshape(shape), C_star.reshape(shape), weights)), request=request,
            iterations=self.iterations, learning_rate=self.learning_rate,
        )
