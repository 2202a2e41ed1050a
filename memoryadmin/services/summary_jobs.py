"""Re-summarization as background jobs: request, run, and batches of them.

A SummaryJob row is the job's state for the pages (queued, running, done,
failed, gone); the worker runs `memoryadmin.tasks.summarize_session` for it.
At most one job per session is active at a time (a database constraint), so
two clicks, or two operators, share one job.
"""

import logging
import time
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from memoryadmin.summaries.models import SummarizerSettings, SummaryBatch, SummaryJob

from . import audit, background
from .connections import ConnectionChoice, find_connection
from .jobs import Claim, end_unless_taken, unexpected
from .messages import parse_element
from .secrets import SecretUnreadable
from .sessions import SCAN_COUNT, SessionNotFound, read_whole_session, scan_all
from .summaries import summary_key, summary_state, write_summary
from .summarizers import SummarizerError, summarize
from .upstash import StoreError, get_client

log = logging.getLogger(__name__)


def request_summary(connection, session_key, user, batch=None):
    """The active job for this session, or a new queued one; (job, created)."""
    try:
        # With its task, or not at all: a queued job without one would hold its session forever.
        with transaction.atomic():
            job = SummaryJob.objects.create(
                connection_slug=connection.slug,
                connection_name=connection.name,
                session_key=session_key,
                requested_by=user,
                batch=batch,
            )
            background.enqueue(background.SUMMARIZE_SESSION, job.pk)
    except IntegrityError:
        active = SummaryJob.objects.filter(
            connection_slug=connection.slug, session_key=session_key, status__in=SummaryJob.ACTIVE
        ).first()
        if active:
            return active, False
        return request_summary(connection, session_key, user, batch)  # it finished just now
    return job, True


def run_summary_job(job_id):
    """Summarize the job's session and store the summary; the job row says how it ended."""
    claim = Claim.take(SummaryJob, job_id, SummaryJob.QUEUED, SummaryJob.RUNNING, started_at=timezone.now())
    if claim is None:
        return  # already run (a retried task) or not ours
    with claim:  # beats while the model works, however long that takes
        job = SummaryJob.objects.select_related("requested_by").get(pk=job_id)
        started = time.monotonic()
        outcome = {"status": SummaryJob.FAILED}
        connection = failure = None
        try:
            connection = find_connection(job.connection_slug)
            if connection is None:
                raise SummarizerError("The connection of this job was deleted.")
            # The whole session, read as an export reads it: in windows, each under the store's request limit.
            session = read_whole_session(connection, job.session_key)
            messages = [parse_element(element) for window in session.windows for element in window]
            result = summarize(messages, SummarizerSettings.load().to_config())
            claim.check()  # a worker that lost the job writes no summary
            if write_summary(connection, job.session_key, result, timezone.now()):
                outcome = {"status": SummaryJob.DONE, "method": result.method, "message_count": result.message_count}
            else:
                outcome = {"status": SummaryJob.GONE, "error": "The session was cleared while it was being summarized."}
        except SessionNotFound as error:
            outcome = {"status": SummaryJob.GONE, "error": str(error)}
        except (SummarizerError, StoreError, SecretUnreadable) as error:
            outcome["error"] = str(error)
        except Exception as error:  # the job must end, whatever happened
            outcome["error"], failure = unexpected(error), error
        duration_ms = int((time.monotonic() - started) * 1000)
        _end_job(job, claim.release, outcome, connection, duration_ms=duration_ms)
        if failure:
            raise failure  # for the task's record and the worker's log; the job shows the error


def _end_job(job, end, outcome, connection, **changes):
    """Save how a summary job ended (end: how, if this worker still may) and audit it; True when saved."""
    if not end(finished_at=timezone.now(), **outcome, **changes):
        return False
    audit.record(
        None,
        "session.summarize",
        user=job.requested_by,
        connection=connection,
        session_key=job.session_key,
        outcome="ok" if outcome["status"] == SummaryJob.DONE else "failed",
        details={"status": outcome["status"], "method": outcome.get("method", ""), **changes},
        error=outcome.get("error", ""),
        job=f"summary:{job.pk}",
    )
    return True


def give_up_job(job, error):
    """End a summary job whose worker stopped too often (for the recovery); True when ended."""
    summary_job = SummaryJob.objects.select_related("requested_by").get(pk=job.pk)
    outcome = {"status": SummaryJob.FAILED, "error": error}
    return _end_job(summary_job, partial(end_unless_taken, job), outcome, find_connection(summary_job.connection_slug))


