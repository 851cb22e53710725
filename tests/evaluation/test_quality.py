"""Generation quality (Table 2): the Fréchet distance (0 for identical sets, the squared shift of the means for a
shifted set), captions that no edit uses, resumable caption blocks, and the Stable Diffusion scorer (Inception FID
features, CLIP score) on local random weights, alone and in the evaluation command."""

import json

import numpy as np
import pytest
import torch
from helpers import pipeline_hash

from time_core.evaluation.bulk import entry_problem
from time_core.evaluation.quality import (
    CAPTIONS_PER_UNIT,
    frechet_distance,
    load_quality_scorer,
    merge_quality,
    preset_prompts,
    quality_table,
    read_captions,
    run_quality,
    world_captions,
)
from time_core.evaluation.sd_quality import (
    QualityModelError,
    TorchmetricsQualityScorer,
    load_clip_score,
    load_inception,
)
from time_core.methods import get_method
from time_core.presets import load_preset


def _reference_distance(a, b):
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½), the square root through the eigenvalues of Σa^½ Σb Σa^½."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(sigma_a)
    root_a = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ sigma_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a + sigma_b) - 2 * np.sqrt(np.clip(middle, 0, None)).sum())


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)  # identical sets
    shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 0.0])
    assert frechet_distance(a, a + shift) == pytest.approx((shift ** 2).sum(), rel=1e-6)  # same covariance
    b = rng.normal(size=(40, 6)) * 2 + 0.3
    assert frechet_distance(a, b) == pytest.approx(_reference_distance(a, b), rel=1e-6) and frechet_distance(a, b) > 0
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, b[:, :5])
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], b)


def test_captions_that_no_edit_uses(tmp_path):
    exclude = preset_prompts(load_preset("shapes"))
    assert "a circle" in exclude and "a green circle" in exclude and "two green circles" in exclude
    captions, images = world_captions(40, exclude)
    assert len(captions) == len(images) == 40 and not {c.lower() for c in captions} & exclude
    assert images[0].shape == (64, 64, 3) and images[0].dtype == np.uint8
    assert world_captions(40, exclude)[0] == captions  # seeded
    path = tmp_path / "captions.txt"
    path.write_text("a circle\n\nA dog on a sofa\n  a cat  \n")
    assert read_captions(path, 2, exclude) == ["A dog on a sofa", "a cat"]
    with pytest.raises(ValueError, match="has 2 captions that no edit uses; --quality asks for 3"):
        read_captions(path, 3, exclude)


class ColourStatistics:
    """A stand-in scorer: features are each channel's mean and standard deviation; the CLIP score is 100 × the mean
    brightness."""

    name = "colour statistics"
    calls = 0

    def features(self, images):
        self.calls += 1
        arrays = np.stack([np.asarray(i, dtype=np.float64) / 255 for i in images])  # (N, H, W, 3)
        return np.concatenate([arrays.mean(axis=(1, 2)), arrays.std(axis=(1, 2))], axis=1)  # (N, 6)

    def clip_scores(self, images, captions):
        assert len(images) == len(captions)
        return 100 * np.array([np.asarray(i, dtype=np.float64).mean() / 255 for i in images])


def test_quality_blocks_resume_and_merge(sd1, tmp_path):
    before = pipeline_hash(sd1)
    entries = load_preset("shapes").entries[:2]
    captions = [f"a photo of thing number {i}" for i in range(CAPTIONS_PER_UNIT + 4)]
    prepare = entry_problem(get_method("time"), True, True)
    scorer = ColourStatistics()
    run_quality(tmp_path, captions, entries, prepare, [0.1], sd1, scorer, steps=2, guidance=3.0, progress=False)
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "q00000_lam0.1.npz", "q00000_original.npz", "q00016_lam0.1.npz", "q00016_original.npz"]
    calls = scorer.calls
    run_quality(tmp_path, captions, entries, prepare, [0.1], sd1, scorer, steps=2, guidance=3.0, progress=False)
    assert scorer.calls == calls  # nothing left to do
    with pytest.raises(FileNotFoundError, match="not done"):
        merge_quality(tmp_path, len(captions), [0.1, 10.0])
    original = np.load(tmp_path / "units" / "q00000_original.npz")["features"]
    report = merge_quality(tmp_path, len(captions), [0.1], reference_features=np.concatenate(
        [original, np.load(tmp_path / "units" / "q00016_original.npz")["features"]]))
    assert report["columns"]["original"]["fd_reference"] == pytest.approx(0.0, abs=1e-8)  # the same images
    assert report["columns"]["original"]["fd_original"] is None
    assert report["columns"]["edited@0.1"]["fd_original"] > 0  # the edit changes the images
    # caption 3 (seed 3) by the original model, generated again: the stored features are its features
    from time_core import generate

    image = generate(sd1, [captions[3]], [3], num_inference_steps=2, guidance_scale=3.0, progress=False).original[0][0]
    assert np.allclose(scorer.features([image])[0], original[3], atol=1e-6)
    table = quality_table({**report, "source": "test", "scorer": scorer.name})
    assert "| CLIP score |" in table and "| Fréchet distance to the original model | — |" in table
    assert pipeline_hash(sd1) == before


