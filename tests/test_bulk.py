"""Bulk purge, TTL and re-summarize: selection, dry run, typed confirmation, batches, report, audit."""

import csv
import html
import io
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, BulkJobKey, SearchJob
from memoryadmin.connections.models import Connection
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.holds.models import LegalHold
from memoryadmin.services import bulk, content_search
from memoryadmin.services.connections import find_connection
from memoryadmin.services.upstash import StoreClient, get_writer

from .conftest import DATABASE_TASKS, DUMMY_TASKS, TEST_TOKEN
from .factories import langchain
from .processes import app_env

pytestmark = pytest.mark.django_db


def request_by(user):
    request = RequestFactory().post("/")
    request.user = user
    return request


def write_sessions(store, keys, messages=3):
    for start in range(0, len(keys), 500):
        store.pipeline(
            [
                ["LPUSH", key, *[langchain("human", f"m{i}") for i in range(messages)]]
                for key in keys[start : start + 500]
            ]
        )


def job_of(response):
    return BulkJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def start(web, **data):
    keys = data.pop("keys", [])
    return job_of(web.post("/bulk/new/", {**data, "k": [encode_key(key) for key in keys]}))


def test_selected_rows_dry_run_counts_then_typed_confirmation_clears_exactly_them(web, store):
    write_sessions(store, ["a", "b", "c"], messages=4)
    store.call("HSET", "memoryadmin:summary:a", "text", "x")
    job = start(web, action="clear", scope="selected", keys=["a", "c"])
    job.refresh_from_db()
    assert job.status == "awaiting" and job.total == 2 and job.total_messages == 8
    assert (job.reference, job.redaction, job.selection) == ("", "", "keys")  # it answers no erasure request
    assert (job.requested_by.username, job.confirmed_by, job.confirmed_at) == ("olga", None, None)  # not yet
    page = web.get(f"/bulk/{job.pk}/").content.decode()
    assert "Type <strong>2</strong>" in page and "deleted for good" in page
    assert store.call("EXISTS", "a", "c") == 2  # nothing changed yet
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"})
    job.refresh_from_db()
    assert job.status == "done" and job.done == 2 and job.skipped == 0 and job.messages_removed == 8
    assert store.call("EXISTS", "a", "c", "memoryadmin:summary:a") == 0
    assert store.call("EXISTS", "b") == 1


@pytest.mark.parametrize("typed", ["", "3", "two", "default (environment) "[:-2]])
def test_wrong_confirmation_text_is_refused(web, store, typed):
    write_sessions(store, ["a", "b"])
    job = start(web, action="clear", scope="selected", keys=["a", "b"])
    response = web.post(f"/bulk/{job.pk}/confirm/", {"typed": typed}, follow=True)
    assert "Type 2 (the number of sessions)" in response.content.decode()
    job.refresh_from_db()
    assert job.status == "awaiting" and store.call("EXISTS", "a", "b") == 2
    assert AuditEvent.objects.get(action="bulk.confirm").outcome == "failed"


def test_connection_name_also_confirms(web, store):
    write_sessions(store, ["a"])
    job = start(web, action="clear", scope="selected", keys=["a"])
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "default (environment)"})
    assert store.call("EXISTS", "a") == 0


def test_pattern_selection_is_a_complete_scan_frozen_at_the_dry_run(web, store):
    write_sessions(store, [f"old-bot:{i}" for i in range(2500)], messages=1)
    write_sessions(store, [f"keep:{i}" for i in range(50)], messages=1)
    job = start(web, action="clear", scope="pattern", q="old-bot:*")
    job.refresh_from_db()
    assert job.status == "awaiting" and job.total == 2500 and job.examined_keys >= 2550
    # After confirmation of the dry run: a new matching session appears, a frozen one turns into a string.
    write_sessions(store, ["old-bot:new"])
    store.call("DEL", "old-bot:7")
    store.call("SET", "old-bot:7", "now a string")
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2500"})
    job.refresh_from_db()
    assert job.status == "done" and job.done == 2499 and job.skipped == 1
    assert store.call("EXISTS", "old-bot:new") == 1  # written after the dry run: untouched
    assert store.call("GET", "old-bot:7") == b"now a string"  # changed type: left alone
    assert store.call("EXISTS", "old-bot:0", "old-bot:2499") == 0
    assert len(store.call("SCAN", "0", "MATCH", "keep:*", "COUNT", 1000)[1]) == 50
    assert BulkJobKey.objects.get(job=job, key="old-bot:7").outcome == "not a list"


def test_a_patterns_dry_run_adds_up_messages_and_holds_over_every_scan_step(web, admin, connection, store):
    write_sessions(store, [f"bot:{i}" for i in range(2500)], messages=2)  # 3 SCAN steps at least
    LegalHold.objects.create(
        connection_slug=connection.slug, connection_name="x", pattern="bot:1*", reason="Case 7", created_by=admin
    )
    job = start(web, action="clear", scope="pattern", q="bot:*")
    job.refresh_from_db()
    assert (job.status, job.total, job.total_messages) == ("awaiting", 2500, 5000)
    assert job.held == 1 + 10 + 100 + 1000  # bot:1, bot:10 to bot:19, ...


def test_a_patterns_dry_run_cancelled_stops_after_its_scan_step(connection, store, operator, settings):
    settings.TASKS = DUMMY_TASKS
    write_sessions(store, [f"bot:{i}" for i in range(2500)], messages=1)
    job = bulk.create_job(connection, operator, "clear", pattern="bot:*")
    bulk.request_cancel(job)  # the operator leaves: its dry run stops at the first step's end
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert job.status == "discarded" and job.examined_keys == 1000 and job.total < 2500
    assert job.finished_at and job.worker == ""  # ended, not left for the recovery


