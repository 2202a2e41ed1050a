"""The bill: what the app counts (per page, per job, scripts' inner commands) is what the store really ran.

Valkey, behind the local store's gateway, counts every command it runs (INFO commandstats), the
commands run by scripts included, each under its own name (a script sent whole is `eval`, by its
digest `evalsha`, read-only `eval_ro` / `evalsha_ro`; its redis.call()s `type`, `llen`...). Upstash
bills the same way. So each test compares the app's count with the calls Valkey made meanwhile,
read past the gateway with a direct client.
"""

import html
import importlib
import logging
import pkgutil
import re

import pytest
import valkey
from django.utils import timezone

from memoryadmin import services
from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, SearchJob
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services import bulk, scripts, sessions
from memoryadmin.services.summaries import write_summary
from memoryadmin.services.summarizers import SummaryResult
from memoryadmin.services.upstash import count_commands
from memoryadmin.summaries.models import SummaryBatch

from .conftest import SHOWN_ENV
from .factories import langchain, llamaindex, write_langchain_session, write_llamaindex_session

pytestmark = pytest.mark.django_db

# Commands Valkey runs that are not the app's: INFO (this test's probe), connection setup by the
# gateway's pool (AUTH, HELLO, CLIENT SETINFO), COMMAND (the gateway asking where keys are).
NOT_THE_APPS = {"info", "auth", "hello", "client|setinfo", "client", "command", "command|getkeys"}
# A script's run, whether its body was sent or its digest (which depends on what ran before).
SCRIPT_RUNS = {"eval", "evalsha", "eval_ro", "evalsha_ro"}


class ValkeyCalls:
    """The commands Valkey ran between two reads of INFO commandstats, by name."""

    def __init__(self, local_store):
        self.valkey = valkey.Valkey(**local_store.valkey_connection)
        self.before = self._calls()

    def _calls(self):
        stats = self.valkey.info("commandstats")
        return {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}

    def since(self):
        """{command: calls} since the last time, the app's only, script runs as `script`; the next call counts from now."""
        now = self._calls()
        ran = {}
        for name, calls in now.items():
            if name not in NOT_THE_APPS and calls > self.before.get(name, 0):
                name_as_counted = "script" if name in SCRIPT_RUNS else name
                ran[name_as_counted] = ran.get(name_as_counted, 0) + calls - self.before.get(name, 0)
        self.before = self._calls()
        return ran

    def total(self):
        return sum(self.since().values())


@pytest.fixture
def ran(local_store, connection):
    calls = ValkeyCalls(local_store)
    yield calls
    calls.valkey.close()


def text_of(response):
    """A page's words, without tags."""
    return " ".join(html.unescape(re.sub(r"<[^>]*>", "", response.content.decode())).split())


def header(response):
    return int(response["X-Store-Commands"]), int(response["X-Store-Round-Trips"])


def test_a_list_page_says_what_it_cost_in_its_headers_and_footer(web, store, ran):
    for n in range(60):
        write_langchain_session(store, f"chat:{n}", ["hi", "hello"])
    store.call("SET", "cache:x", "not a session")
    ran.since()
    response = web.get("/")
    commands, round_trips = header(response)
    assert ran.total() == commands  # SCAN, then a script: per row TYPE, LLEN, TTL, HGET and both ends' LINDEX
    assert commands == 1 + 1 + 6 * 50 and round_trips == 2
    assert f"store: {commands} commands in 2 round trips" in response.content.decode()


def test_transcript_pages_count_every_read(web, store, ran):
    write_langchain_session(store, "newest-first", [f"m{i}" for i in range(80)])
    # An oldest-first session longer than the window: read as newest-first, then again.
    write_llamaindex_session(store, "oldest-first", [f"m{i}" for i in range(80)])
    # Messages of 70 KB, each read cut to 64 KB: the window stops over its 2 MB budget, inside its second step.
    write_langchain_session(store, "big", [f"m{i} " + "x" * 70_000 for i in range(40)])
    for key in ("newest-first", "oldest-first", "big"):
        ran.since()
        response = web.get(f"/sessions/{encode_key(key)}/")
        assert response.status_code == 200
        commands, round_trips = header(response)
        assert ran.total() == commands
        assert f"store: {commands} commands in {round_trips} round trip" in response.content.decode()


