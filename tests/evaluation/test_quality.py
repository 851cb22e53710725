"""Generation quality (Table 2): the Fréchet distance (0 for identical sets, the squared shift of the means for a
shifted set), captions that no edit uses, and resumable caption blocks."""

import numpy as np
import pytest
from helpers import pipeline_hash

from time_core.evaluation.bulk import entry_problem
from time_core.evaluation.quality import (CAPTIONS_PER_UNIT, frechet_distance, merge_quality, preset_prompts,
                                          quality_table, read_captions, run_quality, world_captions)
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
