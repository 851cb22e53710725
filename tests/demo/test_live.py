"""Live λ, the comparison grid, the background grid and turns on the pipeline, on a tiny random pipeline."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import time_core.demo as demo
import time_core.demo.images as images_module
from time_core.presets import PromptPair

PROMPTS = demo.PromptSet("a pack of roses", "a pack of blue roses",
                         (PromptPair("a rose in a vase", "a blue rose in a vase"), PromptPair("roses", "blue roses")),
                         (PromptPair("a tulip", "a blue tulip"), PromptPair("a <b>car</b>", "a blue <b>car</b>")))


@pytest.fixture
def counted(monkeypatch):
    """Every pipeline call, as `(prompts, seeds)`."""
    calls = []
    original_generate = images_module.generate

    def counting_generate(pipe, prompts, seeds, **kwargs):
        calls.append((tuple(prompts), tuple(seeds)))
        return original_generate(pipe, prompts, seeds, **kwargs)

    monkeypatch.setattr(images_module, "generate", counting_generate)
    return calls


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_live_lambda_shows_preview_rows_first_and_equals_an_edit_click(tiny_runtime, counted):
    runtime = tiny_runtime
    settings = runtime.settings(num_seeds=2)
    *_, done = demo.run_edit(runtime, demo.SessionEdits(), PROMPTS, 0.1, settings)
    request = done.request
    counted.clear()
    preview, final = demo.run_live(runtime, request, 3.16)
    assert (preview.stage, final.stage) == ("preview", "edited") and final.edit.lam == 3.16
    # the source, the first positive and the first negative, first seed, in one call; then the rest
    assert counted[0] == (("a pack of roses", "a rose in a vase", "a tulip"), (0,))
    shown = [k for k, image in enumerate(preview.edited) if image is not None]
    assert shown == [0, 2, 6]  # rows 0, 1 and 3, first seed (rows × 2 seeds)
    assert preview.scores["edited"] is None and final.scores["edited"] is not None
    # the same images an Edit click at that λ gives (it reads them from the cache: no pipeline call)
    counted.clear()
    *_, click = demo.run_edit(runtime, demo.SessionEdits(), PROMPTS, 3.16, settings)
    assert counted == []
    for a, b in zip(final.edited, click.edited):
        assert a.prompt == b.prompt and a.seed == b.seed and np.array_equal(pixels(a.image), pixels(b.image))
    # and the images a fresh generation gives at that λ
    fresh = demo.edited_images(runtime, [PROMPTS.source], settings, done.request.prepare(runtime).solve(3.16))
    assert np.abs(pixels(fresh[0][1]) - pixels(final.edited[1].image)).max() <= 1
    with pytest.raises(ValueError, match="lam must be finite and > 0"):
        list(demo.run_live(runtime, request, -1.0))


def test_the_background_grid_serves_the_slider_from_the_cache(tiny_runtime, counted):
    runtime = tiny_runtime
    settings = runtime.settings(num_seeds=2)
    *_, done = demo.run_edit(runtime, demo.SessionEdits(), PROMPTS, 0.1, settings)
    renderer = demo.GridRenderer(runtime)
    queued = renderer.schedule_grid(done.request, 0.1)
    lams = demo.live_lams(0.1)
    assert queued == len(lams) - 1 and lams[0] == 0.1
    assert abs(abs(np.log10(lams[1]) + 1) - demo.LIVE_LOG_STEP) < 0.01  # the nearest slider position next
    assert renderer.wait(600) and renderer.done == queued * 2  # one task per λ and seed
    counted.clear()
    for lam in (lams[5], lams[-1]):
        preview, final = demo.run_live(runtime, done.request, lam)
        assert all(preview.edited[k] is not None for k in (0, 1, 2, 3, 6, 7))  # the preview rows, every seed
    assert counted == [(("roses", "a <b>car</b>"), (0, 1))] * 2  # only the other rows
    renderer.close()


def test_a_new_edit_replaces_the_queued_grid_of_the_last(tiny_runtime):
    runtime = tiny_runtime
    settings = runtime.settings(num_seeds=1)
    first = demo.SessionEdits().request(PROMPTS, settings)
    second = demo.SessionEdits().request(demo.PromptSet("a tulip", "a red tulip"), settings)
    renderer = demo.GridRenderer(runtime)
    with runtime.turns.turn(0):  # hold the pipeline: nothing runs
        renderer.schedule_grid(first, 0.1)
        renderer.schedule_grid(second, 0.1, replaces=first)
        assert renderer.pending() <= len(demo.live_lams()) + 1  # the first edit's grid is gone
    assert renderer.wait(600)
    renderer.close()


def test_turns_serve_the_most_urgent_job_next_and_nest():
    turns = demo.PipelineTurns()
    order = []

    def job(name, priority, hold=0.0):
        with turns.turn(priority):
            order.append(name)
            with turns.turn(priority):  # a nested chunk of the same job does not wait for itself
                time.sleep(hold)

    holder = threading.Thread(target=job, args=("sweep chunk", 2, 0.3))
    holder.start()
    time.sleep(0.05)
    waiting = [threading.Thread(target=job, args=args) for args in
               (("background", 3), ("sweep next chunk", 2), ("edit", 1), ("live", 0))]
    for thread in waiting:
        thread.start()
        time.sleep(0.02)
    for thread in [holder, *waiting]:
        thread.join(10)
    assert order == ["sweep chunk", "live", "edit", "sweep next chunk", "background"]
    assert not turns.busy and len(turns.waited) == 5
    with turns.stage(1):  # an edit's stage is one turn
        assert turns.busy
    with turns.stage(2):  # a long job's stage is not: its chunks take their own turns
        assert not turns.busy


def test_comparison_grid_rows_roles_verdicts_and_escaping(tiny_runtime):
    runtime = tiny_runtime
    settings = runtime.settings(num_seeds=2)
    first, done = demo.run_edit(runtime, demo.SessionEdits(), PROMPTS, 0.1, settings)
    html = demo.comparison_html(done, lambda image: f"img/{id(image)}.png")
    assert html.count('class="cmp-row role-') == 5
    assert [html.count(f"role-{role}") for role in ("source", "positive", "negative")] == [1, 2, 2]
    assert html.count("<img ") == 2 * 5 * 2 and html.count('alt="edited model') == 10
    assert "a &lt;b&gt;car&lt;/b&gt;" in html and "<b>car</b>" not in html  # prompts are text, not markup
    for k in range(0, 10, 2):
        verdict, detail = demo.row_verdict(done.original[k].role, done.edited[k:k + 2])
        hits = sum(image.p_destination > 0.5 for image in done.edited[k:k + 2])
        assert detail == f"{hits}/2 show the destination" and f"<b>{verdict}</b>" in html
        good = ("kept" if hits < 1 else "leaked") if done.original[k].role == "negative" else (
            "followed" if hits >= 1 else "not followed")
        assert verdict == good
    pending = demo.comparison_html(first, lambda image: "x.png")
    assert pending.count("rendering…") == 10 and 'data-stage="original"' in pending


def test_the_knob_free_edit_in_the_demo(tiny_runtime):
    """λ = "auto" with automatic preservation: the λ chosen for this edit is run, named in the status, noted under
    the slider (also when the slider shows another λ) and marked on the sweep; Diff-QuickFix's runs too; a method
    without one (fine-tuning) says so."""
    runtime = tiny_runtime
    settings = runtime.settings(num_seeds=1)
    session = demo.SessionEdits(auto_preserve=True)
    prompts = demo.PromptSet("a rose", "a blue rose", (PromptPair("roses", "blue roses"),))
    *_, done = demo.run_edit(runtime, session, prompts, demo.parse_lam_or_auto(" Auto "), settings)
    assert done.edit.lam_auto and done.auto_lam == done.edit.lam > 0
    assert done.auto_lam == done.request.prepare(runtime).auto_lam  # the problem's choice
    assert f"**λ = {demo.format_lam(done.auto_lam)}** (knob-free: chosen for this edit)" in demo.edit_status(done)
    assert demo.knob_note(done).startswith(f"knob-free λ for this edit: **{demo.format_lam(done.auto_lam)}**")
    assert demo.edit_details(done)["edit"]["lam_auto"] is True
    *_, live = demo.run_live(runtime, done.request, 10.0)
    assert live.auto_lam == done.auto_lam and "shown: λ = 10" in demo.knob_note(live)
    assert not live.edit.lam_auto and "knob-free" not in demo.edit_status(live)
    *_, sweep = demo.run_sweep(runtime, session, prompts, (0.01, 1.0), settings)
    assert sweep.auto_lam == done.auto_lam and "knob-free λ for this edit" in demo.sweep_status(sweep)
    axes = demo.sweep_figure(sweep).axes[0]
    assert any(np.allclose(line.get_xdata(), done.auto_lam) for line in axes.get_lines())
    quickfix = next(demo.run_edit(runtime, session.with_method("diff-quickfix", True), prompts, "auto", settings))
    assert quickfix.edit.method == "diff-quickfix" and quickfix.edit.lam_auto and quickfix.auto_lam == quickfix.edit.lam
    assert "(knob-free: chosen for this edit)" in demo.edit_status(quickfix)
    with pytest.raises(ValueError, match="finetune has no knob-free λ: give λ as a number"):
        next(demo.run_edit(runtime, session.with_method("finetune", True), prompts, "auto", settings))
    with pytest.raises(ValueError, match="needs preserve='auto'"):
        next(demo.run_edit(runtime, demo.SessionEdits(), prompts, "auto", settings))
    *_, paper = demo.run_edit(runtime, demo.SessionEdits(), prompts, demo.PAPER_LAM, settings)
    assert paper.auto_lam is None and demo.knob_note(paper) == "" and paper.edit.lam == 0.1
