"""The demo in a real browser (Chromium through Playwright), on the embedded toy model: pick a preset, run the edit,
wait for both galleries; run a λ sweep. Screenshots go to a temporary folder; with `--update-screenshot`
(`make screenshot`) the edit view is also copied to `docs/screenshot.png` for the README.

Chromium comes from Debian (`/usr/bin/chromium`); `make test` installs it when it is missing. This test never skips:
without Chromium it fails and says so. `pytest -m "not browser"` leaves it out.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, ROOT
from playwright.sync_api import expect, sync_playwright

import time_core.demo as demo

pytestmark = pytest.mark.browser

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


def grid_images(page, model: str) -> int:
    return page.locator(f'#comparison img[alt^="{model}"]').count()


def wait_for_grid(page, lam: str, stage: str = "edited", timeout: int = TIMEOUT_MS) -> None:
    page.wait_for_function(
        "(want) => { const g = document.querySelector('#comparison .comparison');"
        " return g && (want[0] === '' || g.dataset.lam === want[0]) && (want[1] === '' || g.dataset.stage === want[1]);"
        " }",
        arg=[lam, stage], timeout=timeout)


def open_page(browser, app_url, viewport=VIEWPORT):
    page = browser.new_page(viewport=viewport)
    page.goto(app_url)
    page.get_by_role("button", name="Edit and generate").wait_for(timeout=60_000)
    return page


def test_edit_in_the_browser(browser, app_url, tmp_path, request):
    config = demo.DemoConfig.for_model("toy")
    page = open_page(browser, app_url)
    assert "toy Shapes-world model" in page.locator("#model-line").inner_text()
    assert "device:" in page.locator("#model-line").inner_text()
    rows = len(demo.preset_prompts("shapes:0").rows())  # the source, its positives and negatives
    # the first page shows the default example's results without a click: the knob-free edit
    wait_for_grid(page, "", timeout=TIMEOUT_MS)
    status = page.locator("#status-line").inner_text()
    assert '"a circle" → "a green circle"' in status and "knob-free: chosen for this edit" in status
    assert grid_images(page, "edited model") == rows * config.num_seeds
    expect(page.locator("#knob-note")).to_contain_text("knob-free λ for this edit")

    # an example row fills both prompts and the λ box, moves the λ slider, and shows its results
    for cell, source, destination, lam, log_lam in (("a red square", "a square", "a red square", "10", "1"),
                                                    ("1000", "a circle", "a green circle", "1000", "3"),
                                                    ("0.1", "a circle", "a green circle", "0.1", "-1")):
        page.get_by_text(cell, exact=True).first.click()
        expect(page.get_by_label("Destination prompt")).to_have_value(destination, timeout=30_000)
        expect(page.get_by_label("λ", exact=True)).to_have_value(lam)
        sliders = page.get_by_label("log10 λ")  # the range input and its number box
        for i in range(sliders.count()):
            expect(sliders.nth(i)).to_have_value(log_lam)
        wait_for_grid(page, lam)
        expect(page.locator("#status-line")).to_contain_text(f'"{source}" → "{destination}"', timeout=30_000)

    # pick a preset through the searchable dropdown
    dropdown = page.get_by_label("Preset")
    dropdown.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("red squ")
    option = page.get_by_role("option", name="Shapes (hard) · a square → a red square")
    option.click()
    expect(page.get_by_label("Destination prompt")).to_have_value("a red square", timeout=30_000)
    expect(page.get_by_label("Source prompt")).to_have_value("a square")
    page.get_by_label("λ", exact=True).fill("0.3")
    page.get_by_role("button", name="Edit and generate").click()
    wait_for_grid(page, "0.3")
    prompts = demo.example_prompts("toy", "a square", "a red square")  # the preset picked above
    expected = len(prompts.rows()) * config.num_seeds
    assert grid_images(page, "original model") == grid_images(page, "edited model") == expected
    rows = page.locator("#comparison .cmp-row:not(.cmp-head)")
    assert rows.count() == len(prompts.rows())
    roles = [rows.nth(i).locator(".cmp-role").inner_text().split(" ")[0].lower() for i in range(rows.count())]
    assert roles == [role for role, _, _ in prompts.rows()]
    assert rows.nth(0).locator(".cmp-text").inner_text() == "a square"
    verdicts = rows.locator(".cmp-verdict b").all_inner_texts()
    negatives = 1 + len(prompts.positives)
    assert verdicts[0] in ("followed", "not followed") and set(verdicts[negatives:]) <= {"kept", "leaked"}
    assert "edited model" in page.locator("#comparison .cmp-head").inner_text()
    assert page.locator("#comparison .cmp-scroll").count() == 1  # one box: rows scroll together
    status = page.locator("#status-line").inner_text()
    assert '**' not in status and "λ = 0.3" in status

    page.screenshot(path=tmp_path / "edit.png", full_page=True)
    assert (tmp_path / "edit.png").stat().st_size > 10_000
    if request.config.getoption("--update-screenshot"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "edit.png", DOCS_SCREENSHOT)
    page.close()


def test_live_lambda_in_the_browser(browser, app_url):
    """After an edit, moving the slider or typing a λ shows that λ's edited images without a click."""
    page = open_page(browser, app_url)
    wait_for_grid(page, "")  # the first page's edit
    before = page.locator('#comparison img[alt^="edited model"]').first.get_attribute("src")
    slider = page.locator("input[type=range]").first
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    start = time.perf_counter()
    page.mouse.click(box["x"] + box["width"] * 4 / 9, box["y"] + box["height"] / 2)  # log10 λ = 1
    expect(page.get_by_label("λ", exact=True)).to_have_value("10", timeout=30_000)
    wait_for_grid(page, "10", stage="")
    shown = time.perf_counter() - start
    stage = page.locator("#comparison .comparison").get_attribute("data-stage")
    rows = page.locator("#comparison .cmp-row:not(.cmp-head)")
    for k in demo.preview_rows(demo.preset_prompts("shapes:0").rows()):  # source, first positive, first negative
        assert rows.nth(k).locator('img[alt^="edited model"]').count() >= 1, (k, stage)
    wait_for_grid(page, "10")
    assert page.locator('#comparison img[alt^="edited model"]').first.get_attribute("src") != before
    assert "λ = 10" in page.locator("#status-line").inner_text()
    print(f"live λ: first images after {shown:.2f} s (stage {stage})")
    page.get_by_label("λ", exact=True).fill("0.12345")  # typed: exactly that λ, the slider follows
    page.get_by_label("λ", exact=True).press("Enter")
    wait_for_grid(page, "0.12345")
    sliders = page.get_by_label("log10 λ")
    assert abs(float(sliders.nth(sliders.count() - 1).input_value()) - math.log10(0.12345)) < 0.13
    page.close()


