"""Exports stream a session window by window: complete, in bounded store reads, in flat memory, audited to the end."""

import gc
import hashlib
import json
import re
import tracemalloc

import pytest
from django.http import StreamingHttpResponse

from memoryadmin.audit.models import AuditEvent
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services.messages import parse_element
from memoryadmin.services.sessions import EXPORT_WINDOW, EXPORT_WINDOW_BYTES, SessionNotFound, read_whole_session
from memoryadmin.services.upstash import StoreUnavailable

from .conftest import replace_connection
from .factories import langchain, llamaindex, write_langchain_session, write_llamaindex_session

pytestmark = pytest.mark.django_db

BIG = 20_000


def export_path(key, fmt):
    return f"/sessions/{encode_key(key)}/export.{fmt}"


def only_export_event():
    (event,) = AuditEvent.objects.filter(action="session.export")
    return event


def texts(count, size=0):
    return [f"message {index} " + "x" * size for index in range(count)]


def windows_needed(sizes):
    """How many windows hold elements of these sizes, at most EXPORT_WINDOW of them and EXPORT_WINDOW_BYTES each."""
    windows, count, size = 0, 0, 0
    for element_size in sizes:
        if count and (count == EXPORT_WINDOW or size + element_size > EXPORT_WINDOW_BYTES):
            windows, count, size = windows + 1, 0, 0
        count, size = count + 1, size + element_size
    return windows + (count > 0)


@pytest.mark.parametrize("fmt", ["json", "md"])
def test_a_big_session_streams_whole_in_bounded_reads_and_flat_memory(web, store, local_store, fmt):
    chronological = texts(BIG, size=3000)
    write_langchain_session(store, "big", chronological)
    elements = [langchain("human" if i % 2 == 0 else "ai", text) for i, text in enumerate(chronological)]
    session_bytes = sum(map(len, elements))
    expected_json = hashlib.sha256(json.dumps(elements, ensure_ascii=False, indent=1).encode()).hexdigest()
    expected_requests = windows_needed(map(len, elements))
    del chronological, elements
    requests_before = local_store.gateway.requests_served

    tracemalloc.start()
    try:
        response = web.get(export_path("big", fmt))
        assert isinstance(response, StreamingHttpResponse) and response.status_code == 200
        digest, headings = hashlib.sha256(), []
        for chunk in response.streaming_content:  # consumed as it comes, as a client would
            digest.update(chunk)
            headings += re.findall(rb"^### (\d+)\. ", chunk, re.M)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    if fmt == "json":
        assert digest.hexdigest() == expected_json  # exactly what is stored, oldest first
    else:
        assert [int(number) for number in headings] == list(range(1, BIG + 1))
    assert local_store.gateway.requests_served - requests_before == expected_requests  # one read per window
    assert peak < session_bytes / 4, f"peak {peak / 1e6:.1f} MB for a session of {session_bytes / 1e6:.1f} MB"
    assert only_export_event().details == {"format": fmt, "messages": BIG}


@pytest.mark.parametrize("order", ["newest-first", "oldest-first"])
def test_windows_count_from_the_oldest_end_while_the_app_writes(connection, store, local_store, order):
    write_session = write_langchain_session if order == "newest-first" else write_llamaindex_session
    write_session(store, "busy", texts(2500))
    requests_before = local_store.gateway.requests_served
    session = read_whole_session(connection, "busy", window=1000)
    read = list(next(session.windows))
    write_session(store, "busy", texts(30))  # the chat goes on: LPUSH or RPUSH, at the newest end
    requests_before += 1
    for window in session.windows:
        assert len(window) <= 1000
        read += window
    assert session.order == order and session.message_count == 2500
    shown = [re.search(r"message \d+", element.decode()).group() for element in read]
    assert shown == [f"message {index}" for index in range(2500)]
    # One read per window; an oldest-first list is first read from the wrong end, once.
    assert local_store.gateway.requests_served - requests_before == 3 + (order == "oldest-first")


