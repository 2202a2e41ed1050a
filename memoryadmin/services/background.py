"""The one seam between the services and the background tasks.

`memoryadmin.tasks` imports the services (each task calls one), so a service
cannot import the tasks at module level. Services queue work here, by the
task's name; the task is looked up when work is queued.
"""

from datetime import timedelta

from django.utils import timezone

# The tasks (functions of memoryadmin.tasks) services may queue.
SUMMARIZE_SESSION = "summarize_session"
PLAN_STALE_BATCH = "plan_stale_batch"
COUNT_BULK_JOB = "count_bulk_job"
RUN_BULK_JOB = "run_bulk_job"
RUN_SEARCH = "run_search"
RECORD_VERIFICATION = "record_verification"
RUN_OVERVIEW = "run_overview"


def enqueue(task_name, job_id, delay=0):
    """Queue the task for this job, to run now or after `delay` seconds."""
    from memoryadmin import tasks

    task = getattr(tasks, task_name)
    if delay:
        task = task.using(run_after=timezone.now() + timedelta(seconds=delay))
    return task.enqueue(job_id)
