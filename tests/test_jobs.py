"""What all background jobs share: a failure ends the job, a stopped worker's job is resumed a few times
then given up, and a job taken over from a worker that is still alive runs once."""

import html
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db import connection as db
from django.db.backends.signals import connection_created
from django.utils import timezone
from django_tasks import default_task_backend

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.management.commands.worker import RECOVERY_ROUND
from memoryadmin.bulk.models import BulkJob, SearchJob
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services import bulk, content_search, summary_jobs
from memoryadmin.services.jobs import Claim, end_unless_taken, interruption, recover_interrupted_jobs, retry_delay
from memoryadmin.summaries.models import SummarizerSettings, SummaryBatch, SummaryJob

from .conftest import DATABASE_TASKS, DUMMY_TASKS
from .factories import langchain
from .processes import BASE_DIR, app_env
from .test_bulk import request_by, start, write_sessions
from .test_summarizers import Answer, ChatCompletionsServer, completion
from .waiting import wait_for

pytestmark = pytest.mark.django_db


def boom(*args, **kwargs):
    raise RuntimeError("boom")


BOOM = "Unexpected error: RuntimeError: boom"
# A search records the kind of error only: its message may quote the search text or a message.
SEARCH_BOOM = content_search.unquoted(RuntimeError("boom"))


def assert_left_alone_by_the_recovery(job, status):
    assert recover_interrupted_jobs() == 0
    job.refresh_from_db()
    assert job.status == status and job.worker == ""


# --- any exception ends the job, shown and audited; nothing runs it again ------------------------


def test_an_unexpected_error_in_a_dry_run_drops_it_with_the_error(web, store, monkeypatch):
    write_sessions(store, ["a", "b"])
    monkeypatch.setattr(bulk, "apply_to_batch", boom)
    job = start(web, action="clear", scope="selected", keys=["a", "b"])
    job.refresh_from_db()
    assert job.status == "discarded" and job.error == f"The dry run failed: {BOOM}"
    assert BOOM in web.get(f"/bulk/{job.pk}/").content.decode()
    event = AuditEvent.objects.get(action="bulk.dry_run")
    assert event.outcome == "failed" and event.error == BOOM
    assert_left_alone_by_the_recovery(job, "discarded")


def test_an_unexpected_error_in_a_run_fails_the_job_which_can_be_resumed(web, store, monkeypatch):
    write_sessions(store, ["a", "b"])
    job = start(web, action="clear", scope="selected", keys=["a", "b"])
    apply_to_batch = bulk.apply_to_batch
    monkeypatch.setattr(bulk, "apply_to_batch", boom)
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"})
    job.refresh_from_db()
    assert job.status == "failed" and job.error == BOOM and job.finished_at
    assert f"Failed: {BOOM}" in web.get(f"/bulk/{job.pk}/").content.decode()
    event = AuditEvent.objects.get(action="bulk.fail")
    assert event.outcome == "failed" and event.error == BOOM
    assert_left_alone_by_the_recovery(job, "failed")
    monkeypatch.setattr(bulk, "apply_to_batch", apply_to_batch)  # the cause is fixed: an Operator resumes it
    web.post(f"/bulk/{job.pk}/resume/")
    job.refresh_from_db()
    assert job.status == "done" and job.done == 2 and store.call("EXISTS", "a", "b") == 0


def test_an_unexpected_error_in_a_search_fails_it_with_the_error(web, store, monkeypatch):
    store.call("LPUSH", "jane", langchain("human", "jane@example.com"))
    monkeypatch.setattr(content_search, "match_session", boom)
    response = web.post("/bulk/search/", {"query": "jane@example.com", "key_pattern": "", "role": ""})
    job = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert job.status == "failed" and job.error == SEARCH_BOOM and "boom" not in SEARCH_BOOM
    assert html.escape(SEARCH_BOOM) in web.get(f"/bulk/search/{job.pk}/").content.decode()
    event = AuditEvent.objects.get(action="search.run")
    assert event.outcome == "failed" and event.error == SEARCH_BOOM
    assert_left_alone_by_the_recovery(job, "failed")


def test_an_unexpected_error_in_a_summary_job_fails_it_with_the_error(web, store, monkeypatch):
    store.call("LPUSH", "chat", langchain("human", "hello"))
    monkeypatch.setattr(summary_jobs, "summarize", boom)
    web.post(f"/summaries/sessions/{encode_key('chat')}/", {"connection": "env"})
    job = SummaryJob.objects.get()
    assert job.status == "failed" and job.error == BOOM
    assert BOOM in web.get(f"/summaries/jobs/{job.pk}/").content.decode()
    event = AuditEvent.objects.get(action="session.summarize", job=f"summary:{job.pk}", outcome="failed")
    assert event.outcome == "failed" and event.error == BOOM
    assert_left_alone_by_the_recovery(job, "failed")


