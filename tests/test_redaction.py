"""Redaction on the real local store: compare-and-set, a chat app writing meanwhile, big elements, the bill."""

import dataclasses
import hashlib
import json
import threading
from contextlib import contextmanager

import pytest

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, BulkJobKey, SearchJob
from memoryadmin.services import bulk, content_search, redaction, scripts, sessions
from memoryadmin.services.connections import store_binding
from memoryadmin.services.content_search import Matcher
from memoryadmin.services.sessions import NEWEST_FIRST, OLDEST_FIRST, SessionNotFound
from memoryadmin.services.upstash import count_commands, get_client, get_writer

from .factories import langchain, llamaindex
from .test_bill import ValkeyCalls
from .test_request_limit import BIG_SCRIPT

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"
SUMMARY = "memoryadmin:summary:s"


def sha1(element):
    return hashlib.sha1(element).hexdigest()


@contextmanager
def each_reply(connection, hook):
    """While inside, `hook(response)` sees each reply to the app's writer (the chat app may write then)."""
    hooks = get_writer(connection)._sdk._client.event_hooks["response"]
    hooks.append(hook)
    try:
        yield
    finally:
        hooks.remove(hook)


@pytest.fixture
def ran(local_store, connection):
    calls = ValkeyCalls(local_store)
    yield calls
    calls.valkey.close()


@pytest.fixture
def sent(connection):
    """The size of every request the app's writer sends (the body, as the store's limit counts it)."""
    sizes = []
    hooks = get_writer(connection)._sdk._client.event_hooks["response"]
    record = lambda response: sizes.append(len(response.request.content))  # noqa: E731
    hooks.append(record)
    yield sizes
    hooks.remove(record)


def test_a_message_is_redacted_whole_and_the_summary_deleted(connection, store):
    store.call("LPUSH", "s", langchain("human", f"I am {EMAIL}"), langchain("ai", "noted"))
    store.call("HSET", SUMMARY, "text", f"The customer is {EMAIL}")
    identity = redaction.element_identity(connection, "s", 0, NEWEST_FIRST)
    assert identity.message.role == "human" and EMAIL in identity.message.text
    done = redaction.redact_message(connection, "s", 0, NEWEST_FIRST, identity.sha1)
    after = store.call("LINDEX", "s", -1)
    assert done.outcome == redaction.REDACTED and (done.sha1_before, done.sha1_after) == (identity.sha1, sha1(after))
    assert (done.size_before, done.size_after) == (identity.size, len(after))
    assert json.loads(after) == {"type": "human", "data": {"content": "[redacted]", "additional_kwargs": {}}}
    assert store.call("LINDEX", "s", 0) == langchain("ai", "noted").encode()
    assert store.call("EXISTS", SUMMARY) == 0


def test_a_message_that_changed_after_it_was_shown_is_left_alone(connection, store):
    store.call("LPUSH", "s", langchain("human", f"I am {EMAIL}"), langchain("ai", "noted"))
    store.call("HSET", SUMMARY, "text", "kept")
    identity = redaction.element_identity(connection, "s", 0, NEWEST_FIRST)
    rewritten = langchain("human", "another message")
    store.call("LSET", "s", -1, rewritten)  # the chat app rewrote its history
    before = store.call("LRANGE", "s", 0, -1)
    done = redaction.redact_message(connection, "s", 0, NEWEST_FIRST, identity.sha1)
    assert done == redaction.MessageRedaction(redaction.CHANGED_MEANWHILE, identity.sha1, len(rewritten))
    assert store.call("LRANGE", "s", 0, -1) == before and store.call("HGET", SUMMARY, "text") == b"kept"


def test_the_script_writes_nothing_whose_sha1_differs(connection, store):
    """Changed between the read in parts and the write: the compare-and-set refuses it."""
    element = langchain("human", EMAIL).encode()
    store.call("RPUSH", "s", element.decode())
    args = [0, sha1(b"something else"), "new"]
    assert scripts.write(connection, redaction.REDACT_SCRIPT, ["s", SUMMARY], *args) == [redaction.CHANGED]
    assert store.call("LINDEX", "s", 0) == element


def test_a_message_or_session_that_is_not_there_is_not_found(connection, store):
    store.call("LPUSH", "s", langchain("human", "hi"))
    store.call("SET", "cache", "x")
    for key, index in (("s", 1), ("gone", 0), ("cache", 0)):
        with pytest.raises(SessionNotFound):
            redaction.element_identity(connection, key, index, NEWEST_FIRST)
        with pytest.raises(SessionNotFound):
            redaction.redact_message(connection, key, index, NEWEST_FIRST, "0" * 40)
    assert store.call("GET", "cache") == b"x"


