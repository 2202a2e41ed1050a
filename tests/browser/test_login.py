"""Logging in and out through the real form (other tests sign in with a session cookie)."""

import re

from playwright.sync_api import expect

PASSWORD = "correct horse battery staple"


def test_log_in_lands_on_the_sessions_with_the_connection_in_view(browser_page, operator, many_sessions, local_store):
    browser_page.goto("/")
    expect(browser_page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(browser_page.get_by_label("Username")).to_be_focused()
    browser_page.get_by_label("Username").fill("olga")
    browser_page.get_by_label("Password").fill(PASSWORD)
    browser_page.get_by_role("button", name="Log in").click()

    expect(browser_page).to_have_title("Sessions · Memory Admin")
    expect(browser_page.locator("table.sessions td.key a")).to_have_count(len(many_sessions))
    header = browser_page.locator("header.topbar")
    expect(header).to_contain_text("olga")
    expect(header.get_by_label("Connection")).to_have_value("env")
    expect(header).to_contain_text(local_store.url.split("//")[1])

    browser_page.get_by_role("button", name="Log out").click()
    expect(browser_page).to_have_url(re.compile(r"/login/$"))


def test_a_wrong_password_says_what_to_do(browser_page, operator):
    browser_page.goto("/login/")
    browser_page.get_by_label("Username").fill("olga")
    browser_page.get_by_label("Password").fill("not it")
    browser_page.get_by_label("Password").press("Enter")
    alert = browser_page.get_by_role("alert")
    expect(alert).to_contain_text("correct username and password")
    expect(alert).to_contain_text("ask an admin")
    expect(browser_page.get_by_label("Username")).to_have_value("olga")
