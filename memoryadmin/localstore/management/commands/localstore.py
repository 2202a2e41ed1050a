import signal
import threading

from django.core.management.base import BaseCommand

from memoryadmin.localstore.gateway import MAX_CONNECTIONS, MAX_KEY_BYTES, MAX_REQUEST_BYTES
from memoryadmin.localstore.store import DEV_TOKEN, LocalStore, default_token


class Command(BaseCommand):
    help = (
        "Run an embedded Valkey behind an Upstash-compatible REST gateway (development, demo, tests), "
        "with Upstash's limits."
    )

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
            help="larger requests and replies get 'ERR max request size exceeded' (default: Upstash's 10 MB on Free "
            "and Pay-as-you-go, 10485760 bytes; 0: no limit)",
        )
        parser.add_argument(
            "--max-key-bytes",
            type=int,
            default=MAX_KEY_BYTES,
            help="longer keys get 'ERR max key size exceeded' (default: Upstash's 32 KB, 32768 bytes; 0: no limit)",
        )
        parser.add_argument(
            "--max-requests-per-second",
            type=int,
            default=0,
            help="more commands a second get 'ERR max requests limit exceeded' (default: 0, no limit)",
        )
        parser.add_argument(
            "--max-connections",
            type=int,
            default=MAX_CONNECTIONS,
            help=f"more get 'ERR max concurrent connections exceeded' (default: {MAX_CONNECTIONS})",
        )
        parser.add_argument(
            "--read-only-token", default=None, help="a second bearer token, that may only read (default: none)"
        )
        parser.add_argument(
            "--replica-lag-ms",
            type=float,
            default=None,
            help="serve reads from a replica this far behind, unless the client's Upstash-Sync-Token asks for "
            "newer data (default: no replica)",
        )

    def handle(self, *args, **options):
        store = LocalStore(
            host=options["host"],
            port=options["port"],
            token=options["token"] or default_token(),
            data_dir=options["data_dir"],
            latency_ms=options["latency_ms"],
            max_request_bytes=options["max_request_bytes"],
            max_key_bytes=options["max_key_bytes"],
            max_requests_per_second=options["max_requests_per_second"],
            max_connections=options["max_connections"],
            read_only_token=options["read_only_token"],
            replica_lag_ms=options["replica_lag_ms"],
        )
        store.start()
        stopped = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
        token_note = " (the fixed development token)" if store.token == DEV_TOKEN else ""
        self.stdout.write(
            f"Local store ready: UPSTASH_REDIS_REST_URL={store.url} UPSTASH_REDIS_REST_TOKEN={store.token}{token_note}"
        )
        if store.read_only_token:
            self.stdout.write(f"Read-only token: {store.read_only_token}")
        self.stdout.flush()
        try:
            stopped.wait()
        finally:
            store.stop()
            self.stdout.write("Local store stopped.")