def test_errors_stay_in_the_page_and_mark_results_stale(browser, app_url):
    page = open_page(browser, app_url)
    wait_for_grid(page, "")
    shown = grid_images(page, "edited model")
    page.get_by_label("λ", exact=True).fill("<b>1</b>")
    page.get_by_role("button", name="Edit and generate").click()
    box = page.locator("#edit-error")
    expect(box).to_contain_text("λ must be a number > 0, got '<b>1</b>'", timeout=30_000)  # escaped: shown as text
    assert box.locator(".error-box b").all_inner_texts() == ["Nothing was run:"]
    expect(page.locator("#edit-stale")).to_contain_text("stale")
    page.wait_for_timeout(12_000)  # a toast would be gone by now
    expect(box).to_contain_text("λ must be a number > 0")
    assert grid_images(page, "edited model") == shown  # the previous results stay, greyed out, without error badges
    opacity = page.locator("#comparison .comparison").evaluate("e => getComputedStyle(e).opacity")
    assert float(opacity) < 0.6
    assert page.locator("#comparison .error, #comparison [data-testid=status-tracker].error").count() == 0
    page.get_by_label("Source prompt").fill("a circle")  # typing marks the results stale too
    page.get_by_label("λ", exact=True).fill("1")
    page.get_by_role("button", name="Edit and generate").click()
    wait_for_grid(page, "1")
    expect(box).to_have_text("")
    expect(page.locator("#edit-stale")).to_have_text("")
    page.close()


