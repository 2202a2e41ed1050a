"""The sessions list: search by pattern, "Scan more", and what a Viewer may do."""

import re

from playwright.sync_api import expect

from .support import CHAT_KEY


def test_scan_more_appends_the_next_scan_page_without_duplicates(operator_page, many_sessions, settings):
    settings.MEMORYADMIN_PAGE_SIZE = 5
    page = operator_page
    page.goto("/")
    names = page.locator("table.sessions td.key a")
    expect(names).to_have_count(5)
    page.evaluate("window.notReloaded = true")  # htmx appends rows: the page itself stays

    page.get_by_role("link", name="Scan more").click()
    expect(names).to_have_count(10)
    page.get_by_role("link", name="Scan more").click()
    expect(names).to_have_count(len(many_sessions))

    expect(page.locator("tr.scan-end")).to_contain_text("every matching session is listed")
    expect(page.get_by_role("link", name="Scan more")).to_have_count(0)
    shown = names.all_inner_texts()
    assert sorted(shown) == sorted(many_sessions)  # each once; the rate-limit string is no session
    assert page.evaluate("window.notReloaded") is True


def test_search_by_pattern_and_by_exact_id(operator_page, many_sessions):
    page = operator_page
    page.goto("/")
    search = page.get_by_label("Key pattern")

    search.fill("shop:*")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"\?q=shop%3A\*$"))
    names = page.locator("table.sessions td.key a")
    expect(names).to_have_count(6)
    assert all(name.startswith("shop:") for name in names.all_inner_texts())
    expect(page.get_by_label("Key pattern")).to_have_value("shop:*")

    page.get_by_label("Key pattern").fill("message_store:travel-2")
    page.get_by_role("button", name="Search").click()
    expect(names).to_have_text(["message_store:travel-2"])

    page.get_by_label("Key pattern").fill("nothing-here")
    page.get_by_label("Key pattern").press("Enter")
    expect(page.locator(".empty")).to_contain_text("No sessions match nothing-here")
    expect(page.locator(".empty")).to_contain_text("try *nothing-here*")


def test_a_viewer_reads_and_exports_but_sees_no_write_buttons(viewer_page, support_chat, many_sessions):
    page = viewer_page
    page.goto("/")
    expect(page.locator("table.sessions td.key a")).to_have_count(len(many_sessions) + 1)
    expect(page.locator('input[name="k"]')).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Re-summarize"))).to_have_count(0)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Overview"])  # no Connections, Audit log, Summarizer

    page.get_by_role("link", name=CHAT_KEY).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(CHAT_KEY)
    expect(page.locator(".message")).to_have_count(6)
    for name in ("Set TTL", "Remove TTL", "Re-summarize"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_role("link", name="Clear session…")).to_have_count(0)
    expect(page.get_by_role("link", name="JSON")).to_be_visible()
    expect(page.get_by_role("button", name="Copy session id")).to_be_visible()
