"""The sessions service against a real local store, through the real client."""

import dataclasses
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest

from memoryadmin.localstore.store import LocalStore
from memoryadmin.services import sessions, summaries
from memoryadmin.services.sessions import SessionNotFound
from memoryadmin.services.summarizers import SummaryResult
from memoryadmin.services.upstash import get_client

from .conftest import TEST_TOKEN
from .factories import langchain, llamaindex, write_langchain_session, write_llamaindex_session


def texts(n, prefix="m"):
    return [f"{prefix}{i}" for i in range(n)]


def round_trips(local_store, action):
    before = local_store.gateway.requests_served
    result = action()
    return result, local_store.gateway.requests_served - before


# --- discovery -------------------------------------------------------------


def test_lists_only_lists_with_their_metadata(connection, store):
    write_langchain_session(store, "message_store:abc", ["hello", "hi there"])
    write_llamaindex_session(store, "llamaindex:chat:jo", ["question", "answer"])
    store.call("SET", "ratelimit:user:1", "5")
    store.call("HSET", "config:bot", "a", "b")
    store.call("EXPIRE", "llamaindex:chat:jo", 3600)
    page = sessions.scan_sessions(dataclasses.replace(connection, display_prefix="message_store:"))
    rows = {row.key: row for row in page.rows}
    assert set(rows) == {"message_store:abc", "llamaindex:chat:jo"}
    assert rows["message_store:abc"].display_name == "abc"
    assert rows["message_store:abc"].message_count == 2
    assert rows["message_store:abc"].ttl == -1
    assert rows["message_store:abc"].writer == "LangChain (Python)"
    assert rows["message_store:abc"].preview.text == "hi there"  # newest, LPUSH: index 0
    assert rows["llamaindex:chat:jo"].preview.text == "answer"  # newest, RPUSH: index -1
    assert rows["llamaindex:chat:jo"].writer == "LlamaIndex"
    assert 0 < rows["llamaindex:chat:jo"].ttl <= 3600
    assert page.next_cursor is None


def test_a_display_name_drops_the_prefix_only_from_keys_that_have_more_after_it(connection, store):
    for key in ("message_store:abc", "message_store:", "other:message_store:x"):
        write_langchain_session(store, key, ["hello"])
    page = sessions.scan_sessions(dataclasses.replace(connection, display_prefix="message_store:"))
    assert sorted((row.key, row.display_name) for row in page.rows) == [
        ("message_store:", "message_store:"),  # the prefix alone would be an empty name
        ("message_store:abc", "abc"),
        ("other:message_store:x", "other:message_store:x"),
    ]


def test_a_key_gone_or_no_list_since_scan_saw_it_leaves_the_rows_after_it(connection, store):
    for key in ("a", "c"):
        write_langchain_session(store, key, ["hello"])
    store.call("SET", "b", "a list once, a string now")
    rows = sessions._session_rows(connection, ["a", "gone", "b", "c"])  # the keys of a SCAN step, as it listed them
    assert [row.key for row in rows] == ["a", "c"]


def test_a_dense_page_costs_one_scan_and_one_pipeline(local_store, connection, store):
    for i in range(120):
        store.call("LPUSH", f"s:{i:03}", langchain("human", "hi"))
    page, trips = round_trips(local_store, lambda: sessions.scan_sessions(connection, "s:*"))
    assert len(page.rows) == 50 and page.pattern == "s:*" and not page.exact
    assert trips == 2


def test_a_page_that_holds_the_last_keys_exactly_ends_the_scan(connection, store):
    for i in range(50):
        store.call("LPUSH", f"s:{i:02}", langchain("human", "hi"))
    page = sessions.scan_sessions(connection, "s:*")
    assert len(page.rows) == 50 and page.next_cursor is None  # no "scan more" that would find nothing


