"""Redaction on the real local store: compare-and-set, a chat app writing meanwhile, big elements, the bill."""

import dataclasses
import hashlib
import json
import threading

import pytest

from memoryadmin.services import redaction, scripts
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
    store.call("LSET", "s", -1, langchain("human", "another message"))  # the chat app rewrote its history
    before = store.call("LRANGE", "s", 0, -1)
    done = redaction.redact_message(connection, "s", 0, NEWEST_FIRST, identity.sha1)
    assert done.outcome == redaction.CHANGED_MEANWHILE
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


@pytest.mark.parametrize("element", [b"not json " + EMAIL.encode(), b'["a list", "jane.doe@example.com"]', b"\xff"])
def test_an_element_of_no_known_writer_becomes_the_bare_marker(element):
    assert redaction.redacted_element(element, Matcher(EMAIL)) == (b"[redacted]", True)


def test_a_query_that_survives_text_only_redaction_redacts_the_whole_message():
    element = langchain("human", "my kwargs", example=EMAIL).encode()
    # Text-only redaction leaves the key "additional_kwargs": the whole message goes, and with it what
    # is no field a reader needs (a field that should be true or false, holding text).
    whole = redaction.redacted_element(element, Matcher("kwargs"))
    assert whole == (langchain("human", "[redacted]", example=False).encode(), True)