@pytest.mark.parametrize(
    ("order", "push", "make"),
    [(NEWEST_FIRST, "LPUSH", langchain), (OLDEST_FIRST, "RPUSH", llamaindex)],
)
def test_a_chat_app_pushing_meanwhile_never_gets_a_wrong_message_redacted(connection, store, order, push, make):
    texts = [f"message {i}" + (f" from {EMAIL}" if i % 7 == 0 else "") for i in range(3000)]
    elements = [make("user" if make is llamaindex else "human", text).encode() for text in texts]
    written = elements[::-1] if push == "LPUSH" else elements  # LPUSH stores the newest first
    for start in range(0, len(written), 1000):
        store.call("RPUSH", "s", *(element.decode() for element in written[start : start + 1000]))
    stop, pushed = threading.Event(), []

    def chat_app():
        app = get_client(dataclasses.replace(connection, slug="chat-app"))  # a client of its own
        while not stop.is_set():
            pushed.append(make("assistant" if make is llamaindex else "ai", f"reply {len(pushed)}").encode())
            app.call(push, "s", pushed[-1].decode())

    thread = threading.Thread(target=chat_app)
    thread.start()
    try:
        while not pushed:  # the app is writing before the redaction starts, and goes on until it ends
            stop.wait(0.001)
        before = len(pushed)
        result = redaction.redact_session(connection, "s", Matcher(EMAIL), None, whole=False)
        during = len(pushed) - before
    finally:
        stop.set()
        thread.join()
    assert during > 0 and result.outcome == redaction.REDACTED
    assert result.redacted == len(texts[::7]) and result.not_redacted == 0
    stored = store.call("LRANGE", "s", 0, -1)
    if push == "LPUSH":
        stored.reverse()  # oldest first
    assert stored[len(texts) :] == pushed  # what the app added meanwhile is as it wrote it
    for text, element, now in zip(texts, elements, stored):
        if EMAIL in text:
            assert json.loads(now) == json.loads(element.replace(EMAIL.encode(), b"[redacted]"))
        else:
            assert now == element


def test_a_session_redacted_again_changes_nothing(connection, store):
    store.call("LPUSH", "s", langchain("human", EMAIL), langchain("ai", "ok"))
    assert redaction.redact_session(connection, "s", Matcher(EMAIL), None, whole=True).redacted == 1
    before = store.call("LRANGE", "s", 0, -1)
    again = redaction.redact_session(connection, "s", None, "human", whole=True)
    assert again.outcome == redaction.NOTHING_MATCHED and store.call("LRANGE", "s", 0, -1) == before


def test_the_role_filter_and_sessions_that_are_no_sessions(connection, store):
    store.call("LPUSH", "s", langchain("human", EMAIL), langchain("ai", f"hello {EMAIL}"))
    store.call("SET", "cache", EMAIL)
    result = redaction.redact_session(connection, "s", Matcher(EMAIL), "ai", whole=True)
    assert result.redacted == 1 and EMAIL.encode() in store.call("LINDEX", "s", 1)
    assert EMAIL.encode() not in store.call("LINDEX", "s", 0)
    assert redaction.redact_session(connection, "gone", Matcher(EMAIL), None, True).outcome == "gone"
    assert redaction.redact_session(connection, "cache", Matcher(EMAIL), None, True).outcome == "not a list"


def test_huge_elements_are_redacted_in_requests_under_the_limit(connection, store, sent):
    """A 12 MB element (over the 10 MB limit itself) and a 5 MB one, text-only: the 5 MB one keeps its text,
    the 12 MB one's would not fit a request, so it is redacted whole."""
    store.call("EVAL", BIG_SCRIPT, 1, "s", 5_000_000, f"signed {EMAIL}")
    store.call("EVAL", BIG_SCRIPT, 1, "s", 12_000_000, f"signed {EMAIL}")
    store.call("LPUSH", "s", langchain("ai", f"noted, {EMAIL}"))
    result = redaction.redact_session(connection, "s", Matcher(EMAIL), None, whole=False)
    assert result.redacted == 3
    newest, huge, big = (store.call("LINDEX", "s", index) for index in (0, 1, 2))
    assert json.loads(huge) == {"type": "human", "data": {"content": "[redacted]", "additional_kwargs": {}}}
    assert len(big) > 5_000_000 and big.endswith(b'boy. signed [redacted]", "additional_kwargs": {}}}')
    assert json.loads(newest)["data"]["content"] == "noted, [redacted]"
    assert max(sent) <= connection.max_request_bytes


def test_changes_are_split_into_requests_under_the_limit(connection, store, sent):
    small = dataclasses.replace(connection, max_request_bytes=200_000)  # about 120 KB of changes a call
    texts = [f"{EMAIL} " + "x" * 10_000 for _ in range(40)]
    store.call("RPUSH", "s", *(llamaindex("user", text) for text in texts))
    sent.clear()
    result = redaction.redact_session(small, "s", Matcher(EMAIL), None, whole=False)
    assert result.redacted == 40 and EMAIL.encode() not in b"".join(store.call("LRANGE", "s", 0, -1))
    writes = [size for size in sent if size > 10_000]
    assert len(writes) >= 4 and max(writes) <= 200_000


@pytest.mark.parametrize("codes", [[1, 1], [0, -1], [1, 0, -1], [0]])
def test_the_redact_scripts_count_is_what_it_ran(connection, store, ran, codes):
    elements = [langchain("human", f"m{i}").encode() for i in range(2)]
    store.call("RPUSH", "s", *(element.decode() for element in elements))
    args = []
    for index, code in enumerate(codes):
        # Written: its SHA-1; changed: another's; no such element: an index past the list's end.
        expected = sha1(elements[index % 2]) if code == 1 else sha1(b"other")
        args += [index if code != -1 else 99, expected, "new"]
    ran.since()
    with count_commands() as counted:
        assert scripts.write(connection, redaction.REDACT_SCRIPT, ["s", SUMMARY], *args) == codes
    assert ran.total() == counted.commands
    with count_commands() as counted:
        assert scripts.write(connection, redaction.REDACT_SCRIPT, ["gone", SUMMARY], *args) == -2
    assert ran.total() == counted.commands == 2


