"""An operator's writes on a session: TTL, persist, clear, re-summarize; all without a page reload."""

import re

from playwright.sync_api import expect

from memoryadmin.services.upstash import get_client
from memoryadmin.summaries.models import SummaryJob
from memoryadmin.tasks import summarize_session
from tests.factories import langchain

from .support import CHAT_KEY, detail_path


def test_set_a_ttl_inline_watch_it_count_down_then_remove_it(operator_page, support_chat, store):
    page = operator_page
    page.goto(detail_path(CHAT_KEY))
    page.evaluate("window.notReloaded = true")
    ttl = page.locator("#ttl")
    expect(ttl).to_contain_text("never expires")

    page.get_by_label("Expire in").select_option(label="1 hour")
    page.get_by_role("button", name="Set TTL").click()
    expect(ttl).to_contain_text("Saved.")
    countdown = ttl.locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^(1:00:00|0:59:5\d)$"))
    shown = countdown.inner_text()
    expect(countdown).not_to_have_text(shown)  # it ticks, from the page's own script
    assert 3590 < store.call("TTL", CHAT_KEY) <= 3600

    page.get_by_label("Expire in").select_option(label="Custom…")
    page.get_by_label("Custom amount").fill("2")
    page.get_by_label("Custom unit").select_option("days")
    page.get_by_role("button", name="Set TTL").click()
    expect(countdown).to_have_text(re.compile(r"^(2 d 0:00:00|1 d 23:59:5\d)$"))

    page.get_by_role("button", name="Remove TTL").click()
    expect(ttl).to_contain_text("never expires")
    expect(countdown).to_have_count(0)
    assert store.call("TTL", CHAT_KEY) == -1
    assert page.evaluate("window.notReloaded") is True


def test_clear_asks_first_then_lands_on_the_list_with_a_message(operator_page, support_chat, many_sessions, store):
    page = operator_page
    page.goto(detail_path(CHAT_KEY))
    clear = page.get_by_role("link", name="Clear session…")
    asked = []

    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    clear.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(CHAT_KEY)
    # The name is bidi-isolated (U+2068 … U+2069): a key's direction controls cannot reorder the question.
    assert asked == [
        f"Clear session “\u2068{CHAT_KEY}\u2069”? Its 6 messages and its summary will be deleted for good."
    ]
    assert store.call("EXISTS", CHAT_KEY) == 1

    page.once("dialog", lambda dialog: dialog.accept())
    clear.click()
    expect(page).to_have_title("Sessions · Memory Admin")
    expect(page.locator("#alerts")).to_have_text(
        re.compile(f"Cleared session “{CHAT_KEY}”: 6 messages and its summary were deleted.")
    )
    expect(page.locator("table.sessions td.key a")).to_have_count(len(many_sessions))
    assert store.call("EXISTS", CHAT_KEY) == 0


def test_re_summarize_shows_the_job_queued_then_the_summary(operator_page, support_chat, settings):
    """The job is queued (nothing runs it yet), the panel polls; then the test runs the queued task, as a worker would."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    page = operator_page
    page.goto(detail_path(CHAT_KEY))
    panel = page.locator("#summary-panel")
    expect(panel).to_contain_text("None yet.")

    panel.get_by_role("button", name="Re-summarize").click()
    expect(panel.locator(".job-status")).to_contain_text("Re-summarizing… (queued")
    expect(panel.get_by_role("button", name="Re-summarize")).to_have_count(0)

    summarize_session.call(SummaryJob.objects.get(session_key=CHAT_KEY, status="queued").pk)
    expect(panel.locator(".badge-fresh")).to_have_text("fresh")  # the next poll shows it
    expect(panel).to_contain_text("extractive · covers 6 of 6 messages")
    expect(panel.locator(".job-status")).to_have_count(0)
    expect(panel.get_by_role("button", name="Re-summarize")).to_be_visible()


def test_a_link_to_another_connection_is_read_only_until_switched(operator_page, support_chat, second, store):
    page = operator_page
    staging = get_client(second.to_store_connection())
    staging.call("LPUSH", CHAT_KEY, langchain("human", "the staging copy"))
    page.goto(f"{detail_path(CHAT_KEY)}?connection={second.pk}")
    banner = page.locator(".linked")
    expect(banner).to_contain_text("You are viewing staging bot from a link; your connection is still default")
    expect(page.locator(".transcript")).to_contain_text("the staging copy")
    expect(page.get_by_role("button", name="Set TTL")).to_have_count(0)
    expect(page.get_by_role("link", name="Clear session…")).to_have_count(0)
    expect(page.locator("#connection-switch")).to_have_value("env")  # following the link switched nothing

    banner.get_by_role("button", name="Switch to staging bot").click()
    expect(page).to_have_url(re.compile(re.escape(detail_path(CHAT_KEY)) + "$"))
    expect(page.locator("#connection-switch")).to_have_value(str(second.pk))
    expect(page.locator(".linked")).to_have_count(0)
    page.get_by_role("button", name="Remove TTL").click()
    expect(page.locator("#ttl")).to_contain_text("Saved.")


def test_a_write_after_switching_in_another_tab_is_refused_in_the_alert_area(
    operator_page, support_chat, second, store, console
):
    console.allow(r"status of 409", r"Response Status Error Code 409")
    page = operator_page
    page.goto(detail_path(CHAT_KEY))
    other_tab = page.context.new_page()
    other_tab.goto("/")
    other_tab.locator("#connection-switch").select_option(str(second.pk))
    other_tab.get_by_role("button", name="Switch", exact=True).click()
    expect(other_tab.locator("#connection-switch")).to_have_value(str(second.pk))

    page.get_by_label("Expire in").select_option(label="1 hour")
    page.get_by_role("button", name="Set TTL").click()
    alert = page.locator("#alerts")
    expect(alert).to_contain_text("Nothing was changed")
    expect(alert).to_contain_text("but you are now working on “staging bot”")
    assert store.call("TTL", CHAT_KEY) == -1
