r"""
Stage 2 of the toy model: the text encoder, pre-trained on the world's images and captions, then frozen (as Stable
Diffusion inherits and freezes CLIP's text tower).

Every weight is learned, the token embeddings included, from two objectives that involve no edit and no editing method:

- *contrastive* (CLIP's symmetric InfoNCE): the caption's end-of-text output, projected, must pick its own image out
  of the batch, against a small convolutional image tower trained alongside and then discarded. Words that behave
  alike in the data (the colour words; the oval and the circle, the rectangle and the square) get alike embeddings
  through it, as in real CLIP;
- *caption attributes*: linear heads read what the caption names (kind of image, each shape, each named colour or
  "none", the size, the background) from every output position from the end-of-text token on, so that the padding
  positions, most of the context, carry the whole caption, as a pre-trained CLIP text encoder's do.
"""

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from .build import build_seeded_text_encoder, lr_factor, resume_from, save_checkpoint, step_rng, to_tensor, tokenize
from .config import TrainConfig
from .sampling import sample_batch
from .world import BACKGROUNDS, COLOURS, KINDS, SHAPES, SIZES, parse_caption

# The attributes a caption may name, and the classes the pre-training heads tell apart (`None` = not named / absent).
ATTRIBUTE_CLASSES: dict[str, tuple[str | None, ...]] = {
    "kind": KINDS,
    "shape_1": SHAPES,
    "colour_1": (None, *COLOURS),
    "shape_2": (None, *SHAPES),
    "colour_2": (None, *COLOURS),
    "size": (None, *SIZES),
    "background": (None, *BACKGROUNDS),
}


def caption_attributes(text: str) -> dict[str, str | None]:
    """The value of every `ATTRIBUTE_CLASSES` attribute that a caption names."""
    parsed = parse_caption(text)
    objects = parsed["objects"]
    second = objects[1] if len(objects) > 1 else {"shape": None, "colour": None}
    return {
        "kind": parsed["kind"],
        "shape_1": objects[0]["shape"],
        "colour_1": objects[0]["colour"],
        "shape_2": second["shape"],
        "colour_2": second["colour"],
        "size": objects[0]["size"],
        "background": parsed["background"],
    }


def attribute_labels(captions: list[str]) -> dict[str, torch.Tensor]:
    """For each attribute, the `(N,)` class index of every caption (see `ATTRIBUTE_CLASSES`)."""
    values = [caption_attributes(text) for text in captions]
    return {name: torch.tensor([classes.index(v[name]) for v in values]) for name, classes in ATTRIBUTE_CLASSES.items()}


class ImageTower(torch.nn.Module):
    """A small CNN: stride-2 convolutions, then a linear map of the flattened grid (which keeps left from right)."""

    def __init__(self, channels: list[int], image_size: int, width: int) -> None:
        super().__init__()
        layers, previous = [], 3
        for c in channels:
            layers += [torch.nn.Conv2d(previous, c, 3, stride=2, padding=1), torch.nn.GELU()]
            previous = c
        self.features = torch.nn.Sequential(*layers)
        grid = image_size // 2 ** len(channels)
        self.project = torch.nn.Linear(previous * grid * grid, width)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, width)
        return self.project(self.features(pixels).flatten(1))


