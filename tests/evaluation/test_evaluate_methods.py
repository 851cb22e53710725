"""Several editing methods in one evaluation folder: one baseline per unit, one factorisation per entry and method,
per-method columns, files and plots, methods added later; the commands' method options; debiasing with another
method."""

import json

import pytest
from helpers import MeanPixelScorer

import time_core.evaluation.benchmark as benchmark
from time_core.evaluation.benchmark import EvalConfig, check_eval_dir, evaluate, merge_results
from time_core.evaluation.cli import debias_main, evaluate_main
from time_core.evaluation.report import debias_table, markdown_table, write_plots

DQF = "diff-quickfix"
METHODS = {"time": (0.1,), DQF: (0.01, 1.0)}


def _config(**kwargs):
    base = dict(preset="shapes", model="tiny", classifier="mean-pixel", seeds=(0, 1), lams=(0.1,), steps=2,
                guidance=3.0, seeds_per_unit=2, limit=2)
    return EvalConfig(**(base | kwargs))


def test_two_methods_share_one_folder(sd1, tmp_path, monkeypatch):
    prepared = []
    original_prepare = benchmark.prepare_edit

    def counting_prepare(pipe, source, destination, *args, method, **kwargs):
        prepared.append((destination, method))
        return original_prepare(pipe, source, destination, *args, method=method, **kwargs)

    monkeypatch.setattr(benchmark, "prepare_edit", counting_prepare)
    config = _config()
    check_eval_dir(tmp_path / "both", config)
    classifier = MeanPixelScorer()
    evaluate(config, tmp_path / "both", pipe=sd1, classifier=classifier, progress=False, methods=METHODS)
    # 2 entries, one unit each: baseline + oracle (2 calls) once, then 3 edited columns
    assert classifier.calls == 2 * (2 + 3)
    assert len(prepared) == len(set(prepared)) == 4 and {m for _, m in prepared} == set(METHODS)  # per entry, method
    units = sorted(p.name for p in (tmp_path / "both" / "units").iterdir())
    assert units == ["e0000_s0-1_base.json", "e0000_s0-1_diff-quickfix_lam0.01.json",
                     "e0000_s0-1_diff-quickfix_lam1.0.json", "e0000_s0-1_lam0.1.json",
                     "e0001_s0-1_base.json", "e0001_s0-1_diff-quickfix_lam0.01.json",
                     "e0001_s0-1_diff-quickfix_lam1.0.json", "e0001_s0-1_lam0.1.json"]
    report = merge_results(config, tmp_path / "both", methods=METHODS)
    assert list(report["overall"]) == ["baseline", "oracle", "time@0.1", "diff-quickfix@0.01", "diff-quickfix@1.0"]
    assert report["methods"] == {"time": [0.1], DQF: [0.01, 1.0]}
    assert "diff-quickfix@1.0" in markdown_table(report)

    # each method alone, in its own folder, gives the same columns
    for method, lams in METHODS.items():
        alone = _config(method=method, lams=lams)
        check_eval_dir(tmp_path / method, alone)
        evaluate(alone, tmp_path / method, pipe=sd1, classifier=MeanPixelScorer(), progress=False)
        single = merge_results(alone, tmp_path / method)
        for column in single["overall"]:
            assert single["overall"][column] == report["overall"][column], column

    plots = write_plots(report, tmp_path / "both")
    assert [p.name for p in plots] == ["per_entry.png", "per_entry_diff-quickfix.png",
                                       "lambda_sweep_diff-quickfix.png", "lambda_sweep_types_diff-quickfix.png"]


def test_a_method_can_be_added_to_a_folder_later(sd1, tmp_path):
    out = tmp_path / "run"
    check_eval_dir(out, _config())
    evaluate(_config(), out, pipe=sd1, classifier=MeanPixelScorer(), progress=False)  # TIME alone, as before
    assert "method" not in json.loads((out / "config.json").read_text())  # the method is not part of the identity
    check_eval_dir(out, _config(method=DQF))  # same folder, another method: accepted
    classifier = MeanPixelScorer()
    evaluate(_config(), out, pipe=sd1, classifier=classifier, progress=False, methods=METHODS)
    assert classifier.calls == 2 * 2  # only Diff-QuickFix's two λ, for each of the two units: the baselines are kept
    report = merge_results(_config(), out, methods=METHODS)
    assert len(report["overall"]) == 5
    with pytest.raises(FileNotFoundError, match="of diff-quickfix at λ = 100.0 is not done"):
        merge_results(_config(), out, methods={DQF: (100.0,)})
    with pytest.raises(ValueError, match="unknown editing method 'uce'"):
        evaluate(_config(), out, pipe=sd1, classifier=classifier, methods={"uce": (1.0,)})
    with pytest.raises(ValueError, match="lam must be finite and > 0"):
        evaluate(_config(), out, pipe=sd1, classifier=classifier, methods={DQF: (0.0,)})
    with pytest.raises(ValueError, match="a prepare hook serves the config's method alone"):
        evaluate(_config(), out, pipe=sd1, classifier=classifier, methods=METHODS, prepare=lambda pipe, entry: None)


@pytest.mark.parametrize("extra, message", [
    (["--method", DQF, "--values-only"], "--values-only is an option of TIME's edit; diff-quickfix"),
    (["--method", "time", "finetune", "--preserve", "auto"], "--preserve auto is not available for finetune"),
    (["--method", "time", DQF, "--bulk"], "several methods go with the plain evaluation"),
])
def test_the_command_refuses_options_a_method_lacks(tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        evaluate_main(["--preset", "shapes", *extra, "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="values-only"):
        debias_main(["--preset", "shapes_debias", "--method", DQF, "--values-only", "--out", str(tmp_path)])
    assert not (tmp_path / "config.json").exists()


def test_the_command_takes_several_methods_each_at_its_default_lambda(tmp_path):
    small = ["--preset", "shapes", "--model", "toy", "--limit", "1", "--seeds", "1", "--steps", "2"]
    report = evaluate_main([*small, "--method", "time", DQF, "--out", str(tmp_path / "defaults")])
    assert list(report["overall"]) == ["baseline", "oracle", "time@0.1", "diff-quickfix@0.01"]
    report = evaluate_main([*small, "--method", DQF, "--lam", "0.5", "50", "--out", str(tmp_path / "given")])
    assert list(report["overall"]) == ["baseline", "oracle", "diff-quickfix@0.5", "diff-quickfix@50.0"]
    assert "diff-quickfix@50.0" in (tmp_path / "given" / "results.md").read_text()
    assert (tmp_path / "given" / "lambda_sweep_diff-quickfix.png").is_file()


def test_debias_table_names_the_method():
    row = {"source": "a diamond", "lam": 0.5, "converged": True, "F_original": 1.0, "F_time": 0.5,
           "delta_original": 1.0, "delta_time": 0.0}
    report = {"config": {"method": DQF}, "entries": [row], "overall": {"F_original": 1.0, "F_time": 0.5,
                                                                        "delta_original": 1.0, "delta_time": 0.0}}
    table = debias_table(report)
    assert "| F_p Diff-QuickFix | Δ original | Δ Diff-QuickFix |" in table and "TIME" not in table
    assert "F_p TIME |" in debias_table({**report, "config": {"method": "time"}})
