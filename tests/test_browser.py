"""The app in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser).

Loads the page, uploads a clip, asks a question, waits for the answer label and the frame strip, and
saves a screenshot to test-output/browser.png for a person to look at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-output" / "browser.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def page(app_url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        yield page
        browser.close()


def test_upload_ask_and_see_answers_and_frames(page, demo_examples):
    from playwright.sync_api import expect

    expect(page.get_by_text("Randomly initialised clover-tiny")).to_be_visible(timeout=30_000)  # checkpoint note
    page.locator("#clip input[type=file]").set_input_files(str(demo_examples / "clips" / "noise_a.mp4"))
    expect(page.locator("#clip video")).to_have_count(1, timeout=30_000)  # the upload is shown
    page.locator("#question textarea").fill("what color is the circle ?")
    page.locator("#ask").click()
    captions = page.locator("#frames").get_by_text(re.compile(r"^t=\d+\.\d s · relevance [01]\.\d\d$"))
    expect(captions).to_have_count(8, timeout=60_000)
    expect(page.locator("#frames img")).to_have_count(8)
    expect(captions.first).to_have_text(re.compile("^t=0.0 s"))
    answers = page.locator("#answers")
    expect(answers).to_contain_text("%")  # confidences are shown as percentages
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_unreadable_upload_shows_the_message(page, tmp_path):
    from playwright.sync_api import expect

    from tests.media import text_as_video

    page.goto(page.url)
    page.locator("#clip input[type=file]").set_input_files(str(text_as_video(tmp_path / "notes.mp4")))
    page.locator("#question textarea").fill("what color is the circle ?")
    page.locator("#ask").click()
    expect(page.get_by_text("cannot read video").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Traceback")).to_have_count(0)