def test_a_selections_dry_run_adds_up_over_every_batch(admin, connection, store, operator, settings):
    settings.TASKS = DUMMY_TASKS
    keys = [f"s{i}" for i in range(1500)]  # two batches
    write_sessions(store, keys, messages=2)
    LegalHold.objects.create(
        connection_slug=connection.slug, connection_name="x", pattern="s1*", reason="Case 7", created_by=admin
    )
    job = bulk.create_job(connection, operator, "clear", keys=[*keys, "gone"])
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.examined_keys, job.total, job.total_messages) == ("awaiting", 1501, 1500, 3000)
    assert job.held == 1 + 10 + 100 + 500  # s1, s10 to s19, s100 to s199, s1000 to s1499


def test_a_resumed_dry_run_scans_again_from_scratch(connection, store, operator, settings):
    settings.TASKS = DUMMY_TASKS
    write_sessions(store, ["bot:a", "bot:b"])
    job = bulk.create_job(connection, operator, "clear", pattern="bot:*")
    # Its first worker froze two keys, then died; one of them has gone since.
    BulkJobKey.objects.bulk_create(
        [BulkJobKey(job=job, position=0, key="bot:gone", messages=3), BulkJobKey(job=job, position=1, key="bot:a")]
    )
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.total, job.total_messages) == ("awaiting", 2, 6)
    frozen = BulkJobKey.objects.filter(job=job).order_by("position")
    assert sorted(frozen.values_list("key", flat=True)) == ["bot:a", "bot:b"]
    assert list(frozen.values_list("position", flat=True)) == [0, 1]


def is_insert_of_frozen_keys(query):
    # An executemany is logged once, as "<n> times: INSERT ...".
    return re.match(r'(\d+ times: )?INSERT INTO "bulk_bulkjobkey"', query["sql"]) is not None


