"""An HTTP gateway that speaks the Upstash Redis REST protocol in front of Valkey.

It exists so that development, the demo and the test suite run the real
`upstash-redis` client, over real HTTP, against a real Redis server. What it
implements is what that client relies on (see DESIGN.md):

- `POST /` with a JSON array command; `POST /pipeline` with an array of them
  (answered with one `{"result"}` or `{"error"}` each, HTTP 200);
  `POST /multi-exec` (the same, inside MULTI/EXEC).
- Bearer-token auth: a wrong or missing token is HTTP 401 `{"error": "Unauthorized"}`.
- `Upstash-Encoding: base64`: every string in a result is base64, nested
  arrays included, except the status reply `OK`.
- A single command's error is HTTP 400 `{"error": "..."}`.

It guards itself, since tests and benchmarks share it: the token and the
declared size are checked from the headers before a byte of the body is read;
a client that stalls is dropped after `read_timeout`; connections beyond
`max_connections` get Upstash's `ERR max concurrent connections exceeded`;
and commands Upstash refuses over REST (blocking ones, connection state,
server administration) are refused here too.

And it has Upstash's limits, so that code that works here works there:
requests AND replies over `max_request_bytes` get `ERR max request size
exceeded` (a pipeline's whole reply counts, and is refused as a whole, with
HTTP 400 and a top-level error, as Upstash does); a key over `max_key_bytes`
gets `ERR max key size exceeded`; an optional rate limit gets `ERR max
requests limit exceeded`; a read-only token runs as a Valkey user that may
only read, so Valkey itself refuses writes with NOPERM; every reply carries
an `Upstash-Sync-Token`, and with a replica, reads go to the replica unless
the client's token says it has seen writes the replica has not applied yet.

Speed matters because benchmarks run through it: replies go out in one write
with TCP_NODELAY (no Nagle/delayed-ACK stall), a pipeline is handed to Valkey
as a pipeline (all commands written, then all replies read), and the listen
backlog is large so concurrent clients are not refused.
"""

