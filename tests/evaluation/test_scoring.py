"""Tests of the CLIP scorers: the shipped toy CLIP of the Shapes world and the loading of pretrained open_clip CLIPs."""

import time

import numpy as np
import pytest
import torch
from PIL import Image

from time_core.evaluation import scoring
from time_core.evaluation.scoring import ClipScorer, ScorerWeightsUnavailableError, load_scorer
from time_core.shapes.world import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, render

# Every discrete scene of the world (6 shapes x 6 colours x 2 sizes x 2 backgrounds), centred.
SCENES = [Scene(shape, colour, size, background) for shape in SHAPES for colour in COLOURS for size in SIZES
          for background in BACKGROUNDS]


@pytest.fixture(scope="module")
def toy() -> ClipScorer:
    return load_scorer("toy", device="cpu")


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [Image.fromarray(render(scene)) for scene in SCENES]


def _variants(shape: str, colour: str) -> list[Image.Image]:
    return [Image.fromarray(render(Scene(shape, colour, s, b))) for s in SIZES for b in BACKGROUNDS]


def test_green_circle_versus_circle(toy):
    green = toy.prob_destination(_variants("circle", "green"), "a circle", "a green circle")
    red = toy.prob_destination(_variants("circle", "red"), "a circle", "a green circle")
    assert green.shape == red.shape == (4,)
    assert green.min().item() > 0.9
    assert red.max().item() < 0.1


def _two_way_accuracy(scorer: ClipScorer, images, scenes) -> float:
    """Accuracy of "a SHAPE" vs "a D SHAPE" for every destination colour D, on every image (features encoded once)."""
    image_features = scorer.encode_images(images)  # (N, D)
    correct = []
    for destination in COLOURS:
        source = scorer.encode_texts([f"a {s.shape}" for s in scenes])  # (N, D)
        target = scorer.encode_texts([f"a {destination} {s.shape}" for s in scenes])  # (N, D)
        cosines = torch.stack([(image_features * source).sum(-1), (image_features * target).sum(-1)], -1)  # (N, 2)
        probs = (scorer.logit_scale * cosines).softmax(-1)[:, 1]
        correct += [(p > 0.5) == (s.colour == destination) for s, p in zip(scenes, probs.tolist())]
    return float(np.mean(correct))


def test_colour_two_way_accuracy(toy, images):
    # prob_destination is the formula of _two_way_accuracy ...
    probs = toy.prob_destination(images, [f"a {s.shape}" for s in SCENES], [f"a green {s.shape}" for s in SCENES])
    assert probs.shape == (len(SCENES),) and ((probs >= 0) & (probs <= 1)).all()
    assert np.mean([(p > 0.5) == (s.colour == "green") for s, p in zip(SCENES, probs.tolist())]) >= 0.98
    # ... over all 6 shapes x 6 colours x 4 size/background variants x 6 destination colours (measured: 100%).
    assert _two_way_accuracy(toy, images, SCENES) >= 0.98


