"""The demo's runs on a tiny random pipeline (fast, no trained model needed): cached originals, the edit stack, edit
files, the λ sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import pipeline_hash

import time_core.demo as demo
import time_core.demo.images as images_module
from time_core import Edit, EditFileError, EditRequest, PromptError, compute_edit
from time_core.presets import PromptPair

TINY_PROMPTS = demo.PromptSet(
    "a pack of roses",
    "a pack of blue roses",
    (PromptPair("a rose in a vase", "a blue rose in a vase"),),
    (PromptPair("a tulip", "a blue tulip"),),
)


def test_original_cache_is_an_lru_with_counts():
    cache = demo.OriginalCache(max_items=2)
    cache.put(("a",), 1)
    cache.put(("b",), 2)
    assert cache.get(("a",)) == 1  # "a" is now the most recent
    cache.put(("c",), 3)  # evicts "b"
    assert cache.get(("b",)) is None and cache.get(("c",)) == 3 and len(cache) == 2
    assert (cache.hits, cache.misses) == (2, 1)
    assert ("c",) in cache and ("b",) not in cache and (cache.hits, cache.misses) == (2, 1)  # `in` counts nothing


def test_originals_are_cached_and_lambda_only_regenerates_the_edited_side(tiny_runtime, monkeypatch):
    runtime = tiny_runtime
    runtime.cache.clear()
    settings = runtime.settings(num_seeds=2, steps=2, guidance=5.0)
    before = pipeline_hash(runtime.pipe)
    calls = []
    original_generate = images_module.generate

    def counting_generate(pipe, prompts, seeds, **kwargs):
        calls.append((tuple(prompts), tuple(seeds), kwargs.get("original", True), kwargs.get("edit") is not None))
        return original_generate(pipe, prompts, seeds, **kwargs)

    monkeypatch.setattr(images_module, "generate", counting_generate)
    first = list(demo.run_edit(runtime, demo.SessionEdits(), TINY_PROMPTS, 0.1, settings))
    assert [u.stage for u in first] == ["original", "edited"]
    assert first[0].edited is None and first[0].cached == 0
    assert len(first[-1].original) == len(first[-1].edited) == 3 * 2
    # one call for the originals, one for the edited side (original=False)
    assert calls == [(("a pack of roses", "a rose in a vase", "a tulip"), (0, 1), True, False),
                     (("a pack of roses", "a rose in a vase", "a tulip"), (0, 1), False, True)]
    calls.clear()
    second = list(demo.run_edit(runtime, demo.SessionEdits(), TINY_PROMPTS, 100.0, settings))
    assert second[-1].cached == 6
    assert calls == [(("a pack of roses", "a rose in a vase", "a tulip"), (0, 1), False, True)]
    for a, b in zip(first[-1].original, second[-1].original):
        assert a.image is b.image  # the very same cached object
    assert pipeline_hash(runtime.pipe) == before  # the shared pipeline is never written


def test_original_images_equal_plain_generation_and_partial_cache(tiny_runtime):
    import time_core

    runtime = tiny_runtime
    runtime.cache.clear()
    settings = runtime.settings(num_seeds=2, steps=2, guidance=5.0)
    demo.original_images(runtime, ["a tulip"], settings)
    images, cached = demo.original_images(runtime, ["a tulip", "a rose"], settings)
    assert cached == 2
    plain = time_core.generate(runtime.pipe, ["a tulip", "a rose"], [0, 1], num_inference_steps=2, guidance_scale=5.0,
                               height=16, width=16, progress=False)
    for got, expected in zip(sum(images, []), sum(plain.original, [])):
        assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_edit_stack_is_one_multi_edit(tiny_runtime):
    pipe = tiny_runtime.pipe
    session = demo.SessionEdits().push(pipe.tokenizer, "a pack of roses", "a pack of blue roses")
    session = session.push(pipe.tokenizer, "a pack of roses", "a pack of blue roses")  # a repeat is ignored
    assert session.stack == (("a pack of roses", "a pack of blue roses"),)
    edit = session.build(pipe, "a tulip", "a red tulip", lam=0.3, edit_keys=False, augment=True)
    expected = compute_edit(pipe, ["a pack of roses", "a tulip"], ["a pack of blue roses", "a red tulip"], lam=0.3,
                            edit_keys=False)
    assert edit.sources == expected.sources and not edit.edit_keys
    assert torch.equal(edit.M, expected.M)
    assert session.pairs() == (("a pack of roses",), ("a pack of blue roses",))  # stack only
    assert session.undo().stack == () and session.reset() == demo.SessionEdits()
    with pytest.raises(PromptError, match="does not contain the source word 'roses'"):
        session.push(pipe.tokenizer, "a pack of roses", "a pack of blue tulips")
    with pytest.raises(PromptError, match="source is empty"):
        demo.SessionEdits().pairs("", "a red tulip")
    with pytest.raises(PromptError, match="destination is empty"):
        session.pairs("a tulip", "")


def test_edit_files_round_trip_and_bad_files(tiny_runtime, tmp_path):
    pipe = tiny_runtime.pipe
    session = demo.SessionEdits().push(pipe.tokenizer, "a tulip", "a red tulip")
    edit = session.build(pipe, "a rose", "a blue rose", lam=0.5)
    path = demo.save_edit_file(edit, tmp_path)
    assert path.suffix == ".safetensors" and "a-blue-rose" in path.name
    loaded = demo.load_edit_file(path, pipe, max_bytes=10**6)
    assert torch.equal(loaded.M, edit.M) and loaded.sources == ("a tulip", "a rose")
    session = demo.SessionEdits.from_edit(loaded)
    assert session.stack == (("a tulip", "a red tulip"),) and session.edit is loaded
    assert torch.equal(session.build(pipe, "a rose", "a blue rose", loaded.lam).M, edit.M)

    with pytest.raises(EditFileError, match="at most"):
        demo.load_edit_file(path, pipe, max_bytes=100)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file at all")
    with pytest.raises(EditFileError, match="not a readable safetensors file"):
        demo.load_edit_file(corrupt, pipe, max_bytes=10**6)
    wide = Edit(M=torch.eye(1024, dtype=torch.float64), request=EditRequest(("a",), ("a b",)), lam=0.1)
    with pytest.raises(EditFileError, match="text width 1024"):
        demo.load_edit_file(wide.save(tmp_path / "wide.safetensors"), pipe, max_bytes=10**8)


def test_sweep_reuses_one_decomposition_and_the_cached_originals(tiny_runtime, monkeypatch):
    import time_core.methods.time

    runtime = tiny_runtime
    runtime.cache.clear()
    settings = runtime.settings(num_seeds=1, steps=2, guidance=5.0)
    builds = []
    original_build = time_core.methods.time.build_system
    monkeypatch.setattr(time_core.methods.time, "build_system", lambda *a, **k: builds.append(1) or original_build(*a,
                                                                                                                   **k))
    lams = demo.lambda_grid(-2, 4, 8)
    assert len(lams) == 8 and lams[0] == pytest.approx(0.01) and lams[-1] == pytest.approx(1e4)
    updates = list(demo.run_sweep(runtime, demo.SessionEdits(), TINY_PROMPTS, lams, settings))
    assert len(builds) == 1
    assert len(updates) == 9 and updates[-1].done and [p.lam for p in updates[-1].points] == list(lams)
    assert runtime.cache.misses == 3  # three prompts × one seed, generated once
    assert [s.prompt for s in updates[-1].original_strip] == ["a rose in a vase", "a tulip"]
    assert len(demo.sweep_strip(updates[-1])) == 2 * 9 and len(demo.sweep_rows(updates[-1])) == 9
    pending = demo.sweep_strip(updates[1])  # one λ done: the other 7 are placeholders, rows stay aligned
    assert len(pending) == 2 * 9 and pending[2][1].endswith("pending") and not pending[1][1].endswith("pending")
    figure = demo.sweep_figure(updates[-1])
    assert figure.axes[0].get_xscale() == "log"
    with pytest.raises(demo.DemoInputError, match="must be below"):
        demo.lambda_grid(3, 1, 8)
    with pytest.raises(demo.DemoInputError, match="number of λ values is 100, more than the limit of 24"):
        demo.lambda_grid(-3, 6, 100)


def test_debias_run_on_a_tiny_pipeline(tiny_runtime):
    entry = demo.debias_entry("shapes_debias:0")
    settings = tiny_runtime.settings(num_seeds=2, steps=2, guidance=5.0)
    updates = list(demo.run_debias(tiny_runtime, entry, 50, settings, -3, 6, 2))
    assert updates[0].stage == "original" and updates[-1].stage == "tests"
    assert [u.stage for u in updates[1:-1]] == ["search"] * (len(updates) - 2)
    final = updates[-1]
    assert len(final.tests) == 5 and len(final.test_original) == len(final.test_edited) == 5 * 2
    assert len(demo.debias_test_rows(final)) == 5 + 1 and demo.debias_search_rows(final)[0][0] == "original"
    assert "F_p = share of images classified" in demo.debias_status(final)
    with pytest.raises(demo.DemoInputError, match="must be below"):
        next(demo.run_debias(tiny_runtime, entry, 50, settings, 3, 1, 2))
    with pytest.raises(demo.DemoInputError, match="target share must lie strictly between"):
        next(demo.run_debias(tiny_runtime, entry, 100, settings))
