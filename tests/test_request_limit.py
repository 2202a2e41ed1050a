"""Under Upstash's 10 MB request limit, which replies count against too, with sessions of realistic size.

The corpus: a few hundred LangChain sessions of 40 messages of ~1.5 KB (metadata, tool calls), a session
of 60 messages each carrying a 300 KB base64 image, a 5 MB message, and a 12 MB one (over the limit
itself: Upstash takes records up to 100 MB). It is written by scripts inside the store: a few small
requests. Every reply the app receives is measured: none may pass the limit, whatever the gateway does.
"""

import json
import re

import pytest

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, SearchHit, SearchJob
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services import scripts, sessions
from memoryadmin.services.upstash import get_client

from .factories import langchain, write_langchain_session

pytestmark = pytest.mark.django_db

LIMIT = 10_000_000  # MEMORYADMIN_MAX_REQUEST_BYTES's default: Upstash's 10 MB on Free and Pay-as-you-go
NEEDLE = "jane.doe@example.com"
CHAT_SESSIONS = 300
IMAGE_BYTES = 300_000
BIG_BYTES = 5_000_000
HUGE_BYTES = 12_000_000

# KEYS: none. ARGV: key prefix, first and last session number, then the 40 messages (oldest first),
# in which @@ stands for the session number. LPUSHed, as LangChain does.
CHAT_SCRIPT = """
local prefix, first, last = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = first, last - 1 do
  local elements = {}
  for m = 4, #ARGV do elements[#elements + 1] = (string.gsub(ARGV[m], '@@', tostring(i))) end
  redis.call('LPUSH', prefix .. i, unpack(elements))
end
"""
# KEYS: the session. ARGV: how many messages, the image's size, the text after the image (the last message only).
IMAGE_SCRIPT = """
local pixels = string.rep('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGA', 1 + tonumber(ARGV[2]) / 72)
for m = 1, tonumber(ARGV[1]) do
  local after = (m == tonumber(ARGV[1])) and ARGV[3] or 'thanks'
  local url = 'data:image/png;base64,' .. string.sub(m .. pixels, 1, tonumber(ARGV[2]))
  redis.call('LPUSH', KEYS[1], '{"type": "human", "data": {"content": [{"type": "text", "text": "What is in picture '
    .. m .. '?"}, {"type": "image_url", "image_url": {"url": "' .. url .. '"}}, {"type": "text", "text": "' .. after
    .. '"}], "additional_kwargs": {}, "response_metadata": {}, "type": "human", "name": null, "id": null}}')
end
"""
# KEYS: the session. ARGV: the message's size, the text at its very end.
BIG_SCRIPT = """
local text = string.rep('All work and no play makes Jack a dull boy. ', tonumber(ARGV[1]) / 44) .. ARGV[2]
redis.call('LPUSH', KEYS[1], '{"type": "human", "data": {"content": "' .. text .. '", "additional_kwargs": {}}}')
"""


def chat_message(m):
    """Message m of a session (@@: its number), ~1.5 KB, as LangChain's message_to_dict stores it."""
    words = f"Order @@-{m}: the parcel left the depot on Tuesday and has not arrived; the tracking page says "
    if m % 2 == 0:
        data = {
            "content": (words + "it is out for delivery. " * 30)[:900],
            "additional_kwargs": {},
            "response_metadata": {},
            "type": "human",
            "name": None,
            "id": f"run-@@-{m}",
            "example": False,
        }
        return json.dumps({"type": "human", "data": data})
    call = {"name": "track_parcel", "args": {"order": f"@@-{m}", "carrier": "DHL"}, "id": f"call_@@_{m}"}
    data = {
        "content": (words + "let me look that up for you. " * 20)[:700],
        "additional_kwargs": {"tool_calls": [{"id": call["id"], "type": "function", "function": {"name": "x"}}]},
        "response_metadata": {
            "token_usage": {"completion_tokens": 120, "prompt_tokens": 2400, "total_tokens": 2520},
            "model_name": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_0123456789",
            "finish_reason": "tool_calls",
            "logprobs": None,
        },
        "type": "ai",
        "name": None,
        "id": f"run-@@-{m}",
        "example": False,
        "tool_calls": [{**call, "type": "tool_call"}],
        "invalid_tool_calls": [],
        "usage_metadata": {"input_tokens": 2400, "output_tokens": 120, "total_tokens": 2520},
    }
    return json.dumps({"type": "ai", "data": data})


