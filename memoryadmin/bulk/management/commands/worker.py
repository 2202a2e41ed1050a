import logging
import threading
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections
from django.utils.crypto import get_random_string
from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
from django_tasks_db.management.commands.db_worker import Worker

from memoryadmin.services.content_search import erase_expired_searches
from memoryadmin.services.jobs import recover_interrupted_jobs
from memoryadmin.services.retention import run_due_policies
from memoryadmin.tasks import SEARCH_QUEUE

log = logging.getLogger(__name__)

RECOVERY_INTERVAL = 30  # seconds; more often when jobs count as interrupted sooner (MEMORYADMIN_JOB_STALE_SECONDS)
RESTART_PAUSE = 5  # seconds before the search thread polls again after a database error
RECOVERY_ROUND = "Looked for interrupted jobs, expired searches and due retention policies"


class Command(BaseCommand):
    help = (
        "Run the background workers (django-tasks-db's db_worker): the main thread works the default queue "
        "(bulk jobs, summaries), a second thread the search queue, so a long content search never holds up "
        "a purge. First resumes jobs whose worker was killed, and checks for such jobs again every 30 s "
        "(or every half of MEMORYADMIN_JOB_STALE_SECONDS, when that is shorter); then too, deletes the results "
        "of searches older than MEMORYADMIN_SEARCH_RESULTS_DAYS, and starts the runs of due retention policies "
        "(each run once, however many workers)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1, help="seconds between polls of the queue")
        parser.add_argument("--batch", action="store_true", help="run what is queued, then exit")

    def handle(self, *args, interval, batch, **options):
        recovered = recover_interrupted_jobs()
        if recovered:
            self.stdout.write(f"Resumed {recovered} interrupted job(s).")
        erased = erase_expired_searches()
        if erased:
            self.stdout.write(f"Erased the results of {erased} expired search(es).")
        started = run_due_policies()
        if started:
            self.stdout.write(f"Started {len(started)} retention policy run(s).")
        if not batch:
            threading.Thread(target=self._keep_recovering, daemon=True, name="job-recovery").start()
        # db_worker's Worker, as its command builds it, minus the signal handlers: those can only be
        # set in the main thread, where the default queue's worker handles them.
        searches = Worker(
            queue_names=[SEARCH_QUEUE],
            interval=interval,
            batch=batch,
            backend_name=DEFAULT_TASK_BACKEND_ALIAS,
            startup_delay=False,
            max_tasks=None,
            worker_id=f"search-{get_random_string(25)}",
            excluded_queue_names=[],
        )
        search_thread = threading.Thread(target=self._work_searches, args=[searches], daemon=True, name="search-worker")
        search_thread.start()
        worker_args = ["--queue-name", DEFAULT_TASK_QUEUE_NAME, "--interval", str(interval)]
        call_command("db_worker", *worker_args, "--no-reload", "--no-startup-delay", *(["--batch"] if batch else []))
        # Stopped by a signal, the process ends here, and a search still running ends with it: the next
        # worker resumes that search from its last saved SCAN step.
        if batch:
            search_thread.join()

    def _work_searches(self, worker):
        try:
            while True:
                try:
                    worker.run()
                    return
                except Exception:  # a database error must not leave searches without a worker
                    log.exception("the search worker failed; polling again in %s s", RESTART_PAUSE)
                    time.sleep(RESTART_PAUSE)
        finally:
            connections.close_all()  # this thread's own connections

    def _keep_recovering(self):
        stop = threading.Event()
        interval = min(RECOVERY_INTERVAL, max(settings.MEMORYADMIN_JOB_STALE_SECONDS / 2, 0.5))
        while not stop.wait(interval):
            try:
                recover_interrupted_jobs()
                erase_expired_searches()
                run_due_policies()
            except Exception:  # a passing database error must not end the loop
                log.exception("job recovery, the sweep of expired searches or the start of due policies failed")
            finally:
                close_old_connections()
            # At DEBUG only (one line every round); the tests count these to know the loop has looked again.
            log.debug(RECOVERY_ROUND)
