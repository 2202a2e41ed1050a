"""An operator's day with the keyboard only: Tab reaches every main control, with a visible
focus; Enter submits and follows; Escape dismisses messages and closes what was opened."""

import re

from playwright.sync_api import expect

from .support import CHAT_KEY

# What a screen reader would roughly call the focused element.
FOCUSED = """() => {
  const element = document.activeElement;
  const label = element.getAttribute("aria-label") || (element.labels && element.labels[0] && element.labels[0].textContent)
    || element.textContent;
  return label.trim().replace(/\\s+/g, " ").slice(0, 80);
}"""
FOCUS_IS_VISIBLE = "() => getComputedStyle(document.activeElement).outlineStyle !== 'none'"


def tab_to(page, name, key="Tab", limit=60):
    """Press Tab (or Shift+Tab) until `name` has the focus; the names passed on the way."""
    seen = []
    for _ in range(limit):
        page.keyboard.press(key)
        seen.append(page.evaluate(FOCUSED))
        if seen[-1] == name:
            assert page.evaluate(FOCUS_IS_VISIBLE), f"{name!r} has the focus but no visible outline"
            return seen
    raise AssertionError(f"{key} never reached {name!r}; it went through {seen}")


def test_keyboard_only(browser_page, operator, support_chat, many_sessions):
    page = browser_page
    page.goto("/login/")
    page.keyboard.type("olga")  # the username field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery staple")
    page.keyboard.press("Enter")
    expect(page).to_have_title("Sessions · Memory Admin")

    # The header first (whatever the navigation holds), then the search; the skip link jumps to the content.
    path = tab_to(page, "Key pattern")
    header = ["Skip to content", "Memory Admin", "Connection", "Switch", "Log out", "Key pattern"]
    assert [name for name in path if name in header] == header, path
    tab_to(page, "Skip to content", key="Shift+Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert tab_to(page, "Key pattern") == ["Key pattern"]

    page.keyboard.type("shop:*")
    page.keyboard.press("Enter")
    expect(page.locator("table.sessions td.key a")).to_have_count(7)
    tab_to(page, CHAT_KEY)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(CHAT_KEY)

    # The session's controls, in reading order.
    tab_to(page, "Copy session id")
    page.keyboard.press("Enter")
    expect(page.locator(".copy-status").first).to_have_text("Copied")
    for name in ("JSON", "Markdown", "Clear session…", "Link to this session", "Copy link"):
        tab_to(page, name, limit=2)

    tab_to(page, "Expire in")
    page.keyboard.press("Home")  # the first preset, 1 hour
    tab_to(page, "Set TTL", limit=1)  # the custom fields stay out of the way until chosen
    page.keyboard.press("Enter")
    expect(page.locator("#ttl")).to_contain_text("Saved.")
    expect(page.locator("#ttl .countdown")).to_have_text(re.compile(r"^(1:00:00|0:59:5\d)$"))
    assert page.evaluate("document.activeElement.id") == "ttl-set"  # the swap keeps the place

    # A raw element opens with Enter and closes with Escape, the focus staying on it.
    tab_to(page, "Raw")
    page.keyboard.press("Enter")
    raw = page.locator("details.raw-toggle").first
    expect(raw.locator("pre")).to_be_visible()
    page.keyboard.press("Escape")
    expect(raw.locator("pre")).to_be_hidden()
    assert page.evaluate(FOCUSED) == "Raw"

    # Back up to Clear; Enter asks first (the dialog is the browser's own), then the list says what happened.
    tab_to(page, "Clear session…", key="Shift+Tab")
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Enter")
    expect(page).to_have_title("Sessions · Memory Admin")
    message = page.locator("#alerts .alert")
    expect(message).to_contain_text(f"Cleared session “{CHAT_KEY}”")
    page.keyboard.press("Escape")
    expect(message).to_have_count(0)
