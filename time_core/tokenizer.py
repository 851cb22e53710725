"""The real CLIP BPE tokenizer, built offline from the vocabulary that `open_clip` ships.

Stable Diffusion 1.x / 2.x and SDXL use OpenAI's CLIP byte-pair encoding. `open_clip` bundles the same BPE
vocabulary (`bpe_simple_vocab_16e6.txt.gz`); this module turns it into the `vocab.json` + `merges.txt` pair that
`transformers.CLIPTokenizer` reads, so that token ids are exactly those of SD 1.4 without any download.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer

# open_clip names its special tokens differently from the Hugging Face / OpenAI release.
_SPECIAL_TOKENS = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}


def write_clip_vocab(directory: str | Path) -> tuple[Path, Path]:
    """Writes `vocab.json` and `merges.txt` of the CLIP BPE into `directory`.

    Args:
        directory (`str` or `Path`): folder to write into (created if missing).

    Returns:
        `tuple[Path, Path]`: the paths of `vocab.json` and `merges.txt`.
    """
    from open_clip.tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer()
    vocab = {_SPECIAL_TOKENS.get(token, token): index for token, index in bpe.encoder.items()}
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.__getitem__)  # in rank order

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def build_clip_tokenizer(model_max_length: int = 77, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """Builds the CLIP tokenizer of Stable Diffusion offline.

    Args:
        model_max_length (`int`, *optional*, defaults to 77):
            the text encoder's context length (`max_position_embeddings` of its config).
        pad_token (`str`, *optional*, defaults to `"<|endoftext|>"`):
            SD 1.x pads with the end-of-text token; SDXL's second tokenizer pads with `"!"`.

    Returns:
        `CLIPTokenizer`: gives the same token ids as `openai/clip-vit-large-patch14`.
    """
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_vocab(tmp)
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=model_max_length, pad_token=pad_token)