def test_single_session_writes_count_their_scripts_inner_commands(web, store, ran):
    write_langchain_session(store, "s", ["a", "b"])
    store.call("HSET", "memoryadmin:summary:s", "text", "x")
    ran.since()
    response = web.post(f"/sessions/{encode_key('s')}/ttl/", {"preset": "86400", **SHOWN_ENV})
    assert ran.since() == {"script": 1, "type": 1, "ttl": 2, "expire": 2}
    assert header(response) == (6, 1)
    response = web.post(f"/sessions/{encode_key('s')}/persist/", SHOWN_ENV)
    assert ran.since() == {"script": 1, "type": 1, "ttl": 2, "persist": 2} and header(response) == (6, 1)
    response = web.post(f"/sessions/{encode_key('s')}/clear/", SHOWN_ENV)
    assert ran.since() == {"script": 1, "type": 1, "llen": 1, "unlink": 1} and header(response) == (4, 1)
    # Gone: the script stops at its TYPE.
    response = web.post(f"/sessions/{encode_key('s')}/clear/", SHOWN_ENV)
    assert ran.total() == 2 and header(response) == (2, 1)


def first_bytes(count):
    """The bytes of the first `count` messages of the session the window tests write: a budget that stops after them."""
    return sum(len(langchain("human" if i % 2 == 0 else "ai", f"message {i:04}")) for i in range(count))


@pytest.mark.parametrize(
    ("count", "budget"),
    [
        (250, 10**9),
        (100, 10**9),
        (1000, 10**9),
        (250, 250 * 40),
        (250, 100 * 40),
        (300, 1),
        (1, 10**9),
        (250, first_bytes(97)),  # over the budget a few messages before the end of a step
        (250, first_bytes(100)),  # over the budget at the first message of a step
    ],
)
def test_a_window_scripts_count_is_what_it_ran(connection, store, ran, count, budget):
    """Every way WINDOW_SCRIPT ends: all it was asked for, past the list's end, over the byte budget."""
    write_langchain_session(store, "s", [f"message {i:04}" for i in range(250)])
    ran.since()
    with count_commands() as counted:
        sessions._read_from_oldest(connection, "s", sessions.NEWEST_FIRST, 0, count, budget, "memoryadmin:summary:s")
    assert ran.total() == counted.commands
    with count_commands() as counted, pytest.raises(sessions.SessionNotFound):
        sessions._read_from_oldest(connection, "gone", sessions.NEWEST_FIRST, 0, count, budget)
    assert ran.total() == counted.commands == 2


def test_every_script_is_a_script_that_counts_what_it_runs():
    """A script kept as a bare string would be sent some other way, and billed as its EVAL alone."""
    modules = [
        importlib.import_module(module.name)
        for module in pkgutil.iter_modules(services.__path__, "memoryadmin.services.")
    ]
    found = [(f"{module.__name__}.{name}", value) for module in modules for name, value in vars(module).items()]
    bodies = [value.body for _, value in found if isinstance(value, scripts.Script)]
    lua = [(name, value) for name, value in found if isinstance(value, str) and "redis.call" in value]
    # Lua that is no script's body, nor a part of one (a shared guard); docstrings aside.
    bare = [name for name, value in lua if not name.endswith(".__doc__") and not any(value in body for body in bodies)]
    assert len(bodies) >= 9 and bare == []


SIZE = len(langchain("human", "message 0000")) + sessions.ELEMENT_OVERHEAD  # what a transcript budget counts of one