class TextObjectives(torch.nn.Module):
    """The parts of stage 2 that are thrown away afterwards: attribute heads, caption projection, image tower."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        width = cfg.text_hidden_size
        self.heads = torch.nn.ModuleDict({n: torch.nn.Linear(width, len(c)) for n, c in ATTRIBUTE_CLASSES.items()})
        self.text_projection = torch.nn.Linear(width, width)
        self.image_tower = ImageTower(cfg.text_image_channels, cfg.image_size, width)
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / 0.07)))

    def attribute_loss(self, hidden: torch.Tensor, ids: torch.Tensor, eos_id: int, captions: list[str]) -> torch.Tensor:
        """Mean cross-entropy of every head over the positions from the end-of-text token on."""
        eos = (ids == eos_id).int().argmax(dim=1)  # (B,) first end-of-text position
        summary = (torch.arange(ids.shape[1])[None] >= eos[:, None]).float()  # (B, L)
        labels = attribute_labels(captions)
        loss = hidden.new_zeros(())
        for name, head in self.heads.items():
            logits = head(hidden)  # (B, L, classes)
            target = labels[name][:, None].expand(-1, ids.shape[1])  # (B, L)
            per_token = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
            loss = loss + (per_token * summary).sum() / summary.sum()
        return loss

    def contrastive_loss(self, hidden: torch.Tensor, ids: torch.Tensor, eos_id: int, pixels: torch.Tensor):
        """CLIP's symmetric InfoNCE between the end-of-text outputs and the images of the batch."""
        eos = (ids == eos_id).int().argmax(dim=1)  # (B,)
        text = F.normalize(self.text_projection(hidden[torch.arange(len(ids)), eos]), dim=-1)  # (B, d)
        image = F.normalize(self.image_tower(pixels), dim=-1)  # (B, d)
        logits = self.logit_scale.clamp(max=math.log(100.0)).exp() * text @ image.T  # (B, B)
        target = torch.arange(len(ids))
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def pretrain_text_encoder(
    cfg: TrainConfig, tokenizer: CLIPTokenizer, checkpoint_dir: Path, resume: bool
) -> CLIPTextModel:
    r"""
    Pre-trains the text encoder on the world's images and captions (see the module docstring), then freezes it.

    Returns:
        `CLIPTextModel`: The pre-trained text encoder (eval mode, no gradients).
    """
    text_encoder = build_seeded_text_encoder(cfg, tokenizer)
    torch.manual_seed(cfg.seed + 3)
    objectives = TextObjectives(cfg)
    embedding = text_encoder.get_input_embeddings().weight
    decayed = [p for p in [*text_encoder.parameters(), *objectives.parameters()] if p.ndim >= 2 and p is not embedding]
    plain = [p for p in [*text_encoder.parameters(), *objectives.parameters()] if p.ndim < 2 or p is embedding]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=cfg.text_pretrain_lr,
    )
    path = checkpoint_dir / "text.pt"
    start = resume_from(path, resume, text_encoder=text_encoder, objectives=objectives, optimizer=optimizer)
    text_encoder.train()
    bar = tqdm(range(start, cfg.text_pretrain_steps), initial=start, total=cfg.text_pretrain_steps, desc="text")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cfg.text_pretrain_lr * lr_factor(step, 50, cfg.text_pretrain_steps)
        rng, _ = step_rng(cfg, 4, step)
        images, captions = sample_batch(rng, cfg.text_pretrain_batch_size, cfg.image_size)
        ids = tokenize(tokenizer, captions)  # (B, L)
        hidden = text_encoder(ids).last_hidden_state  # (B, L, d)
        attributes = objectives.attribute_loss(hidden, ids, tokenizer.eos_token_id, captions)
        contrastive = objectives.contrastive_loss(hidden, ids, tokenizer.eos_token_id, to_tensor(images))
        loss = attributes + cfg.text_contrastive_weight * contrastive
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*decayed, *plain], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(attr=f"{attributes.item():.3f}", clip=f"{contrastive.item():.3f}")
    if start < cfg.text_pretrain_steps:
        state = {"text_encoder": text_encoder.state_dict(), "objectives": objectives.state_dict()}
        save_checkpoint(path, {**state, "optimizer": optimizer.state_dict(), "step": cfg.text_pretrain_steps})
    return text_encoder.eval().requires_grad_(False)


def word_similarities(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, words: list[str]) -> np.ndarray:
    r"""
    Cosine similarities of the learned input embeddings of single-token words (a check that related words are alike).

    Returns:
        `np.ndarray`: `(W, W)` similarities.
    """
    ids = [tokenizer(word, add_special_tokens=False).input_ids for word in words]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"every word must be a single token; got {dict(zip(words, ids))}")
    vectors = F.normalize(text_encoder.get_input_embeddings().weight[[i[0] for i in ids]].detach().float(), dim=-1)
    return (vectors @ vectors.T).numpy()
