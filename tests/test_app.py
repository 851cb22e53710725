"""The demo: `time_core.demo` / `time_core.debias` logic on tiny pipelines, and `app.py` served on the embedded toy
model, called through `gradio_client` (endpoints, colours read back from the images, concurrency, bad input)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_pipeline, pipeline_hash

import time_core.demo as demo
from time_core import Edit, EditFileError, PromptError, compute_edit
from time_core.debias import ClipClassifier, f_share, iter_search, search_lambda
from time_core.models import TOY_PIPELINE_DIR
from time_core.presets import PromptPair, load_preset

ROOT = Path(__file__).resolve().parents[1]
APP_MODEL = "toy"
MAX_UPLOAD_MB = 0.5


# ----------------------------------------------------------------------------------------------------------------------
# Library logic on a tiny random pipeline (fast, no trained model needed)
# ----------------------------------------------------------------------------------------------------------------------


class BrightnessScorer:
    """A stand-in for `ClipScorer`: P(destination) is the image's mean brightness; classify by brightness too."""

    def prob_destination(self, images, prompts, destinations):
        return torch.tensor([float(np.asarray(im, dtype=np.float64).mean() / 255.0) for im in images])

    def classify(self, images, classes):
        p = self.prob_destination(images, None, None)
        return torch.stack([p, 1 - p], dim=-1)


@pytest.fixture(scope="module")
def tiny_runtime(tmp_path_factory):
    pipe = make_tiny_pipeline("sd1")
    config = demo.DemoConfig.for_model("tiny-sd1", family="toy", size=16, steps=2, num_seeds=2, scorer="none")
    return demo.DemoRuntime(pipe=pipe, scorer=BrightnessScorer(), config=config, cache=demo.OriginalCache(256),
                            workdir=tmp_path_factory.mktemp("edits"))


TINY_PROMPTS = demo.PromptSet(
    "a pack of roses",
    "a pack of blue roses",
    (PromptPair("a rose in a vase", "a blue rose in a vase"),),
    (PromptPair("a tulip", "a blue tulip"),),
)


def test_config_defaults_per_model():
    toy = demo.DemoConfig.for_model("toy")
    assert (toy.family, toy.size, toy.guidance, toy.num_seeds, toy.scorer) == ("toy", 64, 5.0, 4, "toy")
    assert 10 <= toy.steps <= 20
    sd = demo.DemoConfig.for_model(demo.DEFAULT_SD_MODEL)
    assert (sd.family, sd.size, sd.steps, sd.guidance, sd.num_seeds, sd.scorer) == ("sd", None, 25, 7.5, 2, "ViT-B-32")
    assert demo.DemoConfig.for_model("toy", max_seeds=32, steps=None).max_seeds == 32
    assert demo.resolve_model("some/model", {"TIME_MODEL": "toy"}) == "some/model"
    assert demo.resolve_model(None, {"TIME_MODEL": "toy"}) == "toy"
    with pytest.raises(ValueError, match="family"):
        demo.DemoConfig.for_model("toy", family="sdxl")


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
    original_generate = demo.generate

    def counting_generate(pipe, prompts, seeds, **kwargs):
        calls.append((tuple(prompts), tuple(seeds), kwargs.get("original", True), kwargs.get("edit") is not None))
        return original_generate(pipe, prompts, seeds, **kwargs)

    monkeypatch.setattr(demo, "generate", counting_generate)
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
    session = demo.SessionEdits().push(pipe, "a pack of roses", "a pack of blue roses")
    session = session.push(pipe, "a pack of roses", "a pack of blue roses")  # a repeat is ignored
    assert session.stack == (("a pack of roses", "a pack of blue roses"),)
    edit = session.build(pipe, "a tulip", "a red tulip", lam=0.3, edit_keys=False, augment=True)
    expected = compute_edit(pipe, ["a pack of roses", "a tulip"], ["a pack of blue roses", "a red tulip"], lam=0.3,
                            edit_keys=False)
    assert edit.sources == expected.sources and not edit.edit_keys
    assert torch.equal(edit.M, expected.M)
    assert session.pairs() == (("a pack of roses",), ("a pack of blue roses",))  # stack only
    assert session.undo().stack == () and session.reset() == demo.SessionEdits()
    with pytest.raises(PromptError, match="does not contain the source word 'roses'"):
        session.push(pipe, "a pack of roses", "a pack of blue tulips")
    with pytest.raises(PromptError, match="source is empty"):
        demo.SessionEdits().pairs("", "a red tulip")
    with pytest.raises(PromptError, match="destination is empty"):
        session.pairs("a tulip", "")