def test_a_page_resumed_near_the_end_of_a_step_fills_up_from_the_next_one_and_no_more(connection, store):
    keys = [f"s:{i:05}" for i in range(2500)]
    for start in range(0, len(keys), 500):
        store.pipeline([["LPUSH", key, langchain("human", "hi")] for key in keys[start : start + 500]])
    _, first_step = store.call("SCAN", "0", "MATCH", "s:*", "COUNT", sessions.SCAN_COUNT, "TYPE", "list")
    after = sorted(first_step)[-5].decode()  # a few keys of that step are left to show
    page = sessions.scan_sessions(connection, "s:*", cursor="0", after=after)
    shown = [row.key for row in page.rows]
    assert len(shown) == 50 and shown[0] > after
    assert page.next_cursor not in (None, "0") and page.next_after == shown[-1]  # resumes inside the second step


def scan_steps(store, pattern):
    """The keys of each SCAN step, as the app's steps of SCAN_COUNT see them: (cursor asked, sorted keys)."""
    steps, cursor = [], "0"
    while True:
        raw_cursor, raw_keys = store.call(
            "SCAN", cursor, "MATCH", pattern, "COUNT", sessions.SCAN_COUNT, "TYPE", "list"
        )
        steps.append((cursor, sorted(key.decode() for key in raw_keys)))
        cursor = raw_cursor.decode()
        if cursor == "0":
            return steps


def steps_with_the_empty_key(store):
    """The SCAN steps of a store holding "" and 5,000 other sessions."""
    store.call("LPUSH", "", langchain("human", "hi"))
    for start in range(0, 5000, 2500):
        store.pipeline([["LPUSH", f"s:{i:05}", langchain("human", "hi")] for i in range(start, start + 2500)])
    return scan_steps(store, "*")


def test_a_resumed_page_shows_the_empty_key_of_a_later_step(connection, store):
    """Only the resumed step drops the keys already shown: a later step's first key, here "", still shows."""
    with ExitStack() as servers:
        steps = steps_with_the_empty_key(store)
        # Which step holds "" follows from Valkey's random hash seed (the first in about one run in five):
        # another server has another seed.
        for _ in range(10):
            if "" not in steps[0][1]:
                break
            another = servers.enter_context(LocalStore(port=0, token=TEST_TOKEN))
            connection = dataclasses.replace(connection, url=another.url)
            steps = steps_with_the_empty_key(get_client(connection))
        assert "" not in steps[0][1], "ten servers all put the empty key in the first SCAN step"
        step = next(i for i, (_, keys) in enumerate(steps) if "" in keys)
        cursor, keys = steps[step - 1]
        page = sessions.scan_sessions(connection, "*", cursor=cursor, after=keys[-5])
    assert [row.key for row in page.rows][:5] == keys[-4:] + [""]


def test_paging_resumes_mid_step_without_duplicates_or_gaps(connection, store):
    for i in range(130):
        store.call("LPUSH", f"s:{i:03}", langchain("human", "hi"))
    seen, cursor, after = [], "0", None
    while True:
        page = sessions.scan_sessions(connection, "s:*", cursor=cursor, after=after)
        seen += [row.key for row in page.rows]
        if page.next_cursor is None:
            break
        cursor, after = page.next_cursor, page.next_after
    assert len(seen) == len(set(seen)) == 130


def test_paging_across_several_scan_steps_lists_every_key_exactly_once(connection, store):
    keys = [f"s:{i:05}" for i in range(2500)]  # three SCAN steps of about 1,000 keys; 50 pages
    for start in range(0, len(keys), 500):
        store.pipeline([["LPUSH", key, langchain("human", "hi")] for key in keys[start : start + 500]])
    seen, cursor, after, crossings = [], "0", None, 0
    while True:
        page = sessions.scan_sessions(connection, "s:*", cursor=cursor, after=after)
        seen += [row.key for row in page.rows]
        if page.next_cursor is None:
            break
        crossings += page.next_cursor != cursor  # this page ended in a later SCAN step than it began in
        cursor, after = page.next_cursor, page.next_after
    assert crossings >= 2
    assert len(seen) == len(set(seen)) and sorted(seen) == keys