@pytest.mark.parametrize("order", [sessions.NEWEST_FIRST, sessions.OLDEST_FIRST])
@pytest.mark.parametrize(
    ("before", "count", "budget"),
    [
        ("", 50, 10**9),  # the latest window
        ("", 40, 10**9),  # a window of whole steps
        (30, 50, 10**9),  # the list's start reached
        (21, 50, 10**9),  # the list's start reached one message into a step
        (0, 50, 10**9),  # nothing before the first message
        (500, 50, 10**9),  # past the list's end
        ("", 50, 25 * SIZE + 5),  # over the budget inside a step
        ("", 50, 20 * SIZE),  # over the budget at a step's first message
        ("", 50, 1),  # one message, whatever the budget
    ],
)
def test_a_transcript_windows_count_is_what_it_ran(connection, store, ran, order, before, count, budget):
    """Every way TRANSCRIPT_SCRIPT ends: the window read, the list's start reached, over the byte budget."""
    write_langchain_session(store, "s", [f"message {i:04}" for i in range(90)])
    ran.since()
    with count_commands() as counted:
        scripts.read(connection, sessions.TRANSCRIPT_SCRIPT, ["s", "summary"], order, before, count, 100, budget)
    assert ran.total() == counted.commands
    with count_commands() as counted:
        assert scripts.read(connection, sessions.TRANSCRIPT_SCRIPT, ["gone", "summary"], order, "", 50, 100, 1) == -2
    assert ran.total() == counted.commands == 2


def test_list_rows_count_what_they_read_of_each_row(connection, store, ran):
    write_langchain_session(store, "a", ["hi", "hello"])
    store.call("SET", "b", "no list")
    names = ["a", "summary:a", "b", "summary:b", "gone", "summary:gone"]
    for ends in ([0], [0, -1]):
        ran.since()
        with count_commands() as counted:
            scripts.read(connection, sessions.ROWS_SCRIPT, names, *ends, 100)
        # Its run; a TYPE per key; for the list LLEN, TTL, HGET and a LINDEX per end.
        assert ran.total() == counted.commands == 1 + 3 + 3 + len(ends)


def test_a_whole_message_read_in_parts_counts_each_part(web, connection, store, ran, settings, caplog):
    settings.MEMORYADMIN_MAX_REQUEST_BYTES = 200_000  # parts of 120 KB
    store.call("LPUSH", "s", langchain("human", "x" * 500_000), langchain("ai", "short"))
    ran.since()
    with caplog.at_level(logging.DEBUG, logger="memoryadmin.bill"):
        response = web.get(f"/sessions/{encode_key('s')}/messages/0/raw/", {"order": "newest-first"})
        b"".join(response.streaming_content)
    (logged,) = [record.getMessage() for record in caplog.records if "(streamed)" in record.getMessage()]
    assert f": store {ran.total()} commands in 5 round trips" in logged  # 5 parts: its run, TYPE, LINDEX each
    with count_commands() as counted, pytest.raises(sessions.SessionNotFound):
        sessions.read_element(connection, "s", 2)  # no such message
    assert ran.total() == counted.commands == 3
    with count_commands() as counted, pytest.raises(sessions.SessionNotFound):
        sessions.read_element(connection, "gone", 0)
    assert ran.total() == counted.commands == 2


def test_a_streamed_export_counts_what_it_reads_before_and_while_streaming(web, store, ran, caplog):
    write_langchain_session(store, "long", [f"m{i}" for i in range(2500)])
    ran.since()
    with caplog.at_level(logging.DEBUG, logger="memoryadmin.bill"):
        response = web.get(f"/sessions/{encode_key('long')}/export.json")
        before_streaming = header(response)
        b"".join(response.streaming_content)
    commands = ran.since()
    total = sum(commands.values())
    assert commands["hgetall"] == 1  # the summary is read with the first window only
    assert before_streaming[0] < total  # the first window, read before the body starts
    (logged,) = [record.getMessage() for record in caplog.records if "(streamed)" in record.getMessage()]
    assert f": store {total} commands in 3 round trips" in logged