def contents(window):
    """Each element's text; an element of no known format as it is."""
    return [parse_element(element).text if element.startswith(b"{") else element.decode() for element in window]


@pytest.mark.parametrize(("length", "reads"), [(5, 2), (3, 1)])  # longer than the window: read again from the start
def test_a_whole_session_says_what_it_is_and_comes_oldest_first(connection, store, local_store, length, reads):
    chronological = ["not json"] + [f"m{index}" for index in range(1, length)]
    store.call("RPUSH", "chat:li", "not json", *[llamaindex("user", text) for text in chronological[1:]])
    store.call("EXPIRE", "chat:li", 600)
    store.call("HSET", "memoryadmin:summary:chat:li", "text", "A summary", "message_count", "3")
    requests_before = local_store.gateway.requests_served
    session = read_whole_session(replace_connection(connection, display_prefix="chat:"), "chat:li", window=3)
    assert local_store.gateway.requests_served - requests_before == reads
    assert (session.key, session.display_name, session.message_count) == ("chat:li", "li", length)
    assert 590 < session.ttl <= 600
    assert (session.order, session.writer, session.summary.text) == ("oldest-first", "LlamaIndex", "A summary")
    assert [contents(window) for window in session.windows] == [chronological[:3], chronological[3:]][
        : 1 + (length > 3)
    ]


@pytest.mark.parametrize(
    ("push", "element", "order"), [("RPUSH", langchain, "oldest-first"), ("LPUSH", llamaindex, "newest-first")]
)
def test_a_forced_order_is_the_order_whatever_the_messages_format(connection, store, push, element, order):
    store.call(push, "app", *[element("user", text) for text in ("old", "middle", "new")])
    session = read_whole_session(replace_connection(connection, list_order=order), "app", window=2)
    assert session.order == order
    assert [text for window in session.windows for text in contents(window)] == ["old", "middle", "new"]


@pytest.mark.parametrize("order", ["newest-first", "oldest-first"])
def test_a_message_bigger_than_a_reply_is_read_whole_in_parts_in_either_order(connection, store, order):
    element = langchain if order == "newest-first" else llamaindex
    chronological = [element("user", text) for text in ("first", "b" * 500_000, "third", "last")]
    store.call("LPUSH" if order == "newest-first" else "RPUSH", "s", *chronological)
    small_replies = replace_connection(connection, max_request_bytes=200_000)  # parts of 120 KB
    windows = list(read_whole_session(small_replies, "s", window=1000, window_bytes=250_000).windows)
    assert windows == [
        [chronological[0].encode()],
        [chronological[1].encode()],
        [e.encode() for e in chronological[2:]],
    ]


def test_a_session_that_is_not_there_says_so_by_its_key(connection, store):
    store.call("SET", "a-string", "x")
    for key, says in (
        ("gone", "There is no session 'gone': it was cleared or has expired."),
        ("a-string", "'a-string' is not a list, so it is not a chat session."),
    ):
        with pytest.raises(SessionNotFound) as refused:
            read_whole_session(connection, key)
        assert str(refused.value) == says


def test_windows_are_bounded_in_bytes_too(connection, store):
    store.call("RPUSH", "heavy", *[llamaindex("user", str(index) + "x" * 100_000) for index in range(30)])
    store.call("RPUSH", "heavy", llamaindex("user", "y" * 400_000))  # bigger than the budget: a window of its own
    windows = list(read_whole_session(connection, "heavy", window=1000, window_bytes=250_000).windows)
    assert [len(window) for window in windows] == [2] * 15 + [1]
    assert all(sum(map(len, window)) <= 250_000 for window in windows[:-1])
    assert [json.loads(element)["content"][:2] for window in windows for element in window][:3] == ["0x", "1x", "2x"]


def test_a_forced_order_is_read_without_detection(connection, store, local_store):
    store.call("RPUSH", "forced", "junk 0", "junk 1", "junk 2")
    requests_before = local_store.gateway.requests_served
    session = read_whole_session(replace_connection(connection, list_order="oldest-first"), "forced", window=2)
    assert [element for window in session.windows for element in window] == [b"junk 0", b"junk 1", b"junk 2"]
    assert local_store.gateway.requests_served - requests_before == 2