def test_sparse_pattern_spans_many_scan_steps_within_the_budget(connection, store):
    pipeline = [["SET", f"noise:{i}", "x"] for i in range(6000)]
    for start in range(0, len(pipeline), 1000):
        store.pipeline(pipeline[start : start + 1000])
    for i in range(7):
        store.call("LPUSH", f"rare:{i}", langchain("human", "hi"))
    small_budget = dataclasses.replace(connection, scan_budget=2000)
    found, cursor, after, pages = set(), "0", None, 0
    while True:
        page = sessions.scan_sessions(small_budget, "rare:*", cursor=cursor, after=after)
        pages += 1
        assert page.examined <= 2000
        found.update(row.key for row in page.rows)
        if page.next_cursor is None:
            break
        cursor, after = page.next_cursor, page.next_after
    assert found == {f"rare:{i}" for i in range(7)}
    assert pages > 1  # the budget stopped the first page before the keyspace ended


def test_pattern_without_wildcard_is_looked_up_directly(local_store, connection, store):
    write_langchain_session(store, "message_store:abc", ["hello"])
    store.call("SET", "plain-string", "x")
    prefixed = dataclasses.replace(connection, display_prefix="message_store:")
    page = sessions.scan_sessions(prefixed, "abc")
    assert page.exact and [row.key for row in page.rows] == ["message_store:abc"]
    assert page.pattern == "abc"  # shown, kept in the search box, and what "Apply to all matching" applies to
    assert sessions.scan_sessions(prefixed, "plain-string").rows == []
    assert [row.key for row in sessions.scan_sessions(connection, r"message_store:ab\c").rows] == ["message_store:abc"]


def test_a_key_typed_with_its_prefix_is_not_prefixed_again(connection, store):
    prefixed = dataclasses.replace(connection, display_prefix="message_store:")
    for key in ("message_store:abc", "message_store:message_store:abc"):
        write_langchain_session(store, key, ["hello"])
    page = sessions.scan_sessions(prefixed, "message_store:abc")
    assert [row.key for row in page.rows] == ["message_store:abc"]


def test_an_exact_lookup_without_ttl_lists_the_session_only_when_it_has_no_ttl(connection, store):
    for key in ("forever", "expiring"):
        write_langchain_session(store, key, ["hello"])
    store.call("EXPIRE", "expiring", 3600)
    for key in ("forever", "expiring"):
        assert [row.key for row in sessions.scan_sessions(connection, key).rows] == [key]
    assert [row.key for row in sessions.scan_sessions(connection, "forever", no_ttl=True).rows] == ["forever"]
    assert sessions.scan_sessions(connection, "expiring", no_ttl=True).rows == []


@pytest.mark.parametrize(
    ("key", "typed"),
    [
        ("C:\\bots\\support", "C:\\bots\\support"),  # a backslash is part of the key as typed
        ("ends with\\", "ends with\\"),
        ("two\\\\backslashes", "two\\\\backslashes"),
        ("why*not?", "why\\*not\\?"),  # escaped glob characters are still literal
        ("with\\*star", "with\\*star"),  # a backslash before a glob character, typed as stored
        ("two\nlines", "two\\\nlines"),  # an escaped newline is a newline, as SCAN MATCH reads it
    ],
)
def test_exact_lookup_finds_keys_with_backslashes_as_typed(connection, store, key, typed):
    write_langchain_session(store, key, ["hello"])
    page = sessions.scan_sessions(connection, typed)
    assert page.exact and [row.key for row in page.rows] == [key]


def test_an_escaped_backslash_before_a_wildcard_leaves_the_wildcard_working(connection, store):
    write_langchain_session(store, "dir\\one", ["hello"])
    write_langchain_session(store, "dir-two", ["hello"])
    page = sessions.scan_sessions(connection, "dir\\\\*")  # glob: "dir\\" then anything
    assert not page.exact and [row.key for row in page.rows] == ["dir\\one"]