def test_an_unexpected_error_while_finding_stale_sessions_ends_the_planning_with_the_error(web, store, monkeypatch):
    store.call("LPUSH", "chat", langchain("human", "hello"))
    monkeypatch.setattr(summary_jobs, "summary_state", boom)
    web.post("/summaries/batches/", {"scope": "stale", "q": "*"})
    batch = SummaryBatch.objects.get()
    assert batch.status == "queued" and batch.error == BOOM
    assert f"Scanning stopped: {BOOM}" in web.get(f"/summaries/batches/{batch.pk}/").content.decode()
    event = AuditEvent.objects.get(action="session.summarize", outcome="failed")
    assert event.error == BOOM and event.details["batch"] == batch.pk
    assert_left_alone_by_the_recovery(batch, "queued")


# --- recovery: worker dead, or task over, or silent; attempts, back-off, giving up -------------------


def ended_process():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid():
    """Another live process of this host: a sleeping child of the test's own (never its parent, which a
    mistake in the liveness check, such as a signal other than 0, would hit)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    assert process.wait() == -signal.SIGKILL, "the live process was signalled by the test, not only asked about"


def running_summary_job(connection, operator, worker, heartbeat_at, attempts=1, session_key="chat"):
    return SummaryJob.objects.create(
        connection_slug=connection.slug,
        connection_name=connection.name,
        session_key=session_key,
        requested_by=operator,
        status="running",
        worker=worker,
        heartbeat_at=heartbeat_at,
        attempts=attempts,
    )


HOST = socket.gethostname()
FRESH, SILENT = timedelta(0), timedelta(seconds=600)


@pytest.mark.parametrize(
    ("worker", "silent_for", "resumed"),
    [
        (lambda live: f"{HOST}:{ended_process()}:ab12cd34", FRESH, True),  # its process is gone
        (lambda live: f"{HOST}:{os.getpid()}:ab12cd34", FRESH, True),  # this process, whose task is over
        (lambda live: f"{HOST}:{live}:ab12cd34", FRESH, False),  # another live process, beating
        (lambda live: f"{HOST}:{live}:ab12cd34", SILENT, True),  # another live process, silent
        (lambda live: "elsewhere:4242:ab12cd34", FRESH, False),  # another host, beating
        (lambda live: "elsewhere:4242:ab12cd34", SILENT, True),  # another host, silent
    ],
    ids=["process gone", "task over here", "live here", "silent here", "live elsewhere", "silent elsewhere"],
)
def test_recovery_tells_a_stopped_worker_from_a_live_one(
    connection, operator, settings, live_pid, worker, silent_for, resumed
):
    settings.TASKS = DUMMY_TASKS
    job = running_summary_job(connection, operator, worker(live_pid), timezone.now() - silent_for)
    assert recover_interrupted_jobs() == resumed
    job.refresh_from_db()
    assert job.status == ("queued" if resumed else "running")
    assert [result.args for result in default_task_backend.results] == ([[job.pk]] if resumed else [])


@pytest.mark.parametrize(
    ("silent_for", "interrupted"),
    [(None, True), (timedelta(seconds=90), False), (timedelta(seconds=150), True)],
    ids=["never beat", "beat within the stale time", "silent past the stale time"],
)
def test_a_worker_elsewhere_is_interrupted_only_once_silent_past_the_stale_time(settings, silent_for, interrupted):
    settings.MEMORYADMIN_JOB_STALE_SECONDS = 120  # far on either side of 90 and 150 s: no race with the clock
    heartbeat_at = None if silent_for is None else timezone.now() - silent_for
    reason = interruption("elsewhere:4242:ab12cd34", heartbeat_at)
    assert (reason is not None) == interrupted
    assert reason is None or "no sign of life for more than 120" in reason


def test_two_workers_cannot_claim_one_job(connection, operator):
    job = running_summary_job(connection, operator, "", None, attempts=0)
    SummaryJob.objects.filter(pk=job.pk).update(status="queued")
    first = Claim.take(SummaryJob, job.pk, "queued")  # a claim that keeps the status (as a count or a planning)
    assert first is not None
    with first:
        assert Claim.take(SummaryJob, job.pk, "queued") is None
        job.refresh_from_db()
        assert job.worker == first.worker and job.attempts == 1
        assert first.release()
    with Claim.take(SummaryJob, job.pk, "queued"):  # free again once released
        job.refresh_from_db()
        assert job.worker not in ("", first.worker) and job.attempts == 2


def test_taking_a_job_takes_it_alone_alive_and_with_its_changes(connection, operator):
    jobs = [running_summary_job(connection, operator, "", timezone.now() - SILENT, 0, key) for key in "ab"]
    SummaryJob.objects.update(status="queued")
    started_at = timezone.now() - timedelta(seconds=5)
    claim = Claim.take(SummaryJob, jobs[0].pk, "queued", "running", started_at=started_at)
    taken, other = (SummaryJob.objects.get(pk=job.pk) for job in jobs)
    assert (taken.status, taken.worker, taken.started_at) == ("running", claim.worker, started_at)
    assert interruption("elsewhere:4242:ab12cd34", taken.heartbeat_at) is None  # alive before its first beat
    assert (other.status, other.worker, other.heartbeat_at) == ("queued", "", jobs[1].heartbeat_at)
    with claim:
        claim.release()


def test_a_job_this_worker_runs_is_left_to_it_however_long_it_is_silent(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    job = running_summary_job(connection, operator, "", None, attempts=0)
    SummaryJob.objects.filter(pk=job.pk).update(status="queued")
    claim = Claim.take(SummaryJob, job.pk, "queued", "running")
    with claim:
        SummaryJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - SILENT)
        assert recover_interrupted_jobs() == 0
    job.refresh_from_db()
    assert job.status == "running" and job.worker == claim.worker and job.attempts == 1


def test_an_interrupted_job_is_resumed_later_each_time_then_given_up_with_the_reason(web, operator, settings, caplog):
    settings.TASKS = DUMMY_TASKS
    settings.MEMORYADMIN_JOB_MAX_ATTEMPTS, settings.MEMORYADMIN_JOB_RETRY_SECONDS = 3, 60
    job = SearchJob.objects.create(
        connection_slug="env", connection_name="default (environment)", query_masked="j***", requested_by=operator
    )
    delays = []
    for attempt in (1, 2):  # a worker takes the search up, and dies
        worker = f"{HOST}:{ended_process()}:x"
        SearchJob.objects.filter(pk=job.pk).update(
            status="running", worker=worker, heartbeat_at=timezone.now(), attempts=attempt
        )
        started = timezone.now()
        assert recover_interrupted_jobs() == 1
        job.refresh_from_db()
        assert job.status == "queued" and job.worker == ""
        run_after = default_task_backend.results[-1].task.run_after
        delays.append(None if run_after is None else round((run_after - started).total_seconds()))
        in_seconds = 0 if attempt == 1 else 60
        resuming = f"Resuming SearchJob {job.pk} (attempt {attempt + 1} of 3, in {in_seconds} s)"
        assert f"{resuming}: its worker process ({worker}) is gone" in caplog.messages  # the worker's log
    assert delays == [None, 60]  # at once after a first crash; then it waits
    SearchJob.objects.filter(pk=job.pk).update(status="running", worker=f"{HOST}:{ended_process()}:x", attempts=3)
    assert recover_interrupted_jobs() == 0
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at and len(default_task_backend.results) == 2
    assert job.error.startswith("Stopped after 3 attempts: each time its worker stopped before the job ended")
    assert "is gone" in job.error
    assert f"Gave up SearchJob {job.pk}: {job.error}" in caplog.messages  # the worker's log says so too
    assert html.escape(job.error) in web.get(f"/bulk/search/{job.pk}/").content.decode()
    event = AuditEvent.objects.get(action="search.run")
    assert event.outcome == "failed" and event.error == job.error
    # Filed under the search's connection, for the Admin who asked for it.
    assert (event.connection_slug, event.connection_name, event.user) == ("env", "default (environment)", operator)


def test_a_dry_run_queued_again_is_not_queued_twice(settings):
    # A dry run is queued again in the status it runs in (counting), without a worker: not interrupted.
    settings.TASKS = DUMMY_TASKS
    job = BulkJob.objects.create(connection_slug="env", action="clear", selection="selected", status="counting")
    assert_left_alone_by_the_recovery(job, "counting")
    assert default_task_backend.results == []


def test_a_live_job_does_not_keep_the_recovery_from_the_jobs_after_it(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    live, silent = (timezone.now(), "ab12cd34"), (timezone.now() - SILENT, "ef56ab78")
    jobs = [  # a live one first, whichever way the database lists them
        running_summary_job(connection, operator, f"elsewhere:4242:{claim}", heartbeat_at, session_key=key)
        for key, (heartbeat_at, claim) in zip("abc", (live, silent, live))
    ]
    assert recover_interrupted_jobs() == 1
    assert [result.args for result in default_task_backend.results] == [[jobs[1].pk]]


def test_every_job_a_worker_of_before_claims_left_is_resumed(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    gone = f"{HOST}:{ended_process()}"  # one name for every job that worker held
    jobs = [running_summary_job(connection, operator, gone, None, session_key=key) for key in "ab"]
    assert recover_interrupted_jobs() == 2
    assert sorted(result.args for result in default_task_backend.results) == [[job.pk] for job in jobs]


def test_a_job_given_up_does_not_keep_the_recovery_from_the_jobs_after_it(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    settings.MEMORYADMIN_JOB_MAX_ATTEMPTS = 3
    jobs = [  # one to give up first, whichever way the database lists them
        running_summary_job(connection, operator, "elsewhere:4242:ab12cd34", None, attempts, session_key=key)
        for key, attempts in zip("abc", (3, 1, 3))
    ]
    assert recover_interrupted_jobs() == 1
    assert [result.args for result in default_task_backend.results] == [[jobs[1].pk]]
    assert [SummaryJob.objects.get(pk=job.pk).status for job in jobs] == ["failed", "queued", "failed"]


@pytest.mark.parametrize("stage", ["dry run", "run"])
def test_a_bulk_job_whose_worker_kept_stopping_is_given_up_with_the_reason(
    connection, store, operator, settings, caplog, stage
):
    settings.TASKS = DUMMY_TASKS
    settings.MEMORYADMIN_JOB_MAX_ATTEMPTS = 3
    write_sessions(store, ["a", "b"])
    job = bulk.create_job(connection, operator, "clear", keys=["a", "b"])
    if stage == "run":
        bulk.count_job(job.pk)
        job.refresh_from_db()
        assert bulk.confirm_job(job, request_by(operator), "2") is None
    worker = f"{HOST}:{ended_process()}:ab12cd34"
    running = "counting" if stage == "dry run" else "running"
    BulkJob.objects.filter(pk=job.pk).update(status=running, worker=worker, attempts=3)
    queued = len(default_task_backend.results)
    assert recover_interrupted_jobs() == 0
    job.refresh_from_db()
    reason = (
        "Stopped after 3 attempts: each time its worker stopped before the job ended "
        f"(the last time, its worker process ({worker}) is gone). It is not retried again."
    )
    assert f"Gave up BulkJob {job.pk}: {reason}" in caplog.messages  # the worker's log
    assert job.finished_at and job.worker == "" and len(default_task_backend.results) == queued  # not run again
    event = AuditEvent.objects.get(job=job.audit_job, outcome="failed")
    assert (event.username, event.connection_slug, event.error) == ("olga", "env", reason)
    if stage == "dry run":  # dropped: it can never be confirmed
        assert (job.status, job.error) == ("discarded", f"The dry run failed: {reason}")
        assert event.action == "bulk.dry_run"
    else:  # failed, with its counts; an Operator may resume it
        assert (job.status, job.error) == ("failed", reason)
        assert event.action == "bulk.fail" and (event.details["sessions"], event.details["done"]) == (2, 0)
    assert store.call("EXISTS", "a", "b") == 2


@pytest.mark.parametrize("stage", ["counting", "running"])
def test_a_bulk_job_taken_up_again_meanwhile_is_not_given_up(connection, operator, settings, live_pid, stage):
    settings.TASKS = DUMMY_TASKS
    job = bulk.create_job(connection, operator, "clear", keys=["a"])
    BulkJob.objects.filter(pk=job.pk).update(status=stage, worker=f"{HOST}:{ended_process()}:ab12cd34", attempts=3)
    found = BulkJob.objects.get(pk=job.pk)
    BulkJob.objects.filter(pk=job.pk).update(worker=f"{HOST}:{live_pid}:ef56ab78")  # a worker took it meanwhile
    assert bulk.give_up(found, "given up") is False
    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == (stage, "", None)
    assert not AuditEvent.objects.filter(job=job.audit_job).exists()


def test_a_search_taken_up_again_meanwhile_is_not_given_up(connection, operator, live_pid):
    job = SearchJob.objects.create(
        connection_slug="env", requested_by=operator, status="running", worker=f"{HOST}:{ended_process()}:ab12cd34"
    )
    found = SearchJob.objects.get(pk=job.pk)
    SearchJob.objects.filter(pk=job.pk).update(worker=f"{HOST}:{live_pid}:ef56ab78")  # a worker took it meanwhile
    assert content_search.give_up(found, "given up") is False  # else the recovery logs that it gave it up
    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == ("running", "", None)
    assert not AuditEvent.objects.filter(job=f"search:{job.pk}").exists()


def test_a_save_of_progress_is_a_heartbeat_and_bills_the_store_commands_so_far(connection, operator, store):
    job = running_summary_job(connection, operator, "", None, attempts=0)
    SummaryJob.objects.filter(pk=job.pk).update(status="queued")
    claim = Claim.take(SummaryJob, job.pk, "queued", "running")
    with claim:
        SummaryJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - SILENT)
        store.call("SET", "progress", "1")
        claim.save()
        job.refresh_from_db()
        assert timezone.now() - job.heartbeat_at < SILENT / 2
        assert (job.store_commands, job.store_round_trips) == (1, 1)  # saved even if the worker dies now
        claim.release(status="done")


def test_each_resume_after_the_second_waits_twice_as_long(settings):
    settings.MEMORYADMIN_JOB_RETRY_SECONDS = 60
    assert [retry_delay(attempts) for attempts in (1, 2, 3, 4)] == [0, 60, 120, 240]


def test_a_job_whose_task_ended_here_without_ending_it_is_resumed_with_the_reason(connection, operator, settings):
    settings.TASKS = DUMMY_TASKS
    job = running_summary_job(connection, operator, "", None, attempts=0)
    SummaryJob.objects.filter(pk=job.pk).update(status="queued")
    with Claim.take(SummaryJob, job.pk, "queued", "running"):
        pass  # its task ends here without releasing the job
    job.refresh_from_db()
    # The reason ends up in the error of a job given up, on its page.
    assert interruption(job.worker, job.heartbeat_at) == (
        "its task ended in this worker without ending the job (see the worker's log)"
    )
    assert recover_interrupted_jobs() == 1


def test_a_job_found_interrupted_is_ended_only_as_it_was_found_and_alone(connection, operator, live_pid):
    gone = f"{HOST}:{ended_process()}"  # a worker of before claims: one name for every job it held
    found, sibling = (running_summary_job(connection, operator, gone, None, session_key=key) for key in ("a", "b"))

    SummaryJob.objects.filter(pk=found.pk).update(worker=f"{HOST}:{live_pid}:ab12cd34")  # taken meanwhile
    assert not end_unless_taken(found, status="failed")
    SummaryJob.objects.filter(pk=found.pk).update(worker=gone, status="queued")  # or moved on meanwhile
    assert not end_unless_taken(found, status="failed")
    assert SummaryJob.objects.get(pk=found.pk).status == "queued"

    SummaryJob.objects.filter(pk=found.pk).update(status="running")  # as found
    assert end_unless_taken(found, status="failed", error="given up")
    found.refresh_from_db()
    sibling.refresh_from_db()
    assert (found.status, found.worker, found.error) == ("failed", "", "given up")
    assert (sibling.status, sibling.worker, sibling.error) == ("running", gone, "")


def test_a_job_taken_by_another_worker_while_the_recovery_looks_at_it_is_left_to_that_worker(
    connection, operator, settings
):
    settings.TASKS = DUMMY_TASKS
    job = running_summary_job(connection, operator, "elsewhere:4242:ab12cd34", timezone.now() - SILENT)
    taken_by = "elsewhere:4343:ef56ab78"  # another instance's recovery queued it again, and a worker took it
    taken = []

    def taken_meanwhile(execute, sql, params, many, context):
        # Right before the recovery's update of the job it read as silent: the other worker's take, committed.
        if sql.startswith("UPDATE") and not taken:
            taken.append(sql)
            SummaryJob.objects.filter(pk=job.pk).update(worker=taken_by, heartbeat_at=timezone.now(), attempts=2)
        return execute(sql, params, many, context)

    with db.execute_wrapper(taken_meanwhile):
        assert recover_interrupted_jobs() == 0
    job.refresh_from_db()
    assert taken and (job.status, job.worker, job.attempts) == ("running", taken_by, 2)
    assert default_task_backend.results == []


# Run as another account (nobody), asked about a live process of this one: os.kill(pid, 0) is refused then.
ASKED_AS_ANOTHER_USER = """
import os, socket, sys
from django.conf import settings
settings.configure(MEMORYADMIN_JOB_STALE_SECONDS=60, USE_TZ=True)
from django.utils import timezone
from memoryadmin.services.jobs import interruption
# Asked once as root first: what a first call loads lazily (mutmut's trampoline reads its config with
# tomllib) comes from /root/.pyenv, which the other user cannot read.
interruption(f"{socket.gethostname()}:{sys.argv[1]}:ab12cd34", timezone.now())
os.setgid(65534)
os.setuid(65534)
print(repr(interruption(f"{socket.gethostname()}:{sys.argv[1]}:ab12cd34", timezone.now())))
"""


@pytest.mark.skipif(not hasattr(os, "setuid") or os.geteuid() != 0, reason="needs root to ask as another user")
def test_a_worker_process_of_another_user_is_alive_not_gone(live_pid):
    """A worker run under another account than the recovery's: the liveness check may not signal it."""
    assert interruption(f"{HOST}:{live_pid}:ab12cd34", timezone.now()) is None  # asked as its own user
    asked = subprocess.run(
        [sys.executable, "-c", ASKED_AS_ANOTHER_USER, str(live_pid)],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert asked.stdout == "None\n"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the heartbeat's thread reads what the test commits
def test_a_claim_beats_well_within_a_short_stale_time_from_a_thread_that_never_keeps_its_process_alive(
    connection, operator, settings
):
    settings.MEMORYADMIN_JOB_STALE_SECONDS = 0.4  # a beat every 0.1 s
    job = running_summary_job(connection, operator, "", None, attempts=0)
    SummaryJob.objects.filter(pk=job.pk).update(status="queued")
    claim = Claim.take(SummaryJob, job.pk, "queued", "running")
    oldest = timedelta(0)
    with claim:
        # A process that exits with a claim still open (its task killed) must not wait for the heartbeat.
        assert claim._beating.daemon
        watched_until = time.monotonic() + 2.5
        while time.monotonic() < watched_until:
            job.refresh_from_db(fields=["heartbeat_at"])
            oldest = max(oldest, timezone.now() - job.heartbeat_at)
            time.sleep(0.05)
        claim.release(status="done")
    # About 0.1 s; beats a second apart (a floor of 1 s between them) would show 1 s and more. The room
    # between is for a loaded machine.
    assert oldest < timedelta(seconds=0.9)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_heartbeat_the_database_refuses_is_logged_with_the_job_and_the_error_and_the_next_one_beats(
    connection, operator, settings, caplog
):
    settings.MEMORYADMIN_JOB_STALE_SECONDS = 0.4  # a beat every 0.1 s
    job = running_summary_job(connection, operator, "", None, attempts=0)
    SummaryJob.objects.filter(pk=job.pk).update(status="queued")
    test_thread, refused = threading.get_ident(), []

    def refuse_the_first_beat(execute, sql, params, many, context):
        if threading.get_ident() != test_thread and sql.startswith("UPDATE") and not refused:
            refused.append(sql)
            raise OperationalError("database is locked")  # as SQLite says past its timeout
        return execute(sql, params, many, context)

    def on_new_connection(sender, connection, **kwargs):  # the heartbeat's thread opens its own
        connection.execute_wrappers.append(refuse_the_first_beat)

    connection_created.connect(on_new_connection)
    try:
        claim = Claim.take(SummaryJob, job.pk, "queued", "running")
        with claim:
            SummaryJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - SILENT)
            logged = lambda: [record for record in caplog.records if record.name == "memoryadmin.services.jobs"]  # noqa: E731
            wait_for(logged, what="the refused beat's log line")
            assert [record.getMessage() for record in logged()] == [
                f"heartbeat of SummaryJob {job.pk} failed: database is locked"
            ]
            assert refused
            beating = lambda: timezone.now() - SummaryJob.objects.get(pk=job.pk).heartbeat_at < SILENT / 2  # noqa: E731
            wait_for(beating, what="a beat after the refused one")
            claim.release(status="done")
    finally:
        connection_created.disconnect(on_new_connection)


