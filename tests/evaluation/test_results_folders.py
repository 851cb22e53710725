"""Results folders that heal (an unreadable unit file is named, set aside and computed again; leftovers of interrupted
writes are removed; writes are atomic), and the commands' one-line failures, checked before anything is written."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest
from helpers import MeanPixelClassifier

import time_core.debias
import time_core.evaluate
from time_core.evaluation import cli
from time_core.evaluation.benchmark import EvalConfig, check_eval_dir, evaluate, merge_results
from time_core.evaluation.results import check_out_dir, write_json
from time_core.files import write_text_atomic


def test_unreadable_unit_files_are_named_set_aside_and_computed_again(sd1, tmp_path, capsys):
    config = EvalConfig(preset="shapes", model="tiny", classifier="mean-pixel", seeds=(0, 1, 2), lams=(0.1, 10.0),
                        steps=2, guidance=3.0, seeds_per_unit=2, limit=2)
    out = tmp_path / "run"
    check_eval_dir(out, config)
    evaluate(config, out, pipe=sd1, classifier=MeanPixelClassifier(), progress=False)
    full = merge_results(config, out)
    units = out / "units"
    base = sorted(units.glob("*_base.json"))
    edited = sorted(p for p in units.glob("*_lam*.json"))
    base[0].write_text(base[0].read_text()[:40])  # truncated by a crash
    edited[0].write_text("{}")  # an object without results
    edited[1].write_text("")  # emptied by a full disk
    capsys.readouterr()

    counter = MeanPixelClassifier()
    evaluate(config, out, pipe=sd1, classifier=counter, progress=False)
    err = capsys.readouterr().err
    for path, problem in ((base[0], "JSONDecodeError"), (edited[0], "no ['time']"), (edited[1], "JSONDecodeError")):
        assert f"{path} cannot be read ({problem}" in err and f"set aside as {path.name}.unreadable" in err
        assert (units / f"{path.name}.unreadable").is_file() and json.loads(path.read_text())
    # the three files are the first unit's: its baseline and oracle, and its two λ values, are classified again
    assert [p.name[:11] for p in (base[0], edited[0], edited[1])] == ["e0000_s0-1_"] * 3 and counter.calls == 4
    assert merge_results(config, out) == full


def test_leftovers_are_removed_and_an_unreadable_config_is_healed_only_without_results(tmp_path):
    out = tmp_path / "run"
    identity = {"preset": "shapes"}
    check_out_dir(out, identity, "units")
    old, fresh = out / "units" / "e0000_s0-1_base.json.tmp4242", out / "results.json.tmp77"
    old.write_text("{")
    fresh.write_text("{")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    check_out_dir(out, identity, "units")
    assert not old.exists() and fresh.exists()  # a fresh one may be another process's write in progress

    (out / "config.json").write_text('{"preset": "sha')  # truncated, and no results yet: set aside, written again
    check_out_dir(out, identity, "units")
    assert json.loads((out / "config.json").read_text()) == identity
    assert (out / "config.json.unreadable").read_text() == '{"preset": "sha'
    write_json(out / "units" / "e0000_s0-1_base.json", {"baseline": [], "oracle": []})
    (out / "config.json").write_text("")
    with pytest.raises(ValueError, match=r"config.json cannot be read \(JSONDecodeError.*holds results of an unknown"):
        check_out_dir(out, identity, "units")
    assert (out / "config.json").read_text() == ""  # kept as it is, for its owner to restore
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_out_dir(out / "config.json", identity, "units")


def test_writes_are_atomic_and_follow_the_umask(tmp_path):
    path = tmp_path / "results.md"
    write_text_atomic(path, "| old |")

    def full_disk(tmp):
        tmp.write_text("| ne")
        raise OSError(errno.ENOSPC, "No space left on device")

    from time_core.files import write_atomic

    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, full_disk)
    assert path.read_text() == "| old |" and [p.name for p in tmp_path.iterdir()] == ["results.md"]
    previous = os.umask(0o027)
    try:
        write_json(tmp_path / "r.json", {})
    finally:
        os.umask(previous)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640


def _command(module, args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        module.command(args)
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--lam", "0"], "lam must be finite and > 0, got 0.0"),
    (["--lam", "5e-324"], "lam must be at least 1e-12"),
    (["--model", "./models/sd14"], "no folder ./models/sd14"),
    (["--scheduler", "fast"], "unknown scheduler 'fast'"),
    (["--seeds", "0"], "--seeds and --seeds-per-unit must be >= 1"),
    (["--limit", "x"], "argument --limit: invalid int value: 'x'"),
])
def test_evaluate_command_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    code, err = _command(time_core.evaluate, ["--preset", "shapes", *args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("time-evaluate: error: ") and message in err, err
    assert not (tmp_path / "out").exists()


def test_evaluate_command_output_problems_and_ctrl_c_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    for out, message in ((tmp_path / "file", "is a file, not a folder"), ("/proc/out", "/proc/out")):
        code, err = _command(time_core.evaluate, ["--preset", "shapes", "--out", str(out)], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err
    check_out_dir(tmp_path / "other", {"preset": "shapes_easy"}, "units")
    code, err = _command(time_core.evaluate, ["--preset", "shapes", "--out", str(tmp_path / "other")], capsys)
    assert code == 2 and err.count("\n") == 1 and "holds results of a different configuration" in err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.benchmark, "evaluate", interrupted)
    code, err = _command(time_core.evaluate, ["--preset", "shapes", "--out", str(tmp_path / "new")], capsys)
    assert (code, err) == (130, "time-evaluate: error: interrupted; what was finished is kept, and the same command "
                                "resumes\n")


@pytest.mark.parametrize("args, message", [
    (["--log-lam-min", "3", "--log-lam-max", "1"], "log_lam_min < log_lam_max, got [3.0, 1.0]"),
    (["--tolerance", "0"], "tolerance must be a finite number > 0"),
    (["--target", "1.5"], "target must lie strictly between 0 and 1"),
    (["--model", "missing/sd/folder"], "no folder missing/sd/folder"),
    (["--steps", "0"], "steps must be an integer >= 1, got 0"),
])
def test_debias_command_checks_before_writing_its_configuration(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _command(time_core.debias, ["--preset", "shapes_debias", *args, "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("time-debias: error: ") and message in err, err
    assert not out.exists()  # so that the corrected command is not refused as "a different configuration"
