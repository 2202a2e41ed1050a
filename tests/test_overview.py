"""The overview of a store: its measures equal a direct count of what was seeded, within the store's limits,
across SCAN steps; a run is cancelled, resumed after its worker stopped, and run by `manage.py overview`."""

import io
import re
from collections import Counter
from html import unescape as html_unescape
from urllib.parse import parse_qsl

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from memoryadmin.audit.models import AuditEvent
from memoryadmin.overview.models import OverviewRun
from memoryadmin.services import overview
from memoryadmin.services.connections import environment_connection
from memoryadmin.services.jobs import recover_interrupted_jobs

from .conftest import DUMMY_TASKS
from .factories import langchain, llamaindex
from .test_jobs import HOST, ended_process

pytestmark = pytest.mark.django_db

SUMMARY = "memoryadmin:summary:"
LENGTHS = [1, 3, 6, 20, 21, 100, 101, 1000, 1001, 1500]
# Not at a bucket's edge: a TTL counts down while the test runs.
TTLS = [None, 1800, 3500, 3700, 7200, 86_000, 3 * 86400, 10 * 86400, 29 * 86400, 60 * 86400]
WRITERS = {
    "chat:": ("Flowise / LangChain JS", "LPUSH", lambda i: langchain("human" if i % 2 else "ai", f"message {i}")),
    "message_store:": ("LangChain (Python)", "LPUSH", lambda i: langchain("ai", f"réponse {i} " + "x" * (i % 7))),
    "li:": ("LlamaIndex", "RPUSH", lambda i: llamaindex("user", f"question {i}")),
    "raw:": ("unknown", "RPUSH", lambda i: f"not json \x00 {i}"),
}
OTHER_TYPES = {"string": 7, "hash": 5, "set": 4, "zset": 3, "stream": 2}


def seed(store, filler_sessions=0, filler_strings=0):
    """Sessions of each writer, each length and TTL bucket and summary state; keys of other types.

    Returns what a direct count of it says the overview must find.
    """
    expected = overview.empty_measures()
    rows, commands = [], []

    def session(key, writer, elements, ttl=None, summary=None):
        label, push, _ = WRITERS[writer]
        for start in range(0, len(elements), 500):
            commands.append([push, key, *elements[start : start + 500]])
        if ttl:
            commands.append(["EXPIRE", key, ttl])
        expected["summaries"]["none" if summary is None else summary[0]] += 1
        if summary is not None:
            commands.append(["HSET", SUMMARY + key, "text", "s", "message_count", summary[1]])
        size = sum(len(element.encode()) for element in elements)
        expected["sessions"] += 1
        expected["bytes"] += size
        expected["messages"] += len(elements)
        expected["writers"][label] = expected["writers"].get(label, 0) + 1
        expected["ttl"][overview.ttl_bucket(ttl or -1)] += 1
        expected["lengths"][overview.bucket(len(elements), overview.LENGTH_BUCKETS, overview.LENGTH_MORE)] += 1
        rows.append({"key": key, "bytes": size, "messages": len(elements), "writer": label, "ttl": ttl or -1})

    for n, (length, ttl) in enumerate(zip(LENGTHS, TTLS)):
        for writer, (_, _, element) in WRITERS.items():
            summary = [None, ("fresh", length), ("stale", length - 1), ("stale", "junk")][n % 4]
            session(f"{writer}{n}", writer, [element(i) for i in range(length)], ttl, summary)
    # A message far bigger than a reply may carry: measured by its length, its writer from its start.
    session("chat:huge", "chat:", [langchain("human", "h" * 3_000_000), langchain("ai", "ok")])
    for n in range(filler_sessions):
        session(f"chat:filler:{n:05}", "chat:", [langchain("human", "hi")], ttl=600)
    for kind, count in OTHER_TYPES.items():
        for n in range(count):
            key = f"other:{kind}:{n}"
            commands.append(
                {
                    "string": ["SET", key, "v"],
                    "hash": ["HSET", key, "f", "v"],
                    "set": ["SADD", key, "m"],
                    "zset": ["ZADD", key, 1, "m"],
                    "stream": ["XADD", key, "*", "f", "v"],
                }[kind]
            )
    commands += [["SET", f"ratelimit:{n:05}", n] for n in range(filler_strings)]
    for start in range(0, len(commands), 200):
        store.pipeline(commands[start : start + 200])
    expected["other_types"] = {**OTHER_TYPES, "string": OTHER_TYPES["string"] + filler_strings}
    expected["summary_hashes"] = sum(
        1 for command in commands if command[0] == "HSET" and command[1].startswith(SUMMARY)
    )
    expected["keys"] = store.call("DBSIZE")
    expected["biggest"] = sorted(rows, key=lambda row: (row["bytes"], row["messages"], row["key"]), reverse=True)[:20]
    return expected


def measured(run):
    """The run's measures, each TTL of the biggest sessions as it was set (it counted down since, a little)."""
    measures = {key: value for key, value in run.measures.items() if key != "unaddressable"}
    for row in measures["biggest"]:
        row["ttl"] = next((ttl for ttl in TTLS + [600] if ttl and 0 <= ttl - row["ttl"] < 60), row["ttl"])
    return measures