def test_a_summary_write_counts_its_ttl_only_when_it_sets_one(connection, store, ran):
    result = SummaryResult(text="t", method="extractive", message_count=2, duration_ms=1)
    store.call("RPUSH", "s", llamaindex("user", "a"))
    store.call("RPUSH", "ttl", llamaindex("user", "a"))
    store.call("EXPIRE", "ttl", 100)
    for key, expected in (("s", 5), ("ttl", 6), ("gone", 2)):
        ran.since()
        with count_commands() as counted:
            write_summary(connection, key, result, timezone.now())
        assert ran.total() == counted.commands == expected


def job_of(response):
    return BulkJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def test_a_bulk_runs_estimate_shown_before_confirming_is_what_it_costs(web, store, ran):
    store.pipeline([["LPUSH", f"bot:{i}", langchain("human", "x")] for i in range(2500)])
    store.call("SET", "bot:cache", "not a session")
    ran.since()
    response = web.post("/bulk/new/", {"action": "clear", "scope": "pattern", "q": "bot:*"})
    job = job_of(response)
    dry_run = ran.total()
    assert header(response) == (dry_run, job.dry_run_round_trips) and job.dry_run_commands == dry_run
    # 2,500 sessions in 3 batches: 3 × (EVAL, GET, SET) + 2,500 × (TYPE, LLEN, UNLINK) + the receipt's DEL.
    assert (job.estimated_commands, job.estimated_round_trips) == (3 * 3 + 2500 * 3 + 1, 4)
    page = text_of(web.get(f"/bulk/{job.pk}/"))
    assert re.search(r"this dry run took [\d,]+ commands .* at most 7,510 commands in 4 round trips", page)
    ran.since()
    response = web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2500"})
    job.refresh_from_db()
    assert job.status == "done"
    assert header(response) == (ran.total(), 4) == (job.run_commands, job.run_round_trips)
    assert job.run_commands == job.estimated_commands
    finish = AuditEvent.objects.get(action="bulk.finish").details
    assert (finish["run_commands"], finish["estimated_commands"]) == (7510, 7510)
    assert "the run 7,510 commands in 4 round trips (estimated at the dry run: at most 7,510)" in text_of(
        web.get(f"/bulk/{job.pk}/")
    )


def test_the_estimate_bounds_a_run_whose_sessions_changed(web, store, ran):
    """The frozen keys are counted as lists; one gone or no longer a list costs less, never more."""
    for key in ("a", "b", "c"):
        write_langchain_session(store, key, ["x"])
    job = job_of(
        web.post(
            "/bulk/new/",
            {
                "action": "expire",
                "scope": "selected",
                "preset": "86400",
                "k": [encode_key(key) for key in ("a", "b", "c", "never-there")],
            },
        )
    )
    job.refresh_from_db()
    assert (job.estimated_commands, job.estimated_round_trips) == (3 + 4 * 4 + 1, 2)
    store.call("DEL", "b")
    ran.since()
    response = web.post(f"/bulk/{job.pk}/confirm/")
    job.refresh_from_db()
    assert header(response)[0] == ran.total() == job.run_commands == 3 + 2 * 4 + 2 * 1 + 1 < job.estimated_commands