def test_edit_files_round_trip_and_bad_files(tiny_runtime, tmp_path):
    pipe = tiny_runtime.pipe
    edit = demo.SessionEdits().push(pipe, "a tulip", "a red tulip").build(pipe, "a rose", "a blue rose", lam=0.5)
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
    wide = Edit(M=torch.eye(1024, dtype=torch.float64), sources=("a",), destinations=("a b",), lam=0.1)
    with pytest.raises(EditFileError, match="text width 1024"):
        demo.load_edit_file(wide.save(tmp_path / "wide.safetensors"), pipe, max_bytes=10**8)


def test_input_parsing_messages():
    config = demo.DemoConfig.for_model("toy")
    settings = demo.parse_settings(config, 3, 5, 10, 4.5, 64, size_step=4)
    assert settings == demo.GenerationSettings(seeds=(5, 6, 7), steps=10, guidance=4.5, size=64)
    assert demo.parse_settings(config).seeds == (0, 1, 2, 3)
    cases = [
        (dict(num_seeds=40), "number of seeds is 40, more than the limit of 16"),
        (dict(num_seeds="four"), "number of seeds must be a number, got 'four'"),
        (dict(num_seeds=2.5), "number of seeds must be a whole number"),
        (dict(steps=0), "steps must be at least 1"),
        (dict(steps=1000), "steps is 1000, more than the limit of 100"),
        (dict(size=66), "multiple of 4"),
        (dict(size=4096), "image size is 4096, more than the limit of 128"),
        (dict(guidance="nan"), "guidance scale must be a finite number"),
    ]
    for kwargs, message in cases:
        with pytest.raises(demo.DemoInputError, match=message):
            demo.parse_settings(config, size_step=4, **kwargs)
    assert demo.parse_lam(" 1e-2 ") == 0.01
    for bad, message in [("abc", "λ must be a number > 0, got 'abc'"), ("", "λ is empty"), ("-1", "finite number > 0"),
                         ("inf", "finite number > 0")]:
        with pytest.raises(demo.DemoInputError, match=message):
            demo.parse_lam(bad)
    assert demo.lam_from_log(-1) == "0.1" and demo.log_from_lam("1e9") == demo.LOG_LAM_MAX
    assert demo.log_from_lam("100") == pytest.approx(2.0)


def test_test_prompt_table():
    rows = [["positive", "a big circle", "a big green circle"], ["negative", "a square", "a green square"],
            ["", "", ""], [None, None, None]]
    positives, negatives = demo.parse_test_prompts(rows)
    assert positives == (PromptPair("a big circle", "a big green circle"),)
    assert negatives == (PromptPair("a square", "a green square"),)
    assert demo.parse_test_prompts({"headers": [], "data": rows}) == (positives, negatives)
    with pytest.raises(demo.DemoInputError, match="row 1: 'a square' has no destination"):
        demo.parse_test_prompts([["negative", "a square", ""]])
    with pytest.raises(demo.DemoInputError, match="row 1: role must be 'positive' or 'negative'"):
        demo.parse_test_prompts([["sideways", "a square", "a green square"]])


def test_presets_in_the_dropdown():
    sd = demo.preset_choices("sd")
    assert len(sd) == 147 + 104 + 8 + 35
    assert sd[0][0].startswith("TIMED test · ") and " → " in sd[0][0]
    assert len({key for _, key in sd}) == len(sd)
    toy = demo.preset_choices("toy")
    assert len(toy) == 15 + 1 and all(label.startswith("Shapes") for label, _ in toy)
    assert demo.preset_choices("toy", kind="debias") == [toy[-1]]
    circle = demo.preset_prompts("shapes:0")
    assert (circle.source, circle.destination) == ("a circle", "a green circle")
    assert len(circle.positives) == len(circle.negatives) == 5 and len(circle.table()) == 10
    diamond = demo.preset_prompts("shapes_debias:0")  # debias tests become positives with the edit applied
    assert [p.destination for p in diamond.positives][:2] == ["a big blue diamond", "a drawing of a blue diamond"]
    attendant = demo.preset_prompts("timed_professions:0")
    assert attendant.positives[0] == PromptPair("A painting of an attendant", "A painting of a female attendant")
    with pytest.raises(demo.DemoInputError, match="unknown preset"):
        demo.preset_prompts("nope:3")


