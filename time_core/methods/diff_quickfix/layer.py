"""The layer Diff-QuickFix edits, and running a text encoder as if that layer had another weight, without writing it.

`with_weight` builds a *view* of the encoder: new module objects that share every parameter and buffer of the
encoder, in which the edited layer holds the new weight. The encoder itself is never touched, not even temporarily
(as `torch.func.functional_call` would, by swapping tensors for the duration of a call) and not by hooks: output
capturing hooks that transformers installs on a model the first time hidden states are asked for land on the view's
own module objects. Concurrent sessions may therefore share one encoder while some of them encode through an edit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ...models import UnsupportedModelError

__all__ = ["OUT_PROJ_PATH", "find_projection", "encode_with_weight", "projection_io", "projection_path", "with_weight"]

# transformers 5's `CLIPTextModel`; a `CLIPTextModelWithProjection` (SDXL's second encoder) has it under `text_model.`
OUT_PROJ_PATH = "encoder.layers.0.self_attn.out_proj"
_PREFIXES = ("", "text_model.")


def find_projection(text_encoder: nn.Module, path: str = OUT_PROJ_PATH) -> nn.Linear:
    """The linear layer that Diff-QuickFix edits, found by module path.

    Args:
        text_encoder (`nn.Module`): a transformers `CLIPTextModel` (or any module with a linear layer at `path`).
        path (`str`, *optional*, defaults to `OUT_PROJ_PATH`): the layer's module path inside `text_encoder`
            (`"text_model.encoder.layers.0.self_attn.out_proj"` for a `CLIPTextModelWithProjection`).

    Raises:
        `UnsupportedModelError`: when there is no `nn.Linear` at `path`.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"path must be a non-empty module path, got {path!r}")
    try:
        module = text_encoder.get_submodule(path)
    except AttributeError:
        raise UnsupportedModelError(
            f"the text encoder ({type(text_encoder).__name__}) has no module {path!r}; Diff-QuickFix edits the output "
            "projection of its first self-attention layer"
        ) from None
    if not isinstance(module, nn.Linear):
        raise UnsupportedModelError(f"{path} of the text encoder is a {type(module).__name__}, not a linear layer")
    return module


