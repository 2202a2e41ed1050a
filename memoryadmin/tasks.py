"""Background jobs, on Django's Tasks API (django-tasks + the django-tasks-db backend).

Thin: each task hands its job's id to the service that does the work, which
keeps the job's state in its own model for the pages to show.
"""

from django_tasks import task

from memoryadmin.services import bulk, content_search, overview, summary_jobs

# Bulk jobs and the planning of a re-summarization go before the single re-summarizations queued on
# the same queue: a confirmed purge, or a planning resumed after a crash, does not wait behind the
# thousands of summary jobs a batch may have queued.
BEFORE_SUMMARIES = 10


@task()
def summarize_session(job_id):
    summary_jobs.run_summary_job(job_id)


@task(priority=BEFORE_SUMMARIES)
def plan_stale_batch(batch_id):
    summary_jobs.plan_stale_batch(batch_id)


@task(priority=BEFORE_SUMMARIES)
def count_bulk_job(job_id):
    bulk.count_job(job_id)


@task(priority=BEFORE_SUMMARIES)
def run_bulk_job(job_id):
    bulk.run_job(job_id)


# Searches have a queue of their own (listed in settings.TASKS) and their own worker thread,
# so a long search never delays a purge or a summary.
SEARCH_QUEUE = "search"


@task(queue_name=SEARCH_QUEUE)
def run_search(job_id):
    content_search.run_search(job_id)


# An erasure's verification search ended: its result goes on the erasure job.
@task(priority=BEFORE_SUMMARIES)
def record_verification(search_id):
    bulk.record_verification(search_id)


# A measurement reads the whole store, like a search: on the search queue, so it never delays a purge.
@task(queue_name=SEARCH_QUEUE)
def run_overview(run_id):
    overview.run_overview(run_id)