# The Stable Diffusion scorer (torchmetrics' Inception FID features and CLIP score) on local random weights: a random
# Inception-v3 saved as torch-fidelity's weights file, a tiny random CLIP saved with save_pretrained.


def _random_inception_state(seed: int = 0) -> dict:
    """The state dict of a randomly initialised torch-fidelity `FeatureExtractorInceptionV3` (no download)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(seed)
    with pytest.MonkeyPatch.context() as patch:  # skip the download and the loading of torch-fidelity's weights
        patch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):  # activations of order 1 through the whole network
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.state_dict()


def _tiny_clip(folder, seed: int = 0) -> None:
    """A tiny random `CLIPModel` (32×32 images) and its `CLIPProcessor` (the real CLIP tokenizer), saved in `folder`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from time_core.tokenizer import build_clip_tokenizer

    torch.manual_seed(seed)
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(vocab_size=49408, max_position_embeddings=77, **layers),
                        vision_config=dict(image_size=32, patch_size=8, **layers), projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=build_clip_tokenizer()).save_pretrained(folder)


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    """`(inception weights file, CLIP folder)`, random."""
    folder = tmp_path_factory.mktemp("quality_models")
    torch.save(_random_inception_state(), folder / "inception.pth")
    _tiny_clip(folder / "clip", seed=2)  # a seed whose image-caption cosines below have both signs
    return folder / "inception.pth", folder / "clip"


@pytest.fixture(scope="module")
def sd_scorer(local_models):
    weights, clip = local_models
    return TorchmetricsQualityScorer(inception_weights=weights, clip_model=clip)


def _images(n: int, seed: int, low: int = 0, high: int = 256) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(low, high, size=(16, 16, 3), dtype=np.uint8) for _ in range(n)]


def test_inception_features_from_local_weights(sd_scorer, local_models):
    stored = torch.load(local_models[0], weights_only=True)
    loaded = sd_scorer.inception.state_dict()
    assert set(loaded) == set(stored) and all(torch.equal(loaded[k], stored[k]) for k in stored)  # these weights
    a, b = _images(3, seed=1), _images(3, seed=2, low=128)
    features = sd_scorer.features(a)
    assert features.shape == (3, 2048) and features.dtype == np.float64 and features.std(0).mean() > 1e-3
    assert np.array_equal(sd_scorer.features(a), features)  # deterministic
    other = sd_scorer.features(b)
    scale = np.trace(np.cov(features, rowvar=False))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6 * scale)
    assert frechet_distance(features, other) > 0.01 * scale


def test_clip_scores_from_a_local_model(sd_scorer, local_models):
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    images = _images(6, seed=3)
    captions = ["a red circle", "a photo of a dog", "two blue squares", "a cat on a sofa", "a bowl of fruit", "a car"]
    scores = sd_scorer.clip_scores(images, captions)
    # 100 · max(cos(image, caption), 0), from the same CLIP model: projections of the towers' pooled outputs
    model, processor = CLIPModel.from_pretrained(local_models[1]).eval(), CLIPProcessor.from_pretrained(local_models[1])
    with torch.no_grad():
        pixels = processor(images=[Image.fromarray(i) for i in images], return_tensors="pt")["pixel_values"]
        tokens = processor(text=captions, return_tensors="pt", padding=True)
        image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        text = model.text_projection(model.text_model(input_ids=tokens["input_ids"],
                                                      attention_mask=tokens["attention_mask"]).pooler_output)
    expected = 100 * torch.nn.functional.cosine_similarity(image, text).clamp(min=0).double().numpy()
    assert scores.shape == (6,) and np.allclose(scores, expected, rtol=1e-4, atol=1e-3)
    assert (scores > 0).any() and (scores == 0).any()  # positive cosines, and negative ones clamped to 0
    assert str(local_models[1]) in sd_scorer.name and str(local_models[0]) in sd_scorer.name