def seed(store, chats=CHAT_SESSIONS, images=True, big=True, huge=True):
    """The corpus, or the parts a test needs; the needle is in one chat, the last image message and both big ones."""
    messages = [chat_message(m) for m in range(40)]
    for first in range(0, chats, 100):
        store.call("EVAL", CHAT_SCRIPT, 0, "chat:", first, min(first + 100, chats), *messages)
    if chats:
        store.call("LSET", "chat:7", 5, json.dumps({"type": "human", "data": {"content": f"I am {NEEDLE}"}}))
    if images:
        store.call("EVAL", IMAGE_SCRIPT, 1, "img:album", 60, IMAGE_BYTES, f"mail {NEEDLE}")
    if big:
        store.call("EVAL", BIG_SCRIPT, 1, "doc:big", BIG_BYTES, f"signed {NEEDLE}")
    if huge:
        store.call("EVAL", BIG_SCRIPT, 1, "doc:huge", HUGE_BYTES, f"signed {NEEDLE}")


@pytest.fixture
def replies(connection):
    """The size of every reply the app's client receives (the body, as the store's limit counts it)."""
    sizes = []
    hooks = get_client(connection)._sdk._client.event_hooks["response"]
    record = lambda response: sizes.append(len(response.content))  # noqa: E731 - after the client's own hook read it
    hooks.append(record)
    yield sizes
    hooks.remove(record)


def assert_within_the_limit(replies):
    assert replies, "no reply was measured"
    assert max(replies) <= LIMIT, f"a reply of {max(replies):,} bytes: over the limit"


def stored(store, key):
    """The session's elements, oldest first, read past the app (in parts: each below the limit)."""
    length = store.call("LLEN", key)
    elements = []
    for index in range(length - 1, -1, -1):  # newest first: the oldest is last
        size = store.call("EVAL", "return #redis.call('LINDEX', KEYS[1], ARGV[1])", 1, key, index)
        parts = [
            store.call(
                "EVAL",
                "return string.sub(redis.call('LINDEX', KEYS[1], ARGV[1]), ARGV[2], ARGV[3])",
                1,
                key,
                index,
                start + 1,
                start + 4_000_000,
            )
            for start in range(0, size, 4_000_000)
        ]
        elements.append(b"".join(parts))
    return elements


def url(key, tail=""):
    return f"/sessions/{encode_key(key)}/{tail}"


def streamed(response):
    assert response.status_code == 200, response
    return b"".join(response.streaming_content)


def test_the_session_list_reads_previews_not_whole_messages(web, store, replies):
    seed(store, chats=0)
    page = web.get("/", {"q": "doc:*"})
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="preview"') == 2
    assert "All work and no play makes Jack a dull boy." in html
    assert re.search(r"4\.8\sMB", html) and re.search(r"11\.4\sMB", html)  # each preview says how big it is
    page = web.get("/", {"q": "img:*"}).content.decode()
    assert "What is in picture 60?" in page
    assert_within_the_limit(replies)
    assert sum(replies) < 100_000  # previews: a few KB a row, not the messages


def test_a_transcript_of_big_messages_shows_each_cut_with_a_link_to_the_whole(web, store, replies):
    seed(store, chats=0, big=False, huge=False)
    response = web.get(url("img:album"))
    assert response.status_code == 200
    html = response.content.decode()
    shown = re.findall(r'<li class="message[^"]*" id="m(\d+)"', html)
    assert 0 < len(shown) < 50  # a byte budget holds fewer than the 50 messages a window has
    assert shown[-1] == "59" and "What is in picture 60?" in html
    assert html.count("Show the whole message") == len(shown)
    # "Earlier messages" goes on from the first message shown, down to the first of all.
    seen = [int(index) for index in shown]
    while match := re.search(r'id="earlier-link" href="\?before=(\d+)&order=([\w-]+)"', html):
        html = web.get(url("img:album"), {"before": match.group(1), "order": match.group(2)}).content.decode()
        seen = [int(index) for index in re.findall(r'id="m(\d+)"', html)] + seen
    assert seen == list(range(60))
    assert_within_the_limit(replies)