import base64
import hmac
import itertools
import json
import logging
import socket
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import valkey
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import (
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from valkey.exceptions import TimeoutError as ValkeyTimeoutError

log = logging.getLogger(__name__)

# Upstash's "10MB" max request size on Free and Pay-as-you-go: its errors say "Limit: 10485760 bytes".
MAX_REQUEST_BYTES = 10_485_760
MAX_KEY_BYTES = 32_768  # Upstash's "32Kb" max key size, the same on every plan
READ_TIMEOUT = 10.0  # seconds a client may stay silent, mid-request or idle between requests
MAX_CONNECTIONS = 256  # connections served at once, each by a thread of its own
SYNC_TOKEN_HEADER = "Upstash-Sync-Token"
UPSTASH_TROUBLESHOOTING = "https://upstash.com/docs/redis/troubleshooting"

# What Upstash refuses over REST (its REST API page, "REST - Redis API
# Compatibility": no blocking commands; of Connection only PING and ECHO; of
# Pub/Sub only PUBLISH and PUBSUB; no WATCH/UNWATCH/DISCARD; no Cluster), and
# server administration, which through the gateway would reconfigure, stop or
# replicate the Valkey that every test and benchmark shares. Connection state
# and blocking would also spoil a pooled connection for the requests after.
REFUSED_COMMANDS = {
    **dict.fromkeys(
        "BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP WAIT WAITAOF".split(), "blocking command"
    ),
    **dict.fromkeys("MULTI EXEC DISCARD WATCH UNWATCH".split(), "transaction command: use /multi-exec"),
    **dict.fromkeys("AUTH HELLO SELECT QUIT RESET CLIENT".split(), "connection command: only PING and ECHO are"),
    **dict.fromkeys("SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE".split(), "subscription"),
    **dict.fromkeys("CLUSTER READONLY READWRITE ASKING".split(), "cluster command"),
    **dict.fromkeys(
        "ACL CONFIG DEBUG MODULE SHUTDOWN SAVE BGSAVE BGREWRITEAOF REPLICAOF SLAVEOF FAILOVER SYNC PSYNC REPLCONF "
        "MIGRATE MONITOR SWAPDB".split(),
        "server administration",
    ),
}
# XREAD and XREADGROUP block only when asked to.
BLOCKING_WITH_OPTION = {"XREAD", "XREADGROUP"}


# valkey-py drops these codes from the errors it turns into its own exception classes.
ERROR_CODES = {
    NoPermissionError: "NOPERM",
    NoScriptError: "NOSCRIPT",
    ReadOnlyError: "READONLY",
    ExecAbortError: "EXECABORT",
    OutOfMemoryError: "OOM",
}


class CommandError(Exception):
    """A request the gateway refuses before it reaches Valkey."""


class Refusal(Exception):
    """A request answered from its headers alone; its body stays unread, so the connection closes."""

    def __init__(self, status, error):
        super().__init__(error)
        self.status = status
        self.error = error


def error_text(error):
    """The Redis error line as Upstash would show it.

    valkey-py strips a leading `ERR ` from generic errors, and the code of the
    errors it has classes for (NOPERM, NOSCRIPT...); put them back so the text
    reads like Redis's own (`ERR unknown command ...`).
    """
    text = str(error)
    code = ERROR_CODES.get(type(error))
    if code:
        return f"{code} {text}"
    first = text.split(" ", 1)[0]
    if first.isupper() and first.isalpha() and len(first) >= 3:
        return text
    return f"ERR {text}"


def request_size_error(limit, actual):
    """Upstash's own text (its troubleshooting page, and its replies as clients report them)."""
    return (
        f"ERR max request size exceeded. Limit: {limit} bytes, Actual: {actual} bytes. "
        f"See {UPSTASH_TROUBLESHOOTING}/max_request_size_exceeded for details"
    )


def key_size_error(limit, actual):
    return (
        f"ERR max key size exceeded. Limit: {limit} bytes, Actual: {actual} bytes. "
        f"See {UPSTASH_TROUBLESHOOTING}/max_key_size_exceeded for details"
    )


def encode_result(value, base64_encoding):
    """A RESP reply as the JSON value Upstash sends for it."""
    if isinstance(value, bytes):
        if value == b"OK":
            return "OK"
        if base64_encoding:
            return base64.b64encode(value).decode("ascii")
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [encode_result(item, base64_encoding) for item in value]
    if isinstance(value, ResponseError):
        # An error inside an EXEC reply.
        raise CommandError(error_text(value))
    if isinstance(value, float):
        return value
    return value  # int or None


def command_args(command):
    """JSON array -> list of bytes arguments, as Upstash accepts them."""
    if not isinstance(command, list) or not command:
        raise CommandError("ERR command must be a non-empty JSON array")
    args = []
    for item in command:
        if isinstance(item, bool) or item is None or isinstance(item, (dict, list)):
            raise CommandError("ERR command arguments must be strings or numbers")
        if isinstance(item, str):
            args.append(item.encode("utf-8", errors="surrogatepass"))
        else:
            args.append(str(item).encode("ascii"))
    name = args[0].decode("utf-8", errors="replace").upper()
    reason = REFUSED_COMMANDS.get(name)
    if name in BLOCKING_WITH_OPTION and blocks(args):
        reason = "blocking command"
    if reason:
        raise CommandError(f"ERR command is not available over REST: {name} ({reason})")
    return args


def blocks(args):
    """Whether an XREAD/XREADGROUP asks to BLOCK (options come before STREAMS; keys and ids after)."""
    for arg in args[1:]:
        option = arg.upper()
        if option == b"STREAMS":
            return False
        if option == b"BLOCK":
            return True
    return False


class CommandTable:
    """What Valkey's COMMAND says about each command, read once: where its keys are, whether it only reads.

    Most commands have their keys at fixed places (first, last, step). For the
    others (EVAL's numkeys, XREAD's STREAMS, subcommands such as OBJECT
    ENCODING) only Valkey knows, and COMMAND GETKEYS asks it; that costs a
    round trip, so it is only done for a command that has an argument longer
    than the key limit at all.
    """

    def __init__(self, command_reply):
        self.key_places = {}  # name -> (first, last, step), or None: ask Valkey
        self.read_only = set()
        for entry in command_reply:
            name, flags, (first, last, step) = entry[0].upper(), entry[2], entry[3:6]
            if b"readonly" in flags:
                self.read_only.add(name)
            if b"movablekeys" in flags or (len(entry) > 9 and entry[9]):
                self.key_places[name] = None
            elif first:
                self.key_places[name] = (first, last, step)

    def keys(self, args, ask_valkey):
        name = args[0].upper()
        if name not in self.key_places:
            return []
        places = self.key_places[name]
        if places is None:
            return ask_valkey(args)
        first, last, step = places
        end = len(args) + last if last < 0 else last
        return args[first : end + 1 : step]

    def reads_only(self, commands):
        return all(args[0].upper() in self.read_only for args in commands)


class RateLimit:
    """A token bucket: `per_second` commands a second, in bursts of up to a second's worth.

    Commands, not HTTP requests: Upstash counts (and bills) each command of a
    pipeline as a request.
    """

    def __init__(self, per_second):
        self.per_second = per_second
        self._allowance = float(per_second)
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def admit(self, commands):
        with self._lock:
            now = time.monotonic()
            self._allowance = min(self.per_second, self._allowance + (now - self._updated) * self.per_second)
            self._updated = now
            if commands > self._allowance:
                return False
            self._allowance -= commands
            return True


class ValkeyPipe:
    """Sends batches of commands to Valkey over pooled connections, pipelined."""

    def __init__(self, **connection):
        # connection: host, port and the credentials of one of Valkey's users.
        self.pool = valkey.ConnectionPool(socket_keepalive=True, **connection)

    def run(self, commands):
        """Write all commands, then read all replies. Errors come back in place."""
        connection = self.pool.get_connection("_")
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            replies = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except ResponseError as error:
                    replies.append(error)
            return replies
        except (ValkeyConnectionError, ValkeyTimeoutError, OSError):
            connection.disconnect()
            raise
        finally:
            self.pool.release(connection)

    def close(self):
        self.pool.disconnect()


@dataclass(frozen=True)
class Grant:
    """What one REST token reaches: Valkey as the user with that token's rights, and its replica if any."""

    token: str
    primary: ValkeyPipe
    replica: ValkeyPipe | None = None

    def close(self):
        self.primary.close()
        if self.replica:
            self.replica.close()


class GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "memoryadmin-localstore"

    def setup(self):
        # StreamRequestHandler puts this timeout on the socket: a client that
        # stops sending, mid-request or between requests, is dropped.
        self.timeout = self.server.read_timeout
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self):
        # A plain GET / tells a person what this is; commands are POSTs.
        self.send(200, json_body({"result": "memoryadmin local store: POST Upstash REST commands here"}))

    def do_POST(self):
        with self.server.serving():
            self.answer_post()

    def answer_post(self):
        try:
            grant = self.grant()
            body = self.read_body()
        except Refusal as refusal:
            self.close_connection = True
            self.send(refusal.status, json_body({"error": refusal.error}), close=True)
            return
        gateway = self.server
        if gateway.latency_ms:
            time.sleep(gateway.latency_ms / 1000)
        seen = (self.headers.get(SYNC_TOKEN_HEADER) or "").strip()
        seen = int(seen) if seen.isascii() and seen.isdigit() else None
        # A request that does not run answers with the client's own token: a refusal must not make it forget writes.
        sync_token = seen or 0
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep to parse
            self.send(400, json_body({"error": "ERR failed to parse the request body as JSON"}), sync_token=sync_token)
            return
        try:
            status, answer, sync_token = self.answer(payload, grant, seen)
        except CommandError as error:
            status, answer = 400, {"error": str(error)}
        except RecursionError:  # a script's reply nested deeper than Python parses
            status, answer = 400, {"error": "ERR the reply is nested too deeply for the local store"}
        except (ValkeyConnectionError, ValkeyTimeoutError, OSError) as error:
            status, answer = 500, {"error": f"ERR the local Valkey is not answering: {error}"}
        data = json_body(answer)
        gateway.count_reply(len(data))  # as produced: one over the limit counts at the size it would have had
        if gateway.max_request_bytes and len(data) > gateway.max_request_bytes:
            # Replies count too. One too large refuses the whole request, top-level (a pipeline's commands did run).
            status, data = 400, json_body({"error": request_size_error(gateway.max_request_bytes, len(data))})
        self.send(status, data, sync_token=sync_token)

    def answer(self, payload, grant, seen):
        """(HTTP status, JSON answer, sync token) for a request that parsed."""
        path = self.path.split("?", 1)[0].rstrip("/")
        base64_encoding = (self.headers.get("Upstash-Encoding") or "").lower() == "base64"
        if path == "":
            (reply,), sync_token = self.server.run(grant, [command_args(payload)], False, seen)
            if isinstance(reply, ResponseError):
                return 400, {"error": error_text(reply)}, sync_token
            return 200, {"result": encode_result(reply, base64_encoding)}, sync_token
        if path in ("/pipeline", "/multi-exec"):
            if not isinstance(payload, list) or not payload:
                raise CommandError("ERR a pipeline must be a non-empty JSON array of commands")
            commands = [command_args(command) for command in payload]
            replies, sync_token = self.server.run(grant, commands, path == "/multi-exec", seen)
            return 200, [answer_for(reply, base64_encoding) for reply in replies], sync_token
        return 404, {"error": f"ERR unknown endpoint {path}"}, seen or 0

    def grant(self):
        """What the bearer token may do; checked before anything else."""
        given = (self.headers.get("Authorization") or "").encode()
        for grant in self.server.grants:
            if hmac.compare_digest(given, f"Bearer {grant.token}".encode()):
                return grant
        raise Refusal(401, "Unauthorized")

    def read_body(self):
        """The body, once the headers show that it is worth reading."""
        length = self.headers.get("Content-Length")
        if length is None or "Transfer-Encoding" in self.headers:
            raise Refusal(411, "ERR a request needs a Content-Length header")
        if not (length.isascii() and length.isdigit()):
            raise Refusal(400, f"ERR invalid Content-Length header: {length[:40]!r}")
        self.server.count_request(int(length))  # as declared: one over the limit counts too
        limit = self.server.max_request_bytes
        if limit and int(length) > limit:
            raise Refusal(400, request_size_error(limit, int(length)))
        return self.rfile.read(int(length))

    def send(self, status, body, close=False, sync_token=None):
        data = http_response(status, body, close, sync_token)
        self.wfile.write(data)
        self.log_request(status, len(data))