def test_mobile_results_under_the_button(browser, app_url):
    """At 400 px the results come right under the button and scroll into view; the scores table is readable."""
    page = open_page(browser, app_url, viewport={"width": 400, "height": 800})
    wait_for_grid(page, "")
    page.get_by_label("λ", exact=True).fill("2")
    button = page.get_by_role("button", name="Edit and generate")
    button.click()
    wait_for_grid(page, "2")
    page.wait_for_timeout(1_000)
    grid = page.locator("#comparison").bounding_box()  # relative to the viewport, after scrolling
    assert grid["y"] < 800 and grid["y"] + grid["height"] > 0, grid  # on screen
    top = page.evaluate("(() => { const b = document.querySelector('#edit-button').getBoundingClientRect();"
                        " const g = document.querySelector('#comparison').getBoundingClientRect();"
                        " return g.top - b.bottom; })()")
    assert 0 <= top < 400, top  # right under the button (the status line between)
    cut = page.locator("#scores th").evaluate_all("cells => cells.filter(c => c.scrollWidth > c.clientWidth + 1)"
                                                  ".map(c => c.innerText)")
    assert cut == []
    page.screenshot(path=Path(os.environ.get("TMPDIR", "/tmp")) / "mobile.png", full_page=True)
    page.close()


def test_knob_free_and_paper_time_are_one_click_apart(browser, app_url, tmp_path):
    """The page opens on the knob-free edit (λ chosen per edit, marked on the slider's note and the sweep plot); one
    click runs the paper's TIME (λ = 0.1, no automatic preservation), one click goes back."""
    page = open_page(browser, app_url)
    wait_for_grid(page, "")
    expect(page.get_by_label("λ", exact=True)).to_have_value("auto")
    expect(page.get_by_label("Automatic preservation").first).to_be_checked()
    chosen = page.locator("#comparison .comparison").get_attribute("data-lam")
    page.get_by_role("button", name="paper's TIME (λ = 0.1)").click()
    wait_for_grid(page, "0.1")
    expect(page.get_by_label("Automatic preservation").first).not_to_be_checked()
    assert "knob-free" not in page.locator("#status-line").inner_text()
    page.get_by_role("button", name="knob-free (λ chosen per edit)").click()
    wait_for_grid(page, chosen)
    expect(page.locator("#status-line")).to_contain_text("knob-free: chosen for this edit")
    expect(page.get_by_label("λ", exact=True)).to_have_value("auto")
    page.get_by_role("tab", name="λ sweep").click()
    page.get_by_label("λ values").fill("3")
    page.get_by_label("seeds per λ").fill("1")
    page.get_by_role("button", name="Sweep λ").click()
    expect(page.locator("#sweep-status")).to_contain_text("3/3 λ values", timeout=TIMEOUT_MS)
    expect(page.locator("#sweep-status")).to_contain_text("knob-free λ for this edit")
    page.close()


def test_a_lora_download_and_a_lora_upload_in_the_browser(browser, app_url, tmp_path):
    page = open_page(browser, app_url)
    wait_for_grid(page, "")
    page.get_by_text("Download (edit file, LoRA), upload, edit stack").click()
    page.get_by_label("kohya (AUTOMATIC1111, ComfyUI)").check()
    page.get_by_role("button", name="Export as LoRA").click()
    expect(page.locator("#lora-report")).to_contain_text("largest relative error", timeout=TIMEOUT_MS)
    with page.expect_download() as download:
        page.locator("#lora-file a").first.click()
    assert download.value.suggested_filename.endswith("-lora-kohya.safetensors")
    lora = tmp_path / download.value.suggested_filename
    download.value.save_as(lora)
    assert lora.stat().st_size > 1_000
    page.locator("input[type=file]").last.set_input_files(str(lora))
    expect(page.locator("#edit-error")).to_contain_text("is a LoRA exported from a", timeout=60_000)
    expect(page.locator("#edit-error")).to_contain_text("upload the edit file")
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
    assert page.locator("#gallery-sweep .grid-container img").count() == expected
    assert f"{count}/{count} λ values" in page.locator("#sweep-status").inner_text()
    page.locator("#sweep-plot img").first.wait_for(timeout=30_000)  # the matplotlib figure, rendered
    page.screenshot(path=tmp_path / "sweep.png", full_page=True)
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    page.close()


def test_method_choice_in_the_browser(browser, app_url):
    """Choosing Diff-QuickFix on the Edit tab sets its λ, greys out "edit keys", and sets the λ sweep tab's choice;
    choosing TIME on the sweep tab sets them back."""
    page = open_page(browser, app_url)
    # the page load sets the knob-free default (λ = auto, TIME): choose a method only after it has
    expect(page.get_by_label("λ", exact=True)).to_have_value("auto", timeout=60_000)
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
