"""What all long jobs share: who runs them (the claim), heartbeats, failures, and recovery.

A worker takes a job by an atomic compare-and-set on its `worker` column
(empty -> "host:pid:claim", a token new for every claim) and holds it while
the job's task runs: a thread of the task beats the job's heartbeat every
quarter of MEMORYADMIN_JOB_STALE_SECONDS, and every save of progress (and the
last save of the job) is an update conditional on the token. So when another
worker takes the job over, the first one finds out at its next save, writes
nothing, and stops (ClaimLost); and before an action it cannot take back (a
batch sent to the store, a summary written) it checks that it still holds it.

A task ends its job whatever happens: an outcome error (the store failed, the
query is refused) is recorded on the job and the task returns; any other
exception is recorded too ("Unexpected error: ..."), audited, and raised
again, so django-tasks marks the task failed and the worker's log has the
traceback. Nothing re-runs a failed job by itself.

A claim also keeps the job's bill: the store commands and round trips its
work costs (services/upstash.py, count_commands), added to the job's
`<bill>_commands` and `<bill>_round_trips` columns with each save of progress
and with the last save, so they accumulate across resumes. What a worker
spent after its last save is not recorded if it is killed. A job run inside
another's (the immediate task backend runs a queued task at once) is billed
to itself only.

django-tasks-db leaves the task of a killed worker marked running forever, so
our `worker` command looks, at start and then regularly, for running jobs
whose worker is gone (same host: its process has ended, or it is this process
and the claim is not one it runs) or silent (no heartbeat for longer than
MEMORYADMIN_JOB_STALE_SECONDS) and queues them again; they resume from their
last saved batch. Each claim counts an attempt; the second resume waits
MEMORYADMIN_JOB_RETRY_SECONDS (doubled after that), and a job whose worker
stopped MEMORYADMIN_JOB_MAX_ATTEMPTS times is ended as failed, with the reason,
instead of being queued again.
"""

import contextvars
import logging
import os
import socket
import threading
from contextlib import ExitStack
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import get_random_string

from . import background
from .upstash import CommandCount, count_commands

log = logging.getLogger(__name__)

# The claim whose job this thread (or task) works for now.
_working_for = contextvars.ContextVar("working_for", default=None)
# The claims this process holds now (their tasks are running here).
_held = set()
_held_lock = threading.Lock()


class ClaimLost(BaseException):  # noqa: N818 - not an error of the job: the signal to stop
    """Another worker holds this job now: stop, writing nothing.

    A BaseException, so that the handlers that record a job's failure do not take it for one.
    """


def unexpected(error):
    """What a job records for an exception it did not expect (the log has the traceback)."""
    return f"Unexpected error: {type(error).__name__}: {error}"


class Claim:
    """This worker's hold on one job row: `with claim:` beats its heartbeat and counts store commands.

    `bill`: the prefix of the job's columns its store commands are added to (`store`: store_commands...).
    """

    def __init__(self, model, pk, worker, bill="store"):
        self.model, self.pk, self.worker = model, pk, worker
        self._stop = threading.Event()
        self._beating = None
        self._bill = (f"{bill}_commands", f"{bill}_round_trips")
        self._counting = ExitStack()
        self._counted = CommandCount()  # while `with claim:` is open: the count of this worker's store commands
        self._billed = CommandCount()  # what of it is saved on the job

    @classmethod
    def take(cls, model, pk, status, new_status=None, bill="store", **changes):
        """Claim a job in `status` that no worker holds (and set `new_status`); None when it is not there to take."""
        worker = f"{socket.gethostname()}:{os.getpid()}:{get_random_string(8)}"
        with _held_lock:  # held before it is taken: this process's recovery never sees it as ended
            _held.add(worker)
        taken = model.objects.filter(pk=pk, status=status, worker="").update(
            status=new_status or status,
            worker=worker,
            heartbeat_at=timezone.now(),
            attempts=F("attempts") + 1,
            **changes,
        )
        if taken:
            return cls(model, pk, worker, bill)
        _let_go(worker)
        return None

    def mine(self):
        """The job's row, only while this worker holds it."""
        return self.model.objects.filter(pk=self.pk, worker=self.worker)

    def check(self):
        """ClaimLost when another worker holds the job now (a read: it waits for no writer)."""
        if not self.mine().exists():
            raise ClaimLost

    def save(self, **changes):
        """Save progress (a heartbeat and the bill too); ClaimLost when another worker holds the job now."""
        if not self.mine().update(heartbeat_at=timezone.now(), **self.unbilled(), **changes):
            raise ClaimLost

    def release(self, **changes):
        """End this worker's hold, saving the job's outcome and bill; False (nothing saved) when it was lost."""
        return bool(self.mine().update(worker="", **self.unbilled(), **changes))

    def unbilled(self):
        """The update that adds to the job's bill what its store commands cost since the last one.

        Taken as saved: pass it to an update of the job that saves progress (save() and release() do).
        """
        counted = self._counted.copy()
        commands, round_trips = counted.commands - self._billed.commands, counted.round_trips - self._billed.round_trips
        self._billed = counted
        if not (commands or round_trips):
            return {}
        return {self._bill[0]: F(self._bill[0]) + commands, self._bill[1]: F(self._bill[1]) + round_trips}

    def __enter__(self):
        self._counted = self._counting.enter_context(count_commands())
        outer = _working_for.get()
        working_for = _working_for.set(self)
        self._counting.callback(_working_for.reset, working_for)
        if outer is not None:  # that job's count sees this one's commands: they are billed here, not there
            self._counting.callback(outer._billed_elsewhere, self._counted)
        # Not when the task runs inside a transaction (the immediate backend, in a request): no other
        # worker sees the job to take it over, and a beat, from another connection, would wait for it.
        if not transaction.get_connection().in_atomic_block:
            self._beating = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{self.pk}")
            self._beating.start()
        return self

    def _billed_elsewhere(self, counted):
        self._billed.commands += counted.commands
        self._billed.round_trips += counted.round_trips

    def __exit__(self, kind, error, traceback):
        self._counting.close()
        self._stop.set()
        if self._beating:
            self._beating.join()
        _let_go(self.worker)
        if isinstance(error, ClaimLost):
            log.warning(
                "%s %s: another worker has taken it over; this one stops here, saving nothing more",
                self.model.__name__,
                self.pk,
            )
            return True
        return False

    def _beat(self):
        # Time-based, not per batch: one slow step (a long model call, a long session) must not
        # make a live worker look dead.
        interval = max(settings.MEMORYADMIN_JOB_STALE_SECONDS / 4, 0.05)
        try:
            while not self._stop.wait(interval):
                try:
                    if not self.mine().update(heartbeat_at=timezone.now()):
                        return  # ended, or taken over: the task finds out at its next save
                except DatabaseError as error:  # a passing database error: beat again next time
                    log.warning("heartbeat of %s %s failed: %s", self.model.__name__, self.pk, error)
        finally:
            connections.close_all()  # this thread's own connections