def answer_for(reply, base64_encoding):
    """One command's entry in a pipeline's answer."""
    if isinstance(reply, ResponseError):
        return {"error": error_text(reply)}
    return {"result": encode_result(reply, base64_encoding)}


def json_body(answer):
    return json.dumps(answer, separators=(",", ":")).encode()


def http_response(status, body, close=False, sync_token=None):
    """A whole HTTP response in one piece: it goes out in one write, headers and body in the same segment."""
    reason = BaseHTTPRequestHandler.responses.get(status, ("",))[0]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if sync_token is not None:
        head += f"{SYNC_TOKEN_HEADER}: {sync_token}\r\n"
    if close:
        head += "Connection: close\r\n"
    return f"{head}\r\n".encode() + body


class GatewayServer(ThreadingHTTPServer):
    """The gateway. `grants`: the full-access token's first, then the read-only token's, if any."""

    daemon_threads = True
    request_queue_size = 1024  # http.server's default of 5 refuses connections under load

    def __init__(
        self,
        address,
        grants,
        latency_ms=0,
        max_request_bytes=MAX_REQUEST_BYTES,
        max_key_bytes=MAX_KEY_BYTES,
        max_requests_per_second=0,
        read_timeout=READ_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
    ):
        self.grants = grants
        self.latency_ms = latency_ms
        self.max_request_bytes = max_request_bytes
        self.max_key_bytes = max_key_bytes
        self.rate_limit = RateLimit(max_requests_per_second) if max_requests_per_second else None
        self.read_timeout = read_timeout
        (command_reply,) = grants[0].primary.run([[b"COMMAND"]])
        self.commands = CommandTable(command_reply)
        self._sync_tokens = itertools.count(1)  # without a replica: one per request run
        self._connection_slots = threading.BoundedSemaphore(max_connections)
        self.requests_served = 0  # round trips, for tests and benchmarks
        self.in_flight = 0  # requests being answered (a slow one may outlive its client's timeout)
        # Body bytes, for benchmarks: requests' as declared, replies' as produced (before the size limit).
        self.request_bytes = self.reply_bytes = 0
        self.largest_request = self.largest_reply = 0  # since start, or since traffic(reset_largest=True)
        self._count_lock = threading.Lock()
        super().__init__(address, GatewayHandler)

    def run(self, grant, commands, transaction, seen):
        """The replies of the commands (inside MULTI/EXEC for a transaction), and the sync token to answer with.

        With a replica, a request that only reads goes to the replica, unless the
        client's sync token (`seen`) is ahead of what the replica has applied:
        then the primary answers. The token is a replication offset: the
        primary's after a write, the replica's after a read it served.
        """
        self.check_limits(commands)
        batch = [[b"MULTI"], *commands, [b"EXEC"]] if transaction else commands
        if grant.replica is None:
            return self.unwrapped(grant.primary.run(batch), transaction), next(self._sync_tokens)
        if self.commands.reads_only(commands):
            role, *replies = grant.replica.run([[b"ROLE"], *batch])
            applied = role[4] if isinstance(role, list) else -1  # ROLE on a replica: slave, host, port, state, offset
            if applied >= 0 and applied >= (seen or 0):
                return self.unwrapped(replies, transaction), applied
        *replies, role = grant.primary.run([*batch, [b"ROLE"]])
        return self.unwrapped(replies, transaction), role[1]  # ROLE on a primary: master, offset, replicas

    def check_limits(self, commands):
        """Upstash's key size limit and the optional rate limit, before anything runs."""
        limit = self.max_key_bytes
        if limit:
            for args in commands:
                # The hot path: no argument at all is long enough to be a key over the limit.
                if max(map(len, args)) > limit:
                    for key in self.commands.keys(args, self.keys_from_valkey):
                        if len(key) > limit:
                            raise CommandError(key_size_error(limit, len(key)))
        if self.rate_limit and not self.rate_limit.admit(len(commands)):
            raise CommandError(f"ERR max requests limit exceeded. Limit: {self.rate_limit.per_second} per second")

    def keys_from_valkey(self, args):
        (keys,) = self.grants[0].primary.run([[b"COMMAND", b"GETKEYS", *args]])
        return [] if isinstance(keys, ResponseError) else keys  # no keys, or arguments Valkey will refuse anyway

    @staticmethod
    def unwrapped(replies, transaction):
        """A transaction's EXEC reply; its first error if it did not run."""
        if not transaction:
            return replies
        queued, executed = replies[1:-1], replies[-1]
        errors = [reply for reply in queued if isinstance(reply, ResponseError)]
        if errors or isinstance(executed, ResponseError):
            raise CommandError(error_text(errors[0] if errors else executed))
        return executed

    def process_request(self, request, client_address):
        if not self._connection_slots.acquire(blocking=False):
            # Refused at once, with Upstash's error text: waiting for a slot would stall the accept loop.
            with suppress(OSError):
                error = json_body({"error": "ERR max concurrent connections exceeded"})
                request.sendall(http_response(503, error, close=True))
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_slots.release()

    def close_valkey(self):
        for grant in self.grants:
            grant.close()

    @contextmanager
    def serving(self):
        with self._count_lock:
            self.requests_served += 1
            self.in_flight += 1
        try:
            yield
        finally:
            with self._count_lock:
                self.in_flight -= 1

    def count_request(self, size):
        with self._count_lock:
            self.request_bytes += size
            self.largest_request = max(self.largest_request, size)

    def count_reply(self, size):
        with self._count_lock:
            self.reply_bytes += size
            self.largest_reply = max(self.largest_reply, size)

    def traffic(self, reset_largest=False):
        """The counters at one instant; reset_largest starts the largest request and reply afresh."""
        with self._count_lock:
            counters = {
                "served": self.requests_served,
                "request_bytes": self.request_bytes,
                "reply_bytes": self.reply_bytes,
                "largest_request": self.largest_request,
                "largest_reply": self.largest_reply,
            }
            if reset_largest:
                self.largest_request = self.largest_reply = 0
        return counters

    def wait_idle(self, timeout=10.0):
        """Until no request is being answered (tests: a timed-out request still runs later)."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
