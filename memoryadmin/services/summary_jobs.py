"""Re-summarization as background jobs: request, run, and batches of them.

A SummaryJob row is the job's state for the pages (queued, running, done,
failed, gone); the worker runs `memoryadmin.tasks.summarize_session` for it.
At most one job per session is active at a time (a database constraint), so
two clicks, or two operators, share one job.
"""

import logging
import time

from django.db import IntegrityError, transaction
from django.utils import timezone

from memoryadmin.summaries.models import SummarizerSettings, SummaryBatch, SummaryJob

from . import audit
from .connections import find_connection
from .jobs import this_worker
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
        with transaction.atomic():
            job = SummaryJob.objects.create(
                connection_slug=connection.slug,
                connection_name=connection.name,
                session_key=session_key,
                requested_by=user,
                batch=batch,
            )
    except IntegrityError:
        active = SummaryJob.objects.filter(
            connection_slug=connection.slug, session_key=session_key, status__in=SummaryJob.ACTIVE
        ).first()
        if active:
            return active, False
        return request_summary(connection, session_key, user, batch)  # it finished just now
    from memoryadmin.tasks import summarize_session  # tasks import this module

    summarize_session.enqueue(job.pk)
    return job, True


def run_summary_job(job_id):
    """Summarize the job's session and store the summary; the job row says how it ended."""
    claimed = SummaryJob.objects.filter(pk=job_id, status=SummaryJob.QUEUED).update(
        status=SummaryJob.RUNNING, started_at=timezone.now(), worker=this_worker()
    )
    if not claimed:
        return  # already run (a retried task) or not ours
    job = SummaryJob.objects.select_related("requested_by").get(pk=job_id)
    started = time.monotonic()
    outcome = {"status": SummaryJob.FAILED}
    connection = None
    try:
        connection = find_connection(job.connection_slug)
        if connection is None:
            raise SummarizerError("The connection of this job was deleted.")
        # The whole session, read as an export reads it: in windows, each under the store's request limit.
        session = read_whole_session(connection, job.session_key)
        messages = [parse_element(element) for window in session.windows for element in window]
        result = summarize(messages, SummarizerSettings.load().to_config())
        if write_summary(connection, job.session_key, result, timezone.now()):
            outcome = {"status": SummaryJob.DONE, "method": result.method, "message_count": result.message_count}
        else:
            outcome = {"status": SummaryJob.GONE, "error": "The session was cleared while it was being summarized."}
    except SessionNotFound as error:
        outcome = {"status": SummaryJob.GONE, "error": str(error)}
    except (SummarizerError, StoreError, SecretUnreadable) as error:
        outcome["error"] = str(error)
    except Exception as error:  # the job must end, whatever happened; the log has the traceback
        log.exception("summary job %s failed", job_id)
        outcome["error"] = f"Unexpected error: {type(error).__name__}: {error}"
    finished = timezone.now()
    duration_ms = int((time.monotonic() - started) * 1000)
    SummaryJob.objects.filter(pk=job_id).update(finished_at=finished, duration_ms=duration_ms, **outcome)
    audit.record(
        None,
        "session.summarize",
        user=job.requested_by,
        connection=connection,
        session_key=job.session_key,
        outcome="ok" if outcome["status"] == SummaryJob.DONE else "failed",
        details={"status": outcome["status"], "method": outcome.get("method", ""), "duration_ms": duration_ms},
        error=outcome.get("error", ""),
        job=f"summary:{job.pk}",
    )


def request_batch(connection, session_keys, user, description):
    """Re-summarize these sessions (e.g. the rows an operator selected)."""
    batch = SummaryBatch.objects.create(
        connection_slug=connection.slug,
        connection_name=connection.name,
        description=description,
        requested_by=user,
        status=SummaryBatch.QUEUED,
    )
    for key in session_keys:
        request_summary(connection, key, user, batch=batch)
    return batch


def request_stale_batch(connection, pattern, user):
    """Re-summarize every stale (or unsummarized) session matching the pattern: found by a worker."""
    batch = SummaryBatch.objects.create(
        connection_slug=connection.slug,
        connection_name=connection.name,
        pattern=pattern,
        # Within the description's 500 characters (PostgreSQL enforces them), an escaped NUL counting two.
        description=f"All sessions matching {_shortened(pattern, 200)} whose summary is missing or stale",
        requested_by=user,
    )
    from memoryadmin.tasks import plan_stale_batch

    plan_stale_batch.enqueue(batch.pk)
    return batch


def plan_stale_batch(batch_id):
    """Scan the whole pattern; queue a job for each session whose summary is missing or stale."""
    batch = SummaryBatch.objects.select_related("requested_by").get(pk=batch_id)
    connection = find_connection(batch.connection_slug)
    try:
        if connection is None:
            raise StoreError("The connection of this batch was deleted.")
        client = get_client(connection)
        for examined, keys in enumerate(scan_all(connection, batch.pattern), start=1):
            replies = client.pipeline(
                [
                    command
                    for key in keys
                    for command in (["LLEN", key], ["HGET", summary_key(connection, key), "message_count"])
                ]
            )
            for index, key in enumerate(keys):
                if summary_state(replies[2 * index + 1], replies[2 * index]) != "fresh":
                    request_summary(connection, key, batch.requested_by, batch=batch)
            SummaryBatch.objects.filter(pk=batch_id).update(examined=examined * SCAN_COUNT)
    except StoreError as error:
        SummaryBatch.objects.filter(pk=batch_id).update(error=str(error))
    SummaryBatch.objects.filter(pk=batch_id).update(status=SummaryBatch.QUEUED)


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