def test_sweep_reuses_one_decomposition_and_the_cached_originals(tiny_runtime, monkeypatch):
    import time_core.edit

    runtime = tiny_runtime
    runtime.cache.clear()
    settings = runtime.settings(num_seeds=1, steps=2, guidance=5.0)
    builds = []
    original_build = time_core.edit.build_system
    monkeypatch.setattr(time_core.edit, "build_system", lambda *a, **k: builds.append(1) or original_build(*a, **k))
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


# ----------------------------------------------------------------------------------------------------------------------
# Debiasing logic
# ----------------------------------------------------------------------------------------------------------------------


def logistic_share(lam: float, low: float = 0.05, high: float = 0.8, centre: float = 1.7) -> float:
    """A synthetic monotone F(λ): `low` for a strong edit (λ → 0), `high` without edit (λ → ∞)."""
    return low + (high - low) / (1.0 + 10.0 ** (-(np.log10(lam) - centre)))


def test_binary_search_converges_on_a_monotone_share():
    calls = []

    def evaluate(lam):
        calls.append(lam)
        return logistic_share(lam)

    result = search_lambda(evaluate, target=0.5, original_share=0.8, max_iterations=20)
    assert result.converged and abs(result.share - 0.5) / 0.5 < 0.1
    assert len(result.steps) == len(calls) <= 10
    assert result.steps[0].lam == pytest.approx(10**1.5)  # the middle of [-3, 6] in log10 λ
    # the found λ is where the logistic crosses 0.5, up to the tolerance
    assert abs(logistic_share(result.lam) - 0.5) < 0.05

    # the other direction: the share grows as the edit gets stronger
    rising = search_lambda(lambda lam: 1 - logistic_share(lam), 0.5, 0.2, max_iterations=20)
    assert rising.converged and abs(rising.share - 0.5) < 0.05


def test_binary_search_cap_and_no_edit_needed():
    capped = search_lambda(logistic_share, target=0.5, original_share=0.8, max_iterations=1)
    assert not capped.converged and len(capped.steps) == 1 and capped.lam == capped.steps[0].lam
    # an edit that moves F_p away from the target: no λ helps, the original model is kept
    wrong_way = search_lambda(lambda lam: 0.0, target=0.5, original_share=0.3, max_iterations=3)
    assert wrong_way.lam is None and not wrong_way.converged and len(wrong_way.steps) == 3
    assert list(iter_search(logistic_share, 0.5, 0.52)) == []
    balanced = search_lambda(logistic_share, 0.5, 0.52)
    assert balanced.lam is None and balanced.converged
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        search_lambda(logistic_share, 0.0, 0.8)


def test_f_share_and_classifiers():
    labels = {"r": "orange", "b": "blue"}
    assert f_share(["r", "r", "b", "r"], lambda images: [labels[i] for i in images], "orange") == 0.75
    with pytest.raises(ValueError, match="at least one image"):
        f_share([], lambda images: [], "orange")
    bright = np.full((8, 8, 3), 250, np.uint8)
    dark = np.zeros((8, 8, 3), np.uint8)
    clip = ClipClassifier(BrightnessScorer(), ("a female x", "a male x"), ("female", "male"))
    assert clip([bright, dark, dark]) == ["female", "male", "male"]

    from time_core.debias import ColourClassifier
    from time_core.shapes import world

    green = world.render(world.Scene("diamond", "green", "big", "white"))
    blue = world.render(world.Scene("diamond", "blue", "big", "black"))
    assert f_share([green, blue, blue], ColourClassifier(), "blue") == pytest.approx(2 / 3)


def test_the_page_builds_for_stable_diffusion_presets(tiny_runtime):
    """The layout for an SD-family model (here a tiny stand-in): TIMED presets, the professions as debias prompts."""
    import app

    runtime = demo.DemoRuntime(pipe=tiny_runtime.pipe, scorer=tiny_runtime.scorer,
                               config=demo.DemoConfig.for_model("tiny-sd1", family="sd", size=16, scorer="none"),
                               cache=demo.OriginalCache(8), workdir=tiny_runtime.workdir)
    blocks = app.build_demo(runtime)
    components = {c.get("props", {}).get("label"): c["props"] for c in blocks.config["components"]}
    assert len(components["Preset"]["choices"]) == 147 + 104 + 8 + 35
    assert len(components["Prompt"]["choices"]) == 35
    assert components["Source prompt"]["value"] == load_preset("timed_test").entries[0].source
    names = {d.get("api_name") for d in blocks.config["dependencies"]}
    assert {"edit", "sweep", "debias", "push", "undo", "reset", "upload"} <= names


def test_a_model_that_cannot_load_is_a_clear_error():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--model", "no-such-user/no-such-model"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "could not load model 'no-such-user/no-such-model'" in done.stderr and "offline" in done.stderr