def test_awkward_keys_are_listed_verbatim(connection, store):
    key = "support bot/2026 #42 100% ünïcødé?\nsecond line"
    write_langchain_session(store, key, ["hello"])
    (row,) = sessions.scan_sessions(connection).rows
    assert row.key == key


def test_keys_that_are_not_utf8_are_counted_not_listed(connection, store):
    store.call("EVAL", "return redis.call('RPUSH', string.char(255) .. 'bad', 'x')", 0)
    write_langchain_session(store, "good", ["hello"])
    page = sessions.scan_sessions(connection)
    assert [row.key for row in page.rows] == ["good"]
    assert page.unaddressable == 1


def test_keys_that_are_not_utf8_are_counted_over_every_scan_step_of_a_page(connection, store):
    script = "for i = 1, 2500 do redis.call('RPUSH', string.char(255) .. i, 'x') end return 1"
    store.call("EVAL", script, 0)
    page = sessions.scan_sessions(connection)  # three SCAN steps or more, none with a key to show
    assert page.rows == [] and page.next_cursor is None and page.examined >= 3000
    assert page.unaddressable == 2500


def test_a_row_whose_newest_message_is_of_no_known_format_names_no_writer(connection, store):
    for key in ("message_store:junk", "chat:junk"):
        store.call("RPUSH", key, "not json", "nor this")
    assert {row.key: row.writer for row in sessions.scan_sessions(connection).rows} == {
        "message_store:junk": "unknown",
        "chat:junk": "unknown",
    }


def test_forced_order_reads_only_the_newest_end(connection, store):
    write_llamaindex_session(store, "li", ["old", "new"])
    forced = dataclasses.replace(connection, list_order="oldest-first")
    (row,) = sessions.scan_sessions(forced).rows
    assert row.preview.text == "new"


def test_a_forced_order_is_the_order_whatever_the_messages_format(connection, store):
    # An app of its own writing LangChain's format oldest first, or LlamaIndex's newest first.
    store.call("RPUSH", "lc-appended", *[langchain("human", text) for text in ("old", "middle", "new")])
    store.call("LPUSH", "li-prepended", *[llamaindex("user", text) for text in ("old", "middle", "new")])
    for key, order in (("lc-appended", "oldest-first"), ("li-prepended", "newest-first")):
        forced = dataclasses.replace(connection, list_order=order)
        (row,) = sessions.scan_sessions(forced, key).rows
        assert row.preview.text == "new"
        transcript = sessions.get_transcript(forced, key)
        assert transcript.order == order and [m.text for _, m in transcript.messages] == ["old", "middle", "new"]


# --- transcripts -------------------------------------------------------------


def test_transcript_is_chronological_for_both_orders(connection, store):
    write_langchain_session(store, "lc", texts(5))
    write_llamaindex_session(store, "li", texts(5))
    for key, order in (("lc", "newest-first"), ("li", "oldest-first")):
        transcript = sessions.get_transcript(connection, key, window=50)
        assert [m.text for _, m in transcript.messages] == texts(5)
        assert [i for i, _ in transcript.messages] == [0, 1, 2, 3, 4]
        assert transcript.order == order
        assert not transcript.has_earlier


def test_a_transcripts_writer_is_that_of_its_first_message_of_a_known_format(connection, store):
    store.call("LPUSH", "message_store:py", "not json", langchain("human", "hi"))
    store.call("LPUSH", "chat:js", "not json", langchain("human", "hi"))
    store.call("RPUSH", "li", "not json", llamaindex("user", "hi"))
    store.call("RPUSH", "junk", "not json", "nor this")
    writers = {
        key: sessions.get_transcript(connection, key).writer for key in ("message_store:py", "chat:js", "li", "junk")
    }
    assert writers == {
        "message_store:py": "LangChain (Python)",
        "chat:js": "Flowise / LangChain JS",
        "li": "LlamaIndex",
        "junk": "unknown",
    }


