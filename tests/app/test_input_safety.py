"""Prompts are text everywhere in the page: HTML and Markdown typed into the prompt fields, or listed in an uploaded
edit file, make no element (image, link, emphasis, heading) in a real browser (Chromium through Playwright, on the
embedded toy model); the messages that quote them show them as written. Also: the served app's downloads carry no
path of the server, and its work folder is removed when it stops.

Chromium comes from Debian (`/usr/bin/chromium`), as for `test_browser.py`; `pytest -m "not browser"` leaves the
browser tests out.
"""

from __future__ import annotations

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app
from playwright.sync_api import expect, sync_playwright

import time_core.demo as demo
from time_core import compute_edit, load_edit, load_pipeline

# Every marker starts with "zz", which no element the page makes itself holds. Typed prompts may be long (the error
# that refuses them quotes them whole); those of an edit file must fit the toy model's 20 tokens.
HTML = ('<img src="http://127.0.0.1:9/zzpixel.png" onerror="window.zzpwned=1"> '
        '<a href="http://zzevil.example">zzlink</a>')
MARKDOWN = ("[Session expired: sign in again](http://zzevil.example/login) ![zzimage](http://zzevil.example/i.png) "
            "**zzbold** _zzitalic_ `zzcode` https://zzevil.example/bare www.zzevil.example zz@evil.example")
FILE_DESTINATIONS = ("a circle [zzlink](http://zz.example)", "a red square <img src=zz.png onerror=zzp()>")
FILE_PRESERVE = ("https://zz.example www.zz.example zz@zz.example", "![zzimage](//zz.example/i.png)",
                 "<b>zzb</b> **zzbold** `zzcode`", "<a href=//zz.example>zzlink</a>")
# Elements that content could have made: any of them holding or pointing at a marker is a failure; but for the link
# to download the edit file, which the app makes (named after the destination) and serves itself.
FOUND = """() => {
    const hits = [];
    const made = 'img, a, strong, em, b, i, code, h1, h2, h3, iframe, script, svg image';
    for (const e of document.querySelectorAll(made)) {
        const own = e.dataset.testid === 'download-link' && e.href.startsWith(location.origin + '/gradio_api/file=');
        if (own) continue;
        const what = (e.getAttribute('src') || '') + ' ' + (e.getAttribute('href') || '') + ' ' + e.textContent;
        if (/zz/.test(what)) hits.push(e.outerHTML.slice(0, 200));
    }
    if (window.zzpwned) hits.push('the onerror handler ran');
    return hits;
}"""

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1366, "height": 768}
TIMEOUT_MS = 240_000  # an Edit click on a busy CPU


@pytest.fixture(scope="module")
def page(app_url):
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is missing ({CHROMIUM}): run `make test`, which installs it.", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(app_url)
        page.get_by_role("button", name="Edit and generate").wait_for(timeout=60_000)
        # the first page's edit (the default example) has shown its results: nothing else writes the error box
        expect(page.locator('#comparison .comparison[data-stage="edited"]')).to_be_visible(timeout=TIMEOUT_MS)
        yield page
        browser.close()


def test_typed_html_and_markdown_make_no_element(page):
    for source, destination in ((f"a circle {HTML}", "a green circle"), ("a circle", f"a circle {MARKDOWN}")):
        page.get_by_label("Source prompt").fill(source)
        page.get_by_label("Destination prompt").fill(destination)
        page.get_by_role("button", name="Edit and generate").click()
        hostile = source if source != "a circle" else destination
        message = page.locator("#edit-error").filter(has_text="the text encoder reads at most 20")
        expect(message.filter(has_text=hostile)).to_be_visible(timeout=60_000)  # quoted as typed, as text
        assert page.evaluate(FOUND) == []
    page.get_by_label("λ", exact=True).fill(f"1{HTML}")
    page.get_by_label("λ", exact=True).press("Enter")  # a typed λ is shown at once: the error box says what is wrong
    expect(page.locator("#edit-error").filter(has_text=f"λ must be a number > 0, got '1{HTML}'")).to_be_visible(
        timeout=30_000)
    assert page.evaluate(FOUND) == []


def test_an_uploaded_edit_file_of_html_and_markdown_makes_no_element(page, tmp_path):
    sources = ("a circle", "a square")
    edit = compute_edit(load_pipeline("toy"), sources, FILE_DESTINATIONS, preserve=FILE_PRESERVE, augment=False)
    path = edit.save(tmp_path / "hostile.safetensors")

    page.get_by_text("Download (edit file, LoRA), upload, edit stack").click()
    page.locator("input[type=file][accept='.safetensors']").set_input_files(str(path))  # the edit upload
    expect(page.get_by_label("Destination prompt")).to_have_value(FILE_DESTINATIONS[1], timeout=60_000)
    expect(page.get_by_label("Stacked edits")).to_contain_text(FILE_DESTINATIONS[0], timeout=30_000)
    page.get_by_label("λ", exact=True).fill("0.1")
    page.get_by_role("button", name="Edit and generate").click()
    status = page.locator("#status-line")
    expect(status).to_contain_text("keeping 4 prompts", timeout=TIMEOUT_MS)  # this edit's line, not the last one's
    expect(status).not_to_contain_text("generating", timeout=TIMEOUT_MS)
    shown = status.inner_text()
    assert "keeping 4 prompts" in shown and all(p in shown for p in FILE_PRESERVE[:3]), shown  # as written, as text
    assert page.evaluate(FOUND) == []


def test_downloads_carry_no_server_path_and_the_work_folder_goes_with_the_app(tmp_path, monkeypatch):
    from gradio_client import Client

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the app makes its work folder
    process, url = start_app("toy")
    try:
        client = Client(url, verbose=False, download_files=True)
        tests = {"headers": list(demo.TEST_HEADERS), "data": [["negative", "a square", "a green square"]]}
        *_, edit_file = client.predict("a circle", "a green circle", tests, "0.1", True, True, 1, 0, 2, 5.0, 64,
                                       api_name="/edit")
        assert load_edit(edit_file).model == "toy"  # not the folder the server loaded it from
        work = list(tmp_path.glob("time-demo-*"))
        assert len(work) == 1 and list(work[0].rglob("*.safetensors"))
    finally:
        stop_app(process)  # SIGTERM, as a stopped container or Space gets
    assert process.returncode is not None and not list(tmp_path.glob("time-demo-*"))
