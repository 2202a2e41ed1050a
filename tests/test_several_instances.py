"""Several instances on one PostgreSQL database: two app servers, two workers, one of them killed mid-job.

Operators work through both app servers (gunicorn, as gunicorn.conf.py configures it): two bulk
jobs (a purge, a TTL), a content search and a re-summarize batch of stale sessions. The workers
share the queue; the one running the purge is killed (SIGKILL) in the middle of it, and the other
takes its jobs over. Every job then has run exactly once: the store is as the jobs say, each job's
counts are exact, and the audit log has one start and one finish per job.

Only in the PostgreSQL run (MEMORYADMIN_TEST_DATABASE=postgres): that is what several instances share.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.db.models import Count

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, BulkJobKey, SearchHit, SearchJob
from memoryadmin.summaries.models import SummaryBatch, SummaryJob

from .factories import write_langchain_session
from .processes import BASE_DIR, app_env, request, serve_app, stop
from .test_bulk import write_sessions

pytestmark = [
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="several instances share a PostgreSQL database (MEMORYADMIN_TEST_DATABASE=postgres)",
    ),
    pytest.mark.django_db(transaction=True, serialized_rollback=True),  # the processes read what the test commits
]

PURGED = [f"purge:{i:05}" for i in range(5000)]  # five batches
EXPIRED = [f"ttl:{i:04}" for i in range(1500)]
KEPT = [f"keep:{i:03}" for i in range(50)]
HAYSTACK = [f"find:{i:04}" for i in range(2000)]
NEEDLES = ["find:0007", "find:0777", "find:1999"]
STALE = [f"stale:{i}" for i in range(6)]


def write_store(store):
    write_sessions(store, PURGED, messages=3)
    write_sessions(store, EXPIRED + KEPT, messages=2)
    write_sessions(store, HAYSTACK, messages=1)
    for key in NEEDLES:
        write_langchain_session(store, key, ["my email is jane.doe@example.com", "noted"])
    for key in STALE:
        write_langchain_session(store, key, ["My order NW-10442 is late", "Sorry, checking now", "Thanks"])
    write_langchain_session(store, "stale:fresh", ["hello", "hi"])
    store.call("HSET", "memoryadmin:summary:stale:fresh", "text", "hello", "message_count", "2")


class Operator:
    """An operator's browser: one login, used on either app server."""

    def __init__(self, client, user):
        client.force_login(user)
        self.cookies = {"sessionid": client.cookies["sessionid"].value}
        self.csrf = None

    def get(self, port, path):
        status, page = request(port, "GET", path, self.cookies)
        assert status == 200, page[-2000:]
        self.csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        return page

    def post(self, port, path, **form):
        body = urlencode({"csrfmiddlewaretoken": self.csrf, "connection": "env", **form})
        return request(port, "POST", path, self.cookies, body=body)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_app_servers_and_two_workers_one_killed_mid_job(client, operator, connection, store, local_store, tmp_path):
    write_store(store)
    env = app_env(local_store, WEB_CONCURRENCY="1", GUNICORN_LOG_LEVEL="warning")
    logs = []

    def start_worker(name):
        log = open(tmp_path / f"{name}.log", "w")
        logs.append(log)
        command = [sys.executable, "manage.py", "worker", "--interval", "0.1"]
        return subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=log)

    workers = [start_worker("worker-1"), start_worker("worker-2")]
    try:
        with serve_app(env, tmp_path / "app-1.log") as one, serve_app(env, tmp_path / "app-2.log") as two:
            olga = Operator(client, operator)
            olga.get(one, "/")
            purge = start_job(olga, one, action="clear", scope="pattern", q="purge:*")
            expire = start_job(olga, two, action="expire", scope="pattern", q="ttl:*", preset="3600")
            wait_for(lambda: BulkJob.objects.filter(status="awaiting").count() == 2, 60, "the dry runs")
            assert BulkJob.objects.get(pk=purge).total == len(PURGED)
            assert BulkJob.objects.get(pk=expire).total == len(EXPIRED)
            local_store.gateway.latency_ms = 150  # slow batches: the purge is still running when its worker dies
            olga.get(two, f"/bulk/{purge}/")
            assert olga.post(two, f"/bulk/{purge}/confirm/", typed=str(len(PURGED)))[0] == 302
            olga.get(one, f"/bulk/{expire}/")
            assert olga.post(one, f"/bulk/{expire}/confirm/")[0] == 302
            olga.get(two, "/bulk/search/")
            status, _ = olga.post(two, "/bulk/search/", query="jane.doe@", key_pattern="find:*", role="")
            assert status == 302
            olga.get(one, "/")
            assert olga.post(one, "/summaries/batches/", q="stale:*")[0] == 302

            # The worker running the purge dies in the middle of it.
            def purge_half_done():
                job = BulkJob.objects.get(pk=purge)
                return job.status == "running" and job.worker and 1000 <= job.next_position < len(PURGED)

            wait_for(purge_half_done, 60, "the purge to be under way")
            holder = BulkJob.objects.get(pk=purge).worker  # host:pid:claim
            (killed,) = [worker for worker in workers if holder.startswith(f"{socket.gethostname()}:{worker.pid}:")]
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait(timeout=10)
            assert BulkJob.objects.get(pk=purge).next_position < len(PURGED)  # it had not finished

            # The other worker takes the purge over (it looks for dead workers' jobs every 30 s).
            def all_finished():
                return (
                    not BulkJob.objects.filter(status__in=["counting", "queued", "running"]).exists()
                    and not SearchJob.objects.filter(status__in=SearchJob.ACTIVE).exists()
                    and SummaryBatch.objects.filter(status="queued").exists()
                    and not SummaryJob.objects.filter(status__in=SummaryJob.ACTIVE).exists()
                )

            wait_for(all_finished, 90, "every job to finish")
            status, page = request(one, "GET", f"/bulk/{purge}/", olga.cookies)
            assert status == 200 and "done" in page
    finally:
        local_store.gateway.latency_ms = 0
        for worker in workers:
            stop(worker)
        for log in logs:
            log.close()
    worker_logs = "\n".join((tmp_path / f"worker-{n}.log").read_text()[-3000:] for n in (1, 2))

    # The store is as the jobs say.
    assert not store.call("SCAN", "0", "MATCH", "purge:*", "COUNT", 100000)[1]
    ttls = store.pipeline([["TTL", key] for key in EXPIRED + KEPT])
    assert all(3000 < ttl <= 3600 for ttl in ttls[: len(EXPIRED)]) and set(ttls[len(EXPIRED) :]) == {-1}
    assert store.call("EXISTS", *KEPT) == len(KEPT)
    for key in STALE:
        assert store.call("HGET", f"memoryadmin:summary:{key}", "message_count") == b"3"
    assert store.call("HGET", "memoryadmin:summary:stale:fresh", "text") == b"hello"  # fresh: left alone

    # Each job ran once, with exact counts.
    purge_job, expire_job = BulkJob.objects.get(pk=purge), BulkJob.objects.get(pk=expire)
    assert purge_job.status == "done", (purge_job.error, worker_logs)
    assert (purge_job.done, purge_job.skipped, purge_job.failed) == (len(PURGED), 0, 0)
    assert purge_job.messages_removed == 3 * len(PURGED)  # the batch the killed worker applied counted once
    assert expire_job.status == "done" and (expire_job.done, expire_job.skipped) == (len(EXPIRED), 0)
    assert not BulkJobKey.objects.exclude(outcome="done").exists()
    search = SearchJob.objects.get()
    assert search.status == "done", search.error
    assert sorted(SearchHit.objects.values_list("session_key", flat=True)) == NEEDLES
    jobs = SummaryJob.objects.all()
    assert sorted(jobs.values_list("session_key", flat=True)) == STALE  # one job per stale session
    assert set(jobs.values_list("status", flat=True)) == {"done"}, list(jobs.values_list("error", flat=True))

    # The audit log: one start and one finish per bulk job; one finish per search and summary job.
    runs = ["bulk.start", "bulk.resume", "bulk.finish", "bulk.cancel", "bulk.fail"]
    for job in (purge_job, expire_job):
        events = AuditEvent.objects.filter(job=job.audit_job, action__in=runs)
        counts = {row["action"]: row["n"] for row in events.values("action").annotate(n=Count("id"))}
        assert counts == {"bulk.start": 1, "bulk.finish": 1}, counts
    assert AuditEvent.objects.filter(action="search.run", job=f"search:{search.pk}").count() == 1
    for job in jobs:
        assert AuditEvent.objects.filter(job=f"summary:{job.pk}").count() == 1


def start_job(operator, port, **form):
    """A bulk action from the sessions list, through this app server; the new job's id."""
    status, _ = operator.post(port, "/bulk/new/", **form)
    assert status == 302
    return BulkJob.objects.latest("pk").pk
