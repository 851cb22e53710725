"""The evaluation protocol: units, resume after an interruption, merging, report files, bad input."""

import json

import numpy as np
import pytest
from helpers import MeanPixelClassifier

from time_core.evaluation.benchmark import EvalConfig, check_eval_dir, evaluate, merge_results, throughput
from time_core.evaluation.report import markdown_table, write_plots


def _config(**kwargs):
    base = dict(preset="shapes", model="tiny", classifier="mean-pixel", seeds=(0, 1, 2), lams=(0.1, 10.0), steps=2,
                guidance=3.0, seeds_per_unit=2, limit=2)
    base.update(kwargs)
    return EvalConfig(**base)


def test_interrupted_run_resumes_to_the_same_result(sd1, tmp_path):
    config = _config()
    check_eval_dir(tmp_path / "full", config)
    full_counter = MeanPixelClassifier()
    evaluate(config, tmp_path / "full", pipe=sd1, classifier=full_counter, progress=False)
    full = merge_results(config, tmp_path / "full")
    # 2 entries × 2 seed blocks = 4 units; each classifies baseline, oracle and 2 λ: 4 calls
    assert full_counter.calls == 16

    check_eval_dir(tmp_path / "resumed", config)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of the third unit
        evaluate(config, tmp_path / "resumed", pipe=sd1, classifier=MeanPixelClassifier(fail_after=5), progress=False)
    done = sorted(p.name for p in (tmp_path / "resumed" / "units").iterdir())
    assert 0 < len(done) < len(list((tmp_path / "full" / "units").iterdir()))
    assert not any(".tmp" in name for name in done)
    with pytest.raises(FileNotFoundError, match="not done"):
        merge_results(config, tmp_path / "resumed")
    counter = MeanPixelClassifier()
    evaluate(config, tmp_path / "resumed", pipe=sd1, classifier=counter, progress=False)
    assert counter.calls == 16 - 4  # the first unit was finished and is not redone
    assert merge_results(config, tmp_path / "resumed") == full
    # a finished run does no work at all
    idle = MeanPixelClassifier()
    evaluate(config, tmp_path / "resumed", pipe=sd1, classifier=idle, progress=False)
    assert idle.calls == 0


def test_units_are_independent_of_sharding(sd1, tmp_path):
    config = _config(lams=(0.1,))
    check_eval_dir(tmp_path / "one", config)
    evaluate(config, tmp_path / "one", pipe=sd1, classifier=MeanPixelClassifier(), progress=False)
    check_eval_dir(tmp_path / "two", config)
    for rank in range(2):  # what two accelerate processes do, one after the other
        evaluate(config, tmp_path / "two", pipe=sd1, classifier=MeanPixelClassifier(), process_index=rank,
                 num_processes=2, progress=False)
    assert merge_results(config, tmp_path / "two") == merge_results(config, tmp_path / "one")


def test_report_contents(sd1, tmp_path):
    config = _config(seeds=(0, 1), lams=(0.01, 1.0))
    check_eval_dir(tmp_path, config)
    evaluate(config, tmp_path, pipe=sd1, classifier=MeanPixelClassifier(), progress=False)
    report = merge_results(config, tmp_path)
    assert set(report["overall"]) == {"baseline", "oracle", "time@0.01", "time@1.0"}
    assert report["entries_kept"] == report["entries_total"] == 2
    unit = json.loads((tmp_path / "units" / "e0000_s0-1_base.json").read_text())
    p = np.asarray(unit["baseline"])
    assert p.shape == (21, 2)  # the hard Shapes preset: the source, 10 positives, 10 negatives
    # the recomputed efficacy of entry 0 equals the share of source images with P > 0.5
    assert report["per_entry"][0]["baseline"]["efficacy"]["mean"] == pytest.approx((p[0] > 0.5).mean())
    # the oracle of a negative is its baseline
    assert unit["oracle"][11:] == unit["baseline"][11:]
    table = markdown_table(report)
    assert "| efficacy |" in table and "time@0.01" in table
    # the hard Shapes preset's prompt types: generality and specificity per type, recomputed from the unit files
    assert list(report["by_type"]["baseline"]["generality"]) == ["phrasing", "plural", "scene-first", "scene-second"]
    assert list(report["by_type"]["baseline"]["specificity"]) == ["related", "explicit", "other-object", "unrelated"]
    units = [json.loads((tmp_path / "units" / f"e{e:04d}_s0-1_base.json").read_text()) for e in (0, 1)]
    plural = np.array([u["baseline"][4:7] for u in units])  # (entries, 3, seeds): positives 4-6 are the plurals
    assert report["by_type"]["baseline"]["generality"]["plural"]["mean"] == pytest.approx((plural > 0.5).mean())
    assert "| generality: plural |" in table and "| specificity: related |" in table
    plots = write_plots(report, tmp_path)
    assert [p.name for p in plots] == ["per_entry.png", "lambda_sweep.png", "lambda_sweep_types.png"]
    assert all(p.stat().st_size > 1000 for p in plots)
    # every generated image is counted once: 2 entries × 2 seeds × (21 prompts + 11 oracle destinations + 21 per λ)
    speed = throughput(tmp_path)
    assert speed["images"] == 2 * 2 * (32 + 2 * 21)
    assert speed["seconds"] > 0 and speed["images_per_second"] == pytest.approx(speed["images"] / speed["seconds"])
    # the oracle filter keeps only entries whose oracle hit rate passes
    filtered = merge_results(config, tmp_path, oracle_filter=1.01)
    assert filtered["entries_kept"] == 0 and filtered["overall"] == {}


