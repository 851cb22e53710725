"""`FinetuneEdit`: the fine-tuned text encoder(s) of one edit, how `generate` uses them, and their edit files.

The edit applies by encoding the prompts, and the negative / unconditional prompt, through the pipeline's own
`encode_prompt` on a view of the pipeline whose text encoders are the edit's private fine-tuned modules
(`FinetuneEdit.edited_pipeline`): for SDXL both encoders' hidden states and the pooled embedding of the second come
from the fine-tuned copies (SDXL's all-zero unconditional embedding for `negative_prompt=None` stays zero, as in the
pipeline). An edit file holds every fine-tuned encoder's weights as `<component>.<parameter>` (`text_encoder.…`,
`text_encoder_2.…`) and lists the components in its metadata; files written before SDXL was supported hold
`text_encoder`'s weights under their bare names and no component list, and still load.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...edit import BaseEdit, EditFileError, EditRequest, metadata_errors
from ...models import TextConditioning, encode_prompts
from .text import ENCODERS, family, text_components

__all__ = ["DEFAULT_ITERATIONS", "DEFAULT_LEARNING_RATE", "DEFAULT_WEIGHT_DECAY", "FinetuneEdit"]

DEFAULT_ITERATIONS = 4000  # the paper's
DEFAULT_LEARNING_RATE = 0.01  # the paper's
DEFAULT_WEIGHT_DECAY = 1e-3  # η when none is given (the paper sweeps 1e-6 ... 1e6)
LEGACY_COMPONENTS = ("text_encoder",)  # what an edit file without a component list holds


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


@dataclass(frozen=True, eq=False)
class FinetuneEdit(BaseEdit):
    """The fine-tuned text encoder(s) of one edit and what was asked for (see `time_core.methods.finetune`).

    Attributes:
        weights (`dict[str, dict[str, torch.Tensor]]`): per pipeline component (`"text_encoder"`, and
            `"text_encoder_2"` for SDXL, in that order), the fine-tuned encoder's state dict (its own names).
        request (`EditRequest`): the prompts and options (`edit.sources`, ... read through).
        lam (`float`): the weight decay η.
        iterations (`int`), learning_rate (`float`): the Adam settings.
        initial_loss (`float`), final_loss (`float`): the data term before and after training.
        seconds (`float`): the training's wall-clock time.
    """

    method: ClassVar[str] = "finetune"
    component: ClassVar[str] = "text_encoder"

    weights: dict[str, dict[str, torch.Tensor]] = field(repr=False)
    request: EditRequest
    lam: float = DEFAULT_WEIGHT_DECAY
    iterations: int = DEFAULT_ITERATIONS
    learning_rate: float = DEFAULT_LEARNING_RATE
    initial_loss: float = math.nan
    final_loss: float = math.nan
    seconds: float = 0.0
    _encoders: dict = field(default_factory=dict, repr=False)  # component -> private fine-tuned module, built once

    @property
    def components(self) -> tuple[str, ...]:
        """The text encoders the edit replaces: `("text_encoder",)`, or both `("text_encoder", "text_encoder_2")`
        for SDXL."""
        return tuple(self.weights)

    def check_compatible(self, pipe) -> None:
        """Raises `EditFileError` unless `pipe` has the edit's text encoders, with its parameter names and shapes."""
        present = text_components(pipe)
        if present != self.components:
            raise EditFileError(
                f"this fine-tuning edit (model {self.model or 'unknown'}) replaces the text encoder(s) "
                f"{list(self.components)} of {family(self.components)}; the loaded pipeline has {list(present)} "
                f"({family(present)})"
            )
        for name in self.components:
            if _shapes(getattr(pipe, name).state_dict()) != _shapes(self.weights[name]):
                raise EditFileError(f"this fine-tuned {name} (model {self.model or 'unknown'}) does not fit the loaded "
                                    f"model's {name} (other parameter names or shapes)")

    def encoders(self, pipe) -> tuple[torch.nn.Module, ...]:
        """The fine-tuned text encoders, in `components` order: private modules, built once from the architecture of
        the pipeline's encoders, on their devices and in their dtypes."""
        for name in self.components:
            if name not in self._encoders:
                shared = getattr(pipe, name)
                module = copy.deepcopy(shared)
                module.load_state_dict(self.weights[name], assign=True)
                module = module.to(device=shared.device, dtype=shared.dtype)
                self._encoders[name] = module.eval().requires_grad_(False)
        return tuple(self._encoders[name] for name in self.components)

    def edited_pipeline(self, pipe):
        """A view of `pipe` whose text encoders are the fine-tuned ones (`pipe` is never written).

        The view is a shallow copy of the pipeline object: it shares the UNet, VAE, scheduler, tokenizers and config.
        """
        self.check_compatible(pipe)
        view = copy.copy(pipe)
        for name, module in zip(self.components, self.encoders(pipe)):
            # object.__setattr__: the pipeline's own __setattr__ would also register the module in the shared config
            object.__setattr__(view, name, module)
        return view

    def encode(self, pipe, prompts: Sequence[str]) -> torch.Tensor:
        """The prompts' embeddings `(P, L, w)` through the fine-tuned encoder(s), as `pipe.encode_prompt` computes
        them (`w` = 768 for SD 1.x; for SDXL both encoders' hidden states, concatenated)."""
        return encode_prompts(self.edited_pipeline(pipe), list(prompts)).embeds

    def conditioning(
        self, pipe, original: TextConditioning, prompts: Sequence[str], negative_prompt: str | None
    ) -> tuple[TextConditioning, TextConditioning]:
        """The original conditioning, and the prompts and the negative prompt encoded through the fine-tuned
        encoder(s) (the pipeline's own `encode_prompt`, on `edited_pipeline(pipe)`; SDXL's pooled embeddings too)."""
        edited = encode_prompts(self.edited_pipeline(pipe), list(prompts), negative_prompt,
                                with_negative=original.negative is not None)
        return original, edited

    def edited_weights(self, module: torch.nn.Module, component: str | None = None) -> dict[str, torch.Tensor]:
        """The fine-tuned weights of every tensor of the text encoder `module`, keyed by its own names.

        Args:
            module (`torch.nn.Module`): `pipe.text_encoder` (or `pipe.text_encoder_2` for SDXL); not modified.
            component (`str`, *optional*): which of `components` `module` is; by default the one whose parameter
                names and shapes `module` has.

        Raises:
            `EditFileError`: `module` is none of the encoders the edit was fine-tuned from.
            `ValueError`: `component` is not one the edit replaces, or `module` fits several of them.
        """
        if component is not None and component not in self.components:
            raise ValueError(f"this edit replaces {list(self.components)}, not {component!r}")
        shapes = _shapes(module.state_dict())
        chosen = [name for name in ([component] if component else self.components)
                  if _shapes(self.weights[name]) == shapes]
        if not chosen:
            raise EditFileError("the module is not a text encoder this edit was fine-tuned from")
        if len(chosen) > 1:
            raise ValueError(f"the module fits the fine-tuned encoders {chosen}: pass component=")
        return {name: tensor.detach().clone() for name, tensor in self.weights[chosen[0]].items()}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{component}.{name}": tensor for component, state in self.weights.items()
                for name, tensor in state.items()}

    def provenance(self) -> dict[str, str]:
        return {
            "components": json.dumps(list(self.components)), "iterations": str(self.iterations),
            "learning_rate": repr(float(self.learning_rate)), "initial_loss": repr(float(self.initial_loss)),
            "final_loss": repr(float(self.final_loss)), "seconds": repr(float(self.seconds)),
        }

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], name: str) -> FinetuneEdit:
        request, lam = cls.read_common(meta, name)
        if not tensors:
            raise EditFileError(f"{name} holds no text encoder weights")
        if not all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
            raise EditFileError(f"{name}: the text encoder weights contain NaN or infinite values")
        with metadata_errors(name):
            return cls(
                weights=_split_weights(tensors, meta), request=request, lam=lam, iterations=int(meta["iterations"]),
                learning_rate=float(meta["learning_rate"]), initial_loss=float(meta["initial_loss"]),
                final_loss=float(meta["final_loss"]), seconds=float(meta["seconds"]),
            )


def _split_weights(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, dict[str, torch.Tensor]]:
    """An edit file's tensors as `{component: state dict}`: `<component>.<name>` keys under the metadata's component
    list, or, in a file without one (written before SDXL was supported), `text_encoder`'s bare names.

    Raises:
        `ValueError`: an unknown, repeated or empty component, or a tensor of none of them.
    """
    if "components" not in meta:
        return {LEGACY_COMPONENTS[0]: dict(tensors)}
    components = json.loads(meta["components"])
    valid = [[component for component, _ in ENCODERS[:n]] for n in (1, 2)]  # SD 1.x / 2.x, SDXL
    if components not in valid:
        raise ValueError(f"components must list {valid[0]} or {valid[1]}; got {components!r}")
    weights = {c: {k[len(c) + 1:]: t for k, t in tensors.items() if k.startswith(c + ".")} for c in components}
    if any(not state for state in weights.values()) or sum(map(len, weights.values())) != len(tensors):
        raise ValueError(f"every tensor must belong to one of the components {components}, and each must have some")
    return weights