def test_a_session_that_is_not_there_is_the_404_page_and_a_failed_event(web, store):
    store.call("SET", "a-string", "x")
    for key in ("gone", "a-string"):
        response = web.get(export_path(key, "json"))
        assert response.status_code == 404 and not response.streaming
        assert "Session not found" in response.content.decode()
    outcomes = AuditEvent.objects.filter(action="session.export").values_list("session_key", "outcome")
    assert sorted(outcomes) == [("a-string", "failed"), ("gone", "failed")]


@pytest.mark.parametrize("fmt", ["json", "md"])
def test_a_session_cleared_mid_stream_ends_the_file_cleanly(web, store, fmt):
    write_langchain_session(store, "brief", texts(EXPORT_WINDOW + 500))
    response = web.get(export_path("brief", fmt))
    chunks = iter(response.streaming_content)
    body = next(chunks)  # the first window
    store.call("DEL", "brief")  # cleared by an operator, or expired, while the file downloads
    body += b"".join(chunks)
    if fmt == "json":
        assert [re.search(r"message \d+", element).group() for element in json.loads(body)] == [
            f"message {index}" for index in range(EXPORT_WINDOW)
        ]
    else:
        text = body.decode()
        assert text.count("\n### ") == EXPORT_WINDOW
        assert text.endswith(
            f"The export ends after {EXPORT_WINDOW} of {EXPORT_WINDOW + 500} messages: "
            "the session was cleared or expired meanwhile.\n"
        )
    event = only_export_event()
    assert event.outcome == "ok" and event.details["messages"] == EXPORT_WINDOW
    assert event.details["incomplete"].startswith(f"{EXPORT_WINDOW} of {EXPORT_WINDOW + 500}")


def test_the_event_is_pending_until_the_last_piece_is_sent(web, store):
    write_langchain_session(store, "s", texts(3))
    response = web.get(export_path("s", "md"))
    assert only_export_event().outcome == "pending"  # the store is being read
    b"".join(response.streaming_content)
    assert only_export_event().outcome == "ok" and only_export_event().details["messages"] == 3


def test_an_abandoned_download_makes_no_query_when_it_is_collected(web, store, django_assert_num_queries):
    """The garbage collector may finalize it in the middle of another query on the same connection:
    a query of its own would deadlock there (psycopg waits for its own connection's lock)."""
    write_langchain_session(store, "s", texts(EXPORT_WINDOW + 1))
    response = web.get(export_path("s", "json"))
    next(iter(response.streaming_content))
    cycle = [response]
    cycle.append(cycle)  # so that only the garbage collector frees it, as it frees real responses (httpx cycles)
    del response, cycle
    with django_assert_num_queries(0):
        gc.collect()
    assert only_export_event().outcome == "pending"  # its outcome is unknown: the server never closed it


# Closing a response closes the database connection, as in production: a test outside a transaction.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_download_stopped_half_way_is_a_failed_event(web, store):
    write_langchain_session(store, "s", texts(EXPORT_WINDOW + 1))
    response = web.get(export_path("s", "json"))
    next(iter(response.streaming_content))
    response.close()  # the client went away: the server closes the response
    event = only_export_event()
    assert event.outcome == "failed" and "interrupted" in event.error


def test_a_store_failure_mid_stream_is_a_failed_event(web, store, local_store, settings):
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.2
    write_langchain_session(store, "s", texts(EXPORT_WINDOW + 1))
    response = web.get(export_path("s", "json"))
    chunks = iter(response.streaming_content)
    next(chunks)
    local_store.gateway.latency_ms = 500
    with pytest.raises(StoreUnavailable):
        b"".join(chunks)  # the server drops the connection: the client sees a broken download, not a short file
    local_store.gateway.latency_ms = 0
    event = only_export_event()
    assert event.outcome == "failed" and "did not answer" in event.error