class NotATensor:
    pass


def test_local_weights_errors(local_models, tmp_path):
    weights, clip = local_models
    text = tmp_path / "weights.pth"
    text.write_text("not weights")
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"w": torch.zeros(1), "x": NotATensor()}, unsafe)
    keys = tmp_path / "keys.pth"
    torch.save({"w": torch.zeros(2)}, keys)
    for path, message in [(tmp_path / "missing.pth", "no such weights file"), (text, "cannot be read as a state dict"),
                          (unsafe, "cannot be read as a state dict"),
                          (keys, "not a state dict of torch-fidelity's FeatureExtractorInceptionV3")]:
        with pytest.raises(QualityModelError, match=message):
            load_inception(path)
    (tmp_path / "empty").mkdir()
    for folder, message in [(tmp_path / "empty", "holds no CLIP model"), (weights, "neither a CLIP folder"),
                            (str(tmp_path / "missing" / "clip"), "neither a CLIP folder")]:
        with pytest.raises(QualityModelError, match=message):
            load_clip_score(folder)
    with pytest.raises(ValueError, match="toy model scores with its own CLIP"):
        load_quality_scorer("toy", clip_model=clip)


def test_quality_command_on_stable_diffusion_with_local_weights(sd1, local_models, tmp_path):
    from PIL import Image

    from time_core.evaluation.cli import evaluate_main

    weights, clip = local_models
    sd1.save_pretrained(tmp_path / "pipe")
    (tmp_path / "captions.txt").write_text("a photo of a dog\na red car\na bowl of fruit\n")
    (tmp_path / "reference").mkdir()
    for i, image in enumerate(_images(2, seed=4)):
        Image.fromarray(image).save(tmp_path / "reference" / f"{i}.png")
    command = ["--preset", "shapes", "--model", str(tmp_path / "pipe"), "--classifier", "colour", "--limit", "1",
               "--seeds", "1", "--steps", "2", "--lam", "0.1", "--quality", "3",
               "--quality-captions", str(tmp_path / "captions.txt"), "--quality-reference", str(tmp_path / "reference")]
    for options, message in [(["--quality-inception-weights", tmp_path / "missing.pth"], "no such weights file"),
                             (["--quality-clip", tmp_path / "captions.txt"], "neither a CLIP folder"),
                             (["--quality-inception-weights", weights, "--quality-clip", tmp_path], "no CLIP model")]:
        with pytest.raises(SystemExit, match=message):  # before anything is written
            evaluate_main([*command, *map(str, options), "--out", str(tmp_path / "refused")])
        assert not (tmp_path / "refused").exists()
    out = tmp_path / "out"
    report = evaluate_main([*command, "--quality-inception-weights", str(weights), "--quality-clip", str(clip),
                            "--out", str(out)])
    quality = report["quality"]
    assert quality["captions"] == 3 and set(quality["columns"]) == {"original", "edited@0.1"}
    for column in quality["columns"].values():
        assert column["fd_reference"] > 0 and 0 <= column["clip_score"]["mean"] <= 100
    assert quality["columns"]["edited@0.1"]["fd_original"] >= 0 and str(weights) in quality["scorer"]
    with np.load(out / "quality" / "units" / "q00000_original.npz") as stored:
        assert stored["features"].shape == (3, 2048) and stored["clip"].shape == (3,)
    stored = json.loads((out / "quality" / "config.json").read_text())
    assert stored["clip"] == str(clip) and len(stored["inception_weights_sha256"]) == 64
    assert "| Fréchet distance to the reference set |" in (out / "results.md").read_text()
