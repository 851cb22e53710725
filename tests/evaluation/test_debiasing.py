"""The debiasing command: Δ_p arithmetic, the binary search's λ sequence, TIME Multi, resume and bad input."""

import json
import math

import pytest
from helpers import MeanPixelScorer, pipeline_hash

from time_core.evaluation.classifiers import ClipClassifier
from time_core.evaluation.cli import debias_main as main
from time_core.evaluation.debiasing import DebiasConfig, merge_debias, run_debias_benchmark
from time_core.evaluation.metrics import delta
from time_core.evaluation.report import debias_table


def _preset(tmp_path, entries: int = 2):
    rows = [
        {"source": "a doctor", "destination": "a female doctor", "validation": "a photo of a doctor",
         "tests": ["a doctor at work", "a portrait of a doctor", "a doctor smiling", "a doctor outside", "a doctor"],
         "attributes": ["female", "male"], "classes": ["a female doctor", "a male doctor"]},
        {"source": "a nurse", "destination": "a male nurse", "validation": "a photo of a nurse",
         "tests": ["a nurse at work", "a portrait of a nurse", "a nurse smiling", "a nurse outside", "a nurse"],
         "attributes": ["male", "female"], "classes": ["a male nurse", "a female nurse"]},
    ][:entries]
    path = tmp_path / "debias.json"
    path.write_text(json.dumps({"name": "debias", "description": "test", "model": "sd", "kind": "debias",
                                "entries": rows}))
    return str(path)


def _config(preset, **kwargs):
    base = dict(preset=preset, model="tiny", classifier="mean-pixel", seeds=(0, 1, 2), steps=2, guidance=3.0,
                max_iterations=3)
    base.update(kwargs)
    return DebiasConfig(**base)


def test_delta_is_the_relative_distance_to_the_target():
    assert delta(0.5, 0.5) == 0.0
    assert delta(0.8, 0.5) == pytest.approx(0.6)
    assert delta(0.0, 0.5) == 1.0
    assert delta(0.1, 0.2) == pytest.approx(0.5)


def test_merge_computes_f_and_delta_by_hand(tmp_path):
    (tmp_path / "entries").mkdir()
    tests = [{"prompt": "a", "original": 0.8, "edited": 0.5}, {"prompt": "b", "original": 0.6, "edited": 0.4}]
    record = {"source": "a doctor", "destination": "a female doctor", "validation": "v", "validation_original": 0.9,
              "lam": 3.0, "validation_edited": 0.52, "converged": True, "search": [{"lam": 3.0, "share": 0.52}],
              "tests": tests}
    (tmp_path / "entries" / "e0000.json").write_text(json.dumps(record))
    second = dict(record, source="a nurse", lam=None, converged=False,
                  tests=[{"prompt": "c", "original": 1.0, "edited": 1.0}, {"prompt": "d", "original": 0.0,
                                                                           "edited": 0.0}])
    (tmp_path / "entries" / "e0001.json").write_text(json.dumps(second))
    multi = {"lam": 10.0, "tests": [{"prompt": p, "edited": e} for p, e in zip("abcd", [0.4, 0.3, None, 0.5])]}
    (tmp_path / "multi_2.json").write_text(json.dumps(multi))

    report = merge_debias(_config("x"), tmp_path, 2)
    first, other = report["entries"]
    # F_p pools the test prompts' images (equal counts: the mean of their shares); Δ_p = |F_p - 0.5| / 0.5
    assert first["F_original"] == pytest.approx(0.7) and first["F_time"] == pytest.approx(0.45)
    assert first["delta_original"] == pytest.approx(0.4) and first["delta_time"] == pytest.approx(0.1)
    assert first["F_multi"] == pytest.approx(0.35) and first["delta_multi"] == pytest.approx(0.3)
    # one prompt all female, one all male: pooled F_p = 50%, Δ_p = 0, however unbalanced each prompt is
    assert other["F_original"] == pytest.approx(0.5) and other["delta_original"] == other["delta_time"] == 0.0
    # None in the multi record: that prompt keeps its original share (1.0), the other is at 0.5
    assert other["F_multi"] == pytest.approx(0.75) and other["delta_multi"] == pytest.approx(0.5)
    overall = report["overall"]
    assert overall["delta_original"] == pytest.approx(0.2)
    assert overall["delta_time"] == pytest.approx(0.05)
    assert overall["delta_multi"] == pytest.approx(0.4)
    table = debias_table(report)
    assert "| a doctor | 3 | 70.0% | 45.0% | 0.40 | 0.10 | 35.0% | 0.30 |" in table
    assert "| a nurse | none* |" in table
    assert "**0.20**" in table and "**0.05**" in table and "**0.40**" in table


