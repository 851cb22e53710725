"""The fine-tuning baseline of the paper's App. G (Table 5): the text encoder trained on Eq. 4's data term.

Instead of a closed-form edit of the UNet's cross-attention, every parameter of the text encoder is optimised with
Adam (learning rate 0.01, 4000 iterations by default) so that the encoder's outputs for the source prompt (and its
augmentations) match the *original* encoder's aligned outputs for the destination, i.e. the data term of Eq. 4 with
λ = 0, summed over all `L` token positions of every prompt pair:

    min_θ  Σ_i w_i ‖f_θ(source)_i − c*_i‖² + (η / 2) ‖θ‖²

with `c*_i` the destination embedding aligned to source position `i` (`time_core.prompts.build_pairs`, the same pairs
and weights TIME solves for, preservation prompts included) and `η` the weight decay of `torch.optim.Adam` (the paper
sweeps η from 1e-6 to 1e6). The method's λ slot carries η: `compute_edit(pipe, s, d, lam=η, method="finetune")`.

Each edit trains a private deep copy of the text encoder (in float32) and never writes the pipeline's weights. The
edit applies by encoding the prompts and the negative / unconditional prompt through its fine-tuned copy
(`FinetuneEdit.conditioning`), exactly as the pipeline's own `encode_prompt` does for Stable Diffusion 1.x / 2.x;
pipelines with two text encoders (SDXL) are not supported. An edit file holds the whole fine-tuned encoder.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..edit import BaseEdit, EditFileError
from ..models import TextConditioning, UnsupportedModelError, model_id
from ..prompts import as_prompts, augment_pairs, build_pairs, is_auto_preserve, preserve_prompts
from ..solver import check_lam
from .base import BaseProblem, EditingMethod

__all__ = ["DEFAULT_ITERATIONS", "DEFAULT_LEARNING_RATE", "DEFAULT_WEIGHT_DECAY", "FinetuneEdit", "FinetuneMethod",
           "FinetuneProblem", "data_term"]

DEFAULT_ITERATIONS = 4000  # the paper's
DEFAULT_LEARNING_RATE = 0.01  # the paper's
DEFAULT_WEIGHT_DECAY = 1e-3  # η when none is given (the paper sweeps 1e-6 ... 1e6)


def _check_single_encoder(pipe) -> None:
    if getattr(pipe, "text_encoder_2", None) is not None or getattr(pipe, "text_encoder", None) is None:
        raise UnsupportedModelError("the fine-tuning baseline supports pipelines with one text encoder (SD 1.x / 2.x)")


def _tokenize(pipe, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token ids `(P, L)` padded as the pipeline pads them, and the attention mask when the encoder reads one."""
    tokenizer = pipe.tokenizer
    inputs = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    use_mask = bool(getattr(pipe.text_encoder.config, "use_attention_mask", False))
    return inputs.input_ids, inputs.attention_mask if use_mask else None


