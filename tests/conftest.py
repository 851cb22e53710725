"""Fixtures shared by the whole suite (helpers are in `tests/helpers.py`).

`python -m pytest -m "not browser"` skips the tests that drive Chromium; `--update-screenshot` makes the browser test
refresh `docs/screenshot.png` (`make screenshot`).
"""

from __future__ import annotations

import pytest
from helpers import MAX_UPLOAD_MB, MeanPixelScorer, make_tiny_pipeline, pipeline_hash, start_app, stop_app

__all__ = ["make_tiny_pipeline", "pipeline_hash"]  # also imported from here by tests that predate helpers.py


def pytest_addoption(parser):
    parser.addoption("--update-screenshot", action="store_true",
                     help="copy the browser test's view of the edit to docs/screenshot.png")


@pytest.fixture(scope="session")
def sd1():
    return make_tiny_pipeline("sd1")


@pytest.fixture(scope="session")
def sd2():
    return make_tiny_pipeline("sd2")


@pytest.fixture(scope="session")
def sdxl():
    return make_tiny_pipeline("sdxl")


@pytest.fixture(scope="session", params=["sd1", "sd2", "sdxl"])
def any_pipe(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def tokenizer():
    from time_core.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer()


@pytest.fixture(scope="module")
def app_url():
    """`app.py` served on the embedded toy model for the tests of one module (a small upload limit to test it)."""
    process, url = start_app("toy", "--max-upload-mb", str(MAX_UPLOAD_MB))
    yield url
    stop_app(process)


@pytest.fixture(scope="module")
def tiny_runtime(tmp_path_factory):
    """A demo runtime on a tiny random SD 1.x pipeline, scored by image brightness (no trained model needed)."""
    import time_core.demo as demo
    from time_core.evaluation.classifiers import ClipClassifier

    pipe = make_tiny_pipeline("sd1")
    config = demo.DemoConfig.for_model("tiny-sd1", family="toy", size=16, steps=2, num_seeds=2, scorer="none")
    return demo.DemoRuntime(pipe=pipe, classifier=ClipClassifier(MeanPixelScorer(name="brightness")), config=config,
                            cache=demo.OriginalCache(256), workdir=tmp_path_factory.mktemp("edits"))