# --- a worker that lost its job writes nothing ---------------------------------------------------


def test_a_summary_job_taken_over_while_the_model_works_writes_nothing(
    connection, store, operator, settings, monkeypatch, caplog
):
    settings.TASKS = DUMMY_TASKS
    store.call("LPUSH", "chat", langchain("human", "hello"), langchain("ai", "hi"))
    job, _ = summary_jobs.request_summary(connection, "chat", operator)
    summarize = summary_jobs.summarize

    def taken_over_meanwhile(messages, config):
        SummaryJob.objects.filter(pk=job.pk).update(worker="elsewhere:1:x")  # this worker looked dead
        return summarize(messages, config)

    monkeypatch.setattr(summary_jobs, "summarize", taken_over_meanwhile)
    summary_jobs.run_summary_job(job.pk)
    job.refresh_from_db()
    assert job.status == "running" and job.worker == "elsewhere:1:x" and job.finished_at is None
    assert store.call("EXISTS", "memoryadmin:summary:chat") == 0
    assert not AuditEvent.objects.filter(action="session.summarize").exists()
    stopped = f"SummaryJob {job.pk}: another worker has taken it over; this one stops here, saving nothing more"
    assert stopped in caplog.messages  # the worker's log


def test_a_resummarize_bulk_job_taken_over_queues_each_session_once(connection, store, operator, settings, monkeypatch):
    settings.TASKS = DUMMY_TASKS
    monkeypatch.setattr(bulk, "BATCH_SIZE", 2)
    keys = [f"s{i}" for i in range(6)]
    write_sessions(store, keys)
    job = bulk.create_job(connection, operator, "summarize", keys=keys)
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert bulk.confirm_job(job, request_by(operator)) is None
    queue_summaries = bulk.queue_summaries

    def taken_over_during_the_second_batch(connection, batch, keys, user):
        queue_summaries(connection, batch, keys, user)
        if keys == ["s2", "s3"]:
            BulkJob.objects.filter(pk=job.pk).update(worker="elsewhere:1:x")

    monkeypatch.setattr(bulk, "queue_summaries", taken_over_during_the_second_batch)
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == "running" and job.next_position == 2 and job.done == 2
    assert not AuditEvent.objects.filter(action="bulk.finish").exists()
    # The worker that took it over resumes it from its last saved batch.
    monkeypatch.setattr(bulk, "queue_summaries", queue_summaries)
    BulkJob.objects.filter(pk=job.pk).update(status="queued", worker="")
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.done == 6 and job.attempts == 2 and job.summary_batch.status == "queued"
    assert sorted(job.summary_batch.jobs.values_list("session_key", flat=True)) == keys
    assert SummaryBatch.objects.count() == 1 and SummaryJob.objects.count() == 6
    assert AuditEvent.objects.filter(action="bulk.finish").count() == 1