def _run(encoder: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`last_hidden_state` `(P, L, d)` of `encoder` for token ids `(P, L)`."""
    device = next(encoder.parameters()).device
    return encoder(ids.to(device), attention_mask=None if mask is None else mask.to(device))[0]


def data_term(embeds: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 4's data term `Σ_i w_i ‖c_i − c*_i‖²` for embeddings and targets `(P, L, d)` and weights `(P, L)`."""
    return (weights * (embeds - targets).square().sum(-1)).sum()


@dataclass(frozen=True, eq=False)
class FinetuneEdit(BaseEdit):
    """A fine-tuned text encoder and its provenance (see the module docstring).

    Attributes:
        weights (`dict[str, torch.Tensor]`): the fine-tuned encoder's state dict (the pipeline encoder's names).
        lam (`float`): the weight decay η.
        iterations (`int`), learning_rate (`float`): the Adam settings.
        initial_loss (`float`), final_loss (`float`): the data term before and after training.
        seconds (`float`): the training's wall-clock time.
    """

    method: ClassVar[str] = "finetune"
    component: ClassVar[str] = "text_encoder"

    weights: dict[str, torch.Tensor] = field(repr=False)
    sources: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    lam: float = DEFAULT_WEIGHT_DECAY
    augment: bool = True
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    model: str = ""
    iterations: int = DEFAULT_ITERATIONS
    learning_rate: float = DEFAULT_LEARNING_RATE
    initial_loss: float = math.nan
    final_loss: float = math.nan
    seconds: float = 0.0
    _encoder: list = field(default_factory=list, repr=False)  # the private fine-tuned module, built once

    def check_compatible(self, pipe) -> None:
        """Raises `EditFileError` unless `pipe` has one text encoder with the edit's parameter names and shapes."""
        encoders = getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)
        if encoders[0] is None or encoders[1] is not None:
            raise EditFileError("a fine-tuned text encoder applies to pipelines with one text encoder (SD 1.x / 2.x)")
        shapes = {k: tuple(v.shape) for k, v in encoders[0].state_dict().items()}
        if shapes != {k: tuple(v.shape) for k, v in self.weights.items()}:
            raise EditFileError(f"this fine-tuned text encoder (model {self.model or 'unknown'}) does not fit the "
                                "loaded model's text encoder (other parameter names or shapes)")

    def encoder(self, pipe) -> torch.nn.Module:
        """The fine-tuned text encoder: a private module (built from `pipe.text_encoder`'s architecture once)."""
        if not self._encoder:
            module = copy.deepcopy(pipe.text_encoder)
            module.load_state_dict(self.weights, assign=True)
            self._encoder.append(module.eval().requires_grad_(False))
        return self._encoder[0]

    @torch.no_grad()
    def encode(self, pipe, prompts: Sequence[str]) -> torch.Tensor:
        """The prompts' embeddings `(P, L, d)` through the fine-tuned encoder, as `pipe.encode_prompt` computes them."""
        ids, mask = _tokenize(pipe, prompts)
        return _run(self.encoder(pipe), ids, mask).to(dtype=pipe.text_encoder.dtype, device=pipe._execution_device)

    def conditioning(
        self, pipe, original: TextConditioning, prompts: Sequence[str], negative_prompt: str | None
    ) -> tuple[TextConditioning, TextConditioning]:
        """The original conditioning, and the prompts and the negative prompt encoded through the fine-tuned encoder."""
        negative = None
        if original.negative is not None:
            negative = self.encode(pipe, [negative_prompt or ""] * len(prompts))  # (P, L, d)
        return original, TextConditioning(self.encode(pipe, prompts), negative)

    def edited_weights(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The fine-tuned weights of every tensor of the text encoder `module`, keyed by its own names."""
        names = set(module.state_dict())
        if names != set(self.weights):
            raise EditFileError("the module is not the text encoder this edit was fine-tuned from")
        return {k: v.detach().clone() for k, v in self.weights.items()}

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.weights)

    def provenance(self) -> dict[str, str]:
        return {
            "sources": json.dumps(list(self.sources)), "destinations": json.dumps(list(self.destinations)),
            "lam": repr(float(self.lam)), "augment": json.dumps(self.augment),
            "preserve": json.dumps(list(self.preserve)), "preserve_weight": repr(float(self.preserve_weight)),
            "model": self.model, "iterations": str(self.iterations), "learning_rate": repr(float(self.learning_rate)),
            "initial_loss": repr(float(self.initial_loss)), "final_loss": repr(float(self.final_loss)),
            "seconds": repr(float(self.seconds)),
        }

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], name: str) -> FinetuneEdit:
        if not tensors:
            raise EditFileError(f"{name} holds no text encoder weights")
        if not all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
            raise EditFileError(f"{name}: the text encoder weights contain NaN or infinite values")
        try:
            edit = cls(
                weights=dict(tensors), sources=tuple(json.loads(meta["sources"])),
                destinations=tuple(json.loads(meta["destinations"])), lam=check_lam(float(meta["lam"])),
                augment=bool(json.loads(meta["augment"])), preserve=tuple(json.loads(meta["preserve"])),
                preserve_weight=float(meta["preserve_weight"]), model=meta.get("model", ""),
                iterations=int(meta["iterations"]), learning_rate=float(meta["learning_rate"]),
                initial_loss=float(meta["initial_loss"]), final_loss=float(meta["final_loss"]),
                seconds=float(meta["seconds"]),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise EditFileError(f"{name} has invalid edit metadata ({type(error).__name__}: {error})") from error
        if len(edit.sources) != len(edit.destinations) or not edit.sources:
            raise EditFileError(f"{name}: sources and destinations must be non-empty lists of equal length")
        return edit


@dataclass(frozen=True, eq=False)
class FinetuneProblem(BaseProblem):
    """The λ-independent part of a fine-tuning edit: the source prompts' token ids and their targets.

    `solve(η)` trains a private copy of the text encoder (the cost of the method); each η is trained once and its
    edit kept, so an evaluation that asks again for the same η (another block of seeds) reuses it.
    """

    text_encoder: torch.nn.Module = field(repr=False)  # the pipeline's encoder: copied, never written
    input_ids: torch.Tensor  # (P, L) the source prompts (and augmentations, preservation prompts)
    attention_mask: torch.Tensor | None
    targets: torch.Tensor  # (P, L, d) float32: the aligned destination embeddings of the original encoder
    weights: torch.Tensor  # (P, L) float32
    initial_loss: float
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    augment: bool = True
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    model: str = ""
    iterations: int = DEFAULT_ITERATIONS
    learning_rate: float = DEFAULT_LEARNING_RATE
    _solved: dict = field(default_factory=dict, repr=False)

    def solve(self, lam: float | None = None) -> FinetuneEdit:
        """Fine-tunes a copy of the text encoder with weight decay η = `lam` (`None`: `DEFAULT_WEIGHT_DECAY`)."""
        eta = check_lam(DEFAULT_WEIGHT_DECAY if lam is None else lam)
        if eta not in self._solved:
            self._solved[eta] = self._train(eta)
        return self._solved[eta]

    def _train(self, eta: float) -> FinetuneEdit:
        start = time.perf_counter()
        dtype = next(self.text_encoder.parameters()).dtype
        encoder = copy.deepcopy(self.text_encoder).float().eval().requires_grad_(True)  # private, float32
        device = next(encoder.parameters()).device
        targets, weights = self.targets.to(device), self.weights.to(device)
        fused = device.type in ("cpu", "cuda")  # the fused kernel: same update, several times faster
        optimizer = torch.optim.Adam(encoder.parameters(), lr=self.learning_rate, weight_decay=eta, fused=fused)
        with torch.enable_grad():
            for _ in range(self.iterations):
                optimizer.zero_grad(set_to_none=True)
                loss = data_term(_run(encoder, self.input_ids, self.attention_mask), targets, weights)
                loss.backward()
                optimizer.step()
        del optimizer
        encoder = encoder.requires_grad_(False).to(dtype)
        with torch.no_grad():
            final = data_term(_run(encoder, self.input_ids, self.attention_mask).float(), targets, weights)
        edit = FinetuneEdit(
            weights=encoder.state_dict(), sources=self.sources, destinations=self.destinations, lam=eta,
            augment=self.augment, preserve=self.preserve, preserve_weight=self.preserve_weight, model=self.model,
            iterations=self.iterations, learning_rate=self.learning_rate, initial_loss=self.initial_loss,
            final_loss=float(final), seconds=time.perf_counter() - start,
        )
        edit._encoder.append(encoder)
        return edit


class FinetuneMethod(EditingMethod):
    """The fine-tuning baseline (App. G): Adam on the text encoder's parameters; λ is the weight decay η.

    Args:
        iterations (`int`, *optional*, defaults to 4000): Adam iterations per edit (the paper's 4000).
        learning_rate (`float`, *optional*, defaults to 0.01): Adam's learning rate (the paper's).
    """

    name: ClassVar[str] = "finetune"
    default_lam: ClassVar[float] = DEFAULT_WEIGHT_DECAY
    edit_class: ClassVar[type[BaseEdit]] = FinetuneEdit
    summary: ClassVar[str] = ("baseline (App. G): fine-tune the text encoder with Adam on Eq. 4's data term; "
                              "λ is the weight decay η")

    def __init__(self, iterations: int = DEFAULT_ITERATIONS, learning_rate: float = DEFAULT_LEARNING_RATE) -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
        if not (isinstance(learning_rate, (int, float)) and 0 < learning_rate < math.inf):
            raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate!r}")
        self.iterations, self.learning_rate = iterations, float(learning_rate)

    def prepare(
        self,
        pipe,
        source: str | Sequence[str],
        destination: str | Sequence[str],
        edit_keys: bool = True,
        augment: bool = True,
        preserve: str | Sequence[str] = (),
        preserve_weight: float = 1.0,
    ) -> FinetuneProblem:
        """Encodes the pairs of Eq. 4 with the original encoder; see `time_core.compute_edit` for the arguments.

        Raises:
            `ValueError`: for `edit_keys=False` (this method edits no UNet projection) or `preserve="auto"`.
            `UnsupportedModelError`: for a pipeline with two text encoders.
        """
        sources = as_prompts(source, "source")
        destinations = as_prompts(destination, "destination")
        if len(sources) != len(destinations):
            raise ValueError(f"got {len(sources)} source prompts but {len(destinations)} destination prompts")
        if not edit_keys:
            raise ValueError("the fine-tuning baseline edits the text encoder: edit_keys=False (values only) does not apply")
        if is_auto_preserve(preserve):
            raise ValueError("preserve='auto' is not available for the fine-tuning baseline; list the prompts to keep")
        _check_single_encoder(pipe)
        preserve, preserve_weight = preserve_prompts(preserve), float(preserve_weight)
        if not (0 <= preserve_weight < math.inf):
            raise ValueError(f"preserve_weight must be finite and >= 0, got {preserve_weight}")
        C, C_star, weights = build_pairs(pipe, sources, destinations, augment, preserve, preserve_weight)  # (N, d) ×2
        prompts = [s for s, _ in augment_pairs(sources, destinations, augment) + augment_pairs(preserve, preserve, augment)]
        ids, mask = _tokenize(pipe, prompts)  # (P, L)
        shape = (*ids.shape, C.shape[-1])  # (P, L, d)
        weights = weights.reshape(shape[:2])
        return FinetuneProblem(
            text_encoder=pipe.text_encoder, input_ids=ids, attention_mask=mask,
            targets=C_star.reshape(shape).float(), weights=weights.float(),
            initial_loss=float(data_term(C.reshape(shape), C_star.reshape(shape), weights)),
            sources=sources, destinations=destinations, augment=bool(augment), preserve=preserve,
            preserve_weight=preserve_weight, model=model_id(pipe), iterations=self.iterations,
            learning_rate=self.learning_rate,
        )
