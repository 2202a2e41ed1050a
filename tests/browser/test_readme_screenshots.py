"""The README's screenshots of the demo data, written to docs/screenshots/ to be committed.

Skipped unless MEMORYADMIN_README_SCREENSHOTS=1 (`make screenshots`): they only
change when the pages do, and a normal run must not touch tracked files.
"""

import os

import pytest
from playwright.sync_api import expect

from memoryadmin.dashboard.management.demo_data import LONG_SESSION_KEY, seed_demo

from .support import BASE_DIR, detail_path

README_SCREENSHOTS = BASE_DIR / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 860}

pytestmark = pytest.mark.skipif(
    not os.environ.get("MEMORYADMIN_README_SCREENSHOTS"),
    reason="set MEMORYADMIN_README_SCREENSHOTS=1 (make screenshots)",
)


def test_readme_screenshots(operator_page, store):
    seed_demo(store, sessions=60, long_session_messages=300)
    # The demo's summarized session with a TTL: the transcript page with the most to show.
    _, summaries = store.call("SCAN", 0, "MATCH", "memoryadmin:summary:*", "COUNT", 1000)
    key = next(
        name.decode().removeprefix("memoryadmin:summary:")
        for name in summaries
        if LONG_SESSION_KEY not in name.decode()
    )
    page = operator_page
    page.set_viewport_size(VIEWPORT)
    README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto("/")
    expect(page.locator("table.sessions td.key a").first).to_be_visible()
    page.screenshot(path=README_SCREENSHOTS / "sessions.png")

    page.goto(detail_path(key))
    expect(page.locator("#ttl .countdown")).to_be_visible()
    page.screenshot(path=README_SCREENSHOTS / "transcript.png")

    # The overview, measured twice so that its trend shows too.
    page.goto("/overview/")
    for _ in range(2):
        page.get_by_role("button", name="Measure now").click()
        expect(page.locator("#overview-run")).to_contain_text("Status: done")
    page.screenshot(path=README_SCREENSHOTS / "overview.png", full_page=True)