@pytest.mark.parametrize("writer", [write_langchain_session, write_llamaindex_session])
def test_long_session_reads_windows_back_to_the_start(connection, store, writer):
    writer(store, "long", texts(2500))
    transcript = sessions.get_transcript(connection, "long", window=100)
    assert transcript.message_count == 2500
    assert [m.text for _, m in transcript.messages] == texts(2500)[-100:]
    shown = [m.text for _, m in transcript.messages]
    while transcript.has_earlier:
        transcript = sessions.get_transcript(
            connection, "long", before=transcript.start, order=transcript.order, window=100
        )
        shown = [m.text for _, m in transcript.messages] + shown
    assert shown == texts(2500)


def test_transcript_page_is_one_round_trip_when_the_order_is_known(local_store, connection, store):
    write_langchain_session(store, "lc", texts(300))
    _, trips = round_trips(local_store, lambda: sessions.get_transcript(connection, "lc", window=50))
    assert trips == 1
    write_llamaindex_session(store, "li", texts(300))
    _, trips = round_trips(
        local_store, lambda: sessions.get_transcript(connection, "li", before=100, order="oldest-first", window=50)
    )
    assert trips == 1


def test_the_first_page_of_an_oldest_first_session_reads_again_only_when_longer_than_the_window(
    local_store, connection, store
):
    for key, length, reads in (("short", 50, 1), ("long", 51, 2)):
        write_llamaindex_session(store, key, texts(length))
        transcript, trips = round_trips(
            local_store, lambda key=key: sessions.get_transcript(connection, key, window=50)
        )
        assert trips == reads
        assert [m.text for _, m in transcript.messages] == texts(length)[-50:]


def test_an_earlier_window_without_its_order_is_the_one_before_it_whatever_the_order(connection, store):
    write_langchain_session(store, "lc", texts(100))
    write_llamaindex_session(store, "li", texts(100))
    for key in ("lc", "li"):
        transcript = sessions.get_transcript(connection, key, before=30, window=10)  # a link that lost its order
        assert [(i, m.text) for i, m in transcript.messages] == [(i, f"m{i}") for i in range(20, 30)]


def test_a_message_too_big_for_a_transcript_comes_cut_and_read_as_far_as_it_goes(connection, store):
    big = "word " * 100_000
    write_langchain_session(store, "lc", ["before", big, "after"])
    transcript = sessions.get_transcript(connection, "lc")
    (_, before), (_, cut), (_, after) = transcript.messages
    assert (cut.cut, cut.size, cut.role, cut.format) == (True, len(langchain("ai", big)), "ai", "langchain")
    assert len(cut.text) > 60_000 and big.startswith(cut.text)
    assert (before.cut, before.text, after.cut, after.text) == (False, "before", False, "after")


def test_earlier_window_is_stable_while_the_app_keeps_writing(connection, store):
    write_langchain_session(store, "live", texts(100))
    first = sessions.get_transcript(connection, "live", window=30)
    store.call("LPUSH", "live", langchain("human", "brand new"))
    earlier = sessions.get_transcript(connection, "live", before=first.start, order=first.order, window=30)
    assert [m.text for _, m in earlier.messages] == texts(100)[40:70]


def test_transcript_carries_ttl_and_summary(connection, store):
    write_langchain_session(store, "lc", texts(4))
    store.call("EXPIRE", "lc", 500)
    store.call("HSET", "memoryadmin:summary:lc", "text", "A summary", "method", "extractive", "message_count", "2")
    transcript = sessions.get_transcript(connection, "lc")
    assert 0 < transcript.ttl <= 500
    assert transcript.summary.text == "A summary"
    assert transcript.summary.is_stale(transcript.message_count)


def test_a_summary_reads_with_every_field_and_is_fresh_while_it_covers_every_message(connection, store):
    write_langchain_session(store, "lc", texts(2))
    store.call("HSET", "memoryadmin:summary:lc", "text", "A summary", "method", "llm", "message_count", "2")
    store.call("HSET", "memoryadmin:summary:lc", "generated_at", "2026-03-04T05:06:07Z", "duration_ms", "1500")
    summary, length = summaries.read_summary(connection, "lc")
    assert summary == summaries.Summary(
        text="A summary",
        method="llm",
        message_count=2,
        generated_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        duration_ms=1500,
    )
    assert length == 2 and not summary.is_stale(length)
    assert summary.is_stale(length + 1)