# ----------------------------------------------------------------------------------------------------------------------
# The app, served on the embedded toy model
# ----------------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(model: str = APP_MODEL, *extra: str, timeout: float = 240.0) -> tuple[subprocess.Popen, str]:
    """Starts `python app.py` on 127.0.0.1 and a free port; returns the process and its URL once it answers."""
    if model == "toy" and not (TOY_PIPELINE_DIR / "model_index.json").is_file():
        pytest.fail(
            f"the embedded toy model is missing from {TOY_PIPELINE_DIR}: the app tests run against it. "
            "Train it with `python -m time_core.shapes.train` (or restore time_core/shapes/weights/).",
            pytrace=False,
        )
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"time-app-{port}.log", "w")
    command = [sys.executable, str(ROOT / "app.py"), "--model", model, "--host", "127.0.0.1", "--port", str(port),
               "--max-upload-mb", str(MAX_UPLOAD_MB), *extra]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            log.flush()
            pytest.fail(f"app.py exited with code {process.returncode}:\n{Path(log.name).read_text()[-3000:]}",
                        pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    pytest.fail(f"app.py did not answer on {url} within {timeout:.0f} s", pytrace=False)


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def app_url():
    process, url = start_app()
    yield url
    stop_app(process)


def client(url):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=True)


def table(rows):
    return {"headers": list(demo.TEST_HEADERS), "data": rows}


def preset_table(key: str):
    return table(demo.preset_prompts(key).table())


def edit_call(c, source, destination, tests, lam="0.1", seeds=4, steps=None, keys=True, augment=True):
    config = demo.DemoConfig.for_model("toy")
    return c.predict(source, destination, tests, lam, keys, augment, seeds, 0, steps or config.steps,
                     config.guidance, 64, api_name="/edit")


def colours(gallery):
    from PIL import Image

    from time_core.shapes.colour_reader import read_colour

    return [read_colour(Image.open(item["image"])) for item in gallery]


def test_app_edit_endpoint_on_the_toy_model(app_url):
    c = client(app_url)
    api = c.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/edit", "/sweep", "/debias", "/push", "/undo", "/reset", "/upload"} <= set(api)
    # gr.State outputs are not returned to API clients: six outputs
    original, edited, scores, status, details, edit_file = edit_call(c, "a circle", "a green circle",
                                                                     preset_table("shapes:0"))
    seeds = 4
    assert len(original) == len(edited) == 11 * seeds  # source + 5 positives + 5 negatives
    assert len(details["images"]) == 11 * seeds
    for item in details["images"]:
        assert 0.0 <= item["p_destination_original"] <= 1.0 and 0.0 <= item["p_destination_edited"] <= 1.0
    assert all(item["caption"].startswith("P=") for item in original + edited)
    for model in ("original", "edited"):
        for metric in ("efficacy", "generality", "specificity"):
            value = details["scores"][model][metric]
            assert 0.0 <= value["mean"] <= 1.0 and value["std"] >= 0.0
    assert [row[0] for row in scores["data"]] == ["original model", "edited model"]
    assert "λ = 0.1" in status and Path(edit_file).suffix == ".safetensors"
    loaded = Edit.load(edit_file)
    assert loaded.sources == ("a circle",) and loaded.destinations == ("a green circle",) and loaded.lam == 0.1

    # same request again: every original comes from the cache
    *_, details_again, _ = edit_call(c, "a circle", "a green circle", preset_table("shapes:0"), lam="1")
    assert details_again["cached_originals"] == 11 * seeds


def test_app_edit_flips_the_source_colour_on_the_toy_model(app_url):
    c = client(app_url)
    seeds = 4
    original, edited, _, _, details, _ = edit_call(c, "a circle", "a green circle", preset_table("shapes:0"))
    # the colour reader confirms the edit: the source turns green, a negative keeps its colour
    original_colours, edited_colours = colours(original), colours(edited)
    source = slice(0, seeds)
    assert sum(c == "green" for c in edited_colours[source]) >= 3, edited_colours[source]
    assert sum(c == "green" for c in original_colours[source]) <= 1, original_colours[source]
    square = [i for i, item in enumerate(details["images"]) if item["prompt"] == "a square"]
    kept = sum(original_colours[i] == edited_colours[i] for i in square)
    assert kept >= 3, ([original_colours[i] for i in square], [edited_colours[i] for i in square])
    assert details["scores"]["edited"]["efficacy"]["mean"] >= 0.75



