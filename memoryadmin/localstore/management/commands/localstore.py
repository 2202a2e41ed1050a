import signal
import threading

from django.core.management.base import BaseCommand

from memoryadmin.localstore.gateway import MAX_REQUEST_BYTES
from memoryadmin.localstore.store import DEV_TOKEN, LocalStore, default_token


class Command(BaseCommand):
    help = "Run an embedded Valkey behind an Upstash-compatible REST gateway (development, demo, tests)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8079)
        parser.add_argument(
            "--token", default=None, help="bearer token (default: $UPSTASH_REDIS_REST_TOKEN, else a dev token)"
        )
        parser.add_argument("--data-dir", default=None, help="keep the data here across restarts (default: in memory)")
        parser.add_argument("--latency-ms", type=float, default=0, help="added to every request, for benchmarks")
        parser.add_argument(
            "--max-request-bytes",
            type=int,
            default=MAX_REQUEST_BYTES,
            help="larger requests get 'ERR max request size exceeded' (default: 10 MB, Upstash's limit on Free and "
            "Pay-as-you-go)",
        )

    def handle(self, *args, **options):
        store = LocalStore(
            host=options["host"],
            port=options["port"],
            token=options["token"] or default_token(),
            data_dir=options["data_dir"],
            latency_ms=options["latency_ms"],
            max_request_bytes=options["max_request_bytes"],
        )
        store.start()
        stopped = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
        token_note = " (the fixed development token)" if store.token == DEV_TOKEN else ""
        self.stdout.write(
            f"Local store ready: UPSTASH_REDIS_REST_URL={store.url} UPSTASH_REDIS_REST_TOKEN={store.token}{token_note}"
        )
        self.stdout.flush()
        try:
            stopped.wait()
        finally:
            store.stop()
            self.stdout.write("Local store stopped.")