def _let_go(worker):
    with _held_lock:
        _held.discard(worker)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def interruption(worker, heartbeat_at):
    """Why the worker holding a running job no longer runs it, or None while it may still run it."""
    host, _, rest = worker.partition(":")  # "host:pid:claim" (before claims, "host:pid")
    pid = rest.split(":", 1)[0]
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            with _held_lock:
                if worker not in _held:
                    return "its task ended in this worker without ending the job (see the worker's log)"
            return None  # running here now
        if not _process_alive(int(pid)):
            return f"its worker process ({worker}) is gone"
    stale_after = settings.MEMORYADMIN_JOB_STALE_SECONDS
    if heartbeat_at is None or timezone.now() - heartbeat_at > timedelta(seconds=stale_after):
        return f"its worker ({worker}) gave no sign of life for more than {stale_after} s"
    return None


def retry_delay(attempts):
    """Seconds before a job whose worker stopped `attempts` times runs again: none the first time."""
    return 0 if attempts < 2 else settings.MEMORYADMIN_JOB_RETRY_SECONDS * 2 ** (attempts - 2)


def end_unless_taken(job, **changes):
    """End a job found interrupted, unless a worker took it meanwhile; True when ended."""
    return bool(type(job).objects.filter(pk=job.pk, status=job.status, worker=job.worker).update(worker="", **changes))


def _resumable():
    """(model, status while a worker runs it, status to queue it again in, the name of its task, how to give it up)."""
    from memoryadmin.bulk.models import BulkJob, SearchJob
    from memoryadmin.overview.models import OverviewRun
    from memoryadmin.summaries.models import SummaryBatch, SummaryJob

    from . import bulk, content_search, overview, summary_jobs

    return [
        (BulkJob, BulkJob.RUNNING, BulkJob.QUEUED, background.RUN_BULK_JOB, bulk.give_up),
        (BulkJob, BulkJob.COUNTING, BulkJob.COUNTING, background.COUNT_BULK_JOB, bulk.give_up),
        (SearchJob, SearchJob.RUNNING, SearchJob.QUEUED, background.RUN_SEARCH, content_search.give_up),
        (SummaryJob, SummaryJob.RUNNING, SummaryJob.QUEUED, background.SUMMARIZE_SESSION, summary_jobs.give_up_job),
        (
            SummaryBatch,
            SummaryBatch.PLANNING,
            SummaryBatch.PLANNING,
            background.PLAN_STALE_BATCH,
            summary_jobs.give_up_batch,
        ),
        (OverviewRun, OverviewRun.RUNNING, OverviewRun.QUEUED, background.RUN_OVERVIEW, overview.give_up),
    ]


def recover_interrupted_jobs():
    """Queue again every running job whose worker stopped (or end it, after too many attempts); returns how many."""
    recovered = 0
    for model, running, requeued, task, give_up in _resumable():
        claimed = model.objects.filter(status=running).exclude(worker="")  # queued ones have no worker yet
        for job in claimed.only("pk", "status", "worker", "heartbeat_at", "attempts"):
            reason = interruption(job.worker, job.heartbeat_at)
            if reason is None:
                continue
            if job.attempts >= settings.MEMORYADMIN_JOB_MAX_ATTEMPTS:
                error = (
                    f"Stopped after {job.attempts} attempts: each time its worker stopped before the job ended "
                    f"(the last time, {reason}). It is not retried again."
                )
                if give_up(job, error):
                    log.error("Gave up %s %s: %s", model.__name__, job.pk, error)
                continue
            delay = retry_delay(job.attempts)
            with transaction.atomic():  # queued again together with its task, or not at all
                if model.objects.filter(pk=job.pk, status=running, worker=job.worker).update(
                    status=requeued, worker=""
                ):
                    background.enqueue(task, job.pk, delay)
                    log.warning(
                        "Resuming %s %s (attempt %s of %s, in %s s): %s",
                        model.__name__,
                        job.pk,
                        job.attempts + 1,
                        settings.MEMORYADMIN_JOB_MAX_ATTEMPTS,
                        delay,
                        reason,
                    )
                    recovered += 1
    return recovered