def test_the_measures_equal_a_direct_count_of_the_store(connection, store, operator):
    expected = seed(store)
    run = overview.measure_now(connection, operator)
    assert run.status == "done" and run.error == ""
    assert measured(run) == expected
    assert run.examined_keys == run.keys_in_store == expected["keys"]
    assert expected["ttl"]["none"] and all(expected["lengths"].values()) and all(expected["ttl"].values())
    # Billed: a DBSIZE is the run's start, not its work; a TYPE per key at least, LLEN, TTL and HGET per session.
    assert run.store_commands > expected["keys"] + 3 * expected["sessions"]
    event = AuditEvent.objects.get(action="overview.run")
    assert event.outcome == "ok" and event.username == operator.username
    assert event.details["sessions"] == expected["sessions"] and event.details["bytes"] == expected["bytes"]
    assert "chat:" not in str(event.details)  # counts, never a key


def test_many_keys_over_several_steps_and_calls_within_a_small_request_limit(
    connection, store, local_store, settings, monkeypatch
):
    expected = seed(store, filler_sessions=2500, filler_strings=1500)
    # Calls that stop within sessions, and requests and replies the store itself holds to 64 KB.
    monkeypatch.setattr(overview, "WORK_ELEMENTS", 300)
    settings.MEMORYADMIN_MAX_REQUEST_BYTES = 64_000
    limit = local_store.gateway.max_request_bytes
    local_store.gateway.max_request_bytes = 64_000
    local_store.gateway.traffic(reset_largest=True)
    try:
        run = overview.measure_now(environment_connection())
        traffic = local_store.gateway.traffic()
    finally:
        local_store.gateway.max_request_bytes = limit
    assert run.status == "done", run.error
    assert measured(run) == expected
    assert traffic["largest_request"] <= 64_000 and traffic["largest_reply"] <= 64_000
    steps = run.store_round_trips
    assert steps > expected["keys"] // 1000 * 3  # many calls: request groups, reply budgets, work bounds


def test_a_step_with_keys_longer_than_a_request_allows_is_measured_in_several_calls(connection, store):
    from .conftest import replace_connection

    keys = [f"chat:{'k' * 3000}:{n}" for n in range(30)]
    store.pipeline([["LPUSH", key, langchain("human", "hello")] for key in keys])
    small = replace_connection(connection, max_request_bytes=20_000)
    measures = overview.empty_measures()
    overview.measure_keys(small, keys, measures)
    assert measures["sessions"] == 30 and measures["writers"] == {"Flowise / LangChain JS": 30}


def test_a_cancelled_run_stops_after_its_step(connection, store, operator, settings, monkeypatch):
    settings.TASKS = DUMMY_TASKS
    store.pipeline([["SET", f"k{n:05}", 1] for n in range(3000)])
    run = overview.start_run(connection, operator)
    assert overview.start_run(connection, operator) == run  # one run at a time per connection
    measure_keys = overview.measure_keys

    def cancelled_during_the_first_step(*args):
        measure_keys(*args)
        overview.request_cancel(run)

    monkeypatch.setattr(overview, "measure_keys", cancelled_during_the_first_step)
    overview.run_overview(run.pk)
    run.refresh_from_db()
    assert run.status == "cancelled" and 0 < run.examined_keys < 3000 and run.cursor != "0"
    assert AuditEvent.objects.get(action="overview.run").details["status"] == "cancelled"


def test_a_queued_run_cancelled_never_runs(connection, store, operator, settings):
    settings.TASKS = DUMMY_TASKS
    run = overview.start_run(connection, operator)
    overview.request_cancel(run)
    overview.run_overview(run.pk)
    run.refresh_from_db()
    assert run.status == "cancelled" and run.attempts == 0 and run.examined_keys == 0


def test_a_run_whose_worker_died_resumes_from_its_saved_step_and_counts_each_key_once(
    connection, store, operator, settings, monkeypatch
):
    settings.TASKS = DUMMY_TASKS
    expected = seed(store, filler_strings=3000)
    run = overview.start_run(connection, operator)
    measure_keys, steps = overview.measure_keys, []

    def dies_in_the_third_step(*args):
        steps.append(1)
        if len(steps) == 3:
            raise SystemExit  # the worker is killed: nothing of this step is saved
        measure_keys(*args)

    monkeypatch.setattr(overview, "measure_keys", dies_in_the_third_step)
    with pytest.raises(SystemExit):
        overview.run_overview(run.pk)
    run.refresh_from_db()
    assert run.status == "running" and run.examined_keys > 0 and run.cursor != "0"
    # The worker's process is gone: the recovery queues the run again, and another worker takes it up.
    OverviewRun.objects.filter(pk=run.pk).update(worker=f"{HOST}:{ended_process()}:x", heartbeat_at=timezone.now())
    assert recover_interrupted_jobs() == 1
    monkeypatch.setattr(overview, "measure_keys", measure_keys)
    overview.run_overview(run.pk)
    run.refresh_from_db()
    assert run.status == "done" and run.attempts == 2
    assert measured(run) == expected
    assert AuditEvent.objects.filter(action="overview.run").count() == 1