@pytest.mark.parametrize(
    ("mode", "ran_per_session"),
    [
        # A session without a TTL, one with a TTL of a day, one of a year; then a string, and one gone.
        (bulk.COUNT_NO_TTL, [{"type": 1, "ttl": 1, "llen": 1}, {"type": 1, "ttl": 1}, {"type": 1, "ttl": 1}]),
        (bulk.COUNT_TTL_OVER, [{"type": 1, "pttl": 1}, {"type": 1, "pttl": 1}, {"type": 1, "pttl": 1, "llen": 1}]),
        (bulk.EXPIRE_NO_TTL, [{"type": 1, "expire": 2, "llen": 1}, {"type": 1, "expire": 1}, {"type": 1, "expire": 1}]),
        (
            bulk.EXPIRE_TTL_OVER,
            [{"type": 1, "expire": 1}, {"type": 1, "expire": 1}, {"type": 1, "expire": 2, "llen": 1}],
        ),
    ],
)
def test_a_conditional_batch_counts_what_each_session_ran(connection, store, ran, mode, ran_per_session):
    """A retention policy's modes: the condition alone for a session left unchanged, then LLEN and its summary's TTL."""
    for key in ("none", "day", "year"):
        write_langchain_session(store, key, ["x"])
    store.call("EXPIRE", "day", 86400)
    store.call("EXPIRE", "year", 365 * 86400)
    store.call("SET", "string", "x")
    keys = ["none", "day", "year", "string", "gone"]
    receipt = ("memoryadmin:bulk-result:test", 0) if mode.startswith("expire") else None
    ran.since()
    with count_commands() as counted:
        bulk.apply_to_batch(connection, keys, mode, 7 * 86400, receipt=receipt)
    expected = {"script": 1, "type": len(keys)}
    for commands in ran_per_session:
        for name, calls in commands.items():
            if name != "type":
                expected[name] = expected.get(name, 0) + calls
    if receipt:
        expected.update(get=1, set=1)
    assert ran.since() == expected and counted.commands == sum(expected.values())


def test_a_batch_sent_again_counts_its_replay(connection, store, ran):
    write_langchain_session(store, "a", ["x"])
    receipt = ("memoryadmin:bulk-result:test", 0)
    ran.since()
    with count_commands() as first:
        assert bulk.apply_to_batch(connection, ["a"], "clear", receipt=receipt) == [1]
    assert ran.total() == first.commands == 1 + 2 + 3
    with count_commands() as again:
        assert bulk.apply_to_batch(connection, ["a"], "clear", receipt=receipt) == [1]  # answered from the receipt
    assert ran.since() == {"script": 1, "get": 1} and again.commands == 2


def test_a_search_shows_its_estimate_before_and_its_cost_after(web, store, ran):
    store.pipeline([["LPUSH", f"s{i}", langchain("human", f"hello {i}")] for i in range(2500)])
    store.call("SET", "not-a-session", "x")
    ran.since()
    form = web.get("/bulk/search/")
    assert ran.since() == {"dbsize": 1} and header(form) == (1, 1)
    page = text_of(form)
    # 2,501 keys: 3 SCAN steps, each with a script run reading its sessions, and at most one read per key.
    assert "holds 2,501 keys" in page and "at most about 2,507 commands in 4 round trips" in page
    response = web.post("/bulk/search/", {"query": "hello 2499", "key_pattern": "", "role": ""})
    job = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert job.status == "done" and job.sessions_read == 2500
    assert header(response)[0] == ran.total() == job.store_commands + 1  # + the DBSIZE of the estimate
    assert (job.keys_in_store, job.estimated_commands, job.estimated_round_trips) == (2501, 2507, 4)
    assert job.store_commands <= job.estimated_commands and job.store_round_trips <= job.estimated_round_trips
    details = AuditEvent.objects.get(action="search.run").details
    assert (details["store_commands"], details["estimated_commands"]) == (job.store_commands, 2507)
    page = text_of(web.get(f"/bulk/search/{job.pk}/"))
    assert f"{job.store_commands:,} commands in {job.store_round_trips} round trips" in page


