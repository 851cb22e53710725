"""`app.py` served on the embedded toy model, called through `gradio_client`: the endpoints, colours read back from the
images, two sessions at once, bad input."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

import time_core.demo as demo
from time_core import Edit, EditRequest, QuickFixEdit, load_edit


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
    rows = len(demo.preset_prompts("shapes:0").rows())  # the source, its positives and negatives
    assert len(original) == len(edited) == rows * seeds
    assert len(details["images"]) == rows * seeds
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
    assert details_again["cached_originals"] == rows * seeds


def test_app_edit_flips_the_source_colour_on_the_toy_model(app_url):
    c = client(app_url)
    seeds = 4
    original, edited, _, _, details, _ = edit_call(c, "a circle", "a green circle", preset_table("shapes:0"))
    # the colour reader confirms the edit: the source turns green, a negative keeps its colour
    original_colours, edited_colours = colours(original), colours(edited)
    source = slice(0, seeds)
    assert sum(c == "green" for c in edited_colours[source]) >= 3, edited_colours[source]
    assert sum(c == "green" for c in original_colours[source]) <= 1, original_colours[source]
    unrelated = next(p.prompt for p in demo.preset_prompts("shapes:0").negatives if p.type == "unrelated")
    square = [i for i, item in enumerate(details["images"]) if item["prompt"] == unrelated]
    kept = sum(original_colours[i] == edited_colours[i] for i in square)
    assert len(square) == seeds and kept >= 3, ([original_colours[i] for i in square],
                                                [edited_colours[i] for i in square])
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
    for name, (source, destination, _, _) in requests.items():
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
    wide = Edit(M=torch.eye(32, dtype=torch.float64), request=EditRequest(("a",), ("a b",)), lam=0.1)
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


def test_app_diff_quickfix_through_the_endpoints(app_url):
    """The method input of /edit and /sweep, its edit file, and /upload restoring the method."""
    from gradio_client import handle_file

    c = client(app_url)
    config = demo.DemoConfig.for_model("toy")
    seeds = 2
    original, edited, _, status, details, edit_file = c.predict(
        "a circle", "a green circle", preset_table("shapes:0"), "0.01", True, True, seeds, 0, config.steps,
        config.guidance, 64, "diff-quickfix", api_name="/edit")
    assert details["edit"]["method"] == "diff-quickfix" and "Diff-QuickFix" in status and "λ = 0.01" in status
    assert Path(edit_file).name.startswith("diff-quickfix-") and isinstance(load_edit(edit_file), QuickFixEdit)
    assert sum(c == "green" for c in colours(edited[:seeds])) == seeds  # the source turns green
    assert sum(c == "green" for c in colours(original[:seeds])) == 0
    with pytest.raises(Exception, match="edit_keys=False"):
        c.predict("a circle", "a green circle", preset_table("shapes:0"), "0.01", False, True, 1, 0, config.steps,
                  config.guidance, 64, "diff-quickfix", api_name="/edit")
    with pytest.raises(Exception, match="not in the list of choices"):  # gradio checks the radio's choices
        c.predict("a circle", "a green circle", preset_table("shapes:0"), "0.01", True, True, 1, 0, config.steps,
                  config.guidance, 64, "uce", api_name="/edit")
    restored = c.predict(handle_file(edit_file), api_name="/upload")
    assert list(restored[1:4]) == ["a circle", "a green circle", "0.01"]
    assert list(restored[-4:]) == ["diff-quickfix"] * 2 + [False] * 2  # the method and the preservation switches
    *_, status, details, auto_file = c.predict("a circle", "a green circle", preset_table("shapes:0"), "0.1", True,
                                               True, 1, 0, config.steps, config.guidance, 64, "time", True,
                                               api_name="/edit")
    preserve = details["edit"]["preserve"]  # automatic: the circle in the other colours, in the corpus' frames
    assert details["edit"]["method"] == "time" and "an image of two blue circles on a white background" in preserve
    assert f'keeping {len(preserve)} derived prompts ("{preserve[0]}"' in status
    assert load_edit(auto_file).auto_preserve and list(c.predict(handle_file(auto_file), api_name="/upload")[-4:]) == [
        "time", "time", True, True]  # an uploaded automatic edit turns the switches on
    plot, strip, rows, status = c.predict(
        "a circle", "a green circle", preset_table("shapes:0"), True, True, -2, 2, 2, 1, 0, None, None, None,
        "diff-quickfix", api_name="/sweep")
    assert "2/2" in status and colours(strip)[1:3] == ["green", "green"]  # the positive at both λ


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



def test_app_debias_converges_with_its_defaults_and_shows_the_reported_lambda(app_url):
    """The Debias tab's defaults (16 images, 8 steps, log10 λ in [-3, 6], target 50%) on the toy model: the search
    converges (within one image of the target) and the validation images are those of the λ it reports."""
    config = demo.DemoConfig.for_model("toy")
    c = client(app_url)
    status, search, validation, tests, *_ = c.predict(
        "shapes_debias:0", 50, config.debias_seeds, demo.LOG_LAM_MIN, demo.LOG_LAM_MAX, config.debias_iterations,
        None, None, None, api_name="/debias")
    assert "(converged" in status, status
    reported = status.split("**λ = ")[1].split("**")[0]
    assert len(validation) == config.debias_seeds
    assert all(item["caption"].startswith(f"λ = {reported} (reported) · ") for item in validation)
    last = search["data"][-1]
    assert last[1] == reported and last[3].endswith("✓")