def new_batch(connection, user, description, pattern=""):
    """A batch of re-summarizations; with a pattern, a worker first finds its sessions (planning)."""
    return SummaryBatch.objects.create(
        connection_slug=connection.slug,
        connection_name=connection.name,
        description=description,
        pattern=pattern,
        requested_by=user,
        status=SummaryBatch.PLANNING if pattern else SummaryBatch.QUEUED,
    )


def queue_summaries(connection, batch, session_keys, user):
    """A job in the batch for each session that has none in it yet (a resumed batch queues each session once)."""
    queued = set(batch.jobs.filter(session_key__in=session_keys).values_list("session_key", flat=True))
    for key in session_keys:
        if key not in queued:
            request_summary(connection, key, user, batch=batch)


def request_stale_batch(connection, pattern, user):
    """Re-summarize every stale (or unsummarized) session matching the pattern: found by a worker."""
    # Within the description's 500 characters (PostgreSQL enforces them), an escaped NUL counting two.
    description = f"All sessions matching {_shortened(pattern, 200)} whose summary is missing or stale"
    with transaction.atomic():  # with its task, or not at all
        batch = new_batch(connection, user, description, pattern=pattern)
        background.enqueue(background.PLAN_STALE_BATCH, batch.pk)
    return batch


def plan_stale_batch(batch_id):
    """Scan the whole pattern; queue a job for each session whose summary is missing or stale.

    A SCAN step at a time, saving the cursor after it: resumed, the planning goes on from there.
    """
    claim = Claim.take(SummaryBatch, batch_id, SummaryBatch.PLANNING)
    if claim is None:
        return
    with claim:
        batch = SummaryBatch.objects.select_related("requested_by").get(pk=batch_id)
        error = failure = None
        try:
            _plan(batch, claim)
        except StoreError as problem:
            error = str(problem)
        except Exception as problem:  # the planning ends, whatever happened
            error, failure = unexpected(problem), problem
        _end_planning(batch, claim.release, error)
        if failure:
            raise failure  # for the task's record and the worker's log; the batch shows the error


def _end_planning(batch, end, error=None):
    """Save that the planning is over (end: how, if this worker still may): the jobs found so far run.

    A planning that stopped early is audited (its batch's request was); True when saved.
    """
    if not end(status=SummaryBatch.QUEUED, error=error or ""):
        return False
    if error:
        audit.record(
            None,
            "session.summarize",
            user=batch.requested_by,
            connection=ConnectionChoice(batch.connection_slug, batch.connection_name, False),
            outcome="failed",
            error=error,
            details={"batch": batch.pk, "scope": batch.description},
            job=f"summary-batch:{batch.pk}",
        )
    return True


def _plan(batch, claim):
    connection = find_connection(batch.connection_slug)
    if connection is None:
        raise StoreError("The connection of this batch was deleted.")
    client = get_client(connection)
    for keys, cursor in scan_all(connection, batch.pattern, batch.cursor):
        replies = client.pipeline(
            [
                command
                for key in keys
                for command in (["LLEN", key], ["HGET", summary_key(connection, key), "message_count"])
            ]
        )
        stale = [
            key
            for index, key in enumerate(keys)
            if summary_state(replies[2 * index + 1], replies[2 * index]) != "fresh"
        ]
        claim.check()  # only while this worker holds the batch
        queue_summaries(connection, batch, stale, batch.requested_by)
        claim.save(cursor=cursor, examined=F("examined") + SCAN_COUNT)


def give_up_batch(batch, error):
    """End the planning of a batch whose worker stopped too often (for the recovery); True when ended."""
    planned = SummaryBatch.objects.select_related("requested_by").get(pk=batch.pk)
    return _end_planning(planned, partial(end_unless_taken, batch), error)


def _shortened(text, length):
    return text if len(text) <= length else text[: length - 1] + "…"


def batch_progress(batch):
    """Jobs of the batch counted by status, plus those that did not succeed."""
    counts = {status: 0 for status, _ in SummaryJob.STATUSES}
    for status in batch.jobs.values_list("status", flat=True):
        counts[status] += 1
    total = sum(counts.values())
    finished = counts[SummaryJob.DONE] + counts[SummaryJob.FAILED] + counts[SummaryJob.GONE]
    return {
        "counts": counts,
        "total": total,
        "finished": finished,
        "complete": batch.status == SummaryBatch.QUEUED and finished == total,
        "percent": int(100 * finished / total) if total else 100,
        "problems": batch.jobs.exclude(status__in=[*SummaryJob.ACTIVE, SummaryJob.DONE])[:50],
    }
