"""The main pages at a phone's and a desktop's width, light and dark, saved as screenshots in test-artifacts/."""

import pytest
from playwright.sync_api import expect

from .support import CHAT_KEY, DESKTOP, PHONE, detail_path, screenshot

# Wider than the viewport means the whole page scrolls sideways: tables and code scroll in their own boxes.
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.mark.parametrize(
    ("width", "viewport"),
    [pytest.param(name, size, id=name) for name, size in (("desktop", DESKTOP), ("phone", PHONE))],
)
def test_main_pages_fit_the_screen(operator_page, width, viewport, support_chat, many_sessions, console):
    console.allow(rf"status of 404 .*{detail_path('no-such-session')}")  # that page is a 404
    page = operator_page
    page.set_viewport_size(viewport)
    pages = {
        "sessions": "/",
        "transcript": detail_path(CHAT_KEY),
        "clear": detail_path(CHAT_KEY) + "clear/",
        "not-found": detail_path("no-such-session"),
        "login": "/login/",
    }
    page.goto("/overview/")
    page.get_by_role("button", name="Measure now").click()  # the pages' list has its charts then
    expect(page.locator("svg.chart").first).to_be_visible()
    pages["overview"] = "/overview/"
    for name, path in pages.items():
        page.goto(path)
        expect(page.locator("main")).not_to_be_empty()
        assert page.evaluate(OVERFLOW) == 0, f"{name} is wider than a {width} screen"
        screenshot(page, f"{name}-{width}")
    page.emulate_media(color_scheme="dark")
    page.goto(detail_path(CHAT_KEY))
    expect(page.locator("main")).not_to_be_empty()
    # The dark theme's colours (static/css/app.css), not the light ones: light text on a dark page.
    expect(page.locator("body")).to_have_css("background-color", "rgb(20, 23, 28)")
    expect(page.locator("body")).to_have_css("color", "rgb(230, 233, 238)")
    assert page.evaluate(OVERFLOW) == 0, f"the dark transcript is wider than a {width} screen"
    screenshot(page, f"transcript-{width}-dark")