def projection_path(text_encoder: nn.Module) -> str:
    """The module path of the first self-attention output projection: `OUT_PROJ_PATH`, or `"text_model." +
    OUT_PROJ_PATH` in an encoder with a projection head.

    Raises:
        `UnsupportedModelError`: when neither path holds a linear layer.
    """
    for prefix in _PREFIXES:
        path = prefix + OUT_PROJ_PATH
        try:
            if isinstance(text_encoder.get_submodule(path), nn.Linear):
                return path
        except AttributeError:
            continue
    tried = " or ".join(repr(prefix + OUT_PROJ_PATH) for prefix in _PREFIXES)
    raise UnsupportedModelError(
        f"the text encoder ({type(text_encoder).__name__}) has no linear layer at {tried}; Diff-QuickFix edits the "
        "output projection of the first self-attention layer of a CLIP text encoder"
    )


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A new module object of the same class sharing every tensor and child, with its own containers.

    Its `_modules`, `_parameters`, hook dictionaries etc. are copies, so that replacing a child or a parameter, or
    registering a hook, on the copy never reaches `module`.

    Raises:
        `UnsupportedModelError`: when the module's `forward` was replaced on the instance (accelerate's offload and
            device-map hooks do this): the copy would run the original module.
    """
    if "forward" in module.__dict__:
        raise UnsupportedModelError(
            f"a {type(module).__name__} of the text encoder has a wrapped forward (accelerate offload or device-map "
            "hooks); Diff-QuickFix cannot run an edited view of it, load the pipeline without offloading"
        )
    new = module.__class__.__new__(module.__class__)
    new.__dict__.update(
        {
            key: (copy.copy(value) if isinstance(value, (dict, set, list)) else value)
            for key, value in module.__dict__.items()
        }
    )
    return new


def _view(root: nn.Module, path: str, make_leaf: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """A view of `root`: every module a new object (sharing all parameters and buffers), the module at `path`
    replaced by `make_leaf(that module)`. `root` itself is left untouched."""
    copies: dict[int, nn.Module] = {}  # a module reached twice stays one module in the view

    def copy_tree(module: nn.Module, prefix: str) -> nn.Module:
        if id(module) in copies:
            return copies[id(module)]
        new = make_leaf(module) if prefix == path else _shallow_copy(module)
        copies[id(module)] = new
        if prefix != path:
            for name, child in module._modules.items():
                if child is not None:
                    new._modules[name] = copy_tree(child, f"{prefix}.{name}" if prefix else name)
        return new

    return copy_tree(root, "")


def with_weight(text_encoder: nn.Module, weight: torch.Tensor, path: str = OUT_PROJ_PATH) -> nn.Module:
    """A view of the text encoder whose layer at `path` uses `weight`; the encoder itself is not modified.

    The view is made of new module objects that share every parameter and buffer with `text_encoder` (it costs
    object copies, not memory). Unlike `torch.func.functional_call`, which swaps the tensors of the shared module for
    the duration of the call, nothing of `text_encoder` is touched, even temporarily, so other threads may use it at
    the same time.

    Args:
        text_encoder (`nn.Module`): the text encoder.
        weight (`torch.Tensor`): the new weight `(d_out, d_in)`; cast to the layer's dtype and device.
        path (`str`, *optional*, defaults to `OUT_PROJ_PATH`): the layer's module path.

    Returns:
        `nn.Module`: call it like the text encoder. Do not train it or move it (`.to`) — that would act on the
        shared parameters.
    """
    layer = find_projection(text_encoder, path)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != tuple(layer.weight.shape):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must have the shape {tuple(layer.weight.shape)} of {path}, got {shape}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("weight contains NaN or infinite values")
    weight = weight.to(device=layer.weight.device, dtype=layer.weight.dtype)  # (d_out, d_in)

    def make_leaf(original: nn.Module) -> nn.Module:
        leaf = _shallow_copy(original)
        leaf._parameters["weight"] = weight
        return leaf

    return _view(text_encoder, path, make_leaf)


def _encode(text_encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """`last_hidden_state` as the pipelines read it (`text_encoder(ids, attention_mask=...)[0]`)."""
    outputs = text_encoder(
        input_ids, attention_mask=attention_mask, output_hidden_states=False, output_attentions=False
    )
    return outputs[0]


def encode_with_weight(
    text_encoder: nn.Module,
    input_ids: torch.Tensor,
    weight: torch.Tensor,
    path: str = OUT_PROJ_PATH,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Encodes token ids with the text encoder as if the layer at `path` had the weight `weight`.

    Safe for concurrent use: the encoder's modules and parameters are never written, no hook is installed (see
    `with_weight`). Use it for the prompts and for the negative / unconditional prompt alike.

    Args:
        text_encoder (`nn.Module`): a transformers `CLIPTextModel`.
        input_ids (`torch.LongTensor`): token ids `(B, L)`, e.g. from `tokenize_prompts`.
        weight (`torch.Tensor`): the edited weight `W'` `(d_out, d_in)`, e.g. from `QuickFixProblem.solve`.
        path (`str`, *optional*, defaults to `OUT_PROJ_PATH`): the module path of the edited layer.
        attention_mask (`torch.Tensor`, *optional*): passed to the encoder (pipelines pass one only when the encoder's
            config sets `use_attention_mask`).

    Returns:
        `torch.Tensor`: `last_hidden_state` `(B, L, hidden_size)`.
    """
    view = with_weight(text_encoder, weight, path)
    device = find_projection(text_encoder, path).weight.device
    mask = None if attention_mask is None else attention_mask.to(device)
    return _encode(view, input_ids.to(device), mask)


@torch.no_grad()
def projection_io(
    text_encoder: nn.Module, input_ids: torch.Tensor, path: str = OUT_PROJ_PATH
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and outputs of the layer at `path` when the text encoder reads `input_ids`, in float64.

    They are recorded by a forward hook on a private copy of the layer inside a view of the encoder (see
    `with_weight`), so the encoder itself gets no hook, even temporarily. The hook ends the forward pass there: the
    layers after it are never run.

    Args:
        text_encoder (`nn.Module`): the text encoder.
        input_ids (`torch.LongTensor`): token ids `(P, L)`.
        path (`str`, *optional*, defaults to `OUT_PROJ_PATH`): the layer's module path.

    Returns:
        inputs `(P, L, d_in)` and outputs `(P, L, d_out)`, float64.
    """
    layer = find_projection(text_encoder, path)
    records: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, args, kwargs, output):
        inputs = args[0] if args else kwargs["input"]
        records.append((inputs.detach().to(torch.float64), output.detach().to(torch.float64)))
        raise _Recorded  # nothing after the layer is needed

    def make_leaf(original: nn.Module) -> nn.Module:
        leaf = _shallow_copy(original)  # its own hook dictionaries
        leaf.register_forward_hook(hook, with_kwargs=True)
        return leaf

    view = _view(text_encoder, path, make_leaf)
    try:
        _encode(view, input_ids.to(layer.weight.device), None)
    except _Recorded:
        return records[0]
    raise UnsupportedModelError(f"{path} did not run in a forward pass of the text encoder")


class _Recorded(Exception):
    """Raised by `projection_io`'s hook once the layer's inputs and outputs are recorded, to end the forward pass."""