# --- real worker processes ---------------------------------------------------------------------


@pytest.fixture
def workers(local_store, tmp_path, settings):
    """Starts `manage.py worker` processes on the test database (`MEMORYADMIN_JOB_STALE_SECONDS` = 1)."""
    settings.TASKS = DATABASE_TASKS
    env = app_env(local_store, MEMORYADMIN_JOB_STALE_SECONDS="1", LOG_LEVEL="DEBUG")  # DEBUG: its recovery rounds
    started = []

    def start_worker():
        log = tmp_path / f"worker-{len(started)}.log"
        with open(log, "w") as output:
            command = [sys.executable, "manage.py", "worker", "--interval", "0.2"]
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        process.log = log
        started.append(process)
        return process

    yield start_worker
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait(timeout=10)
    local_store.gateway.latency_ms = 0


def wait_for_recovery_rounds(process, rounds):
    """Until the worker's recovery loop has looked `rounds` more times (however slow a loaded machine makes it)."""
    done = process.log.read_text().count(RECOVERY_ROUND)
    wait_for(lambda: process.log.read_text().count(RECOVERY_ROUND) >= done + rounds, what=f"{rounds} recovery rounds")


def freeze(process):
    """Stop a worker (SIGSTOP) at a moment it holds no transaction open, as a paused VM would."""
    for _ in range(50):
        os.kill(process.pid, signal.SIGSTOP)
        if not another_transaction_is_open():
            return
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the worker always held a transaction open")