def test_redacting_a_session_and_a_message_count_what_they_ran(connection, store, ran):
    store.call("LPUSH", "s", *(langchain("human", f"{i} {EMAIL}") for i in range(30)))
    ran.since()
    with count_commands() as counted:
        redaction.redact_session(connection, "s", Matcher(EMAIL), None, whole=False)
    assert ran.total() == counted.commands
    store.call("LPUSH", "s", langchain("human", "x" * 200))
    ran.since()
    with count_commands() as counted:
        identity = redaction.element_identity(connection, "s", 30, NEWEST_FIRST)
        redaction.redact_message(connection, "s", 30, NEWEST_FIRST, identity.sha1)
    assert ran.total() == counted.commands


def test_matcher_sub_replaces_every_match_whatever_its_case_and_the_characters_before_it():
    assert Matcher("jane").sub("JANE, Straße jane", "[r]") == "[r], Straße [r]"
    assert Matcher("sse").sub("Straße STRASSE", "[r]") == "Stra[r] STRA[r]"  # "ß" folds into two letters
    assert Matcher(r"j.ne@\w+", is_regex=True).sub("é \ud800 Jane@x jyne@y", "[r]") == "é \ud800 [r] [r]"
    assert Matcher(r"\bx", is_regex=True).sub("x ax xx", "[r]") == "[r] ax [r]x"  # empty matches replace nothing
    assert Matcher(r"jane|\b", is_regex=True).sub("hi jane", "[r]") == "hi [r]"  # nor stop those after them


@pytest.mark.parametrize(
    "element",
    [
        b"not json " + EMAIL.encode(),
        b'["a list", "jane.doe@example.com"]',
        b"\xff",
        b'{"type": "human", "data": "jane.doe@example.com"}',  # a type, and data that is no LangChain data
        b'{"type": "human", "text": "hi", "data": "jane.doe@example.com"}',  # nor old LangChain JS, having data
    ],
)
def test_an_element_of_no_known_writer_becomes_the_bare_marker(element):
    assert redaction.redacted_element(element, Matcher(EMAIL)) == (b"[redacted]", True)


def test_a_query_that_survives_text_only_redaction_redacts_the_whole_message():
    element = langchain("human", "my kwargs", example=EMAIL).encode()
    # Text-only redaction leaves the key "additional_kwargs": the whole message goes, and with it what
    # is no field a reader needs (a field that should be true or false, holding text).
    whole = redaction.redacted_element(element, Matcher("kwargs"))
    assert whole == (langchain("human", "[redacted]", example=False).encode(), True)


@pytest.fixture
def after_read(connection):
    """after_read(conn, change): `change` runs once, right after the store answered the app's next read of
    a message (or of its first part): the chat app writing between that read and what the app does next."""
    hooked = []

    def arrange(conn, change):
        hooks = get_writer(conn)._sdk._client.event_hooks["response"]

        def hook(response):
            if not hooked[-1][2] and sessions.PART_SCRIPT.digest.encode() in response.request.content:
                hooked[-1][2].append(change())

        hooked.append((hooks, hook, []))
        hooks.append(hook)

    yield arrange
    for hooks, hook, _ in hooked:
        hooks.remove(hook)


def chat_app(connection):
    return get_client(dataclasses.replace(connection, slug="chat-app"))  # a client of its own


def test_a_message_read_in_parts_is_redacted_whole(connection, store):
    small = dataclasses.replace(connection, max_request_bytes=200_000)  # parts of 120 KB
    store.call("LPUSH", "s", langchain("human", f"{EMAIL} " + "x" * 300_000), langchain("ai", "noted"))
    identity = redaction.element_identity(small, "s", 0, NEWEST_FIRST)
    done = redaction.redact_message(small, "s", 0, NEWEST_FIRST, identity.sha1)
    assert (done.outcome, done.sha1_before, done.size_before) == (redaction.REDACTED, identity.sha1, identity.size)
    assert json.loads(store.call("LINDEX", "s", -1))["data"]["content"] == "[redacted]"


def test_a_message_rewritten_while_it_is_read_in_parts_is_left_alone(connection, store, after_read):
    small = dataclasses.replace(connection, max_request_bytes=200_000)
    store.call("LPUSH", "s", langchain("human", f"{EMAIL} " + "x" * 300_000))
    identity = redaction.element_identity(small, "s", 0, NEWEST_FIRST)
    rewritten = langchain("human", "y" * 300_000)
    after_read(small, lambda: chat_app(connection).call("LSET", "s", 0, rewritten))  # after the first part
    done = redaction.redact_message(small, "s", 0, NEWEST_FIRST, identity.sha1)
    assert done == redaction.MessageRedaction(redaction.CHANGED_MEANWHILE, identity.sha1, 0)
    assert store.call("LRANGE", "s", 0, -1) == [rewritten.encode()]


def test_a_message_rewritten_between_its_read_and_the_write_is_left_alone(connection, store, after_read):
    store.call("LPUSH", "s", langchain("human", f"I am {EMAIL}"), langchain("ai", "noted"))
    store.call("HSET", SUMMARY, "text", "kept")
    identity = redaction.element_identity(connection, "s", 0, NEWEST_FIRST)
    rewritten = langchain("human", "I am someone else")
    after_read(connection, lambda: chat_app(connection).call("LSET", "s", -1, rewritten))
    done = redaction.redact_message(connection, "s", 0, NEWEST_FIRST, identity.sha1)
    assert done == redaction.MessageRedaction(redaction.CHANGED_MEANWHILE, identity.sha1, identity.size)
    assert store.call("LINDEX", "s", -1) == rewritten.encode() and store.call("HGET", SUMMARY, "text") == b"kept"