def test_a_run_taken_over_by_another_worker_saves_nothing_more(connection, store, operator, settings, monkeypatch):
    settings.TASKS = DUMMY_TASKS
    store.pipeline([["SET", f"k{n:05}", 1] for n in range(3000)])
    run = overview.start_run(connection, operator)
    measure_keys = overview.measure_keys

    def taken_over(*args):
        measure_keys(*args)
        OverviewRun.objects.filter(pk=run.pk).update(worker="elsewhere:1:x")

    monkeypatch.setattr(overview, "measure_keys", taken_over)
    overview.run_overview(run.pk)
    run.refresh_from_db()
    assert run.status == "running" and run.examined_keys == 0 and run.worker == "elsewhere:1:x"
    assert not AuditEvent.objects.filter(action="overview.run").exists()


def test_the_command_prints_the_figures_and_fails_above_the_no_ttl_threshold(connection, store):
    seed(store)
    out = io.StringIO()
    call_command("overview", stdout=out)
    text = out.getvalue()
    run = OverviewRun.objects.get()
    share = overview.no_ttl_share(run.measures)
    assert f"Sessions: {run.measures['sessions']:,}" in text and f"without a TTL: {share:.1f}%" in text
    assert "  LlamaIndex: 10" in text and f"  none: {run.measures['ttl']['none']}" in text
    with pytest.raises(CommandError) as failed:
        call_command("overview", "--connection", "env", "--max-no-ttl-share", str(share - 1), stdout=io.StringIO())
    assert failed.value.returncode == 1 and "over the" in str(failed.value)
    call_command("overview", "--max-no-ttl-share", str(share + 1), stdout=io.StringIO())  # no exit: status 0
    assert OverviewRun.objects.filter(status="done").count() == 3


def test_the_command_refuses_an_unknown_connection(connection):
    with pytest.raises(CommandError) as failed:
        call_command("overview", "--connection", "nope", stdout=io.StringIO())
    assert failed.value.returncode == 2


# --- the page ---------------------------------------------------------------------------------


def test_a_viewer_measures_and_reads_the_charts(client, viewer, connection, store):
    seed(store)
    client.force_login(viewer)
    page = client.get("/overview/")
    assert page.status_code == 200 and "Measure now" in page.content.decode()
    response = client.post("/overview/measure/", {"connection": "env"})
    assert response.status_code == 302
    html = client.get(response["Location"]).content.decode()
    run = OverviewRun.objects.get()
    assert run.status == "done"
    assert "<svg" in html and "style=" not in html.split("<main", 1)[1]
    assert f'<td class="num">{run.measures["ttl"]["none"]}</td>' in html
    assert "/?ttl=none" in html  # the no-TTL figure leads to those sessions
    assert html.count('href="/sessions/') >= 20  # the biggest sessions, linked
    assert AuditEvent.objects.filter(action="overview.view").count() == 2
    assert Counter(AuditEvent.objects.values_list("action", flat=True))["overview.run"] == 1


def test_the_measure_form_names_its_connection(client, viewer, connection):
    client.force_login(viewer)
    response = client.post("/overview/measure/", {"connection": "someone-else"})
    assert response.status_code == 302 and not OverviewRun.objects.exists()


# --- the sessions list's "no TTL" filter ------------------------------------------------------


def test_the_no_ttl_filter_lists_only_sessions_without_a_ttl_and_keeps_filling_pages(web, store, connection):
    keys = [f"bot:{n:05}" for n in range(3000)]
    store.pipeline([["LPUSH", key, langchain("human", "hi")] for key in keys])
    forever = {key for n, key in enumerate(keys) if n % 25 == 0}  # 120, spread over the SCAN steps
    store.pipeline([["EXPIRE", key, 3600] for key in keys if key not in forever])
    listed, query = [], {"ttl": "none"}
    while query is not None:
        html = web.get("/", query).content.decode()
        page = [key for key in keys if f">{key}</a>" in html]
        assert len(page) == 50 or "End of the keyspace" in html  # a page fills up, within the scan budget
        listed += page
        more = re.search(r'<a class="button" href="\?([^"]+)"', html)
        query = dict(parse_qsl(html_unescape(more[1]))) if more else None
        assert query is None or query["ttl"] == "none"  # "Scan more" keeps the filter
    assert sorted(listed) == sorted(forever)
    everything = web.get("/").content.decode()
    assert sum(f">{key}</a>" in everything for key in keys) == 50  # without the filter: any TTL


def test_with_the_no_ttl_filter_no_action_is_offered_on_every_session_of_the_pattern(web, store):
    store.call("LPUSH", "bot:forever", langchain("human", "hi"))
    filtered = web.get("/", {"ttl": "none"}).content.decode()
    assert 'value="pattern"' not in filtered and 'value="stale"' not in filtered
    assert 'value="selected"' in filtered
    assert 'value="pattern"' in web.get("/").content.decode()