def test_the_whole_message_is_read_in_parts_whatever_its_size(web, store, replies):
    seed(store, chats=0, images=False)
    for key in ("doc:big", "doc:huge"):
        html = web.get(url(key)).content.decode()
        assert "Show the whole message" in html
        link = re.search(r'href="([^"]+/raw/[^"]*)"', html).group(1).replace("&amp;", "&")
        whole = streamed(web.get(link))
        assert whole == stored(store, key)[0]
        assert whole.endswith(f'signed {NEEDLE}", "additional_kwargs": {{}}}}}}'.encode())
    assert_within_the_limit(replies)


def test_both_exports_of_big_messages(web, store, replies):
    seed(store, chats=0, big=False)
    for key in ("img:album", "doc:huge"):
        exported = json.loads(streamed(web.get(url(key, "export.json"))))
        assert [element.encode() for element in exported] == stored(store, key)
        markdown = streamed(web.get(url(key, "export.md"))).decode()
        assert markdown.count("\n### ") == len(exported) and re.search(r"(mail|signed) jane", markdown)
    assert_within_the_limit(replies)


def test_content_search_and_the_purge_of_its_results(web, store, replies):
    seed(store)
    response = web.post("/bulk/search/", {"query": NEEDLE, "key_pattern": "", "role": ""})
    job = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert job.status == "done", job.error
    assert job.sessions_read == CHAT_SESSIONS + 3
    hits = sorted(SearchHit.objects.filter(job=job).values_list("session_key", flat=True))
    assert hits == ["chat:7", "doc:big", "doc:huge", "img:album"]
    web.post(f"/bulk/search/{job.pk}/purge/", {"action": "clear", "reference": "TICKET-1"})
    purge = BulkJob.objects.get()
    web.post(f"/bulk/{purge.pk}/confirm/", {"typed": "4"})
    purge.refresh_from_db()
    assert purge.status == "done" and purge.done == 4, purge.error
    assert [store.call("EXISTS", key) for key in hits] == [0, 0, 0, 0] and store.call("EXISTS", "chat:8") == 1
    assert_within_the_limit(replies)


def test_a_message_that_changes_while_it_is_read_is_not_stitched_to_another(web, store, settings):
    settings.MEMORYADMIN_MAX_REQUEST_BYTES = 200_000  # parts of 120 KB
    oldest, next_one = (langchain("human", letter * 500_000) for letter in "ab")  # the same size
    store.call("LPUSH", "trimmed", oldest, next_one, langchain("ai", "the newest"))
    response = web.get(url("trimmed", "messages/0/raw/"), {"order": "newest-first"})
    chunks = iter(response.streaming_content)
    text = next(chunks).decode()
    store.call("LTRIM", "trimmed", 0, -2)  # the chat app keeps its latest messages: the oldest goes
    text += b"".join(chunks).decode()
    assert text.startswith(oldest[:1000]) and "b" * 100 not in text
    assert text.endswith("the chat app trimmed or rewrote the session meanwhile. Read it again to see it whole.]\n")
    event = AuditEvent.objects.get(action="session.read")
    assert event.outcome == "ok" and "changed while it was being read" in event.details["incomplete"]


def test_scripts_go_by_digest_and_again_whole_when_the_store_lost_them(connection, store, local_store):
    write_langchain_session(store, "chat", ["hi", "hello"])
    sessions.get_transcript(connection, "chat")
    sent = []
    hooks = get_client(connection)._sdk._client.event_hooks["response"]
    record = lambda response: sent.append(len(response.request.content))  # noqa: E731
    hooks.append(record)
    try:
        sessions.get_transcript(connection, "chat")
        assert sent[-1] < 300  # its digest, not its body
        store.call("SCRIPT", "FLUSH")  # a store restarted, or failed over
        before = local_store.gateway.requests_served
        assert [message.text for _, message in sessions.get_transcript(connection, "chat").messages] == ["hi", "hello"]
        assert local_store.gateway.requests_served - before == 2 and sent[-1] > 1000  # refused, then its body
    finally:
        hooks.remove(record)
        scripts._known.clear()  # the app's other clients believe the store has scripts it lost