def test_a_session_cleared_or_trimmed_between_the_read_and_the_write_is_not_found(connection, store, after_read):
    store.call("RPUSH", "s", llamaindex("user", f"I am {EMAIL}"), llamaindex("assistant", f"Hello {EMAIL}"))
    newest = redaction.element_identity(connection, "s", 1, OLDEST_FIRST)
    after_read(connection, lambda: chat_app(connection).call("RPOP", "s"))  # the chat app trims its history
    with pytest.raises(SessionNotFound) as trimmed:
        redaction.redact_message(connection, "s", 1, OLDEST_FIRST, newest.sha1)
    assert str(trimmed.value) == "Session 's' has no message #2 (any more)."
    oldest = redaction.element_identity(connection, "s", 0, OLDEST_FIRST)
    after_read(connection, lambda: chat_app(connection).call("DEL", "s"))
    with pytest.raises(SessionNotFound) as cleared:
        redaction.redact_message(connection, "s", 0, OLDEST_FIRST, oldest.sha1)
    assert str(cleared.value) == "There is no session 's': it was cleared or has expired."
    assert store.call("EXISTS", "s") == 0


def test_a_long_messages_identity_is_its_start_with_the_whole_ones_size_and_sha1(connection, store):
    element = langchain("human", f"I am {EMAIL} " + "x" * 10_000)
    store.call("LPUSH", "s", element)
    identity = redaction.element_identity(connection, "s", 0, NEWEST_FIRST)
    assert (identity.size, identity.sha1) == (len(element), sha1(element.encode()))
    message = identity.message
    assert message.cut and message.size == len(element) and len(message.raw) <= sessions.PREVIEW_BYTES
    assert message.role == "human" and message.text.startswith(f"I am {EMAIL} xxx")


def test_what_is_not_there_is_named_in_the_not_found_message(connection, store):
    store.call("LPUSH", "s", langchain("human", "hi"))
    store.call("SET", "cache", "x")
    for key, index, why in (
        ("s", 1, "Session 's' has no message #2 (any more)."),
        ("gone", 0, "There is no session 'gone': it was cleared or has expired."),
        ("cache", 0, "'cache' is not a list, so it is not a chat session; it was left alone."),
    ):
        with pytest.raises(SessionNotFound) as not_found:
            redaction.element_identity(connection, key, index, NEWEST_FIRST)
        assert str(not_found.value) == why


OPENAI_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "lookup", "arguments": json.dumps({"q": EMAIL})},
}


@pytest.mark.parametrize(
    ("element", "redacted"),
    [
        # A tool call's message without content keeps none, its call's id and name, arguments emptied to "{}",
        # and a field no reader needs nulled, whatever it holds.
        (
            {"role": "assistant", "content": None, "additional_kwargs": {"tool_calls": [{**OPENAI_CALL, "extra": {"q": EMAIL}}]}},
            {"role": "assistant", "content": None, "additional_kwargs": {"tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}, "extra": None}
            ]}},
        ),
        # Shapes no writer writes, stored all the same: no block list, no tool call list, an id that is no id.
        (
            {"role": "user", "content": EMAIL, "blocks": None},
            {"role": "user", "content": "[redacted]", "blocks": [{"block_type": "text", "text": "[redacted]"}]},
        ),
        (
            {"type": "ai", "data": {"content": EMAIL, "tool_calls": None, "id": {"email": EMAIL}}},
            {"type": "ai", "data": {"content": "[redacted]", "tool_calls": [], "id": None}},
        ),
        # Very old LangChain JS: {"type", "role", "text"}.
        ({"type": "human", "role": "user", "text": EMAIL}, {"type": "human", "role": "user", "text": "[redacted]"}),
        # A chunk is read as its message's kind (a tool's name stays); metadata emptied; a legacy function call
        # kept by its name; what pairs nothing is dropped; `example` stays a boolean.
        (
            {"type": "ToolMessageChunk", "data": {"content": EMAIL, "name": "lookup", "tool_call_id": "call_1",
                                                  "additional_kwargs": {"name": "lookup", "note": {"q": EMAIL}}}},
            {"type": "ToolMessageChunk", "data": {"content": "[redacted]", "name": "lookup", "tool_call_id": "call_1",
                                                  "additional_kwargs": {"name": "lookup"}}},
        ),
        (
            {"type": "AIMessageChunk", "data": {"content": EMAIL, "name": "Jane", "example": True,
                                                "response_metadata": {"to": EMAIL},
                                                "additional_kwargs": {"function_call": OPENAI_CALL["function"]}}},
            {"type": "AIMessageChunk", "data": {"content": "[redacted]", "example": True, "response_metadata": {},
                                                "additional_kwargs": {"function_call": {"name": "lookup", "arguments": "{}"}}}},
        ),
        # A ChatMessage keeps its speaker, and nothing else it carries; a message without content gets the marker.
        (
            {"type": "chat", "data": {"content": EMAIL, "role": "boss", "signature": EMAIL}},
            {"type": "chat", "data": {"content": "[redacted]", "role": "boss"}},
        ),
        ({"type": "ai", "data": {"id": "run-1"}}, {"type": "ai", "data": {"id": "run-1", "content": "[redacted]"}}),
    ],
    ids=[
        "tool-call-without-content",
        "blocks-not-a-list",
        "calls-and-id-not-as-written",
        "old-langchain-js",
        "tool-chunk",
        "ai-chunk",
        "chat-message",
        "no-content",
    ],
)  # fmt: skip
def test_a_whole_message_redaction_keeps_only_what_its_reader_needs(element, redacted):
    assert redaction.redacted_element(json.dumps(element).encode()) == (json.dumps(redacted).encode(), True)