def test_a_summary_written_by_another_app_may_leave_out_any_field(connection, store):
    store.call("HSET", "memoryadmin:summary:lc", "message_count", "2")
    summary, _ = summaries.read_summary(connection, "lc")
    assert summary == summaries.Summary(text="", method="unknown", message_count=2, generated_at=None, duration_ms=None)


def test_a_summary_with_bytes_that_are_not_utf8_still_reads(connection, store):
    # Another app may write the hash: an invalid byte in a value or a field's name is shown as �, not an error.
    write_langchain_session(store, "lc", texts(1))
    script = "redis.call('HSET', KEYS[1], 'text', 'caf' .. string.char(233), string.char(255), 'x', 'method', 'm')"
    store.call("EVAL", script + " return 1", 1, "memoryadmin:summary:lc")
    summary, _ = summaries.read_summary(connection, "lc")
    assert (summary.text, summary.method) == ("caf\ufffd", "m")


def test_summary_fields_are_read_as_name_value_pairs_whatever_the_values(connection, store):
    store.call("HSET", "memoryadmin:summary:lc", "text", "text", "method", "method", "message_count", "3")
    summary, _ = summaries.read_summary(connection, "lc")
    assert (summary.text, summary.method, summary.message_count) == ("text", "method", 3)


def test_a_summary_is_named_by_namespace_and_key_up_to_32_kb(connection, store):
    # Chat apps that write summaries name them so: a key that just fits must be read there.
    fits = "k" * (summaries.MAX_KEY_BYTES - len(connection.summary_namespace))
    write_langchain_session(store, fits, texts(1))
    store.call("HSET", connection.summary_namespace + fits, "text", "written by the chat app")
    summary, _ = summaries.read_summary(connection, fits)
    assert summary.text == "written by the chat app"


def test_sessions_with_keys_too_long_to_prefix_each_have_their_own_summary(connection, store):
    room = summaries.MAX_KEY_BYTES - len(connection.summary_namespace)
    first, second = "a" * room + "1", "a" * room + "2"
    for key in (first, second):
        write_langchain_session(store, key, texts(2))
    result = SummaryResult(text="the first session's", method="extractive", message_count=2, duration_ms=1)
    assert summaries.write_summary(connection, first, result, datetime.now(UTC))
    assert summaries.read_summary(connection, first)[0].text == "the first session's"
    assert summaries.read_summary(connection, second)[0] is None
    # A key with a lone surrogate (a hostile writer's) is named too, by the digest of its bytes.
    hostile = summaries.summary_key(connection, "\ud800" + "a" * room)
    assert hostile.startswith(connection.summary_namespace + "#sha256:")
    assert hostile != summaries.summary_key(connection, "\udfff" + "a" * room)


def test_missing_key_and_non_list_are_not_found(connection, store):
    store.call("SET", "a-string", "x")
    with pytest.raises(SessionNotFound) as refused:
        sessions.get_transcript(connection, "nope")
    assert str(refused.value) == "There is no session 'nope': it was cleared or has expired."
    with pytest.raises(SessionNotFound) as refused:
        sessions.get_transcript(connection, "a-string")
    assert str(refused.value) == "'a-string' is not a list, so it is not a chat session."


def test_read_message_returns_the_exact_element(connection, store):
    write_langchain_session(store, "lc", texts(3))
    assert b'"m0"' in b"".join(sessions.read_message(connection, "lc", 0, "newest-first").parts)
    with pytest.raises(SessionNotFound):
        sessions.read_message(connection, "lc", 10, "newest-first")
    with pytest.raises(SessionNotFound) as refused:
        sessions.read_message(connection, "gone", 0, "newest-first")
    assert str(refused.value) == "There is no session 'gone': it was cleared or has expired."


