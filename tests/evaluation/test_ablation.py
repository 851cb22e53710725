"""The ablation grid (App. E): four variant folders, the unedited model's images generated once, the harmonic mean
per cell, the best one marked, and the same numbers for one process or two."""

import json

import pytest
from helpers import MeanPixelScorer

from time_core.evaluation.ablation import VARIANTS, ablation_table, merge_ablation, run_ablation
from time_core.evaluation.benchmark import EvalConfig
from time_core.evaluation.classifiers import ClipClassifier
from time_core.evaluation.experiments import LocalState
from time_core.evaluation.metrics import harmonic_mean


def _config(**kwargs):
    base = dict(preset="shapes_validation", model="tiny", classifier="brightness", seeds=(0, 1), lams=(0.1, 10.0),
                steps=2, guidance=3.0, limit=1)
    return EvalConfig(**{**base, **kwargs})


def test_grid_folders_rows_and_table(sd1, tmp_path):
    config = _config()
    run_ablation(config, tmp_path, LocalState(), pipe=sd1,
                 classifier=ClipClassifier(MeanPixelScorer(name="brightness")),
                 progress=False)
    assert sorted(p.name for p in (tmp_path / "variants").iterdir()) == sorted(VARIANTS)
    first = json.loads((tmp_path / "variants" / "kv_aug" / "units" / "e0000_s0-1_base.json").read_text())
    for name in VARIANTS:
        folder = tmp_path / "variants" / name
        stored = json.loads((folder / "config.json").read_text())
        assert (stored["edit_keys"], stored["augment"]) == VARIANTS[name]
        base = json.loads((folder / "units" / "e0000_s0-1_base.json").read_text())
        assert base["baseline"] == first["baseline"] and base["oracle"] == first["oracle"]
        assert ("timing" in base) == (name == "kv_aug")  # generated once, copied to the other variants
    report = merge_ablation(config, tmp_path)
    assert [(r["variant"], r["lam"]) for r in report["rows"]] == [(v, lam) for v in VARIANTS for lam in (0.1, 10.0)]
    for row in report["rows"]:
        assert row["harmonic_mean"]["mean"] == pytest.approx(
            harmonic_mean(row["generality"]["mean"], row["specificity"]["mean"]))
    best = max(range(len(report["rows"])), key=lambda i: report["rows"][i]["harmonic_mean"]["mean"])
    assert report["best"] == best
    table = ablation_table(report)
    assert table.count("**") == 2 and "| V only | no | 10 |" in table and "| unedited model |" in table
    assert (tmp_path / "variants" / "v_noaug" / "results.json").exists()
    with pytest.raises(ValueError, match="different configuration"):
        run_ablation(_config(steps=3), tmp_path, LocalState(), pipe=sd1,
                     classifier=ClipClassifier(MeanPixelScorer(name="brightness")))


def test_two_processes_give_the_numbers_of_one(sd1, tmp_path):
    config = _config(lams=(1.0,), seeds=(0, 1, 2, 3), seeds_per_unit=2)  # two units: one per process
    classifier = ClipClassifier(MeanPixelScorer(name="brightness"))
    run_ablation(config, tmp_path / "one", LocalState(), pipe=sd1, classifier=classifier, progress=False)
    for rank in range(2):  # what two accelerate processes do, the main one first
        state = LocalState(is_main_process=rank == 0, process_index=rank, num_processes=2)
        run_ablation(config, tmp_path / "two", state, pipe=sd1, classifier=classifier, progress=False)
    one, two = merge_ablation(config, tmp_path / "one"), merge_ablation(config, tmp_path / "two")
    assert one["rows"] == two["rows"] and one["baseline"] == two["baseline"]
