"""Content search for erasure requests: matching rules, the job, results, and on to a purge."""

import json
import logging
import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, SearchHit, SearchJob
from memoryadmin.services.content_search import Matcher, QueryError, match_session
from memoryadmin.services.upstash import StoreUnavailable

from .conftest import DUMMY_TASKS, replace_connection
from .factories import langchain, llamaindex

pytestmark = pytest.mark.django_db


def search(web, **data):
    response = web.post("/bulk/search/", {"key_pattern": "", "role": "", **data})
    assert response.status_code == 302, response.content.decode()[-500:]
    return SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def saved_hit(job, session_key, snippet=""):
    """A hit as a search saves it: one match, in the first message, the whole snippet."""
    return SearchHit.objects.create(
        job=job,
        session_key=session_key,
        matches=1,
        first_match=0,
        order="newest-first",
        snippet=snippet,
        match_start=0,
        match_end=len(snippet),
    )


def hit_keys(job):
    return sorted(SearchHit.objects.filter(job=job).values_list("session_key", flat=True))


@pytest.fixture
def mailbox(store):
    store.call("LPUSH", "lc:jane", langchain("human", "Hi, I am Jane.Doe@Example.com"), langchain("ai", "Hello Jane"))
    store.call(
        "RPUSH", "li:jane", llamaindex("user", "my email is jane.doe@example.com"), llamaindex("assistant", "ok")
    )
    store.call("LPUSH", "lc:bob", langchain("human", "I am bob@example.com"), langchain("ai", "Hi Bob"))
    store.call("SET", "cache:jane", "jane.doe@example.com")  # not a session: never a result
    store.call("HSET", "profile:jane", "email", "jane.doe@example.com")


def test_plain_search_is_case_insensitive_and_only_sessions(web, mailbox):
    job = search(web, query="JANE.DOE@example.COM")
    job.refresh_from_db()
    assert job.status == "done" and job.sessions_read == 3 and job.messages_read == 6
    assert job.started_at <= job.finished_at
    assert hit_keys(job) == ["lc:jane", "li:jane"]


def test_unicode_stored_as_json_escapes_is_found(web, store):
    element = json.dumps({"type": "human", "data": {"content": "Je m'appelle Renée Dupré"}})  # ensure_ascii: \u00e9
    assert "\\u00e9" in element
    store.call("LPUSH", "py:renee", element)
    store.call("LPUSH", "py:other", langchain("human", "Rene Dupre"))
    assert hit_keys(search(web, query="renée dupré")) == ["py:renee"]


def test_role_filter(web, mailbox):
    assert hit_keys(search(web, query="jane", role="ai")) == ["lc:jane"]
    assert hit_keys(search(web, query="jane", role="human")) == ["lc:jane", "li:jane"]


def test_key_pattern_limits_the_scope(web, mailbox):
    assert hit_keys(search(web, query="jane.doe@", key_pattern="li:*")) == ["li:jane"]


def test_a_key_pattern_that_matches_no_session_finds_nothing(web, mailbox):
    job = search(web, query="jane", key_pattern="cache:*")  # a string: SCAN's last (and only) step has no list
    job.refresh_from_db()
    assert (job.status, job.error, job.sessions_read, hit_keys(job)) == ("done", "", 0, [])


@pytest.mark.parametrize("budget", [60, 0])  # 0: out of time after its first SCAN step
def test_a_searchs_run_event_names_who_where_the_search_its_outcome_and_counts(
    web, operator, mailbox, settings, budget
):
    settings.MEMORYADMIN_SEARCH_BUDGET_SECONDS = budget
    job = search(web, query="jane.doe@example.com")
    job.refresh_from_db()
    event = AuditEvent.objects.get(action="search.run")
    outcome, status, read, matched = ("ok", "done", 3, 2) if budget else ("failed", "failed", 0, 0)
    assert (event.outcome, event.error, event.user, event.connection_slug, event.connection_name, event.job) == (
        outcome,
        job.error,
        operator,
        "env",
        "default (environment)",
        f"search:{job.pk}",
    )
    assert job.status == status and job.store_commands > 0
    assert event.details == {
        "status": status,
        "sessions_read": read,
        "matched_sessions": matched,
        "keys_in_store": 5,
        "estimated_commands": 7,  # one SCAN step: its SCAN and its script run; an LRANGE per key
        "store_commands": job.store_commands,
        "store_round_trips": job.store_round_trips,
    }