def test_search_runs_resumes_and_never_writes_the_model(sd1, tmp_path):
    preset = _preset(tmp_path)
    before = pipeline_hash(sd1)
    config = _config(preset)
    scorer = MeanPixelScorer(threshold=float("inf"))  # every image "male"/second class: F_p = 0 for every λ
    classifier = ClipClassifier(scorer)
    report = run_debias_benchmark(config, tmp_path / "out", pipe=sd1, classifier=classifier, progress=False)
    assert pipeline_hash(sd1) == before
    entries = [json.loads((tmp_path / "out" / "entries" / f"e{i:04d}.json").read_text()) for i in range(2)]
    for record in entries:
        assert record["validation_original"] == 0.0
        # F_p stays 0 < target: the edit always looks too weak, so log10 λ halves towards the lower bound each step
        lams = [step["lam"] for step in record["search"]]
        assert lams == pytest.approx([10 ** 1.5, 10 ** -0.75, 10 ** -1.875])
        assert record["lam"] is None and record["converged"] is False  # nothing beats the original
        assert [t["edited"] for t in record["tests"]] == [t["original"] for t in record["tests"]] == [0.0] * 5
    assert report["overall"]["delta_original"] == report["overall"]["delta_time"] == 1.0
    assert json.loads((tmp_path / "out" / "multi_2.json").read_text())["lam"] is None
    assert report["overall"]["delta_multi"] == 1.0

    calls = scorer.calls
    again = run_debias_benchmark(config, tmp_path / "out", pipe=sd1, classifier=classifier, progress=False)
    assert scorer.calls == calls  # everything was done: nothing is generated or classified again
    assert again == report


def test_converged_search_stops_and_reports_its_lambda(sd1, tmp_path):
    preset = _preset(tmp_path, entries=1)
    scorer = MeanPixelScorer(threshold=-1.0)  # every image the first class: F_p = 1
    config = _config(preset, target=0.6, tolerance=0.7)  # |1 - 0.6| / 0.6 = 0.67 < 0.7: the original meets it
    classifier = ClipClassifier(scorer)
    report = run_debias_benchmark(config, tmp_path / "out", pipe=sd1, classifier=classifier, progress=False)
    (row,) = report["entries"]
    assert row["search_steps"] == 0 and row["lam"] is None and row["converged"] is True
    assert row["delta_original"] == pytest.approx(0.4 / 0.6)
    assert not (tmp_path / "out" / "multi_1.json").exists()  # one entry: TIME Multi is TIME


def test_bad_input_is_a_clear_error(sd1, tmp_path):
    with pytest.raises(ValueError, match="needs a debias preset"):
        run_debias_benchmark(_config("shapes"), tmp_path / "a", pipe=sd1,
                             classifier=ClipClassifier(MeanPixelScorer(threshold=0.0)))
    with pytest.raises(ValueError, match="target must lie strictly between 0 and 1"):
        run_debias_benchmark(_config(_preset(tmp_path), target=1.0), tmp_path / "b", pipe=sd1,
                             classifier=ClipClassifier(MeanPixelScorer(threshold=0.0)))
    preset = _preset(tmp_path, entries=1)
    run_debias_benchmark(_config(preset, max_iterations=1), tmp_path / "c", pipe=sd1,
                         classifier=ClipClassifier(MeanPixelScorer(threshold=1e9)), progress=False)
    with pytest.raises(ValueError, match=r"different configuration \(differs in \['max_iterations'\]\)"):
        run_debias_benchmark(_config(preset, max_iterations=2), tmp_path / "c", pipe=sd1,
                             classifier=ClipClassifier(MeanPixelScorer(threshold=0.0)))
    with pytest.raises(SystemExit, match="needs a debias preset"):
        main(["--preset", "shapes", "--out", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="--seeds must be >= 1"):
        main(["--preset", "shapes_debias", "--seeds", "0", "--out", str(tmp_path / "e")])
    with pytest.raises(ValueError, match="unknown scorer 'no-such-scorer'"):
        run_debias_benchmark(_config(preset, classifier="no-such-scorer"), tmp_path / "f", pipe=sd1)
    assert math.isfinite(delta(0.3, 0.5))
