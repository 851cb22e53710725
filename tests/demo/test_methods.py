"""The demo's method choice on a tiny random pipeline: the methods offered, the edit stack holding one method at a
time, λ sweeps and edit files of Diff-QuickFix, and interleaved sessions of different methods."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import make_tiny_pipeline, pipeline_hash

import time_core.demo as demo
from time_core import Edit, EditFileError, QuickFixEdit, compute_edit
from time_core.presets import PromptPair

DQF = "diff-quickfix"
PROMPTS = demo.PromptSet("a pack of roses", "a pack of blue roses",
                         (PromptPair("a rose in a vase", "a blue rose in a vase"),), (PromptPair("a tulip",
                                                                                                 "a blue tulip"),))


def test_methods_offered_and_what_choosing_one_sets():
    assert [key for _, key in demo.method_choices()] == ["time", DQF]
    assert demo.parse_method(None) == demo.parse_method(" ") == "time" and demo.parse_method(DQF) == DQF
    with pytest.raises(demo.DemoInputError, match=r"method must be one of \['time', 'diff-quickfix'\], got 'uce'"):
        demo.parse_method("uce")
    assert demo.method_fields("time") == demo.MethodFields("0.1", -1.0, True)
    assert demo.method_fields(DQF) == demo.MethodFields("0.01", -2.0, False)


def test_the_stack_holds_one_method_at_a_time(tiny_runtime):
    """The stack keeps prompt pairs: each run solves all of them, and the current pair, with the session's method."""
    pipe = tiny_runtime.pipe
    session = demo.SessionEdits().push(pipe.tokenizer, "a tulip", "a red tulip").with_method(DQF)
    assert session.method == DQF and session.stack == (("a tulip", "a red tulip"),)
    edit = session.build(pipe, "a rose", "a blue rose", lam=0.05)
    expected = compute_edit(pipe, ["a tulip", "a rose"], ["a red tulip", "a blue rose"], lam=0.05, method=DQF)
    assert isinstance(edit, QuickFixEdit) and edit.sources == ("a tulip", "a rose")
    assert torch.equal(edit.deltas[0], expected.deltas[0])
    back = session.with_method("time").build(pipe, "a rose", "a blue rose", lam=0.05)
    assert isinstance(back, Edit) and back.sources == edit.sources
    assert session.reset() == demo.SessionEdits(method=DQF)  # the method stays
    with pytest.raises(ValueError, match="unknown editing method"):
        session.with_method("uce")
    with pytest.raises(ValueError, match="edit_keys=False"):
        session.build(pipe, "a rose", "a blue rose", lam=0.05, edit_keys=False)


@pytest.mark.parametrize("method", ["time", DQF])
def test_an_uploaded_automatic_edit_is_rebuilt_bit_for_bit(tiny_runtime, tmp_path, method):
    pipe = tiny_runtime.pipe
    session = demo.SessionEdits(auto_preserve=True).with_method(method, auto_preserve=True)
    edit = session.push(pipe.tokenizer, "a tulip", "a red tulip").build(pipe, "a rose", "a blue rose", 0.5)
    uploaded = demo.load_edit_file(demo.save_edit_file(edit, tmp_path), pipe, max_bytes=10**6)
    restored = demo.SessionEdits.from_edit(uploaded)
    assert restored.auto_preserve and restored.preserve == () and restored.method == method
    again = restored.build(pipe, "a rose", "a blue rose", 0.5)
    assert again.preserve == edit.preserve and again.preserve_weight == edit.preserve_weight and again.auto_preserve
    assert all(torch.equal(a, b) for a, b in zip(again.tensors().values(), edit.tensors().values()))


def test_edit_and_sweep_runs_with_diff_quickfix(tiny_runtime):
    runtime = tiny_runtime
    settings = runtime.settings(num_seeds=1, steps=2, guidance=5.0)
    before = pipeline_hash(runtime.pipe)
    session = demo.SessionEdits().with_method(DQF)
    updates = list(demo.run_edit(runtime, session, PROMPTS, 0.01, settings))
    assert isinstance(updates[-1].edit, QuickFixEdit) and updates[-1].edit.lam == 0.01
    status = demo.edit_status(updates[-1])
    assert "Diff-QuickFix (text encoder)" in status and "keys" not in status
    assert demo.edit_details(updates[-1])["edit"]["method"] == DQF
    time_update = list(demo.run_edit(runtime, demo.SessionEdits(), PROMPTS, 0.1, settings))[-1]
    assert "TIME (UNet cross-attention), keys + values" in demo.edit_status(time_update)
    auto = list(demo.run_edit(runtime, demo.SessionEdits(auto_preserve=True), PROMPTS, 0.1, settings))[-1].edit
    status = demo.edit_status(dataclasses.replace(time_update, edit=auto))
    kept, n = ", ".join(f'"{p}"' for p in auto.preserve[:3]), len(auto.preserve)  # derived words are alphabetic
    assert n > 3 and f"keeping {n} derived prompts ({kept} +{n - 3}; weight {auto.preserve_weight:.3g})" in status
    assert "keeping" not in demo.edit_status(time_update)
    odd = dataclasses.replace(auto, request=dataclasses.replace(auto.request, preserve=("a *bold* rose",),
                                                            preserve_weight=2.0, auto_preserve=False))
    odd = dataclasses.replace(time_update, edit=odd)
    assert 'keeping 1 prompt ("a \\*bold\\* rose"; weight 2)' in demo.edit_status(odd)  # Markdown escaped
    sweep = list(demo.run_sweep(runtime, session, PROMPTS, (1e-3, 1.0, 1e3), settings))
    assert sweep[-1].done and [p.lam for p in sweep[-1].points] == [1e-3, 1.0, 1e3]
    assert pipeline_hash(runtime.pipe) == before