def test_regex_search(web, mailbox):
    assert hit_keys(search(web, query=r"[a-z.]+@example\.com", is_regex="on")) == ["lc:bob", "lc:jane", "li:jane"]


@pytest.mark.parametrize(
    ("query", "error"), [("(unclosed", "not valid"), ("a*", "matches empty text"), ("", "required")]
)
def test_invalid_regex_is_refused_before_it_runs(web, query, error):
    response = web.post("/bulk/search/", {"query": query, "is_regex": "on", "key_pattern": "", "role": ""})
    assert response.status_code == 200 and error in response.content.decode()
    assert not SearchJob.objects.exists()


def test_regex_search_is_case_insensitive_beyond_ascii(web, store):
    store.call("LPUSH", "py:renee", json.dumps({"type": "human", "data": {"content": "RENÉE DUPRÉ"}}))
    store.call("LPUSH", "py:other", langchain("human", "Rene Dupre"))
    assert hit_keys(search(web, query=r"renée\s+dupré", is_regex="on")) == ["py:renee"]


@pytest.mark.parametrize("query", [{"query": "jane@example.com"}, {"query": r"jane@example\.com", "is_regex": "on"}])
def test_text_with_a_lone_surrogate_is_searched(web, store, query):
    # JSON can hold "\ud800", which Python decodes to a str that has no UTF-8 form.
    store.call("LPUSH", "odd", json.dumps({"type": "human", "data": {"content": "\ud800 mail jane@example.com"}}))
    job = search(web, **query)
    job.refresh_from_db()
    assert job.status == "done", job.error
    hit = SearchHit.objects.get(job=job)
    assert hit.snippet[hit.match_start : hit.match_end] == "jane@example.com"


def test_backtracking_patterns_run_in_linear_time():
    """What backtracks for minutes in a backtracking engine is over in milliseconds."""
    texts = [langchain("human", "the needle is here please see " * 70) for _ in range(1000)]  # ~2,000 chars each
    for pattern, hostile in [(r"(.*e){3}Q", texts), (r"(a|aa)+$", ["a" * 5000 + "b"] * 100)]:
        matcher = Matcher(pattern, is_regex=True)
        started = time.monotonic()
        assert not any(matcher.find(text) for text in hostile)
        assert time.monotonic() - started < 10, pattern  # a backtracking engine: minutes; this one: milliseconds
    assert Matcher(r"(a|aa)+$", is_regex=True).find("b aaaa") == (2, 6)


def test_a_pattern_that_matches_empty_text_at_some_positions_finds_only_its_real_matches(web, store):
    store.call("LPUSH", "jane", langchain("human", "hello jane"))
    store.call("LPUSH", "other", langchain("human", "hello world"))
    job = search(web, query=r"jane|\b", is_regex="on")  # \b: the empty text at each word's edge
    job.refresh_from_db()
    assert job.status == "done" and hit_keys(job) == ["jane"]
    hit = SearchHit.objects.get(job=job)
    assert hit.snippet[hit.match_start : hit.match_end] == "jane"


def test_a_match_is_placed_in_the_text_as_written_not_as_case_folded():
    # "ß" folds to "ss": offsets in the folded text would be one character late.
    assert Matcher("JANE").find("Straße: jane") == (8, 12)
    assert Matcher("strasse").find("Straße: jane") == (0, 6)


def test_a_backtracking_pattern_searches_to_the_end(web, store):
    store.pipeline([["LPUSH", f"s{i}", langchain("human", "a" * 60 + "b")] for i in range(60)])
    store.call("LPUSH", "match", langchain("human", "ends in aaaa"))
    job = search(web, query=r"(a|aa)+$", is_regex="on")
    job.refresh_from_db()
    assert job.status == "done" and hit_keys(job) == ["match"]