@pytest.mark.parametrize("writer", [write_langchain_session, write_llamaindex_session])
def test_a_message_not_there_is_named_by_its_number_from_1_oldest_first(connection, store, writer):
    writer(store, "s", texts(3))
    order = sessions.get_transcript(connection, "s").order
    for index in (3, 10):
        with pytest.raises(SessionNotFound) as raised:
            sessions.read_message(connection, "s", index, order)
        assert str(raised.value) == f"Session 's' has no message #{index + 1} (any more)."


# --- writes ------------------------------------------------------------------


def test_set_ttl_and_persist_apply_to_session_and_summary(connection, store):
    write_langchain_session(store, "lc", texts(2))
    store.call("HSET", "memoryadmin:summary:lc", "text", "x")
    change = sessions.set_ttl(connection, "lc", 3600)
    assert change.before == -1 and 3590 < change.after <= 3600
    assert 3590 < store.call("TTL", "memoryadmin:summary:lc") <= 3600
    change = sessions.persist_session(connection, "lc")
    assert 3590 < change.before <= 3600 and change.after == -1
    assert store.call("TTL", "memoryadmin:summary:lc") == -1


def test_ttl_bounds_are_checked(connection, store):
    write_langchain_session(store, "lc", texts(2))
    for seconds in (0, sessions.MAX_TTL + 1):
        with pytest.raises(ValueError) as refused:
            sessions.set_ttl(connection, "lc", seconds)
        assert str(refused.value) == "A TTL must be between 1 second and 3650 days."
    assert store.call("TTL", "lc") == -1
    assert sessions.set_ttl(connection, "lc", sessions.MAX_TTL).after == sessions.MAX_TTL  # both bounds are allowed
    assert sessions.set_ttl(connection, "lc", 1).after == 1  # last: the session expires a second later


def test_clear_removes_session_and_summary_and_nothing_else(connection, store):
    write_langchain_session(store, "lc", texts(7))
    write_langchain_session(store, "lc2", texts(1))
    store.call("HSET", "memoryadmin:summary:lc", "text", "x")
    store.call("SET", "lcx", "unrelated")
    assert sessions.clear_session(connection, "lc") == 7
    assert store.call("EXISTS", "lc", "memoryadmin:summary:lc") == 0
    assert store.call("EXISTS", "lc2", "lcx") == 2


def test_writes_leave_non_sessions_alone(connection, store):
    store.call("SET", "a-string", "x")
    for write in (
        lambda: sessions.clear_session(connection, "a-string"),
        lambda: sessions.set_ttl(connection, "a-string", 60),
        lambda: sessions.persist_session(connection, "a-string"),
    ):
        with pytest.raises(SessionNotFound) as refused:
            write()
        assert str(refused.value) == "'a-string' is not a list, so it is not a chat session; it was left alone."
    assert store.call("GET", "a-string") == b"x"
    assert store.call("TTL", "a-string") == -1
    with pytest.raises(SessionNotFound) as refused:
        sessions.clear_session(connection, "gone")
    assert str(refused.value) == "There is no session 'gone': it was cleared or has expired."


def test_the_window_before_the_first_message_is_empty_with_nothing_earlier(connection, store):
    write_langchain_session(store, "lc", texts(3))
    transcript = sessions.get_transcript(connection, "lc", before=0, order="newest-first")
    assert (transcript.messages, transcript.start, transcript.has_earlier) == ([], 0, False)


def test_a_window_past_the_end_is_numbered_from_its_start(connection, store):
    write_langchain_session(store, "lc", texts(40))
    transcript = sessions.get_transcript(connection, "lc", before=45, order="newest-first", window=50)
    assert [(i, m.text) for i, m in transcript.messages][:2] == [(0, "m0"), (1, "m1")]
    assert transcript.messages[-1] == (39, transcript.messages[-1][1]) and transcript.messages[-1][1].text == "m39"