def test_frozen_keys_keep_their_exact_text_in_one_insert_per_scan_step(web, store):
    keys = ["nul:a\x00b", "nul:\u2400mark", "nul:é日", *[f"nul:{i}" for i in range(1200)]]
    write_sessions(store, keys, messages=2)
    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as queries:
        job = start(web, action="clear", scope="pattern", q="nul:*")
    job.refresh_from_db()
    steps = -(-job.examined_keys // 1000)  # SCAN steps of COUNT 1000
    inserts = [query for query in queries.captured_queries if is_insert_of_frozen_keys(query)]
    assert 0 < len(inserts) <= steps  # one executemany a step (bulk_create made one per ~140 keys on SQLite)
    frozen = list(BulkJobKey.objects.filter(job=job))
    assert sorted(key.key for key in frozen) == sorted(keys)  # NUL and the escape mark itself, exactly
    assert [key.position for key in frozen] == list(range(len(keys)))
    assert all(key.messages == 2 and key.outcome == "" and key.redacted is None for key in frozen)
    assert all(key.element_hashes == [] for key in frozen)
    selected = start(web, action="clear", scope="selected", keys=keys[:3])
    assert sorted(key.key for key in BulkJobKey.objects.filter(job=selected)) == sorted(keys[:3])


def test_a_selection_is_frozen_an_insert_per_batch_size_keys(web, store, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH_SIZE", 2)  # what a freeze holds in memory: a batch of rows, never all
    write_sessions(store, ["a", "b", "c"], messages=1)
    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as queries:
        job = start(web, action="clear", scope="selected", keys=["a", "b", "c"])
    assert [query["sql"].split(":")[0] for query in queries.captured_queries if is_insert_of_frozen_keys(query)] == [
        "2 times",
        "1 times",
    ]
    assert list(BulkJobKey.objects.filter(job=job).values_list("position", "key")) == [(0, "a"), (1, "b"), (2, "c")]


def test_set_ttl_and_persist_on_a_selection(web, store):
    write_sessions(store, ["a", "b"])
    store.call("HSET", "memoryadmin:summary:a", "text", "x")
    job = start(web, action="expire", scope="selected", keys=["a", "b"], preset="86400")
    web.post(f"/bulk/{job.pk}/confirm/")
    assert 86300 < store.call("TTL", "a") <= 86400 and 86300 < store.call("TTL", "memoryadmin:summary:a") <= 86400
    job.refresh_from_db()
    assert (job.status, job.done, job.messages_removed) == ("done", 2, 0)  # a TTL removes no message
    job = start(web, action="persist", scope="selected", keys=["a"])
    web.post(f"/bulk/{job.pk}/confirm/")
    assert store.call("TTL", "a") == -1 and 0 < store.call("TTL", "b")
    job.refresh_from_db()
    assert (job.status, job.done, job.messages_removed) == ("done", 1, 0)


def test_the_summary_follows_its_session_in_each_bulk_action(web, store):
    write_sessions(store, ["a", "b"])
    summaries = ["memoryadmin:summary:a", "memoryadmin:summary:b"]
    for summary in summaries:
        store.call("HSET", summary, "text", "x")
    web.post(f"/bulk/{start(web, action='expire', scope='selected', keys=['a', 'b'], preset='86400').pk}/confirm/")
    assert all(86300 < store.call("TTL", summary) <= 86400 for summary in summaries)
    web.post(f"/bulk/{start(web, action='persist', scope='selected', keys=['a']).pk}/confirm/")
    assert store.call("TTL", "memoryadmin:summary:a") == -1 and 0 < store.call("TTL", "memoryadmin:summary:b")
    web.post(f"/bulk/{start(web, action='clear', scope='selected', keys=['a', 'b']).pk}/confirm/", {"typed": "2"})
    assert store.call("EXISTS", "a", "b", *summaries) == 0


@pytest.mark.parametrize("mode", [bulk.EXPIRE_NO_TTL, bulk.EXPIRE_TTL_OVER])
def test_a_conditional_ttl_gives_the_summary_the_sessions_new_ttl(connection, store, mode):
    write_sessions(store, ["a"])
    store.call("HSET", "memoryadmin:summary:a", "text", "x")
    if mode == bulk.EXPIRE_TTL_OVER:
        store.call("EXPIRE", "a", 10 * 86400)
    assert bulk.apply_to_batch(connection, ["a"], mode, seconds=86400) == [3]
    assert 86300 < store.call("TTL", "a") <= 86400 and 86300 < store.call("TTL", "memoryadmin:summary:a") <= 86400


def test_custom_ttl_is_validated(web, store):
    write_sessions(store, ["a"])
    response = web.post(
        "/bulk/new/", {"action": "expire", "scope": "selected", "k": [encode_key("a")], "preset": "custom"}, follow=True
    )
    assert "Give an amount and a unit" in response.content.decode()
    assert not BulkJob.objects.exists()


def test_resummarize_a_selection_reuses_summary_jobs(web, admin, connection, store):
    write_sessions(store, ["a", "b", "held"])
    LegalHold.objects.create(
        connection_slug=connection.slug, connection_name="x", pattern="held", reason="Case 7", created_by=admin
    )
    job = start(web, action="summarize", scope="selected", keys=["a", "b", "held"])
    web.post(f"/bulk/{job.pk}/confirm/")
    job.refresh_from_db()
    assert job.status == "done" and job.summary_batch is not None
    assert (job.done, job.skipped, job.held) == (2, 1, 1)
    # It sends nothing itself (each summary job bills its own reads and write): an estimate of nothing.
    assert (job.estimated_commands, job.estimated_round_trips, job.run_commands) == (0, 0, 0)
    assert BulkJobKey.objects.get(job=job, key="held").outcome == "on hold"  # not summarized
    assert job.summary_batch.requested_by.username == "olga"  # who confirmed it, on the batch's page too
    summaries = job.summary_batch.jobs.order_by("session_key")
    assert [(each.session_key, each.status, each.requested_by.username) for each in summaries] == [
        ("a", "done", "olga"),
        ("b", "done", "olga"),
    ]
    assert store.call("EXISTS", "memoryadmin:summary:a", "memoryadmin:summary:b") == 2


def test_damaged_or_empty_selection_is_refused(web):
    assert (
        "damaged"
        in web.post("/bulk/new/", {"action": "clear", "scope": "selected", "k": ["%%%"]}, follow=True).content.decode()
    )
    assert (
        "Select at least one"
        in web.post("/bulk/new/", {"action": "clear", "scope": "selected"}, follow=True).content.decode()
    )
    assert not BulkJob.objects.exists()


def test_discard_changes_nothing(web, store):
    write_sessions(store, ["a"])
    job = start(web, action="clear", scope="selected", keys=["a"])
    web.post(f"/bulk/{job.pk}/discard/")
    job.refresh_from_db()
    assert job.status == "discarded" and store.call("EXISTS", "a") == 1
    assert web.post(f"/bulk/{job.pk}/confirm/", {"typed": "1"}).status_code == 302
    assert store.call("EXISTS", "a") == 1


def jobs_in(connection, operator, *statuses):
    """A job per status, as if it had come that far (its worker, if any, elsewhere)."""
    jobs = []
    for status in statuses:
        job = bulk.create_job(connection, operator, "clear", keys=["a"])
        BulkJob.objects.filter(pk=job.pk).update(status=status)
        jobs.append(BulkJob.objects.get(pk=job.pk))
    return jobs


def state(job):
    job.refresh_from_db()
    return job.status, job.finished_at is not None, job.cancel_requested


def test_discarding_drops_that_job_only_and_only_while_it_awaits_confirmation(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    job, other, queued = jobs_in(connection, operator, "awaiting", "awaiting", "queued")
    bulk.discard_job(job)
    bulk.discard_job(queued)  # confirmed meanwhile (another tab): it goes on
    assert [state(each) for each in (job, other, queued)] == [
        ("discarded", True, False),
        ("awaiting", False, False),
        ("queued", False, False),
    ]


def test_only_a_job_still_awaiting_confirmation_is_confirmed_else_it_says_so(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    queued, stale = jobs_in(connection, operator, "queued", "awaiting")
    bulk.discard_job(BulkJob.objects.get(pk=stale.pk))  # in another tab, after this page showed it awaiting
    problem = "This job is not awaiting confirmation any more."
    for job in (queued, stale):
        assert bulk.confirm_job(job, request_by(operator), connection.name) == problem
    assert [state(job)[0] for job in (queued, stale)] == ["queued", "discarded"]
    refusals = AuditEvent.objects.filter(action="bulk.confirm").order_by("id")
    assert [(event.outcome, event.error) for event in refusals] == [("failed", problem)] * 2


def test_cancelling_stops_that_job_only_at_once_or_after_its_batch(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    jobs = jobs_in(connection, operator, "queued", "paused", "running", "counting", "done", "queued", "running")
    for job in jobs[:5]:
        bulk.request_cancel(job)
    assert [state(job) for job in jobs] == [
        ("cancelled", True, False),  # queued: it never starts
        ("cancelled", True, False),  # paused: never resumed
        ("running", False, True),  # its worker stops after the current batch
        ("counting", False, True),  # its dry run stops after the current step
        ("done", False, False),  # over: nothing to cancel
        ("queued", False, False),  # the others go on
        ("running", False, False),
    ]


def test_progress_counts_what_is_processed_its_rate_and_the_time_left(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    running, over, last_batch, queued, empty = jobs_in(
        connection, operator, "running", "done", "running", "queued", "queued"
    )
    now = timezone.now()
    BulkJob.objects.filter(pk=running.pk).update(
        total=200, done=30, skipped=10, started_at=now - timedelta(seconds=100)
    )
    start = now - timedelta(days=1)
    BulkJob.objects.filter(pk=over.pk).update(
        total=10, done=8, skipped=2, started_at=start, finished_at=start + timedelta(seconds=0.5)
    )
    BulkJob.objects.filter(pk=last_batch.pk).update(total=4, done=3, skipped=1, started_at=now - timedelta(seconds=100))
    BulkJob.objects.filter(pk=queued.pk).update(total=5)
    progress = {
        job.pk: bulk.progress(BulkJob.objects.get(pk=job.pk)) for job in (running, over, last_batch, queued, empty)
    }

    # 40 sessions in 100 s (and the few ms the test took since): 0.4 a second, 160 left, 400 s to go.
    now_running = progress[running.pk]
    assert now_running.keys() == {"processed", "percent", "rate", "elapsed", "seconds_left"}
    assert (now_running["processed"], now_running["percent"]) == (40, 20)
    assert 100 <= now_running["elapsed"] < 110 and 40 / 110 < now_running["rate"] <= 0.4
    assert 400 <= now_running["seconds_left"] <= 440
    # Over: its rate over the time it ran (even under a second), no time left.
    assert progress[over.pk] == {"processed": 10, "percent": 100, "rate": 20.0, "seconds_left": None, "elapsed": 0.5}
    # Every session processed, the job not ended yet: nothing left.
    assert progress[last_batch.pk]["percent"] == 100 and progress[last_batch.pk]["seconds_left"] == 0
    # Not started: no time, no rate.
    assert progress[queued.pk] == {"processed": 0, "percent": 0, "rate": 0, "seconds_left": None, "elapsed": 0}
    assert progress[empty.pk]["percent"] == 100  # nothing to do is all done


def test_cancel_stops_before_the_next_batch(connection, store, operator, settings):
    settings.TASKS = DUMMY_TASKS
    write_sessions(store, [f"s{i}" for i in range(2500)], messages=1)
    job = bulk.create_job(connection, operator, "clear", pattern="s*")
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert bulk.confirm_job(job, request_by(operator), "2500") is None
    BulkJob.objects.filter(pk=job.pk).update(status="running", worker="elsewhere:1")  # as if a worker had it
    bulk.request_cancel(job)
    BulkJob.objects.filter(pk=job.pk).update(status="queued", worker="")
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.done == 0
    assert len(store.call("SCAN", "0", "COUNT", 10000)[1]) == 2500


def confirmed_clear_in_batches_of_two(connection, store, operator, settings, monkeypatch, sessions):
    """A clear of `sessions` sessions of one message, counted and confirmed here, run when the test says."""
    settings.TASKS = DUMMY_TASKS
    monkeypatch.setattr(bulk, "BATCH_SIZE", 2)
    keys = [f"s{i}" for i in range(sessions)]
    write_sessions(store, keys, messages=1)
    job = bulk.create_job(connection, operator, "clear", keys=keys)
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert bulk.confirm_job(job, request_by(operator), str(sessions)) is None
    return job, keys


def test_cancel_during_a_run_stops_after_the_current_batch(connection, store, operator, settings, monkeypatch):
    job, keys = confirmed_clear_in_batches_of_two(connection, store, operator, settings, monkeypatch, 6)
    apply_to_batch, sent = bulk.apply_to_batch, []

    def cancelled_while_the_first_batch_is_sent(*args, **kwargs):
        sent.append(args[1])
        if len(sent) == 1:  # the operator clicks Cancel while the worker runs
            running = BulkJob.objects.get(pk=job.pk)
            assert running.status == "running"
            bulk.request_cancel(running)
        return apply_to_batch(*args, **kwargs)

    monkeypatch.setattr(bulk, "apply_to_batch", cancelled_while_the_first_batch_is_sent)
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert sent == [["s0", "s1"]]  # that batch ended; no other was sent
    assert job.status == "cancelled" and job.done == 2 and job.next_position == 2
    assert store.call("EXISTS", *keys) == 4
    assert AuditEvent.objects.filter(job=f"bulk:{job.pk}", action="bulk.cancel").exists()


def test_a_cancel_stops_only_the_job_it_was_asked_for(connection, store, operator, settings, monkeypatch):
    job, keys = confirmed_clear_in_batches_of_two(connection, store, operator, settings, monkeypatch, 4)
    (elsewhere,) = jobs_in(connection, operator, "running")
    bulk.request_cancel(elsewhere)  # another job, in another worker, stops after its batch
    counted = bulk.create_job(connection, operator, "clear", keys=["s0"])
    bulk.count_job(counted.pk)
    bulk.run_job(job.pk)
    assert [state(each)[0] for each in (job, counted, elsewhere)] == ["done", "awaiting", "running"]
    assert job.done == 4 and store.call("EXISTS", *keys) == 0


def test_each_saved_batch_is_a_heartbeat_and_bills_its_commands(connection, store, operator, settings, monkeypatch):
    """A worker in another process is given up when its job's heartbeat is stale or missing: a batch saved counts.

    And its bill is saved with it: a worker killed later does not take the commands it sent with it.
    """
    job, _ = confirmed_clear_in_batches_of_two(connection, store, operator, settings, monkeypatch, 4)
    apply_to_batch, beats = bulk.apply_to_batch, []

    def saved_before_each_batch(*args, **kwargs):
        beats.append(BulkJob.objects.values_list("heartbeat_at", "run_commands", "run_round_trips").get(pk=job.pk))
        return apply_to_batch(*args, **kwargs)

    monkeypatch.setattr(bulk, "apply_to_batch", saved_before_each_batch)
    bulk.run_job(job.pk)  # the heartbeat's own thread beats every 30 s: not during this run
    assert len(beats) == 2 and None not in (beats[0][0], beats[1][0]) and beats[0][0] < beats[1][0]
    # The first batch: EVAL, the receipt's GET and SET, a TYPE, LLEN and UNLINK per session.
    assert [beat[1:] for beat in beats] == [(0, 0), (9, 1)]


def test_store_failure_pauses_the_job_which_resumes_later(web, store, local_store, settings, monkeypatch, other_store):
    elsewhere = saved_connection("elsewhere", other_store.url, other_store.token)
    monkeypatch.setattr(bulk, "RETRY_PAUSES", (0.01, 0.01))
    monkeypatch.setattr(StoreClient, "QUIET_AFTER_TIMEOUT", 0.05)
    write_sessions(store, ["a", "b"])
    job = start(web, action="clear", scope="selected", keys=["a", "b"])
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.2
    local_store.gateway.latency_ms = 500
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"})
    local_store.gateway.latency_ms = 0
    job.refresh_from_db()
    assert job.status == "paused" and "did not answer" in job.error and job.failed == 2
    assert AuditEvent.objects.get(action="bulk.fail").outcome == "failed"
    local_store.gateway.wait_idle()
    assert store.call("EXISTS", "a", "b") == 0  # the store did clear them: only the replies were lost
    time.sleep(0.1)  # an operator resumes later; the client has stopped failing fast by then
    web.post("/connections/switch/", {"connection": str(elsewhere.pk)})  # working on another store now
    web.post(f"/bulk/{job.pk}/resume/")
    job.refresh_from_db()
    assert job.status == "done" and job.done == 2 and job.skipped == 0 and job.failed == 0
    assert job.messages_removed == 6  # the cleared sessions' messages, known from the applied batch
    events = AuditEvent.objects.filter(job=f"bulk:{job.pk}").order_by("id")
    assert [event.action for event in events] == [
        "bulk.dry_run",
        "bulk.confirm",
        "bulk.start",
        "bulk.fail",
        "bulk.resume",
        "bulk.finish",
    ]
    resume = events.get(action="bulk.resume")
    assert resume.connection_slug == "env" and resume.outcome == "ok" and resume.username == "olga"
    assert events.get(action="bulk.finish").details["messages_removed"] == 6


def report(web, job):
    return list(csv.reader(io.StringIO(b"".join(web.get(f"/bulk/{job.pk}/report.csv").streaming_content).decode())))


@contextmanager
def sending(job, hook, local_store):
    """While inside, `hook(request)` sees each request the job's store client sends (it may slow the store)."""
    hooks = get_writer(find_connection(job.connection_slug))._sdk._client.event_hooks["request"]
    hooks.append(hook)
    try:
        yield
    finally:
        hooks.remove(hook)
        local_store.gateway.latency_ms = 0
        local_store.gateway.wait_idle()  # a slowed request still in the store must not land in another test


def test_a_batch_the_store_did_not_answer_is_sent_again_after_a_pause(
    web, store, local_store, settings, monkeypatch, caplog
):
    monkeypatch.setattr(bulk, "RETRY_PAUSES", (0.3, 0.3))
    monkeypatch.setattr(StoreClient, "QUIET_AFTER_TIMEOUT", 0.05)
    write_sessions(store, ["a", "b"])
    job = start(web, action="clear", scope="selected", keys=["a", "b"])
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.2
    batches = []

    def slow_on_the_first_attempt(request):
        if bulk.BATCH_SCRIPT.digest.encode() in request.content or b"table.concat(replies" in request.content:
            batches.append(request)
            local_store.gateway.latency_ms = 500 if len(batches) == 1 else 0

    with sending(job, slow_on_the_first_attempt, local_store):
        web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"})
    job.refresh_from_db()
    assert len(batches) == 2 and (job.status, job.done, job.failed, job.messages_removed) == ("done", 2, 0, 6)
    retried = [message for message in caplog.messages if message.startswith("bulk batch failed (")]
    assert len(retried) == 1 and retried[0].endswith("; retrying in 0.3 s") and "did not answer" in retried[0]


def test_a_receipt_the_store_did_not_drop_is_left_to_expire(web, store, local_store, settings, monkeypatch, caplog):
    monkeypatch.setattr(StoreClient, "QUIET_AFTER_TIMEOUT", 0.05)
    write_sessions(store, ["a"])
    job = start(web, action="clear", scope="selected", keys=["a"])
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.2

    def slow_on_the_receipts_drop(request):
        if b'"DEL"' in request.content:
            local_store.gateway.latency_ms = 500

    with sending(job, slow_on_the_receipts_drop, local_store):
        web.post(f"/bulk/{job.pk}/confirm/", {"typed": "1"})
    job.refresh_from_db()
    assert job.status == "done" and job.done == 1 and store.call("EXISTS", "a") == 0
    dropped = [message for message in caplog.messages if "its receipt stays" in message]
    assert len(dropped) == 1 and dropped[0].startswith(f"bulk job {job.pk}: its receipt stays until it expires (")
    assert "did not answer" in dropped[0]


def test_report_lists_every_key_and_outcome(web, store):
    write_sessions(store, ["a", "b"])
    job = start(web, action="clear", scope="selected", keys=["a", "b", "never-there"])
    header = ["position", "session_key", "messages_at_dry_run", "outcome", "messages_redacted"]
    # Before the run: every key pending, with its length at the dry run (0 when it was not a session).
    assert report(web, job) == [
        header,
        ["0", "a", "3", "pending", ""],
        ["1", "b", "3", "pending", ""],
        ["2", "never-there", "0", "pending", ""],
    ]
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"})
    assert report(web, job) == [
        header,
        ["0", "a", "3", "done", ""],  # a clear redacts nothing: that column stays empty
        ["1", "b", "3", "done", ""],
        ["2", "never-there", "0", "gone", ""],
    ]
    # A key the dry run has not counted yet (while it runs) has no length.
    BulkJobKey.objects.filter(job=job, key="b").update(messages=None, outcome="")
    assert report(web, job)[2] == ["1", "b", "", "pending", ""]


def test_audit_trail_and_search_by_key(web, admin, store):
    key = "customer/jane #1"
    write_sessions(store, [key, "other"])
    job = start(web, action="clear", scope="selected", keys=[key])
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "1"})
    actions = list(AuditEvent.objects.filter(job=f"bulk:{job.pk}").order_by("id").values_list("action", "outcome"))
    assert actions == [("bulk.dry_run", "ok"), ("bulk.confirm", "ok"), ("bulk.start", "ok"), ("bulk.finish", "ok")]
    finish = AuditEvent.objects.get(action="bulk.finish")
    assert finish.username == "olga" and finish.details["done"] == 1
    auditor = Client()
    auditor.force_login(admin)
    page = auditor.get("/audit/", {"session_key": key}).context["page"]
    assert {event.action for event in page} >= {"bulk.finish", "bulk.confirm"}
    assert not auditor.get("/audit/", {"session_key": "other"}).context["page"].paginator.count


def test_a_runs_audit_events_name_who_where_the_job_and_its_counts(web, operator, store):
    write_sessions(store, ["a"], messages=1)
    write_sessions(store, ["b"], messages=3)
    store.call("SET", "s", "not a session")
    job = start(web, action="clear", scope="selected", keys=["a", "b", "s"])
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"})
    job.refresh_from_db()
    events = AuditEvent.objects.filter(job=job.audit_job).order_by("id")
    assert [
        (event.action, event.outcome, event.error, event.user, event.connection_slug, event.connection_name)
        for event in events
    ] == [
        (action, "ok", "", operator, job.connection_slug, "default (environment)")
        for action in ("bulk.dry_run", "bulk.confirm", "bulk.start", "bulk.finish")
    ]
    # 3 frozen keys in one batch: EVAL, GET, SET, a TYPE each, LLEN and UNLINK per list; the receipt's DEL.
    assert (job.estimated_commands, job.estimated_round_trips, job.run_commands, job.run_round_trips) == (13, 2, 11, 2)
    assert [event.details for event in events] == [
        {
            "sessions": 2,
            "messages": 4,
            "on_hold": 0,
            "action": "clear",
            "dry_run_commands": job.dry_run_commands,
            "dry_run_round_trips": 1,
            "estimated_commands": 13,
            "estimated_round_trips": 2,
        },
        {"action": "clear", "sessions": 2, "typed": "2"},
        {"action": "clear", "sessions": 2},
        {
            "action": "clear",
            "sessions": 2,
            "done": 2,
            "skipped": 1,
            "failed": 0,
            "messages_removed": 4,
            "messages_redacted": 0,
            "on_hold": 0,
            "estimated_commands": 13,
            "run_commands": 11,
            "run_round_trips": 2,
        },
    ]


def test_a_runs_outcomes_are_saved_on_its_own_frozen_keys_only(web, store):
    write_sessions(store, ["a"])
    first = start(web, action="clear", scope="selected", keys=["a"])
    second = start(web, action="clear", scope="selected", keys=["a"])
    web.post(f"/bulk/{first.pk}/confirm/", {"typed": "1"})
    web.post(f"/bulk/{second.pk}/confirm/", {"typed": "1"})
    outcomes = BulkJobKey.objects.order_by("job_id").values_list("job_id", "outcome")
    assert list(outcomes) == [(first.pk, BulkJobKey.DONE), (second.pk, BulkJobKey.GONE)]


def test_viewer_cannot_start_or_see_bulk_actions(client, viewer, connection, store):
    write_sessions(store, ["a"])
    client.force_login(viewer)
    assert (
        client.post("/bulk/new/", {"action": "clear", "scope": "selected", "k": [encode_key("a")]}).status_code == 403
    )
    assert "Apply to selected" not in client.get("/").content.decode()
    assert client.get("/bulk/").status_code == 403
    assert not BulkJob.objects.exists()


def test_a_worker_whose_job_was_taken_over_stops_without_counting(connection, store, operator, settings, monkeypatch):
    settings.TASKS = DUMMY_TASKS
    monkeypatch.setattr(bulk, "BATCH_SIZE", 2)
    write_sessions(store, [f"s{i}" for i in range(6)], messages=1)
    job = bulk.create_job(connection, operator, "clear", keys=[f"s{i}" for i in range(6)])
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert bulk.confirm_job(job, request_by(operator), "6") is None
    apply_to_batch = bulk.apply_to_batch

    def taken_over_during_the_second_batch(*args, receipt, **kwargs):
        replies = apply_to_batch(*args, receipt=receipt, **kwargs)
        if receipt[1] == 2:  # this worker was silent too long: another one took the job meanwhile
            BulkJob.objects.filter(pk=job.pk).update(worker="elsewhere:1")
        return replies

    monkeypatch.setattr(bulk, "apply_to_batch", taken_over_during_the_second_batch)
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert job.worker == "elsewhere:1" and job.status == "running"
    assert job.next_position == 2 and job.done == 2 and job.messages_removed == 2  # the new worker counts the rest
    assert store.call("EXISTS", "s4", "s5") == 2  # and does the rest


@contextmanager
def row_locked(row):
    """While inside, another process that updates this row waits (SQLite: any write waits)."""
    other = connections.create_connection(DEFAULT_DB_ALIAS)  # a connection of its own, outside the test's
    try:
        with other.cursor() as cursor:
            if other.vendor == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")
            else:
                cursor.execute("BEGIN")
                cursor.execute(f"SELECT 1 FROM {row._meta.db_table} WHERE id = %s FOR UPDATE", [row.pk])
        yield
    finally:
        other.close()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_killed_worker_resumes_from_the_last_saved_batch(connection, store, operator, settings, local_store):
    settings.TASKS = DATABASE_TASKS
    keys = [f"purge:{i:05}" for i in range(4000)]
    write_sessions(store, keys, messages=3)
    write_sessions(store, ["survivor"])
    job = bulk.create_job(connection, operator, "clear", keys=keys)
    env = app_env(local_store)
    command = [sys.executable, "manage.py", "worker", "--interval", "0.05"]
    subprocess.run([*command, "--batch"], env=env, check=True, capture_output=True, timeout=60)  # the dry run
    job.refresh_from_db()
    assert job.status == "awaiting" and job.total == 4000
    assert bulk.confirm_job(job, request_by(operator), "4000") is None
    local_store.gateway.latency_ms = 300  # slow batches, to stop the worker in the middle
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while BulkJob.objects.get(pk=job.pk).next_position < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Hold the job's row: the worker's batch reaches the store, which applies it, and the worker
        # waits to save the result. Killed there, a batch is applied but not saved.
        with row_locked(job):
            in_flight = BulkJob.objects.get(pk=job.pk).next_position
            deadline = time.monotonic() + 15  # on SQLite, the worker waits 20 s for the lock, then fails
            while store.call("EXISTS", keys[in_flight]) and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    finally:
        worker.kill()
        local_store.gateway.latency_ms = 0
    job.refresh_from_db()
    assert job.status == "running" and job.next_position == in_flight < 4000  # stopped mid-job, batch unsaved
    assert not store.call("EXISTS", *keys[in_flight : in_flight + 1000])  # yet that batch was applied
    restarted = subprocess.run([*command, "--batch"], env=env, capture_output=True, text=True, timeout=60)
    assert "Resumed 1 interrupted job" in restarted.stdout, restarted.stderr[-2000:]
    job.refresh_from_db()
    assert job.status == "done" and job.done == 4000 and job.skipped == 0 and job.next_position == 4000
    assert job.messages_removed == 12000  # every cleared message counted once, the applied batch's too
    assert AuditEvent.objects.get(job=job.audit_job, action="bulk.finish").details["messages_removed"] == 12000
    assert not store.call("SCAN", "0", "MATCH", "purge:*", "COUNT", 10000)[1]
    assert store.call("EXISTS", "survivor") == 1


# --- a job is bound to the store it was counted on ---------------------------------------------


def saved_connection(name, url, token):
    saved = Connection(name=name, url=url)
    saved.token = token
    saved.save()
    return saved


def point_at(saved, url, token):
    """What an Admin does on the connection's page: give it another URL and token."""
    saved.url = url
    saved.token = token
    saved.save()


@pytest.fixture
def bot(connection, local_store):
    """A saved connection to the local store, the one the operator works on."""
    return saved_connection("bot", local_store.url, TEST_TOKEN)


@pytest.fixture
def on_bot(web, bot):
    web.post("/connections/switch/", {"connection": str(bot.pk)})
    return web


@pytest.fixture
def other(other_store):
    """The other database an Admin may point the connection at; it holds sessions of the same names."""
    client = StoreClient(other_store.url, other_store.token)
    client.call("FLUSHDB")
    yield client
    client.close()


@pytest.mark.parametrize("changed", ["url and token", "token"])
def test_confirmation_is_refused_when_the_connection_now_points_elsewhere(
    on_bot, bot, store, other, other_store, changed
):
    write_sessions(store, ["a", "b"])
    write_sessions(other, ["a", "b"])
    job = start(on_bot, action="clear", scope="selected", keys=["a", "b"])
    job.refresh_from_db()
    assert job.status == "awaiting" and job.store_url == bot.url and job.token_fingerprint
    assert TEST_TOKEN not in job.token_fingerprint
    if changed == "token":
        point_at(bot, bot.url, "a-rotated-token")
        expected = "The connection's token changed since the dry run"
    else:
        point_at(bot, other_store.url, other_store.token)
        expected = f"The connection's URL changed from {store.url} to {other_store.url} and its token changed"
    response = on_bot.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"}, follow=True)
    assert expected in html.unescape(response.content.decode())
    job.refresh_from_db()
    assert job.status == "awaiting"
    assert store.call("EXISTS", "a", "b") == 2 and other.call("EXISTS", "a", "b") == 2
    refusal = AuditEvent.objects.get(action="bulk.confirm")
    assert refusal.outcome == "failed" and expected in refusal.error and refusal.connection_slug == bot.slug


def test_other_edits_of_the_connection_do_not_unbind_the_job(on_bot, bot, store):
    write_sessions(store, ["a"])
    job = start(on_bot, action="clear", scope="selected", keys=["a"])
    bot.timeout = 7
    bot.url = bot.url + "/"
    bot.save()
    on_bot.post(f"/bulk/{job.pk}/confirm/", {"typed": "1"})
    job.refresh_from_db()
    assert job.status == "done" and store.call("EXISTS", "a") == 0


def test_a_run_or_a_resume_on_a_changed_connection_pauses_and_says_what_changed(
    bot, operator, store, other, other_store, settings
):
    settings.TASKS = DUMMY_TASKS
    write_sessions(store, ["a", "b"])
    write_sessions(other, ["a", "b"])
    job = bulk.create_job(bot.to_store_connection(), operator, "clear", keys=["a", "b"])
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert bulk.confirm_job(job, request_by(operator), "2") is None
    point_at(bot, other_store.url, other_store.token)  # after the confirmation, before the worker starts
    bulk.run_job(job.pk)
    job.refresh_from_db()
    expected = (
        f"The connection's URL changed from {store.url} to {other_store.url} and its token changed since the dry run."
    )
    assert job.status == "paused" and expected in job.error and job.done == 0
    assert other.call("EXISTS", "a", "b") == 2 and store.call("EXISTS", "a", "b") == 2
    assert expected in AuditEvent.objects.get(action="bulk.fail").error
    assert not AuditEvent.objects.filter(action="bulk.start").exists()  # no batch was sent

    assert expected in bulk.resume_job(job, request_by(operator))
    job.refresh_from_db()
    assert job.status == "paused"
    refused = AuditEvent.objects.get(action="bulk.resume")
    assert refused.outcome == "failed" and expected in refused.error

    point_at(bot, store.url, TEST_TOKEN)  # the Admin puts it back: the job may go on
    assert bulk.resume_job(job, request_by(operator)) is None
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.done == 2 and job.messages_removed == 6
    assert store.call("EXISTS", "a", "b") == 0 and other.call("EXISTS", "a", "b") == 2


def test_a_resume_queues_that_paused_job_afresh_or_says_why_not_on_that_job_only(
    bot, operator, store, other_store, settings
):
    settings.TASKS = DUMMY_TASKS
    connection = bot.to_store_connection()
    job, other, resumed_meanwhile = jobs_in(connection, operator, "paused", "paused", "paused")
    paused = {
        "error": "The store did not answer.",
        "total": 2,
        "next_position": 1,
        "done": 1,
        "failed": 1,
        "attempts": 2,
    }
    BulkJob.objects.filter(pk__in=[job.pk, other.pk, resumed_meanwhile.pk]).update(**paused)
    job.refresh_from_db()
    stale = BulkJob.objects.get(pk=resumed_meanwhile.pk)  # shown paused; another Operator resumes it meanwhile
    BulkJob.objects.filter(pk=resumed_meanwhile.pk).update(status="queued", error="")

    point_at(bot, other_store.url, other_store.token)
    refused = (
        f"The connection's URL changed from {store.url} to {other_store.url} and its token changed since the dry run. "
        "The job goes on only once the connection points at that store again (or cancel it)."
    )
    assert bulk.resume_job(job, request_by(operator)) == refused
    assert bulk.resume_job(stale, request_by(operator)) == refused
    job.refresh_from_db()
    assert (job.status, job.error) == ("paused", refused)  # shown on its page
    assert BulkJob.objects.get(pk=other.pk).error == "The store did not answer."
    assert BulkJob.objects.get(pk=resumed_meanwhile.pk).error == ""  # queued again: not a paused job's error

    point_at(bot, store.url, TEST_TOKEN)
    assert bulk.resume_job(job, request_by(operator)) is None
    job.refresh_from_db()
    assert (job.status, job.error, job.failed, job.attempts, job.next_position) == ("queued", "", 0, 0, 1)
    assert BulkJob.objects.get(pk=other.pk).status == "paused"
    not_paused = "This job is not paused."
    assert bulk.resume_job(job, request_by(operator)) == not_paused  # queued now
    assert bulk.resume_job(stale, request_by(operator)) == not_paused  # queued by another Operator meanwhile
    assert BulkJob.objects.get(pk=other.pk).status == "paused"
    events = AuditEvent.objects.filter(action="bulk.resume").order_by("id")
    assert [(event.job, event.outcome, event.error) for event in events] == [
        (job.audit_job, "failed", refused),
        (stale.audit_job, "failed", refused),
        (job.audit_job, "ok", ""),
        (job.audit_job, "failed", not_paused),
        (stale.audit_job, "failed", not_paused),
    ]
    assert events[2].details == {"action": "clear", "resumed_at": 1, "sessions": 2}


def test_a_dry_run_on_a_changed_connection_is_dropped(bot, operator, store, other_store, settings):
    settings.TASKS = DUMMY_TASKS
    write_sessions(store, ["a"])
    job = bulk.create_job(bot.to_store_connection(), operator, "clear", pattern="*")
    point_at(bot, other_store.url, other_store.token)
    bulk.count_job(job.pk)
    job.refresh_from_db()
    change = f"The connection's URL changed from {store.url} to {other_store.url} and its token changed"
    assert (job.status, job.error) == ("discarded", f"The dry run failed: {change} since the dry run began.")
    event = AuditEvent.objects.get(action="bulk.dry_run")
    assert (event.outcome, event.error, event.user) == ("failed", f"{change} since the dry run began.", operator)


def test_search_results_go_to_a_purge_only_on_the_store_the_search_ran_on(on_bot, bot, store, other, other_store):
    write_sessions(store, ["jane", "bob"])
    store.call("LPUSH", "jane", '{"type": "human", "data": {"content": "jane@example.com"}}')
    response = on_bot.post("/bulk/search/", {"query": "jane@example.com", "key_pattern": "", "role": ""})
    search = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert search.status == "done" and search.store_url == bot.url and search.token_fingerprint
    point_at(bot, other_store.url, other_store.token)
    response = on_bot.post(
        f"/bulk/search/{search.pk}/purge/", {"action": "clear", "reference": "TICKET-1"}, follow=True
    )
    expected = f"The connection's URL changed from {store.url} to {other_store.url} and its token changed"
    problem = f"{expected} since the search ran. Run the search again to purge on the store it points at now."
    assert problem in html.unescape(response.content.decode())
    assert not BulkJob.objects.exists()
    refusal = AuditEvent.objects.get(action="bulk.dry_run")
    assert (refusal.outcome, refusal.error, refusal.username, refusal.connection_slug, refusal.details) == (
        "failed",
        problem,
        "olga",
        bot.slug,
        {"action": "clear", "search": search.pk},
    )
    # A search taken up again (its worker died) goes on only on the store it started on.
    SearchJob.objects.filter(pk=search.pk).update(status="queued", worker="", cursor="0")
    content_search.run_search(search.pk)
    search.refresh_from_db()
    assert search.status == "failed" and expected + " since the search started" in search.error


def test_a_secret_key_rotation_keeps_the_binding(web, store, settings):
    write_sessions(store, ["a"])
    job = start(web, action="clear", scope="selected", keys=["a"])
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-secret-key", [settings.SECRET_KEY]
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "1"})
    job.refresh_from_db()
    assert job.status == "done" and store.call("EXISTS", "a") == 0