def test_results_page_links_to_the_first_match_with_an_escaped_snippet(web, store):
    messages = [langchain("human", f"message {i}") for i in range(40)]
    messages[30] = langchain("human", "<script>alert(1)</script> contact: jane.doe@example.com")
    store.call("LPUSH", "long", *messages)  # chronological index 30
    job = search(web, query="jane.doe@example.com")
    html = web.get(f"/bulk/search/{job.pk}/").content.decode()
    assert re.search(r'href="/sessions/[^"]+\?before=40&order=newest-first#m30"', html)
    assert "<mark>jane.doe@example.com</mark>" in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_match_counts_and_first_match_in_time_for_both_orders():
    matcher = Matcher("needle")
    newest_first = [
        langchain("human", "needle 3"),
        langchain("ai", "x"),
        langchain("human", "needle 1"),
        langchain("ai", "y"),
    ]
    count, first, order, snippet, _ = match_session(matcher, [e.encode() for e in newest_first], "")
    assert (count, first, order) == (2, 1, "newest-first") and "needle 1" in snippet
    oldest_first = [llamaindex("user", "x"), llamaindex("user", "needle a"), llamaindex("user", "needle b")]
    count, first, order, snippet, _ = match_session(matcher, [e.encode() for e in oldest_first], "")
    assert (count, first, order) == (2, 1, "oldest-first") and "needle a" in snippet
    # The order of a writer known by one matching message, or else by the first message of the session.
    known_by_a_match = [b"a needle, not JSON", llamaindex("user", "needle c").encode()]
    assert match_session(matcher, known_by_a_match, "")[:3] == (2, 0, "oldest-first")
    known_by_the_first = [llamaindex("user", "x").encode(), b"a needle, not JSON"]
    assert match_session(matcher, known_by_the_first, "")[:3] == (1, 1, "oldest-first")
    # A snippet of the match with 80 characters either side, and where the match is in it.
    long = langchain("human", "x" * 200 + " needle " + "y" * 200).encode()
    _, _, _, snippet, (start, end) = match_session(matcher, [long], "")
    assert snippet[start:end] == "needle" and snippet == "x" * 79 + " needle " + "y" * 79


def test_a_messages_text_and_its_tool_calls_arguments_are_searched_one_a_line():
    call = {"id": "1", "name": "lookup", "args": {"email": "jane@example.com"}}
    element = langchain("ai", "Looking her up", tool_calls=[call]).encode()
    _, _, _, snippet, (start, end) = match_session(Matcher("jane@example.com"), [element], "")
    assert snippet == 'Looking her up\n{\n  "email": "jane@example.com"\n}' and snippet[start:end] == "jane@example.com"


def test_a_message_that_is_not_utf8_is_searched_with_its_bad_bytes_replaced(web, store):
    # Latin-1 "é": written by a script, as JSON (REST) cannot carry bytes that are not UTF-8.
    element = """'{"type": "human", "data": {"content": "caf' .. string.char(233) .. ' jane@example.com"}}'"""
    store.call("EVAL", f"return redis.call('LPUSH', KEYS[1], {element})", 1, "legacy")
    job = search(web, query="jane@example.com")
    job.refresh_from_db()
    assert (job.status, job.error, hit_keys(job)) == ("done", "", ["legacy"])
    assert SearchHit.objects.get(job=job).snippet == "caf\ufffd jane@example.com"


@pytest.mark.parametrize(
    ("query", "stored"), [("O'Brien", r"I am O\u0027Brien"), ("<jane>", r"\u003cjane\u003e"), ("a/b", r"see a\/b")]
)
def test_printable_ascii_escaped_by_other_json_writers_is_found(query, stored):
    """Python's json and JSON.stringify leave printable ASCII as it is; Gson, Go and PHP escape some."""
    element = b'{"type": "human", "data": {"content": "' + stored.encode() + b'"}}'
    assert match_session(Matcher(query), [element], "") is not None


def test_the_supported_writers_escapes_alone_leave_an_element_unparsed_for_a_plain_query():
    """Newlines, quotes, control characters and non-ASCII letters escaped: the raw test alone decides."""
    matcher = Matcher("jane")
    assert not matcher.may_match_raw(r'{"content": "caf\u00e9 \"x\"\n\u001b"}')
    assert matcher.may_match_raw(r'{"content": "\u004aane"}') and matcher.may_match_raw(r'{"content": "a\/b"}')


@pytest.mark.parametrize("is_regex", [False, True])
def test_query_length_is_bounded(is_regex):
    assert Matcher("x" * 500, is_regex).find("y" + "x" * 500) == (1, 501)
    for query in ("", "x" * 501):
        with pytest.raises(QueryError) as refused:
            Matcher(query, is_regex)
        assert str(refused.value) == "Give a search text of 1 to 500 characters."


def test_a_regular_expression_that_matches_empty_text_is_refused_saying_why():
    with pytest.raises(QueryError) as refused:
        Matcher("a*", is_regex=True)
    assert str(refused.value) == "That regular expression matches empty text, so it would match every message."


