"""Background jobs, on Django's Tasks API (django-tasks + the django-tasks-db backend).

Thin: each task hands its job's id to the service that does the work, which
keeps the job's state in its own model for the pages to show.
"""

from django_tasks import task

from memoryadmin.services import bulk, content_search, summary_jobs


@task()
def summarize_session(job_id):
    summary_jobs.run_summary_job(job_id)


@task()
def plan_stale_batch(batch_id):
    summary_jobs.plan_stale_batch(batch_id)


@task()
def count_bulk_job(job_id):
    bulk.count_job(job_id)


@task()
def run_bulk_job(job_id):
    bulk.run_job(job_id)


# Searches have a queue of their own (listed in settings.TASKS) and their own worker thread,
# so a long search never delays a purge or a summary.
SEARCH_QUEUE = "search"


@task(queue_name=SEARCH_QUEUE)
def run_search(job_id):
    content_search.run_search(job_id)
