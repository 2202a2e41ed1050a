"""What all long jobs share: who runs them, heartbeats, and recovery after a killed worker.

A job row records the worker process running it (host:pid) and a heartbeat
saved after each batch. django-tasks-db leaves the task of a killed worker
marked running forever, so our `worker` command looks for jobs whose process
is gone (same host, pid not alive) or whose heartbeat is stale (another host)
and queues them again; they resume from their last saved batch.
"""

import logging
import os
import socket
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)


def this_worker():
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def is_orphaned(worker, heartbeat_at):
    """True when the process that ran a job is certainly gone, or silent for too long."""
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid)):
        return True
    stale_after = timedelta(seconds=settings.MEMORYADMIN_JOB_STALE_SECONDS)
    return heartbeat_at is None or timezone.now() - heartbeat_at > stale_after


def recover_interrupted_jobs():
    """Queue again every running job whose worker died; returns how many."""
    from memoryadmin import tasks
    from memoryadmin.bulk.models import BulkJob, SearchJob
    from memoryadmin.summaries.models import SummaryJob

    recovered = 0
    resumable = [
        (BulkJob, BulkJob.RUNNING, BulkJob.QUEUED, tasks.run_bulk_job),
        (BulkJob, BulkJob.COUNTING, BulkJob.COUNTING, tasks.count_bulk_job),
        (SearchJob, SearchJob.RUNNING, SearchJob.QUEUED, tasks.run_search),
        (SummaryJob, SummaryJob.RUNNING, SummaryJob.QUEUED, tasks.summarize_session),
    ]
    for model, running, requeued, task in resumable:
        heartbeat = "heartbeat_at" if hasattr(model, "heartbeat_at") else "started_at"
        claimed = model.objects.filter(status=running).exclude(worker="")  # queued ones have no worker yet
        for job in claimed.only("pk", "worker", heartbeat):
            if not is_orphaned(job.worker, getattr(job, heartbeat)):
                continue
            # Only if nobody else took it meanwhile.
            if model.objects.filter(pk=job.pk, status=running, worker=job.worker).update(status=requeued, worker=""):
                log.warning("Resuming %s %s: its worker %s is gone", model.__name__, job.pk, job.worker or "?")
                task.enqueue(job.pk)
                recovered += 1
    return recovered
