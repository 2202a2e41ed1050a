import logging
import threading

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from memoryadmin.services.jobs import recover_interrupted_jobs

log = logging.getLogger(__name__)

RECOVERY_INTERVAL = 30  # seconds


class Command(BaseCommand):
    help = (
        "Run the background worker (django-tasks-db's db_worker), first resuming jobs whose "
        "worker was killed, and checking for such jobs again every 30 s. Extra options go to db_worker."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1, help="seconds between polls of the queue")
        parser.add_argument("--batch", action="store_true", help="run what is queued, then exit")

    def handle(self, *args, interval, batch, **options):
        recovered = recover_interrupted_jobs()
        if recovered:
            self.stdout.write(f"Resumed {recovered} interrupted job(s).")
        if not batch:
            threading.Thread(target=self._keep_recovering, daemon=True, name="job-recovery").start()
        worker_args = ["--interval", str(interval), "--no-reload", "--no-startup-delay"]
        call_command("db_worker", *worker_args, *(["--batch"] if batch else []))

    def _keep_recovering(self):
        stop = threading.Event()
        while not stop.wait(RECOVERY_INTERVAL):
            try:
                recover_interrupted_jobs()
            except Exception:  # a passing database error must not end the loop
                log.exception("job recovery failed")
            finally:
                close_old_connections()