def test_diff_quickfix_edit_files_upload(tiny_runtime, tmp_path):
    pipe = tiny_runtime.pipe
    session = demo.SessionEdits(method=DQF).push(pipe.tokenizer, "a tulip", "a red tulip")
    edit = session.build(pipe, "a rose", "a blue rose", 0.5)
    path = demo.save_edit_file(edit, tmp_path)
    assert path.name.startswith("diff-quickfix-a-blue-rose-lam0.5")
    loaded = demo.load_edit_file(path, pipe, max_bytes=10**6)
    session = demo.SessionEdits.from_edit(loaded)
    assert session.method == DQF and session.stack == (("a tulip", "a red tulip"),) and session.edit is loaded
    assert torch.equal(session.build(pipe, "a rose", "a blue rose", loaded.lam).deltas[0], edit.deltas[0])
    other = make_tiny_pipeline("sd2")  # text width 1024
    wide = compute_edit(other, "a rose", "a blue rose", method=DQF).save(tmp_path / "wide.safetensors")
    with pytest.raises(EditFileError, match="text width 1024.*text width 32"):
        demo.load_edit_file(wide, pipe, max_bytes=10**8)


def test_interleaved_sessions_of_different_methods_do_not_cross(tiny_runtime):
    """Two sessions' runs, one TIME and one Diff-QuickFix, advanced alternately, give what each gives alone."""
    runtime = tiny_runtime
    settings = runtime.settings(num_seeds=2, steps=2, guidance=5.0)
    sessions = [demo.SessionEdits(), demo.SessionEdits().with_method(DQF)]
    lams = [0.1, 0.01]

    def edited(update):
        return np.stack([np.asarray(image.image) for image in update.edited])

    alone = [edited(list(demo.run_edit(runtime, s, PROMPTS, lam, settings))[-1]) for s, lam in zip(sessions, lams)]
    runs = [demo.run_edit(runtime, s, PROMPTS, lam, settings) for s, lam in zip(sessions, lams)]
    finals = [None, None]
    for _ in range(2):
        for k, run in enumerate(runs):
            finals[k] = next(run)
    for k in range(2):
        assert np.array_equal(edited(finals[k]), alone[k]), k
    assert not np.array_equal(alone[0], alone[1])


def test_automatic_preservation_switch(tiny_runtime):
    pipe = tiny_runtime.pipe
    session = demo.SessionEdits().with_method("time", auto_preserve=True)
    assert session.auto_preserve and session.reset().auto_preserve  # the switch stays, like the method
    edit = session.build(pipe, "a rose", "a blue rose", lam=0.1)
    expected = compute_edit(pipe, "a rose", "a blue rose", lam=0.1, preserve="auto")
    assert edit.preserve == expected.preserve and edit.preserve and torch.equal(edit.M, expected.M)
    plain = session.with_method("time", auto_preserve=False).build(pipe, "a rose", "a blue rose", lam=0.1)
    assert plain.preserve == () and not torch.equal(plain.M, edit.M)


def test_a_pair_is_checked_by_the_session_method(tiny_runtime):
    """Stacking a pair asks the session's method (`EditingMethod.check_pair`): TIME needs the source's tokens in the
    destination, Diff-QuickFix takes any two prompts, as `compute_edit` does."""
    pipe = tiny_runtime.pipe
    with pytest.raises(ValueError, match="circle|rose"):
        demo.SessionEdits().push(pipe.tokenizer, "a rose", "a car")
    session = demo.SessionEdits(method=DQF).push(pipe.tokenizer, "a rose", "a car")
    assert session.stack == (("a rose", "a car"),)
    compute_edit(pipe, "a rose", "a car", method=DQF)  # the library accepts it too
    with pytest.raises(ValueError, match="destination is empty"):
        demo.SessionEdits(method=DQF).push(pipe.tokenizer, "a rose", " ")
    with pytest.raises(ValueError, match="tokens"):
        demo.SessionEdits(method=DQF).push(pipe.tokenizer, "a rose", "a car " * 100)


def test_lambda_travels_exactly_and_the_status_names_its_prompts(tiny_runtime, tmp_path):
    """λ from an uploaded edit reaches the field (and the next run) as the same float; the status line names the
    prompts it ran."""
    pipe = tiny_runtime.pipe
    edit = demo.SessionEdits().build(pipe, "a rose", "a blue rose", 0.12345)
    uploaded = demo.load_edit_file(demo.save_edit_file(edit, tmp_path), pipe, max_bytes=10**6)
    text = demo.lam_text(uploaded.lam)
    assert text == "0.12345" and demo.parse_lam(text) == 0.12345
    assert [demo.lam_text(x) for x in (0.1, 1000.0, 1e-5, 0.1 + 1e-12)] == ["0.1", "1000", "1e-05", repr(0.1 + 1e-12)]
    settings = tiny_runtime.settings(num_seeds=1)
    session = demo.SessionEdits().push(pipe.tokenizer, "a tulip", "a red tulip")
    first = next(demo.run_edit(tiny_runtime, session, PROMPTS, demo.parse_lam(text), settings))
    assert first.edit.lam == 0.12345
    status = demo.edit_status(first)
    assert '**λ = 0.12345**' in status and '"a pack of roses" → "a pack of blue roses" with 1 stacked pair' in status
