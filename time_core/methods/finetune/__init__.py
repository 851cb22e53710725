"""The fine-tuning baseline of the paper's App. G (Table 5): the text encoder(s) trained on Eq. 4's data term.

Instead of a closed-form edit of the UNet's cross-attention, every parameter of the text encoder is optimised with
Adam (learning rate 0.01, 4000 iterations by default) so that the encoder's outputs for the source prompt (and its
augmentations) match the *original* encoder's aligned outputs for the destination, i.e. the data term of Eq. 4 with
λ = 0, summed over all `L` token positions of every prompt pair:

    min_θ  Σ_i w_i ‖f_θ(source)_i − c*_i‖² + (η / 2) ‖θ‖²

with `c*_i` the destination embedding aligned to source position `i` (`time_core.prompts.build_pairs`, the same pairs
and weights TIME solves for, preservation prompts included) and `η` the weight decay of `torch.optim.Adam` (the paper
sweeps η from 1e-6 to 1e6). The method's λ slot carries η: `compute_edit(pipe, s, d, lam=η, method="finetune")`.

`f_θ(prompt)_i` is the embedding of token `i` as the UNet cross-attends to it (`text.embed`): for Stable Diffusion
1.x / 2.x `text_encoder`'s last hidden state (`d` = 768 / 1024); for Stable Diffusion XL the penultimate hidden states
of `text_encoder` and `text_encoder_2` concatenated (`d` = 768 + 1280 = 2048), so both encoders are trained jointly,
one Adam over all their parameters, θ covering both (the weight decay too). Parameters the data term does not reach
(in SDXL the encoders' last layers, `text_encoder_2`'s final norm and projection, which only feed the pooled
embedding) get no gradient, and Adam leaves them as they are. The pooled embedding is not part of the data term, but
at generation it comes from the fine-tuned `text_encoder_2`, as the pipeline computes it.

Each edit trains private deep copies of the text encoder(s) (in float32) and never writes the pipeline's weights. The
edit applies by encoding the prompts and the negative / unconditional prompt through its fine-tuned copies with the
pipeline's own `encode_prompt` (`FinetuneEdit.conditioning`). An edit file holds the whole fine-tuned encoder(s).

- `text`: the pipeline's text encoders, tokenizing and the differentiable embeddings (`embed`), `data_term`;
- `edit`: `FinetuneEdit` (conditioning, `edited_weights`, edit files, `check_compatible`);
- `method`: `FinetuneProblem` (`.solve(η)` trains) and the registered `FinetuneMethod`.
"""

from .edit import DEFAULT_ITERATIONS, DEFAULT_LEARNING_RATE, DEFAULT_WEIGHT_DECAY, FinetuneEdit
from .method import FinetuneMethod, FinetuneProblem
from .text import data_term, embed, text_components, tokenize

__all__ = [
    "DEFAULT_ITERATIONS",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_WEIGHT_DECAY",
    "FinetuneEdit",
    "FinetuneMethod",
    "FinetuneProblem",
    "data_term",
    "embed",
    "text_components",
    "tokenize",
]