WRITES_REDACTIONS = b"if written then redis.call('DEL', KEYS[2]) end"  # REDACT_SCRIPT sent whole, the first time


@pytest.fixture
def before_each_write(connection):
    """before_each_write(change): `change` runs right before each request that writes redactions (REDACT_SCRIPT);
    returns the list of those requests (one a write attempt)."""
    hooks = get_writer(connection)._sdk._client.event_hooks["request"]
    added = []

    def arrange(change):
        writes = []

        def hook(request):
            if redaction.REDACT_SCRIPT.digest.encode() in request.content or WRITES_REDACTIONS in request.content:
                writes.append(request)
                change(len(writes))

        hooks.append(hook)
        added.append(hook)
        return writes

    yield arrange
    for hook in added:
        hooks.remove(hook)


def stored(store, key="s"):
    return [json.loads(element) for element in store.call("LRANGE", key, 0, -1)]


@pytest.mark.parametrize("whole", [False, True])
def test_a_message_rewritten_before_the_write_is_read_again_and_redacted_if_it_still_matches(
    connection, store, before_each_write, whole
):
    store.call("RPUSH", "s", *(llamaindex("user", f"{i}: I am {EMAIL}") for i in range(3)))
    rewrites = {0: llamaindex("user", f"Now at {EMAIL}, again"), 1: llamaindex("assistant", f"Ask {EMAIL}")}

    def chat_app_rewrites(write):
        if write == 1:
            for index, element in rewrites.items():
                chat_app(connection).call("LSET", "s", index, element)

    writes = before_each_write(chat_app_rewrites)
    result = redaction.redact_session(connection, "s", Matcher(EMAIL), "human", whole)  # a user's, as read
    # Written at once: #2; read again and written: #0 (still the user's, still matching); left: #1 (the assistant's now).
    assert len(writes) == 2 and (result.redacted, result.changed, result.vanished) == (2, 0, 0)
    now = stored(store)
    assert now[0]["content"] == ("[redacted]" if whole else "Now at [redacted], again")
    assert now[1] == json.loads(rewrites[1]) and now[2]["content"] == ("[redacted]" if whole else "2: I am [redacted]")
    after = [sha1(element) for element in store.call("LRANGE", "s", 0, -1)]
    assert sorted(result.sha1_before) == sorted(
        [sha1(rewrites[0].encode()), sha1(llamaindex("user", f"2: I am {EMAIL}").encode())]
    )
    assert sorted(result.sha1_after) == sorted([after[0], after[2]])


def test_a_message_rewritten_before_every_write_is_tried_max_attempts_times_then_counted_changed(
    connection, store, before_each_write
):
    store.call("RPUSH", "s", llamaindex("user", f"I am {EMAIL}"))
    writes = before_each_write(
        lambda write: chat_app(connection).call("LSET", "s", 0, llamaindex("user", f"{write}: {EMAIL}"))
    )
    result = redaction.redact_session(connection, "s", Matcher(EMAIL), None, whole=False)
    assert len(writes) == redaction.MAX_ATTEMPTS == 3
    assert (result.outcome, result.redacted, result.changed, result.not_redacted) == (
        redaction.NOTHING_MATCHED,
        0,
        1,
        1,
    )


def test_a_bulk_redaction_fails_a_session_whose_message_kept_changing(web, connection, store, before_each_write):
    store.call("RPUSH", "s", llamaindex("user", f"I am {EMAIL}"))
    response = web.post("/bulk/search/", {"query": EMAIL, "key_pattern": "", "role": ""})
    found = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    web.post(f"/bulk/search/{found.pk}/purge/", {"action": "redact:text", "reference": "T-1"})
    job = BulkJob.objects.get(search=found)
    assert job.status == "awaiting" and job.total == 1
    before_each_write(lambda write: chat_app(connection).call("LSET", "s", 0, llamaindex("user", f"{write}: {EMAIL}")))
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "1"})
    job.refresh_from_db()
    assert (job.status, job.done, job.skipped, job.failed, job.messages_redacted) == ("done", 0, 0, 1, 0)
    assert BulkJobKey.objects.get(job=job).outcome == "changed"


def test_a_bulk_redaction_of_a_regular_expression_search_redacts_what_it_matches(web, store):
    store.call("RPUSH", "s", llamaindex("user", f"I am {EMAIL}"))
    query = {"query": r"[a-z.]+@example\.com", "is_regex": "on", "key_pattern": "", "role": ""}
    found = SearchJob.objects.get(pk=int(web.post("/bulk/search/", query)["Location"].rstrip("/").rsplit("/", 1)[1]))
    web.post(f"/bulk/search/{found.pk}/purge/", {"action": "redact:text", "reference": "T-1"})
    job = BulkJob.objects.get(search=found)
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "1"})
    job.refresh_from_db()
    assert (job.status, job.done, job.messages_redacted) == ("done", 1, 1)
    assert EMAIL not in store.call("LINDEX", "s", 0).decode()


