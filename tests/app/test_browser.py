"""The demo in a real browser (Chromium through Playwright), on the embedded toy model: pick a preset, run the edit,
wait for both galleries; run a λ sweep. Screenshots go to a temporary folder; with `--update-screenshot`
(`make screenshot`) the edit view is also copied to `docs/screenshot.png` for the README.

Chromium comes from Debian (`/usr/bin/chromium`); `make test` installs it when it is missing. This test never skips:
without Chromium it fails and says so. `pytest -m "not browser"` leaves it out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import ROOT
from playwright.sync_api import expect, sync_playwright

import time_core.demo as demo

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
DOCS_SCREENSHOT = ROOT / "docs" / "screenshot.png"
TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is missing ({CHROMIUM}): run `make test`, which installs it "
            "(apt-get update && apt-get install -y chromium) before running pytest.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def gallery_images(page, elem_id: str) -> int:
    return page.locator(f"#{elem_id} .grid-container img").count()


def test_edit_in_the_browser(browser, app_url, tmp_path, request):
    config = demo.DemoConfig.for_model("toy")
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(app_url)
    page.get_by_role("button", name="Edit and generate").wait_for(timeout=60_000)
    assert "toy Shapes-world model" in page.locator("#model-line").inner_text()
    assert "device:" in page.locator("#model-line").inner_text()

    # an example row fills both prompts and the λ box, and moves the λ slider to the same value
    for cell, destination, lam, log_lam in (("a red square", "a red square", "10", "1"),
                                            ("1000", "a green circle", "1000", "3"),
                                            ("a green circle", "a green circle", "0.1", "-1")):  # the first row
        page.get_by_text(cell, exact=True).first.click()
        expect(page.get_by_label("Destination prompt")).to_have_value(destination, timeout=30_000)
        expect(page.get_by_label("λ", exact=True)).to_have_value(lam)
        sliders = page.get_by_label("log10 λ")  # the range input and its number box
        for i in range(sliders.count()):
            expect(sliders.nth(i)).to_have_value(log_lam)

    # pick a preset through the searchable dropdown
    dropdown = page.get_by_label("Preset")
    dropdown.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("red squ")
    option = page.get_by_role("option", name="Shapes (hard) · a square → a red square")
    option.click()
    expect(page.get_by_label("Destination prompt")).to_have_value("a red square", timeout=30_000)
    expect(page.get_by_label("Source prompt")).to_have_value("a square")

    page.get_by_role("button", name="Edit and generate").click()
    expected = 11 * config.num_seeds  # source + 5 positives + 5 negatives, each seed
    page.wait_for_function(
        f"document.querySelectorAll('#gallery-edited .grid-container img').length >= {expected}", timeout=TIMEOUT_MS
    )
    assert gallery_images(page, "gallery-original") == expected
    assert gallery_images(page, "gallery-edited") == expected
    assert "original model" in page.locator("#gallery-original").inner_text()
    assert "edited model" in page.locator("#gallery-edited").inner_text()
    captions = page.locator("#gallery-edited .caption-label").all_inner_texts()
    assert len(captions) == expected and all(c.startswith("P=") for c in captions)
    assert "λ = 0.1" in page.locator("#status-line").inner_text()

    page.screenshot(path=tmp_path / "edit.png", full_page=True)
    assert (tmp_path / "edit.png").stat().st_size > 10_000
    if request.config.getoption("--update-screenshot"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "edit.png", DOCS_SCREENSHOT)
    page.close()


def test_lambda_sweep_in_the_browser(browser, app_url, tmp_path):
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(app_url)
    page.get_by_role("button", name="Edit and generate").wait_for(timeout=60_000)
    page.get_by_role("tab", name="λ sweep").click()
    count = 8
    page.get_by_label("λ values").fill(str(count))
    page.get_by_label("seeds per λ").fill("1")
    page.get_by_role("button", name="Sweep λ").click()
    expected = 2 * (count + 1)  # one positive and one negative prompt: the original, then each λ
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#gallery-sweep .caption-label'))"
        f".filter(e => !e.textContent.includes('pending')).length >= {expected}",
        timeout=TIMEOUT_MS,
    )
    assert gallery_images(page, "gallery-sweep") == expected
    assert f"{count}/{count} λ values" in page.locator("#sweep-status").inner_text()
    page.locator("#sweep-plot img").first.wait_for(timeout=30_000)  # the matplotlib figure, rendered
    page.screenshot(path=tmp_path / "sweep.png", full_page=True)
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    page.close()


def test_method_choice_in_the_browser(browser, app_url):
    """Choosing Diff-QuickFix on the Edit tab sets its λ, greys out "edit keys", and sets the λ sweep tab's choice;
    choosing TIME on the sweep tab sets them back."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(app_url)
    page.get_by_role("button", name="Edit and generate").wait_for(timeout=60_000)
    radios = page.get_by_label("Diff-QuickFix (text encoder)")
    radios.first.check()
    expect(page.get_by_label("λ", exact=True)).to_have_value("0.01", timeout=30_000)
    expect(page.get_by_label("Edit keys too (K+V)")).to_be_disabled()
    expect(page.get_by_label("Edit keys too (K+V)")).to_be_checked()
    expect(radios.last).to_be_checked()
    page.get_by_role("tab", name="λ sweep").click()
    page.get_by_label("TIME (UNet cross-attention)").last.check()
    page.get_by_role("tab", name="Edit").click()
    expect(page.get_by_label("TIME (UNet cross-attention)").first).to_be_checked(timeout=30_000)
    expect(page.get_by_label("λ", exact=True)).to_have_value("0.1")
    expect(page.get_by_label("Edit keys too (K+V)")).to_be_enabled()
    page.close()