def test_colour_two_way_on_degraded_images(toy):
    # Shifted, noisy, blurred and off-centre images, like a generative model's samples (measured: 99.8%).
    from time_core.shapes.train_clip import degrade
    from time_core.shapes.world import MAX_JITTER

    rng = np.random.default_rng(1)
    scenes = [Scene(s.shape, s.colour, s.size, s.background, *rng.uniform(-MAX_JITTER, MAX_JITTER, 2)) for s in SCENES]
    clean = torch.from_numpy(np.stack([render(s) for s in scenes])).permute(0, 3, 1, 2) / 255.0  # (N, 3, H, W)
    degraded = degrade(clean, torch.Generator().manual_seed(1))
    arrays = list((degraded * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())  # N x (H, W, 3)
    assert _two_way_accuracy(toy, arrays, scenes) >= 0.97


def test_colour_two_way_with_prefix_size_and_background(toy, images):
    prompts = [f"a photo of a {s.size} {s.shape} on a {s.background} background" for s in SCENES]
    destinations = [f"a photo of a {s.size} green {s.shape} on a {s.background} background" for s in SCENES]
    probs = toy.prob_destination(images, prompts, destinations)
    correct = [(p > 0.5) == (s.colour == "green") for s, p in zip(SCENES, probs.tolist())]
    assert np.mean(correct) >= 0.97


def test_non_green_squares_stay_squares(toy):
    # The specificity case of the circle -> green circle edit.
    for colour in COLOURS:
        probs = toy.prob_destination(_variants("square", colour), "a square", "a green square")
        if colour == "green":
            assert probs.min().item() > 0.5
        else:
            assert probs.max().item() < 0.5


def test_shape_accuracy(toy, images):
    probs = toy.classify(images, [f"a {shape}" for shape in SHAPES])  # (N, 6)
    labels = torch.tensor([SHAPES.index(s.shape) for s in SCENES])
    assert (probs.argmax(dim=1) == labels).float().mean().item() >= 0.95


def test_debias_diamond_colours(toy):
    orange, blue = _variants("diamond", "orange"), _variants("diamond", "blue")
    for classes in (["an orange diamond", "a blue diamond"], ["a orange diamond", "a blue diamond"]):
        probs = toy.classify(orange + blue, classes)  # (8, 2)
        assert (probs[:4, 0] > 0.9).all() and (probs[4:, 1] > 0.9).all()
    assert toy.prob_destination(orange, "a diamond", "an orange diamond").min().item() > 0.5
    assert toy.prob_destination(blue, "a diamond", "an orange diamond").max().item() < 0.5


def test_classify_rows_sum_to_one(toy, images):
    probs = toy.classify(images[:10], ["a circle", "a green circle", "a star"])
    assert probs.shape == (10, 3)
    assert torch.allclose(probs.sum(dim=1), torch.ones(10), atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        toy.classify(images[:2], ["a circle"])


def test_inputs_and_text_cache(toy, images):
    array = render(SCENES[0])  # (64, 64, 3) uint8
    from_array = toy.prob_destination([array], ["a circle"], ["a green circle"])
    from_pil = toy.prob_destination([images[0]], "a circle", "a green circle")
    assert torch.allclose(from_array, from_pil)
    toy.encode_texts(["a star", "a star"])
    assert "a star" in toy._text_features
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        toy.prob_destination(images[:2], ["a circle"], "a green circle")
    with pytest.raises(ValueError, match="uint8"):
        toy.encode_images([array.astype(np.float32)])


def test_unknown_scorer_name():
    for name in ("ViT-B-16", "open_clip:ViT-B-32", "toys", ""):
        with pytest.raises(ValueError, match="ViT-B-32.*open_clip:MODEL:PRETRAINED.*toy"):
            load_scorer(name)
    with pytest.raises(ValueError, match="unknown open_clip pretrained tag"):
        load_scorer("open_clip:ViT-B-32:no-such-tag")


def test_vit_b_32_offline_fails_fast_with_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # empty cache: nothing to reuse
    start = time.perf_counter()
    expected = "could not download the CLIP weights ViT-B-32:openai"
    with pytest.raises(ScorerWeightsUnavailableError, match=expected) as info:
        load_scorer("ViT-B-32", device="cpu")
    assert time.perf_counter() - start < 10.0
    assert "offline" in str(info.value) and info.value.__cause__ is not None


def test_vit_b_32_loads_the_safetensors_checkpoint(monkeypatch, tmp_path):
    # Without network: check what load_scorer asks the Hub and open_clip for.
    import huggingface_hub
    import open_clip

    checkpoint = tmp_path / "open_clip_model.safetensors"
    checkpoint.write_bytes(b"")
    toy = load_scorer("toy", device="cpu")  # stands in for the model open_clip would build
    calls = {}

    def fake_download(repo_id, filename, local_files_only=False):
        calls["download"] = (repo_id, filename)
        return str(checkpoint)

    def fake_create(model_name, pretrained=None, device="cpu", **kwargs):
        calls["create"] = (model_name, pretrained, kwargs)
        return toy.model, None, toy.preprocess

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    scorer = load_scorer("ViT-B-32", device="cpu")
    assert calls["download"] == ("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors")
    model_name, pretrained, kwargs = calls["create"]
    assert (model_name, pretrained) == ("ViT-B-32", str(checkpoint))
    assert kwargs["force_quick_gelu"] is True  # OpenAI's CLIP was trained with QuickGELU
    assert scorer.name == "ViT-B-32"


def test_pickle_checkpoints_are_refused(tmp_path):
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"not read")
    with pytest.raises(ValueError, match="only .safetensors"):
        load_scorer(f"open_clip:ViT-B-32:{checkpoint}")


def test_local_dir_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="open_clip_model.safetensors"):
        load_scorer(f"local-dir:{tmp_path}")


def test_shipped_toy_weights_fit_the_budget():
    weights = scoring.TOY_CLIP_DIR / "open_clip_model.safetensors"
    assert weights.stat().st_size <= 6 * 1024 * 1024
    assert (scoring.TOY_CLIP_DIR / "open_clip_config.json").is_file()


def test_train_clip_smoke_and_determinism(tmp_path):
    from safetensors.torch import load_file

    from time_core.shapes.train_clip import train_clip

    first = train_clip(tmp_path / "a", steps=2, batch_size=8, progress=False)
    second = train_clip(tmp_path / "b", steps=2, batch_size=8, progress=False)
    a, b = load_file(str(first / "open_clip_model.safetensors")), load_file(str(second / "open_clip_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float16 for v in a.values())
    scorer = load_scorer(f"local-dir:{first}", device="cpu")
    probs = scorer.classify([render(SCENES[0])], ["a circle", "a square"])
    assert probs.shape == (1, 2)