def test_a_bulk_redaction_saves_its_progress_after_each_batch_of_redact_batch_sessions(web, store, monkeypatch):
    monkeypatch.setattr(bulk, "REDACT_BATCH", 2)  # it reads each session whole: small batches, not BATCH_SIZE
    for key in ("s0", "s1", "s2"):
        store.call("RPUSH", key, llamaindex("user", f"I am {EMAIL}"))
    response = web.post("/bulk/search/", {"query": EMAIL, "key_pattern": "", "role": ""})
    found = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    web.post(f"/bulk/search/{found.pk}/purge/", {"action": "redact:text", "reference": "T-1"})
    job = BulkJob.objects.get(search=found)
    redact_session, saved = redaction.redact_session, []

    def redact_after_reading_the_progress(connection, key, *args, **kwargs):
        saved.append((key, BulkJob.objects.get(pk=job.pk).next_position))
        return redact_session(connection, key, *args, **kwargs)

    monkeypatch.setattr(redaction, "redact_session", redact_after_reading_the_progress)
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "3"})
    job.refresh_from_db()
    assert (job.status, job.done, job.next_position) == ("done", 3, 3)
    # Before each session, what was saved: nothing during the first batch of two, then that batch.
    assert [position for _, position in saved] == [0, 0, 2] and sorted(key for key, _ in saved) == ["s0", "s1", "s2"]


@pytest.mark.parametrize(("has_search", "redaction"), [(False, "text"), (True, ""), (True, "everything")])
def test_a_bulk_redaction_needs_a_search_and_what_to_redact(connection, operator, has_search, redaction):
    found = SearchJob.objects.create(connection_slug="env", **store_binding(connection)) if has_search else None
    with pytest.raises(ValueError) as refused:
        bulk.create_job(connection, operator, BulkJob.REDACT, search=found, redaction=redaction)
    assert str(refused.value) == ("A redaction redacts a content search's results: give the search and what to redact.")
    assert not BulkJob.objects.exists()


@pytest.mark.parametrize("search_is", ["erased", "deleted"])
def test_a_bulk_redaction_whose_search_query_was_erased_fails_and_changes_nothing(web, store, search_is):
    store.call("RPUSH", "s", llamaindex("user", f"I am {EMAIL}"))
    response = web.post("/bulk/search/", {"query": EMAIL, "key_pattern": "", "role": ""})
    found = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    web.post(f"/bulk/search/{found.pk}/purge/", {"action": "redact:text", "reference": "T-1"})
    job = BulkJob.objects.get(search=found)
    if search_is == "erased":  # between the dry run and the run
        content_search.erase_search(found, "results expired")
    else:
        found.delete()
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "1"})
    job.refresh_from_db()
    problem = "The search's query has been erased (its results expired): search again to redact."
    assert (job.status, job.error, job.done, job.messages_redacted) == ("failed", problem, 0, 0) and job.finished_at
    assert EMAIL in store.call("LINDEX", "s", 0).decode()
    event = AuditEvent.objects.get(action="bulk.fail")
    assert (event.job, event.outcome, event.error, event.username) == (job.audit_job, "failed", problem, "olga")


def test_messages_trimmed_before_the_write_are_counted_vanished(connection, store, before_each_write):
    store.call("RPUSH", "s", *(llamaindex("user", f"{i}: {EMAIL}") for i in range(3)))
    before_each_write(lambda write: chat_app(connection).call("LTRIM", "s", 0, 0))  # keeps the oldest only
    result = redaction.redact_session(connection, "s", Matcher(EMAIL), None, whole=True)
    assert (result.outcome, result.redacted, result.vanished, result.not_redacted) == (redaction.REDACTED, 1, 2, 2)


def test_once_the_session_is_gone_no_more_is_written(connection, store, before_each_write):
    small = dataclasses.replace(connection, max_request_bytes=200_000)  # windows of about 120 KB
    store.call("RPUSH", "s", *(llamaindex("user", f"{EMAIL} " + "x" * 10_000) for _ in range(40)))
    writes = before_each_write(lambda write: chat_app(connection).call("DEL", "s"))
    result = redaction.redact_session(small, "s", Matcher(EMAIL), None, whole=False)
    assert len(writes) == 1 and result.redacted == 0 and result.vanished > 0


def test_without_a_query_every_message_or_every_message_of_a_role_is_redacted(connection, store):
    store.call("LPUSH", "s", langchain("human", "hi"), langchain("ai", "hello"), langchain("human", "bye"))
    assert redaction.redact_session(connection, "s", None, "human", whole=True).redacted == 2
    assert [message["data"]["content"] for message in stored(store)] == ["[redacted]", "hello", "[redacted]"]
    assert redaction.redact_session(connection, "s", None, None, whole=True).redacted == 1
    assert {message["data"]["content"] for message in stored(store)} == {"[redacted]"}


def test_an_element_written_compact_is_redacted_compact():
    """LangChain JS and Flowise write JSON.stringify's compact JSON: so does a redaction of theirs."""
    element = json.dumps({"type": "human", "data": {"content": f"I am {EMAIL}"}}, separators=(",", ":")).encode()
    assert redaction.redacted_element(element, Matcher(EMAIL)) == (
        b'{"type":"human","data":{"content":"I am [redacted]"}}',
        False,
    )
    assert redaction.redacted_element(element) == (b'{"type":"human","data":{"content":"[redacted]"}}', True)


def test_messages_that_change_at_each_write_are_counted_changed_and_those_gone_when_read_again_vanished(
    connection, store, before_each_write
):
    store.call("RPUSH", "s", *(llamaindex("user", f"{i}: {EMAIL}") for i in range(4)))
    app = chat_app(connection)

    def rewrite_each_message(write):  # still matching, each time: the write is refused
        for index in range(app.call("LLEN", "s")):
            app.call("LSET", "s", index, llamaindex("user", f"{index}, write {write}: {EMAIL}"))

    def after_the_first_write(response):
        if len(writes) == 1 and not trimmed:
            trimmed.append(app.call("LTRIM", "s", 0, 1))  # #2 and #3 go before they are read again

    writes, trimmed = before_each_write(rewrite_each_message), []
    with each_reply(connection, after_the_first_write):
        result = redaction.redact_session(connection, "s", Matcher(EMAIL), None, whole=True)
    assert len(writes) == redaction.MAX_ATTEMPTS and trimmed
    assert (result.redacted, result.changed, result.vanished) == (0, 2, 2)