def test_a_resummarization_batch_bills_its_planning_and_each_job(web, store, ran):
    write_langchain_session(store, "bot:stale", ["a", "b", "c"])
    store.call("EXPIRE", "bot:stale", 1000)
    write_langchain_session(store, "bot:none", ["a"])
    ran.since()
    response = web.post("/summaries/batches/", {"scope": "stale", "q": "bot:*"})
    batch = SummaryBatch.objects.get()
    jobs = list(batch.jobs.all())
    assert len(jobs) == 2 and all(job.status == "done" for job in jobs)
    spent = ran.total()
    assert header(response)[0] == spent == batch.store_commands + sum(job.store_commands for job in jobs)
    # Each job's round trips billed to it, not to the batch too.
    assert header(response)[1] == batch.store_round_trips + sum(job.store_round_trips for job in jobs)
    # Each job: the session read whole (a window script: its run, TYPE, HGETALL, LLEN, TTL, LRANGE), then
    # the write script (its run, TYPE, DEL, HSET, PTTL, and PEXPIRE on a TTL).
    assert sorted(job.store_commands for job in jobs) == [6 + 5, 6 + 6]
    page = text_of(web.get(f"/summaries/batches/{batch.pk}/"))
    assert f"Store cost (Upstash bills per command): {spent} commands in" in page


def search(web, query, key_pattern=""):
    response = web.post("/bulk/search/", {"query": query, "key_pattern": key_pattern, "role": ""})
    return response, SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def test_a_search_counts_every_read_of_long_big_and_split_sessions(web, store, ran, settings):
    settings.MEMORYADMIN_MAX_REQUEST_BYTES = 200_000  # replies of 120,000 stored bytes
    budget, overhead = 120_000, sessions.ELEMENT_OVERHEAD
    # Its first message fills a reply but for less than a placeholder's cost: the next one, too big
    # for any reply, stops that reply, and is read in parts by the next.
    first = langchain("human", "")
    first = langchain("human", "a" * (budget - 10 - overhead - len(first)))
    store.call("RPUSH", "edge", first, langchain("ai", "b" * 300_000 + " needle"))
    write_langchain_session(store, "long", [f"message {i}" for i in range(250)])  # 3 LRANGEs
    for n in range(30):  # 750 KB: a step read in several replies
        write_langchain_session(store, f"wide:{n}", ["c" * 5000] * 5)
    ran.since()
    response, job = search(web, "needle")
    assert job.status == "done" and job.sessions_read == 32 and job.matched_sessions == 1, job.error
    assert header(response)[0] == ran.total() == job.store_commands + 1  # + the DBSIZE of the estimate


def test_a_script_the_store_lost_is_counted_as_the_store_ran_it(web, store, ran):
    """NOSCRIPT: the run by digest is refused (and counted by both), then its body is sent."""
    for n in range(3):
        write_langchain_session(store, f"chat:{n}", ["hi"])
    web.get("/")
    search(web, "hi")
    try:
        store.call("SCRIPT", "FLUSH")
        ran.since()
        response = web.get("/")  # the rows script
        assert header(response) == (ran.total(), 3)
        response, job = search(web, "hi")  # the step script, in a pipeline with a SCAN: both sent again
        assert job.status == "done" and job.matched_sessions == 3
        assert header(response)[0] == ran.total() == job.store_commands + 1
    finally:
        scripts._known.clear()  # the app's other clients believe the store has scripts it lost


@pytest.mark.parametrize("sessions", [[["big", "hi"], ["hi"]], [["hi", "big", "hi"]], [["hi", "big"], ["hi"]]])
def test_a_search_counts_an_llen_for_each_message_too_big_for_a_reply_wherever_it_is(
    web, store, ran, settings, sessions
):
    settings.MEMORYADMIN_MAX_REQUEST_BYTES = 10_000  # replies of 6 KB: a 20 KB message is read in parts
    texts = {"hi": "hi needle", "big": "x" * 20_000 + " needle"}
    for n, session in enumerate(sessions):
        store.call("RPUSH", f"chat:{n}", *[langchain("human", texts[name]) for name in session])
    ran.since()
    response, job = search(web, "needle")
    assert job.status == "done" and job.matched_sessions == len(sessions), job.error
    assert header(response)[0] == ran.total() == job.store_commands + 1  # + the DBSIZE of the estimate