def test_select_the_results_for_purge(web, mailbox, store):
    job = search(web, query="jane.doe@example.com")
    response = web.post(f"/bulk/search/{job.pk}/purge/", {"action": "clear", "reference": "TICKET-1"})
    bulk_job = BulkJob.objects.get()
    assert response["Location"] == f"/bulk/{bulk_job.pk}/"
    assert bulk_job.selection == "search" and bulk_job.total == 2 and bulk_job.status == "awaiting"
    web.post(f"/bulk/{bulk_job.pk}/confirm/", {"typed": "2"})
    assert store.call("EXISTS", "lc:jane", "li:jane") == 0
    assert store.call("EXISTS", "lc:bob", "cache:jane", "profile:jane") == 3


def test_cancel_a_queued_search(web, mailbox, settings):
    settings.TASKS = DUMMY_TASKS
    job = search(web, query="jane")
    web.post(f"/bulk/search/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_viewer_cannot_search(client, viewer, connection):
    client.force_login(viewer)
    assert client.get("/bulk/search/").status_code == 403
    assert client.post("/bulk/search/", {"query": "jane"}).status_code == 403


def test_sessions_are_read_whole_in_replies_of_a_bounded_size(connection, store, local_store):
    from memoryadmin.services import content_search

    connection = replace_connection(connection, max_request_bytes=1000)  # replies of about 600 stored bytes
    lengths = {"short": 2, "edge": 3, "long": 12, "longer": 15}
    expected = {key: [f"{key}-{i}" * 5 for i in range(length)] for key, length in lengths.items()}
    expected["big"] = ["small", "x" * 5000 + "the end", "after"]  # one element over any reply: read in parts
    for key, elements in expected.items():
        store.call("RPUSH", key, *elements)
    before = local_store.gateway.requests_served
    read = {}
    for keys, first, _ in content_search.scan_steps(connection, "*", "0"):
        read.update(content_search.read_sessions(connection, keys, first))
    assert {key: [e.decode() for e in elements] for key, elements in read.items()} == expected
    stored = sum(len(element) + 16 for elements in expected.values() for element in elements)
    assert local_store.gateway.requests_served - before > stored // 600  # replies of at most ~600 bytes


def test_a_message_too_big_for_a_reply_is_read_whole_while_the_chat_app_writes(connection, store):
    from memoryadmin.services import content_search

    connection = replace_connection(connection, max_request_bytes=10_000)  # replies of 6 KB
    big = langchain("human", "x" * 20_000 + " jane@example.com")
    store.call("LPUSH", "chat", big, langchain("ai", "short"))
    ((keys, first, _),) = content_search.scan_steps(connection, "*", "0")
    store.call("LPUSH", "chat", langchain("human", "y" * 20_000))  # before the big one is read in parts
    ((key, elements),) = content_search.read_sessions(connection, keys, first)
    assert elements == [langchain("ai", "short").encode(), big.encode()]


@pytest.mark.parametrize(
    ("change", "left"),
    [
        (["LPOP", "chat"], ["small", "big"]),  # its index from the head now past the end: found from the tail
        (["DEL", "chat"], ["small"]),  # gone at both: left out, the rest of the session kept
    ],
)
def test_a_message_too_big_for_a_reply_is_found_from_either_end_or_left_out_once_gone(connection, store, change, left):
    from memoryadmin.services import content_search

    connection = replace_connection(connection, max_request_bytes=10_000)  # replies of 6 KB
    elements = {"small": langchain("human", "hello"), "big": langchain("ai", "x" * 20_000 + " jane@example.com")}
    store.call("RPUSH", "chat", elements["small"], elements["big"])
    ((keys, first, _),) = content_search.scan_steps(connection, "*", "0")
    store.call(*change)  # the chat app, before the big one is read in parts
    ((key, read),) = content_search.read_sessions(connection, keys, first)
    assert read == [elements[name].encode() for name in left]


def test_a_message_too_big_for_a_reply_rewritten_before_it_is_read_stops_the_search_saying_so(connection, store):
    from memoryadmin.services import content_search
    from memoryadmin.services.sessions import MessageChanged

    connection = replace_connection(connection, max_request_bytes=10_000)
    store.call("RPUSH", "chat", langchain("human", "hello"), langchain("ai", "x" * 20_000))
    ((keys, first, _),) = content_search.scan_steps(connection, "*", "0")
    store.call("LSET", "chat", 1, langchain("ai", "y" * 30_000))  # another size at both of its indexes
    with pytest.raises(MessageChanged) as changed:
        list(content_search.read_sessions(connection, keys, first))
    assert str(changed.value) == (
        "A message of session 'chat' changed while the search read it: the chat app trimmed or rewrote "
        "the session meanwhile. Search again."
    )


def test_read_ahead_hands_over_items_in_order_and_errors_in_place():
    from memoryadmin.services.read_ahead import read_ahead

    def steps():
        yield from range(5)
        raise StoreUnavailable("the store went away")

    seen = []
    with pytest.raises(StoreUnavailable, match="went away"):
        for item in read_ahead(steps()):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    assert list(read_ahead(iter([]))) == []


def test_a_search_costs_one_round_trip_per_scan_step(web, store, local_store):
    store.pipeline([["LPUSH", f"s{i}", langchain("human", f"hello {i}")] for i in range(2500)])
    before = local_store.gateway.requests_served
    job = search(web, query="hello 2499")
    job.refresh_from_db()
    steps = -(-job.examined_keys // 1000)
    assert hit_keys(job) == ["s2499"] and job.sessions_read == 2500
    assert job.store_round_trips == steps + 1  # + the last step's reads
    assert local_store.gateway.requests_served - before == steps + 2  # + the DBSIZE of its estimate


def test_a_store_that_cannot_count_its_keys_gives_no_estimate_and_the_log_says_why(connection, caplog):
    from memoryadmin.services import content_search

    gone = replace_connection(connection, name="gone", slug="gone", url="http://127.0.0.1:9")  # nothing listens
    with caplog.at_level(logging.INFO, logger=content_search.__name__):
        assert content_search.count_keys(gone) is None
    assert caplog.messages == [
        "gone: no key count for a search estimate (Could not reach the store at 127.0.0.1:9 (ConnectError). "
        "Check that it is running and the URL is right, then try again.)"
    ]


def test_a_search_is_queued_without_an_estimate_when_the_store_cannot_count_its_keys(connection, operator, settings):
    from memoryadmin.services import content_search

    settings.TASKS = DUMMY_TASKS
    gone = replace_connection(connection, url="http://127.0.0.1:9")  # nothing listens
    job = content_search.start_search(gone, operator, "jane", False, "", "")
    job.refresh_from_db()
    assert (job.status, job.requested_by, job.keys_in_store, job.estimated_commands) == ("queued", operator, None, None)


def test_a_search_goes_on_from_its_saved_cursor_and_saves_where_it_ended(connection, store, operator):
    from memoryadmin.services import content_search, secrets

    store.pipeline([["LPUSH", f"s{i}", langchain("human", f"hello {i}")] for i in range(2500)])
    (keys, _, cursor), *_ = content_search.scan_steps(connection, "*", "0")  # where a first worker stopped
    job = SearchJob.objects.create(
        connection_slug="env",
        connection_name=connection.name,
        query_encrypted=secrets.encrypt("hello"),
        requested_by=operator,
        cursor=cursor,
        examined_keys=1000,
        started_at=timezone.now() - timedelta(minutes=5),
    )
    started_at = SearchJob.objects.get(pk=job.pk).started_at  # kept: it started with the first worker
    # SCAN may return a key again in a later step (the store rehashed meanwhile): a hit an earlier step
    # saved for it is replaced, not doubled.
    again = next(key for key in (f"s{i}" for i in range(2500)) if key not in keys)
    saved_hit(job, again)
    content_search.run_search(job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.cursor == "0" and job.started_at == started_at
    assert job.sessions_read == job.matched_sessions == 2500 - len(keys)
    assert hit_keys(job) == sorted({f"s{i}" for i in range(2500)} - set(keys))
    assert SearchHit.objects.get(job=job, session_key=again).snippet == f"hello {again[1:]}"


def test_a_search_whose_connection_was_deleted_fails_saying_so(connection, operator):
    from memoryadmin.services import content_search, secrets

    job = SearchJob.objects.create(
        connection_slug="999", connection_name="gone", query_encrypted=secrets.encrypt("hello"), requested_by=operator
    )
    content_search.run_search(job.pk)
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", "The connection of this search was deleted.")


def test_a_search_cancelled_while_it_runs_ends_cancelled_and_only_it(connection, store, operator):
    from memoryadmin.services import content_search, secrets

    store.call("LPUSH", "chat", langchain("human", "hello"))
    cancelled, other = (
        SearchJob.objects.create(
            connection_slug="env",
            connection_name=connection.name,
            query_encrypted=secrets.encrypt("hello"),
            requested_by=operator,
            cancel_requested=cancel,  # asked for as the worker took it up
        )
        for cancel in (True, False)
    )
    for job in (cancelled, other):
        content_search.run_search(job.pk)
        job.refresh_from_db()
    assert (cancelled.status, other.status) == ("cancelled", "done")