def test_bad_input(sd1, tmp_path):
    check_eval_dir(tmp_path, _config())
    with pytest.raises(ValueError, match="different configuration"):
        check_eval_dir(tmp_path, _config(steps=3))
    with pytest.raises(ValueError, match="lam must be"):
        evaluate(_config(lams=(0.0,)), tmp_path, pipe=sd1, classifier=MeanPixelClassifier(), progress=False)
    with pytest.raises(ValueError, match="needs an edit preset"):
        evaluate(_config(preset="shapes_debias"), tmp_path, pipe=sd1, classifier=MeanPixelClassifier(), progress=False)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "description": "", "model": "toy", "kind": "edit", "entries": [],
                               "surprise": 1}))
    with pytest.raises(ValueError, match="surprise"):
        evaluate(_config(preset=str(bad)), tmp_path, pipe=sd1, classifier=MeanPixelClassifier(), progress=False)
    from time_core.evaluation.classifiers import load_classifier

    with pytest.raises(ValueError, match="unknown classifier 'nope'"):
        load_classifier("nope")


def test_automatic_preservation_is_its_own_configuration(sd1, tmp_path):
    plain = _config(limit=1, seeds=(0,), lams=(0.1,), seeds_per_unit=1)
    auto = _config(limit=1, seeds=(0,), lams=(0.1,), seeds_per_unit=1, preserve="auto")
    assert "preserve" not in plain.identity() and auto.identity()["preserve"] == "auto"
    check_eval_dir(tmp_path / "plain", plain)
    with pytest.raises(ValueError, match="different configuration"):
        check_eval_dir(tmp_path / "plain", auto)
    for config, folder in ((plain, "plain"), (auto, "auto")):
        check_eval_dir(tmp_path / folder, config)
        evaluate(config, tmp_path / folder, pipe=sd1, classifier=MeanPixelClassifier(), progress=False)
    unit = "units/e0000_s0-0_lam0.1.json"
    edited = [json.loads((tmp_path / folder / unit).read_text())["time"] for folder in ("plain", "auto")]
    assert edited[0] != edited[1]  # the preservation pairs change the edit, hence the edited images
    base = [json.loads((tmp_path / folder / "units/e0000_s0-0_base.json").read_text())["baseline"]
            for folder in ("plain", "auto")]
    assert base[0] == base[1]  # the unedited model is the same


def test_scheduler_option_swaps_the_sampler_without_touching_the_given_pipeline(sd1, tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    from time_core.models import with_scheduler

    original_scheduler = sd1.scheduler
    dpm = with_scheduler(sd1, "dpm")
    assert isinstance(dpm.scheduler, DPMSolverMultistepScheduler) and sd1.scheduler is original_scheduler
    assert dpm.unet is sd1.unet and dpm.text_encoder is sd1.text_encoder  # no model is copied
    assert with_scheduler(sd1, "default") is sd1
    with pytest.raises(ValueError, match="unknown scheduler 'fast'"):
        with_scheduler(sd1, "fast")
    config = _config(seeds=(0,), lams=(0.1,), limit=1, scheduler="dpm")
    check_eval_dir(tmp_path, config)
    evaluate(config, tmp_path, pipe=sd1, classifier=MeanPixelClassifier(), progress=False)
    assert sd1.scheduler is original_scheduler
    # a different sampler gives different images, so its results cannot be mixed with the default's
    with pytest.raises(ValueError, match=r"differs in \['scheduler'\]"):
        check_eval_dir(tmp_path, _config(seeds=(0,), lams=(0.1,), limit=1))
    with pytest.raises(ValueError, match="unknown scheduler 'fast'"):
        evaluate(_config(scheduler="fast"), tmp_path / "x", pipe=sd1, classifier=MeanPixelClassifier())
