"""`generate`: original images equal plain pipeline calls, batching and progress, bad input."""

import numpy as np
import pytest
import torch

from time_core import PromptError, compute_edit, generate

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"


def test_original_images_equal_a_plain_pipeline_call(sd1):
    result = generate(sd1, ["a rose", "a car"], [3, 7], num_inference_steps=3, output_type="np", progress=False)
    for p, prompt in enumerate(["a rose", "a car"]):
        for s, seed in enumerate([3, 7]):
            plain = sd1(prompt, num_inference_steps=3, generator=torch.Generator("cpu").manual_seed(seed),
                        output_type="np")
            assert np.abs(plain.images[0] - result.original[p][s]).max() < 1e-5
    assert result.edited is None


def test_generation_shapes_progress_and_batching(sdxl):
    edit = compute_edit(sdxl, SOURCE, DESTINATION)
    calls = []
    full = generate(sdxl, ["a rose", "a car", "a dog"], [0, 1], edit=edit, num_inference_steps=2, output_type="np",
                    progress=False, callback=lambda done, total: calls.append((done, total)))
    assert len(full.original) == len(full.edited) == 3 and all(len(row) == 2 for row in full.edited)
    assert calls[-1] == (2, 2)  # one batched call: 12 images, 2 steps
    chunked = generate(sdxl, ["a rose", "a car", "a dog"], [0, 1], edit=edit, num_inference_steps=2, output_type="np",
                       progress=False, batch_size=5)
    for p in range(3):
        for s in range(2):
            assert np.abs(full.edited[p][s] - chunked.edited[p][s]).max() < 1e-4
            assert np.abs(full.original[p][s] - chunked.original[p][s]).max() < 1e-4


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(prompts=[]), "prompts is empty"),
        (dict(prompts=[""]), "prompt is empty"),
        (dict(seeds=[]), "seeds is empty"),
        (dict(seeds=[-1]), "seeds must be integers"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(height=13), "height must be a positive multiple of 2"),
        (dict(output_type="latent"), "output_type"),
        (dict(original=False), "nothing to generate"),
    ],
)
def test_bad_generation_input(sd1, kwargs, message):
    args = dict(prompts=["a rose"], seeds=[0], num_inference_steps=2, progress=False)
    args.update(kwargs)
    with pytest.raises((ValueError, PromptError), match=message):
        generate(sd1, **args)