@pytest.mark.parametrize(("messages", "words"), [(60, 1_000), (4, 9_000)])  # redacted: 11 KB each, 99 KB each
def test_redactions_that_outgrow_what_was_read_are_split_into_requests_under_the_limit(
    connection, store, sent, messages, words
):
    """Each short match becomes the longer marker: a window's changes take several requests, each under the limit."""
    small = dataclasses.replace(connection, max_request_bytes=200_000)
    store.call("RPUSH", "s", *(llamaindex("user", "x " * words) for _ in range(messages)))
    sent.clear()
    result = redaction.redact_session(small, "s", Matcher("x"), None, whole=False)
    assert result.redacted == messages and result.not_redacted == 0
    assert all(message["content"] == "[redacted] " * words for message in stored(store))
    writes = [size for size in sent if size > 50_000]
    assert len(writes) >= 4 and max(writes) <= 200_000


def test_a_session_cleared_between_two_requests_of_a_window_counts_the_rest_vanished(
    connection, store, before_each_write
):
    small = dataclasses.replace(connection, max_request_bytes=200_000)
    element = llamaindex("user", "x " * 1_000)
    store.call("RPUSH", "s", *[element] * 30)  # read in one window
    writes = before_each_write(lambda write: write == 2 and chat_app(connection).call("DEL", "s"))
    result = redaction.redact_session(small, "s", Matcher("x"), None, whole=False)
    written = writes[0].content.count(sha1(element.encode()).encode())  # the changes the first request carried
    assert len(writes) == 2 and 0 < written < 30
    assert (result.redacted, result.vanished) == (written, 30 - written)
    assert len(result.sha1_after) == result.redacted and store.call("EXISTS", "s") == 0


# ---- the room of a request that writes redactions, and sessions that change across windows and requests ----


def weight(*strings):
    """What strings weigh in a request, as the app counts a request's room: each a JSON string (UTF-8) and a comma."""
    return sum(len(json.dumps(text, ensure_ascii=False).encode()) + 1 for text in strings)


def room(conn):
    """The bytes of changes a request that writes session "s"'s redactions may carry: the reply budget, less its key,
    its summary's key and the script (counted as sent whole, though it usually goes by digest), less 100."""
    return sessions.reply_budget(conn) - weight("s", SUMMARY, redaction.REDACT_SCRIPT.body) - 100


def change_weight(index, element, new):
    """A change in a request: its list index (as a string), the SHA-1 of the element it replaces, the new element."""
    return weight(str(index), sha1(element.encode()), new)


def changes_sent(write):
    """The list indexes of the changes a request that writes redactions carried."""
    command = json.loads(write.content)
    assert command[0] in ("EVAL", "EVALSHA") and command[3:5] == ["s", SUMMARY]
    return [int(index) for index in command[5::3]]


def test_a_windows_changes_fill_each_request_to_its_room_and_not_a_byte_over(connection, store, before_each_write):
    small = dataclasses.replace(connection, max_request_bytes=200_000)  # a room of about 119 KB
    words = 5_000  # each "x " redacted is "[redacted] ": 10 KB read, 55 KB written

    def message(pad):  # each "y" weighs one byte more, read and written
        return llamaindex("user", "x " * words + "y" * pad)

    def weighs(index, pad):
        return change_weight(index, message(pad), llamaindex("user", "[redacted] " * words + "y" * pad))

    # Three pairs: the first two fill a request exactly, the last one is a byte over, so its two go one by one.
    pads = []
    for index, over in ((0, 0), (2, 0), (4, 1)):
        pads += [0, room(small) - weighs(index, 0) - weighs(index + 1, 0) + over]
    assert min(pads) >= 0
    store.call("RPUSH", "s", *(message(pad) for pad in pads))  # one window
    writes = before_each_write(lambda write: None)
    result = redaction.redact_session(small, "s", Matcher("x"), None, whole=False)
    assert (result.redacted, result.not_redacted) == (6, 0)
    assert [message["content"] for message in stored(store)] == ["[redacted] " * words + "y" * pad for pad in pads]
    assert [changes_sent(write) for write in writes] == [[0, 1], [2, 3], [4], [5]]


def message_with_id(text, id_bytes):
    """A LangChain message whose id is `id_bytes` long: its whole-message redaction keeps the id, so it is as big."""
    return langchain("human", text, id="i" * id_bytes)