def test_app_two_sessions_in_parallel_get_their_own_results(app_url):
    requests = {
        "green circle": ("a circle", "a green circle", [["negative", "a square", "a green square"]], "green"),
        "red square": ("a square", "a red square", [["negative", "a circle", "a red circle"]], "red"),
    }
    results, errors = {}, []

    def run(name):
        try:
            source, destination, rows, _ = requests[name]
            results[name] = edit_call(client(app_url), source, destination, table(rows), seeds=3)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(name,)) for name in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for name, (source, destination, _, colour) in requests.items():
        original, edited, _, _, details, _ = results[name]
        assert details["edit"]["sources"] == [source] and details["edit"]["destinations"] == [destination]
        assert [item["prompt"] for item in details["images"][::3]] == [source, requests[name][2][0][1]]
        assert len(original) == len(edited) == 2 * 3


def test_app_bad_input_is_named_and_the_session_keeps_its_state(app_url, tmp_path):
    from gradio_client import handle_file

    c = client(app_url)
    stack = c.predict("a star", "a blue star", api_name="/push")  # gr.State outputs are not returned to clients
    assert stack["data"] == [[1, "a star", "a blue star"]]
    tests = table([["negative", "a square", "a green square"]])
    cases = [
        (("", "a green circle", tests, "0.1"), {}, "source is empty"),
        (("a circle", "a big green square", tests, "0.1"), {}, "does not contain the source word 'circle'"),
        (("a circle", "a green circle", tests, "abc"), {}, "λ must be a number > 0, got 'abc'"),
        (("a circle", "a green circle", tests, "0"), {}, "λ must be a finite number > 0"),
        (("a circle", "a green circle", tests, "0.1"), dict(seeds=40), "number of seeds is 40, more than the limit"),
        (("a circle", "a green circle", table([["negative", "a square", ""]]), "0.1"), {}, "has no destination"),
        (("a circle", "a green circle", tests, "0.1"), dict(steps=5000), "steps is 5000, more than the limit"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(Exception, match=message):
            edit_call(c, *args, **kwargs)

    oversize = tmp_path / "big.safetensors"
    oversize.write_bytes(b"\0" * int(0.8 * 1e6))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"{not safetensors")
    wide = Edit(M=torch.eye(32, dtype=torch.float64), sources=("a",), destinations=("a b",), lam=0.1)
    wide_path = wide.save(tmp_path / "wide.safetensors")
    for path, message in [(oversize, "edit files may be at most 0.5 MB"),
                          (corrupt, "not a readable safetensors file"),
                          (wide_path, "computed for text width 32")]:
        with pytest.raises(Exception, match=message):
            c.predict(handle_file(str(path)), api_name="/upload")

    # after all the errors, the stacked edit is still there: the next edit is a multi-edit with it
    *_, details, edit_file = edit_call(c, "a circle", "a green circle", tests, seeds=1)
    assert details["edit"]["sources"] == ["a star", "a circle"]
    # uploading the downloaded edit restores its pairs and settings
    restored = c.predict(handle_file(edit_file), api_name="/upload")
    assert restored[0]["data"] == [[1, "a star", "a blue star"]]
    assert list(restored[1:4]) == ["a circle", "a green circle", "0.1"]
    assert c.predict(api_name="/undo")["data"] == []


def test_app_sweep_endpoint(app_url):
    c = client(app_url)
    plot, strip, rows, status = c.predict(
        "a circle", "a green circle", preset_table("shapes:0"), True, True, -2, 4, 3, 1, 0, None, None, None,
        api_name="/sweep",
    )
    assert plot is not None and "3/3" in status
    assert len(rows["data"]) == 1 + 3 and rows["data"][0][0].startswith("original")
    assert len(strip) == 2 * (1 + 3)


def test_app_sweep_strip_turns_green_at_strong_lambda(app_url):
    c = client(app_url)
    _, strip, _, _ = c.predict(
        "a circle", "a green circle", preset_table("shapes:0"), True, True, -2, 4, 3, 1, 0, None, None, None,
        api_name="/sweep",
    )
    strip_colours = colours(strip)
    assert strip_colours[1] == "green" or strip_colours[2] == "green"  # the positive at strong λ turns green


def test_app_debias_endpoint(app_url):
    c = client(app_url)
    status, search, validation, tests, test_original, test_edited = c.predict(
        "shapes_debias:0", 50, 8, -3, 6, 4, None, None, None, api_name="/debias"
    )
    assert "F_p" in status and len(search["data"]) >= 1 + 1
    assert len(tests["data"]) == 5 + 1 and len(test_original) == len(test_edited) == 5 * 8
