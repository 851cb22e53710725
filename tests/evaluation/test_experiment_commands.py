"""Small runs of every experiment of the evaluation command on the embedded toy model (App. E ablation, App. F bulk
editing, App. G fine-tuning baseline, Table 2's generation quality), and the options they refuse."""

import json

import pytest

from time_core.evaluation.cli import evaluate_main

SMALL = ["--model", "toy", "--limit", "2", "--seeds", "2", "--steps", "4"]


def test_ablation_command(tmp_path):
    report = evaluate_main(["--preset", "shapes_validation", "--ablation", "--lam", "0.1", "10", *SMALL,
                            "--out", str(tmp_path)])
    assert len(report["rows"]) == 8 and report["entries_total"] == 2
    assert all(row["harmonic_mean"] is not None for row in report["rows"])
    assert "harmonic mean" in (tmp_path / "results.md").read_text()


def test_bulk_command(tmp_path):
    report = evaluate_main(["--preset", "shapes", "--bulk", "--lam", "0.1", "1000", *SMALL, "--limit", "4",
                            "--out", str(tmp_path)])
    assert report["bulk"]["entries"] == 2 and report["entries_total"] == 2
    assert set(report["overall"]) == {"baseline", "oracle", "time@0.1", "time@1000.0"}
    assert "harmonic_mean" in report["overall"]["time@0.1"]
    assert "Bulk edit (App. F): one multi-edit of 2 entries" in (tmp_path / "results.md").read_text()


def test_finetune_command(tmp_path):
    report = evaluate_main(["--preset", "shapes", "--method", "finetune", "--iterations", "5", "--weight-decay",
                            "1e-6", "1", *SMALL, "--limit", "1", "--out", str(tmp_path)])
    assert set(report["overall"]) == {"baseline", "oracle", "finetune@1e-06", "finetune@1.0"}
    stored = json.loads((tmp_path / "config.json").read_text())
    assert "method" not in stored and stored["method_options"] == [["iterations", 5]]  # methods share folders
    assert json.loads((tmp_path / "results.json").read_text())["throughput"]["edit_seconds"] > 0
    assert "Edit compute (method finetune, iterations 5)" in (tmp_path / "results.md").read_text()


def test_quality_command(tmp_path):
    report = evaluate_main(["--preset", "shapes", "--quality", "8", *SMALL, "--out", str(tmp_path)])
    quality = report["quality"]
    assert quality["captions"] == 8 and set(quality["columns"]) == {"original", "edited@0.1"}
    assert quality["columns"]["original"]["fd_reference"] > 0 and quality["columns"]["edited@0.1"]["fd_original"] >= 0
    assert 0 < quality["columns"]["original"]["clip_score"]["mean"] <= 100
    assert "| Fréchet distance to the reference set |" in (tmp_path / "results.md").read_text()
    assert json.loads((tmp_path / "quality" / "config.json").read_text())["quality"] == 8


@pytest.mark.parametrize("extra, message", [
    (["--ablation", "--bulk"], "--ablation runs its grid on its own"),
    (["--ablation", "--values-only"], "--ablation runs both settings"),
    (["--weight-decay", "1"], "add --method finetune"),
    (["--quality-captions", "x.txt"], "go with --quality N"),
    (["--quality-clip", "clip/"], "go with --quality N"),
    (["--quality", "2", "--quality-inception-weights", "x.pth"], "the toy model scores with its own CLIP"),
    (["--quality", "2", "--model", "CompVis/stable-diffusion-v1-4"], "needs --quality-captions FILE"),
    (["--method", "finetune", "--iterations", "0"], "iterations must be an integer >= 1"),
    (["--method", "finetune", "--preserve", "auto"], "--preserve auto is not available for finetune"),
    (["--method", "finetune", "--ablation"], "finetune has no keys and values to choose"),
])
def test_refused_options(tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        evaluate_main(["--preset", "shapes", *extra, "--out", str(tmp_path)])
    assert not (tmp_path / "config.json").exists()