@pytest.mark.parametrize("over", [0, 1], ids=["fits-exactly", "a-byte-over"])
@pytest.mark.parametrize("path", ["message", "session", "read-again"])
def test_a_whole_message_redaction_goes_as_it_is_when_it_fits_a_request_exactly_else_as_the_bare_marker(
    connection, store, before_each_write, path, over
):
    small = dataclasses.replace(connection, max_request_bytes=200_000)
    position = "-1"  # LangChain's list, newest first: the only message is at -1 from the oldest end
    whole_weight = change_weight(position, message_with_id(EMAIL, 0), message_with_id("[redacted]", 0))
    id_bytes = room(small) - whole_weight + over  # each byte of the id weighs a byte in the request
    element = message_with_id(f"I am {EMAIL}", id_bytes)
    store.call("LPUSH", "s", element)
    expected = b"[redacted]" if over else message_with_id("[redacted]", id_bytes).encode()
    if path == "message":
        done = redaction.redact_message(small, "s", 0, NEWEST_FIRST, sha1(element.encode()))
        assert (done.outcome, done.sha1_after) == (redaction.REDACTED, sha1(expected))
    else:
        if path == "read-again":  # rewritten before the first write, the same but its text: written at the second
            rewritten = message_with_id(EMAIL, id_bytes)
            before_each_write(lambda write: write == 1 and chat_app(connection).call("LSET", "s", -1, rewritten))
        result = redaction.redact_session(small, "s", Matcher(EMAIL), None, whole=True)
        assert (result.redacted, result.not_redacted) == (1, 0)
    assert store.call("LRANGE", "s", 0, -1) == [expected]


def test_changes_not_sent_when_the_session_went_are_counted_as_vanished_not_as_the_last_ones_sent(
    connection, store, before_each_write
):
    small = dataclasses.replace(connection, max_request_bytes=200_000)
    store.call("RPUSH", "s", *(llamaindex("user", f"{i} " + "x " * 6_000) for i in range(3)))  # 66 KB each, redacted
    writes = before_each_write(lambda write: write == 2 and chat_app(connection).call("DEL", "s"))
    result = redaction.redact_session(small, "s", Matcher("x"), None, whole=False)
    # A request each: the first written; the second finds the session gone; the third is not sent.
    assert [changes_sent(write) for write in writes] == [[0], [1]]
    assert (result.redacted, result.vanished, result.changed) == (1, 2, 0)


def test_once_a_write_finds_the_session_gone_a_new_list_under_its_key_is_left_as_written(
    connection, store, before_each_write
):
    small = dataclasses.replace(connection, max_request_bytes=200_000)  # windows of about 120 KB
    store.call("RPUSH", "s", *(llamaindex("user", f"{EMAIL} " + "x" * 10_000) for _ in range(40)))
    again = [llamaindex("user", f"{i}: {EMAIL} " + "y" * 10_000).encode() for i in range(40)]
    app = chat_app(connection)

    def started_again(response):  # after the write that found it gone, the chat app starts the session again
        if writes and not pushed:
            pushed.append(app.call("RPUSH", "s", *(element.decode() for element in again)))

    writes, pushed = before_each_write(lambda write: write == 1 and app.call("DEL", "s")), []
    with each_reply(connection, started_again):
        result = redaction.redact_session(small, "s", Matcher(EMAIL), None, whole=False)
    assert pushed and len(writes) == 1 and result.redacted == 0 and 0 < result.vanished < 40
    assert store.call("LRANGE", "s", 0, -1) == again


def test_messages_that_change_at_every_write_in_several_windows_are_each_counted_and_the_rest_redacted(
    connection, store, before_each_write
):
    small = dataclasses.replace(connection, max_request_bytes=200_000)  # windows of about 120 KB: 3 messages
    store.call("RPUSH", "s", *(llamaindex("user", f"{i}: {EMAIL} " + "x" * 30_000) for i in range(8)))
    app = chat_app(connection)

    def rewrite_the_first_and_the_last(write):  # still matching, each time: their writes are refused
        for index in (0, 7):
            app.call("LSET", "s", index, llamaindex("user", f"{index}, write {write}: {EMAIL} " + "x" * 30_000))

    before_each_write(rewrite_the_first_and_the_last)
    result = redaction.redact_session(small, "s", Matcher(EMAIL), None, whole=True)
    assert (result.redacted, result.changed, result.vanished) == (6, 2, 0)
    now = stored(store)
    assert [message["content"] == "[redacted]" for message in now] == [False] + [True] * 6 + [False]


def test_a_message_read_again_in_parts_is_redacted_and_one_that_changes_while_read_again_is_tried_again(
    connection, store, before_each_write
):
    small = dataclasses.replace(connection, max_request_bytes=200_000)  # parts of 120 KB
    store.call("RPUSH", "s", llamaindex("user", f"0: {EMAIL}"), llamaindex("user", f"1: {EMAIL}"))  # one window
    app = chat_app(connection)

    def big(version):
        return llamaindex("user", f"version {version}: {EMAIL} " + "x" * 300_000)

    def before_the_first_write(write):  # #0 grows past a part, #1 is rewritten: both refused, both read again
        if write == 1:
            app.call("LSET", "s", 0, big(1))
            app.call("LSET", "s", 1, llamaindex("user", f"1 again: {EMAIL}"))

    def after_the_first_part_read_again(response):  # #0, read again (first), changes between two of its parts
        script = json.loads(response.request.content)[1:2]  # EVAL_RO's body, or EVALSHA_RO's digest
        if len(writes) == 1 and not rewrites and script in ([sessions.PART_SCRIPT.body], [sessions.PART_SCRIPT.digest]):
            rewrites.append(app.call("LSET", "s", 0, big(2)))

    writes, rewrites = before_each_write(before_the_first_write), []
    with each_reply(connection, after_the_first_part_read_again):
        result = redaction.redact_session(small, "s", Matcher(EMAIL), None, whole=True)
    # #1 written at the second write; #0, still changing when read again, refused there and written at the third.
    assert rewrites and [changes_sent(write) for write in writes] == [[0, 1], [0, 1], [0]]
    assert (result.redacted, result.changed, result.vanished) == (2, 0, 0)
    assert stored(store) == [{"role": "user", "content": "[redacted]", "additional_kwargs": {}}] * 2
