"""Diff-QuickFix as a registered method: `QuickFixEdit` (what `generate`, edit files and the demo use),
`QuickFixEditProblem` (one factorisation per text encoder, `.solve(lam)` per λ) and `DiffQuickFixMethod`.

Every text encoder of the pipeline is edited: `text_encoder` (SD 1.x / 2.x), and `text_encoder` and `text_encoder_2`
for Stable Diffusion XL, each in the output projection of its own first self-attention layer, with pairs from its own
tokenizer. An edit stores the updates `ΔW = W' − W` (float64) and applies them by encoding the prompts, and the
negative / unconditional prompt, through the pipeline's own `encode_prompt` on a view of the pipeline whose text
encoders are weight-edited views (`time_core.methods.diff_quickfix.layer.with_weight`); SDXL's pooled embeddings come
from the edited second encoder, as in the pipeline. No weight of the pipeline is ever written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from ...edit import BaseEdit, EditFileError, read_auto_preserve, read_flag
from ...models import TEXT_ENCODERS as ENCODERS
from ...models import (
    TextConditioning,
    UnsupportedModelError,
    encode_prompts,
    model_id,
    text_components,
    text_tokenizer,
    text_width,
)
from ...prompts import as_prompts, check_preserve_weight, is_auto_preserve, preserve_prompts
from ...solver import check_lam, is_auto
from ..base import BaseProblem, EditingMethod
from .layer import find_projection, projection_path, with_weight
from .solve import DEFAULT_LAM, QuickFixProblem, prepare_quickfix

__all__ = ["ENCODERS", "DiffQuickFixMethod", "QuickFixEdit", "QuickFixEditProblem", "text_encoders"]

def text_encoders(pipe) -> list[tuple[str, torch.nn.Module, object, str]]:
    """`(component, encoder, tokenizer, layer path)` for every text encoder of the pipeline, in `ENCODERS` order.

    Raises:
        `UnsupportedModelError`: the pipeline has no text encoder, one without its tokenizer, or one without the
            layer Diff-QuickFix edits.
    """
    found = [(name, getattr(pipe, name), text_tokenizer(pipe, name), projection_path(getattr(pipe, name)))
             for name in text_components(pipe)]
    if not found:
        raise UnsupportedModelError("the pipeline has no text encoder for Diff-QuickFix to edit")
    return found


@dataclass(frozen=True)
class QuickFixEdit(BaseEdit):
    """A Diff-QuickFix edit: the update of one linear layer per text encoder, and its provenance.

    Attributes:
        layers (`tuple[tuple[str, str], ...]`): `(component, module path)` of each edited layer, e.g.
            `("text_encoder", "encoder.layers.0.self_attn.out_proj")`.
        deltas (`tuple[torch.Tensor, ...]`): `ΔW = W' − W` of each layer, `(d_out, d_in)`, float64.
        sources (`tuple[str, ...]`), destinations (`tuple[str, ...]`): the prompt pairs.
        lam (`float`): λ.
        augment (`bool`): whether the prompt augmentations were used.
        preserve (`tuple[str, ...]`), preserve_weight (`float`): preservation prompts and their weight.
        text_width (`int`): the width of the text embeddings of the model (the UNet's `cross_attention_dim`).
        model (`str`): the model the edit was computed on (informative).
        auto_preserve (`bool`): whether `preserve` and its weight were derived (`preserve="auto"`; the weight is the
            first encoder's); such an edit is reproduced by asking for `"auto"` again, not by listing its prompts.
    """

    method: ClassVar[str] = "diff-quickfix"
    component: ClassVar[str] = "text_encoder"

    layers: tuple[tuple[str, str], ...]
    deltas: tuple[torch.Tensor, ...]
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    lam: float
    augment: bool = True
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    text_width: int = 0
    model: str = ""
    auto_preserve: bool = False
    lam_auto: bool = False
    context: str = ""

    @property
    def components(self) -> tuple[str, ...]:
        """The pipeline components the edit changes: `("text_encoder",)`, or both encoders of SDXL."""
        return tuple(component for component, _ in self.layers)

    def check_compatible(self, pipe) -> None:
        """Raises `EditFileError` unless the pipeline has the same text width, the same text encoders, and the edited
        layers with the edit's shapes."""
        width = text_width(pipe)
        if width != self.text_width:
            raise EditFileError(
                f"this edit was computed for text width {self.text_width} (model {self.model or 'unknown'}); "
                f"the loaded model has text width {width}"
            )
        present = text_components(pipe)
        if present != self.components:
            raise EditFileError(
                f"this edit changes the text encoder(s) {list(self.components)}; the loaded pipeline has {list(present)}"
            )
        for (component, path), delta in zip(self.layers, self.deltas):
            try:
                layer = find_projection(getattr(pipe, component), path)
            except UnsupportedModelError as error:
                raise EditFileError(f"this edit does not fit the loaded {component}: {error}") from None
            if tuple(layer.weight.shape) != tuple(delta.shape):
                raise EditFileError(
                    f"this edit changes {component}.{path} of shape {tuple(delta.shape)}; the loaded model's has "
                    f"shape {tuple(layer.weight.shape)}"
                )

    def _weight(self, encoder: torch.nn.Module, path: str, delta: torch.Tensor) -> torch.Tensor:
        """`W + ΔW`, computed in float64 and returned in the layer's dtype and device."""
        W = find_projection(encoder, path).weight.detach()  # (d_out, d_in)
        return (W.to(torch.float64) + delta.to(W.device)).to(W.dtype)

    def edited_pipeline(self, pipe):
        """A view of `pipe` whose text encoders are the edited ones (weight-edited views; `pipe` is never written).

        The view is a shallow copy of the pipeline object: it shares the UNet, VAE, scheduler, tokenizers and config.
        `edited_pipeline(pipe)(prompt)` generates with the edited model; its `encode_prompt` is the pipeline's own.
        """
        self.check_compatible(pipe)
        view = copy.copy(pipe)
        for (component, path), delta in zip(self.layers, self.deltas):
            encoder = getattr(pipe, component)
            # object.__setattr__: the pipeline's own __setattr__ would also register the module in the shared config
            object.__setattr__(view, component, with_weight(encoder, self._weight(encoder, path, delta), path))
        return view

    def conditioning(
        self, pipe, original: TextConditioning, prompts: Sequence[str], negative_prompt: str | None
    ) -> tuple[TextConditioning, TextConditioning]:
        """The original conditioning, and the prompts and the negative prompt encoded through the edited encoder(s)
        (the pipeline's own `encode_prompt`, on `edited_pipeline(pipe)`)."""
        edited = encode_prompts(self.edited_pipeline(pipe), list(prompts), negative_prompt,
                                with_negative=original.negative is not None)
        return original, edited

    def edited_weights(self, module: torch.nn.Module, component: str | None = None) -> dict[str, torch.Tensor]:
        """The classic weight edit of one text encoder: `{"<path>.weight": W + ΔW}`, in the weight's dtype.

        Keys are the encoder's own parameter names, so `encoder.load_state_dict(edit.edited_weights(encoder),
        strict=False)` gives the weight-edited encoder. The encoder is not modified.

        Args:
            module (`torch.nn.Module`): `pipe.text_encoder` (or `pipe.text_encoder_2` for SDXL).
            component (`str`, *optional*): which of `components` `module` is; by default the one whose layer path
                and shape `module` has.

        Raises:
            `EditFileError`: `module` has none of the edited layers (another layout or width).
            `ValueError`: `component` is not one the edit changes, or `module` fits several of them.
        """
        if component is not None:
            if component not in self.components:
                raise ValueError(f"this edit changes {list(self.components)}, not {component!r}")
            chosen = [i for i, c in enumerate(self.components) if c == component]
        else:
            chosen = [i for i, ((_, path), delta) in enumerate(zip(self.layers, self.deltas))
                      if _fits(module, path, delta)]
            if len(chosen) > 1:
                raise ValueError(f"the module fits the edited layers of {list(self.components)}: pass component=")
        if not chosen or not _fits(module, self.layers[chosen[0]][1], self.deltas[chosen[0]]):
            wanted = ", ".join(f"{c}.{p} {tuple(d.shape)}" for (c, p), d in zip(self.layers, self.deltas))
            raise EditFileError(f"this {type(module).__name__} has none of the layers this edit changes ({wanted})")
        _, path = self.layers[chosen[0]]
        return {f"{path}.weight": self._weight(module, path, self.deltas[chosen[0]])}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {component: delta.to(torch.float64) for (component, _), delta in zip(self.layers, self.deltas)}

    def provenance(self) -> dict[str, str]:
        return {
            "sources": json.dumps(list(self.sources)),
            "destinations": json.dumps(list(self.destinations)),
            "lam": repr(float(self.lam)),
            "augment": json.dumps(self.augment),
            "preserve": json.dumps(list(self.preserve)),
            "preserve_weight": repr(float(self.preserve_weight)),
            "auto_preserve": json.dumps(self.auto_preserve),
            "lam_auto": json.dumps(self.lam_auto),
            "context": self.context,
            "layers": json.dumps(dict(self.layers)),
            "text_width": str(self.text_width),
            "model": self.model,
        }

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], name: str) -> QuickFixEdit:
        try:
            layers = json.loads(meta["layers"])
            if not isinstance(layers, dict) or not all(isinstance(v, str) for v in layers.values()):
                raise ValueError("layers must map component names to module paths")
            edit = cls(
                layers=tuple(layers.items()),
                deltas=tuple(tensors[c].to(torch.float64) for c in layers if c in tensors),
                sources=tuple(json.loads(meta["sources"])),
                destinations=tuple(json.loads(meta["destinations"])),
                lam=check_lam(float(meta["lam"])),
                augment=bool(json.loads(meta["augment"])),
                preserve=tuple(json.loads(meta["preserve"])),
                preserve_weight=check_preserve_weight(float(meta["preserve_weight"])),
                text_width=int(meta["text_width"]),
                model=meta.get("model", ""),
                auto_preserve=read_auto_preserve(meta),
                lam_auto=read_flag(meta, "lam_auto"),
                context=meta.get("context", ""),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise EditFileError(f"{name} has invalid edit metadata ({type(error).__name__}: {error})") from error
        known = {component for component, _ in ENCODERS}
        if not edit.layers or set(tensors) != set(edit.components) or not set(edit.components) <= known:
            raise EditFileError(
                f"{name} must hold one tensor per edited text encoder ({sorted(edit.components)}), found {sorted(tensors)}"
            )
        for component, delta in zip(edit.components, edit.deltas):
            if delta.ndim != 2:
                raise EditFileError(f"{name}: the update of {component} has shape {tuple(delta.shape)}, expected 2-D")
            if not bool(torch.isfinite(delta).all()):
                raise EditFileError(f"{name}: the update of {component} contains NaN or infinite values")
        if len(edit.sources) != len(edit.destinations) or not edit.sources:
            raise EditFileError(f"{name}: sources and destinations must be non-empty lists of equal length")
        return edit


def _fits(module: torch.nn.Module, path: str, delta: torch.Tensor) -> bool:
    try:
        return tuple(find_projection(module, path).weight.shape) == tuple(delta.shape)
    except UnsupportedModelError:
        return False


@dataclass(frozen=True)
class QuickFixEditProblem(BaseProblem):
    """The λ-independent part of a Diff-QuickFix edit: one `QuickFixProblem` per edited text encoder.

    `solve(lam)` costs one `(d_out, r) × (r, d_in)` product per encoder, so λ sweeps reuse one factorisation.
    """

    layers: tuple[tuple[str, str], ...]
    problems: tuple[QuickFixProblem, ...]
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    augment: bool = True
    preserve: tuple[str, ...] = ()
    preserve_weight: float = 1.0
    text_width: int = 0
    model: str = ""
    auto_preserve: bool = False
    auto_lam: float | None = None
    context: str = ""

    @property
    def num_pairs(self) -> int:
        """The (key, value) pairs of the first encoder's solve."""
        return self.problems[0].num_pairs

    def solve(self, lam: float | str | None = None) -> QuickFixEdit:
        """The `QuickFixEdit` for one λ (`None`: 0.01, the authors' value; `"auto"`: `auto_lam`, chosen for this edit)."""
        lam_auto = is_auto(lam)
        if lam_auto and self.auto_lam is None:
            raise ValueError("lam='auto' needs preserve='auto' and a corpus caption that fits this edit (the source "
                             "and the destination must start with the same article); give λ as a number")
        lam = self.auto_lam if lam_auto else check_lam(DEFAULT_LAM if lam is None else lam)
        return QuickFixEdit(
            layers=self.layers,
            deltas=tuple(problem.update(lam) for problem in self.problems),
            sources=self.sources,
            destinations=self.destinations,
            lam=lam,
            augment=self.augment,
            preserve=self.preserve,
            preserve_weight=self.preserve_weight,
            text_width=self.text_width,
            model=self.model,
            auto_preserve=self.auto_preserve,
            lam_auto=lam_auto,
            context=self.context,
        )


class DiffQuickFixMethod(EditingMethod):
    """Diff-QuickFix: the output projection of the first self-attention layer of every text encoder, in closed form."""

    name: ClassVar[str] = "diff-quickfix"
    default_lam: ClassVar[float] = DEFAULT_LAM
    edit_class: ClassVar[type[BaseEdit]] = QuickFixEdit
    summary: ClassVar[str] = "Diff-QuickFix (Basu et al., ICLR 2024): first self-attention out_proj of the text encoder"
    features: ClassVar[frozenset[str]] = frozenset({"auto_preserve", "auto_lam"})

    def prepare(
        self,
        pipe,
        source: str | Sequence[str],
        destination: str | Sequence[str],
        edit_keys: bool = True,
        augment: bool = True,
        preserve: str | Sequence[str] = (),
        preserve_weight: float = 1.0,
    ) -> QuickFixEditProblem:
        """Collects the pairs of every text encoder and factorises each solve; see `time_core.compute_edit`.

        Raises:
            `ValueError`: `edit_keys=False` (a TIME option: Diff-QuickFix has no keys and values to choose between),
                lists of different lengths, a bad weight. `preserve="auto"` solves over the edit's context sets
                (`time_core.methods.context`, `diff_quickfix.context`; `preserve_weight` is ignored) and chooses the
                problem's `auto_lam` for `solve("auto")`.
            `PromptError`: an empty or over-long prompt.
        """
        if not edit_keys:
            raise ValueError(
                "edit_keys=False (a value-only edit) is an option of TIME's cross-attention edit; diff-quickfix edits "
                "one text-encoder layer and has no keys or values to choose between"
            )
        sources = as_prompts(source, "source")
        destinations = as_prompts(destination, "destination")
        if len(sources) != len(destinations):
            raise ValueError(f"got {len(sources)} source prompts but {len(destinations)} destination prompts")
        auto = is_auto_preserve(preserve)
        encoders = text_encoders(pipe)
        auto_lam, context = None, None
        if auto:
            from ..context import context_set, load_corpus
            from .context import context_quickfix

            context = context_set(pipe, load_corpus(pipe), sources, destinations)
            problems, auto_lam = context_quickfix(encoders, sources, destinations, bool(augment), context)
            preserve, preserve_weight = context.keep, 1.0
        else:
            preserve = preserve_prompts(preserve)
            preserve_weight = check_preserve_weight(preserve_weight)
            problems = tuple(
                prepare_quickfix(encoder, tokenizer, sources, destinations, bool(augment), path, preserve,
                                 preserve_weight)
                for _, encoder, tokenizer, path in encoders
            )
        return QuickFixEditProblem(
            layers=tuple((name, path) for name, _, _, path in encoders),
            problems=problems,
            sources=sources,
            destinations=destinations,
            augment=bool(augment),
            preserve=preserve,
            preserve_weight=preserve_weight,
            text_width=text_width(pipe),
            model=model_id(pipe),
            auto_preserve=auto,
            auto_lam=auto_lam,
            context=context.summary() if context is not None else "",
        )