def another_transaction_is_open():
    if db.vendor == "sqlite":
        probe = sqlite3.connect(db.settings_dict["NAME"], timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")  # refused while another connection writes
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE xact_start IS NOT NULL AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_search_the_store_refuses_as_a_whole_fails_at_once_and_is_not_run_again(
    web, store, local_store, operator, workers
):
    store.call("LPUSH", "jane", langchain("human", "jane@example.com"))
    response = web.post("/bulk/search/", {"query": "jane@example.com", "key_pattern": "", "role": ""})
    job = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    limit = local_store.gateway.max_request_bytes
    local_store.gateway.max_request_bytes = 10  # every request is refused: a top-level {"error": ...}
    try:
        worker = workers()
        wait_for(lambda: SearchJob.objects.get(pk=job.pk).status == "failed", what="the search to fail")
        wait_for_recovery_rounds(worker, 5)
    finally:
        local_store.gateway.max_request_bytes = limit
    job.refresh_from_db()
    assert job.status == "failed" and job.attempts == 1 and job.error
    assert html.escape(job.error) in web.get(f"/bulk/search/{job.pk}/").content.decode()
    assert AuditEvent.objects.filter(action="search.run", outcome="failed").count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_long_model_call_on_a_live_worker_is_not_taken_over(connection, store, operator, workers):
    slow = Answer(body=completion("A refund was issued.").body, delay=60)  # until the test lets it answer
    model = ChatCompletionsServer(answer=lambda request: slow)
    model.start()
    try:
        settings_row = SummarizerSettings.load()
        settings_row.provider, settings_row.base_url, settings_row.model = "openai", f"{model.url}/v1/", "m"
        settings_row.timeout = 120
        settings_row.save()
        store.call("LPUSH", "chat", langchain("human", "I want a refund"), langchain("ai", "Done."))
        job, _ = summary_jobs.request_summary(connection, "chat", operator)
        first = workers()
        wait_for(lambda: len(model.requests) == 1, what="the model call")
        time.sleep(1.5)  # longer than MEMORYADMIN_JOB_STALE_SECONDS: the job's heartbeat must say it lives
        second = workers()
        wait_for(lambda: "Starting worker" in second.log.read_text(), what="the second worker")
        wait_for_recovery_rounds(second, 3)
        model.closing.set()  # the model answers
        wait_for(lambda: SummaryJob.objects.get(pk=job.pk).status == "done", what="the summary")
        wait_for_recovery_rounds(second, 1)  # one more look after it: nothing runs it again
    finally:
        model.stop()
    job.refresh_from_db()
    assert len(model.requests) == 1 and job.attempts == 1
    assert AuditEvent.objects.filter(action="session.summarize").count() == 1
    assert first.poll() is None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_search_taken_over_from_a_frozen_worker_runs_once(web, store, local_store, workers):
    keys = [f"s{i:04}" for i in range(3000)]
    store.pipeline(
        [["LPUSH", key, langchain("human", "needle" if i % 100 == 7 else "hay")] for i, key in enumerate(keys)]
    )
    local_store.gateway.latency_ms = 300
    response = web.post("/bulk/search/", {"query": "needle", "key_pattern": "", "role": ""})
    job = SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    first = workers()
    wait_for(lambda: SearchJob.objects.get(pk=job.pk).examined_keys >= 1000, what="a first saved step")
    freeze(first)
    time.sleep(1.5)  # silent longer than MEMORYADMIN_JOB_STALE_SECONDS
    workers()
    wait_for(lambda: SearchJob.objects.get(pk=job.pk).status == "done", what="the second worker to finish it")
    os.kill(first.pid, signal.SIGCONT)
    runs = AuditEvent.objects.filter(action="search.run")
    wait_for(lambda: "taken it over" in first.log.read_text() or runs.count() > 1, what="the first worker to wake")
    job.refresh_from_db()
    assert runs.count() == 1 and job.attempts == 2
    assert job.sessions_read == 3000 and job.matched_sessions == 30
    assert sorted(job.hits.values_list("session_key", flat=True)) == [key for key in keys if key.endswith("07")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_killed_stale_planning_resumes_and_queues_every_stale_session_once(web, store, local_store, workers):
    stale = [f"bot:{i:04}" for i in range(1500)]
    fresh = [f"bot:fresh:{i}" for i in range(500)]
    write_sessions(store, stale + fresh, messages=2)
    store.pipeline([["HSET", f"memoryadmin:summary:{key}", "text", "x", "message_count", 2] for key in fresh])
    local_store.gateway.latency_ms = 300
    web.post("/summaries/batches/", {"scope": "stale", "q": "bot:*"})
    batch = SummaryBatch.objects.get()
    first = workers()
    wait_for(lambda: SummaryBatch.objects.get(pk=batch.pk).examined >= 1000, what="a first saved SCAN step")
    after_one_step = batch.jobs.count()
    wait_for(lambda: batch.jobs.count() > after_one_step + 20, what="the second step")
    first.kill()  # in the middle of queueing a step's jobs
    first.wait(timeout=10)
    batch.refresh_from_db()
    assert batch.status == "planning" and 0 < batch.jobs.count() < len(stale)
    workers()
    wait_for(lambda: SummaryBatch.objects.get(pk=batch.pk).status == "queued", what="the planning to resume")
    batch.refresh_from_db()
    assert batch.attempts == 2 and batch.error == ""
    queued = list(batch.jobs.values_list("session_key", flat=True))
    assert sorted(queued) == stale  # every stale session, once; no fresh one
