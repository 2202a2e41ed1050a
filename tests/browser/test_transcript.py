"""Reading a transcript: paging back, rendering, copying its id and link, exporting it."""

import json
import re
from pathlib import Path

from playwright.sync_api import expect

from memoryadmin.audit.models import AuditEvent
from tests.factories import langchain, llamaindex, write_langchain_session

from .support import CHAT_KEY, SUPPORT_CHAT, detail_path


def test_open_a_transcript_and_load_earlier_messages(operator_page, store, settings):
    settings.MEMORYADMIN_TRANSCRIPT_WINDOW = 4
    write_langchain_session(store, "long-chat", [f"message {index}" for index in range(10)])
    page = operator_page
    page.goto("/")
    page.get_by_role("link", name="long-chat").click()

    texts = page.locator(".message .text")
    expect(texts).to_have_text([f"message {index}" for index in range(6, 10)])
    page.get_by_role("link", name="Earlier messages (6 more)").click()
    expect(texts).to_have_text([f"message {index}" for index in range(2, 10)])
    page.get_by_role("link", name="Earlier messages (2 more)").click()
    expect(texts).to_have_text([f"message {index}" for index in range(10)])
    expect(page.get_by_role("link", name=re.compile("Earlier messages"))).to_have_count(0)
    expect(page.locator(".message .index")).to_have_text([f"#{index + 1}" for index in range(10)])


def test_roles_code_blocks_and_markup_that_stays_text(operator_page, support_chat):
    page = operator_page
    page.goto(detail_path(CHAT_KEY))
    for role, count in (("system", 1), ("human", 2), ("ai", 2), ("tool", 1)):
        expect(page.locator(f"li.message.role-{role}")).to_have_count(count)
    colours = page.evaluate(
        """[...document.querySelectorAll("li.message")].map((m) => getComputedStyle(m).borderLeftColor)"""
    )
    assert len(set(colours)) == 4  # one colour per role

    code = page.locator("li.message pre.code code.language-bash")
    expect(code).to_have_text("curl https://track.example.com/A-1042 | jq '.events[] | <b>.status</b>'")
    expect(page.locator("#transcript b, #transcript script")).to_have_count(0)  # escaped, never markup
    expect(page.locator("li.message.role-human").last).to_contain_text("Great, thanks <script>alert('x')</script>!")

    call = page.locator("details.tool-call")
    expect(call.locator("pre")).to_be_hidden()
    call.locator("summary").click()
    expect(call.locator("pre")).to_contain_text('"order": "A-1042"')


def test_a_very_long_message_links_to_all_of_it(operator_page, store):
    store.call("LPUSH", "huge", langchain("human", "word " * 5000 + "THE END"))
    page = operator_page
    page.goto(detail_path("huge"))
    expect(page.locator(".message .text")).not_to_contain_text("THE END")
    page.get_by_role("link", name=re.compile(r"^Show the whole message \(24\.\d\sKB\)$")).click()
    expect(page.locator("body")).to_contain_text('THE END", "additional_kwargs"')  # the stored element, as text


def test_copy_the_session_id_and_its_link(operator_page, support_chat, live_server):
    page = operator_page
    page.goto(detail_path(CHAT_KEY))

    page.get_by_role("button", name="Copy session id").click()
    expect(page.locator(".copy-status").first).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CHAT_KEY

    link = live_server.url + detail_path(CHAT_KEY) + "?connection=env"  # a permalink names its connection
    expect(page.get_by_label("Link to this session")).to_have_value(link)
    page.get_by_role("button", name="Copy link").click()
    expect(page.locator(".permalink .copy-status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link

    other = page.context.new_page()  # a colleague's tab, from the pasted link
    other.goto(page.evaluate("navigator.clipboard.readText()"))
    expect(other.get_by_role("heading", level=1)).to_have_text(CHAT_KEY)


def test_export_json_and_markdown_are_downloads_and_audited(operator_page, support_chat):
    page = operator_page
    page.goto(detail_path(CHAT_KEY))

    with page.expect_download() as download:
        page.get_by_role("link", name="JSON").click()
    assert download.value.suggested_filename == "transcript-shoporder-a1042.json"
    # Exactly what is stored, oldest first (the writer LPUSHed: the list is newest first).
    assert json.loads(Path(download.value.path()).read_text()) == SUPPORT_CHAT

    with page.expect_download() as download:
        page.get_by_role("link", name="Markdown").click()
    assert download.value.suggested_filename == "transcript-shoporder-a1042.md"
    markdown = Path(download.value.path()).read_text()
    # Stored text is escaped, so that none of it is markup; its ``` blocks are code blocks.
    assert markdown.startswith("# Transcript: shop\\:order\\-a1042\n")
    assert "### 2. human\n\nHi\\! My order A\\-1042 has not arrived\\. Can you check\\?\n" in markdown
    assert "Tool call `lookup_order` (call\\_1):\n\n```json\n{\n" in markdown
    assert "```bash\ncurl https://track.example.com/A-1042" in markdown

    events = AuditEvent.objects.filter(action="session.export", session_key=CHAT_KEY).order_by("id")
    assert [(event.outcome, event.username, event.details) for event in events] == [
        ("ok", "olga", {"format": "json", "messages": 6}),
        ("ok", "olga", {"format": "md", "messages": 6}),
    ]


def test_export_keeps_what_is_stored_even_when_it_is_not_a_message(operator_page, store):
    store.call("RPUSH", "odd", llamaindex("user", "hi"), "{not json")
    store.call("EVAL", "return redis.call('RPUSH', KEYS[1], string.char(255) .. 'x')", 1, "odd")
    api = operator_page.request  # the browser's cookies, no page
    exported = api.get(detail_path("odd") + "export.json")
    assert exported.headers["content-type"] == "application/json"
    assert exported.json() == [llamaindex("user", "hi"), "{not json", "\ufffdx"]  # not UTF-8: U+FFFD
    assert api.get(detail_path("odd") + "export.xml").status == 404
    assert api.get(detail_path("gone") + "export.json").status == 404
