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
a request over `max_request_bytes` gets Upstash's `ERR max request size
exceeded`; a client that stalls is dropped after `read_timeout`; connections
beyond `max_connections` get Upstash's `ERR max concurrent connections
exceeded`; and commands Upstash refuses over REST (blocking ones, connection
state, server administration) are refused here too.

Speed matters because benchmarks run through it: replies go out in one write
with TCP_NODELAY (no Nagle/delayed-ACK stall), a pipeline is handed to Valkey
as a pipeline (all commands written, then all replies read), and the listen
backlog is large so concurrent clients are not refused.
"""

import base64
import hmac
import json
import logging
import socket
import threading
import time
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import valkey
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import ResponseError
from valkey.exceptions import TimeoutError as ValkeyTimeoutError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 10_000_000  # Upstash's max request size on Free and Pay-as-you-go ("10MB")
READ_TIMEOUT = 10.0  # seconds a client may stay silent, mid-request or idle between requests
MAX_CONNECTIONS = 256  # connections served at once, each by a thread of its own

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

    valkey-py strips a leading `ERR ` from generic errors; put it back so the
    text reads like Redis's own (`ERR unknown command ...`).
    """
    text = str(error)
    first = text.split(" ", 1)[0]
    if first.isupper() and first.isalpha() and len(first) >= 3:
        return text
    return f"ERR {text}"


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


class ValkeyPipe:
    """Sends batches of commands to Valkey over pooled connections, pipelined."""

    def __init__(self, **connection):
        # connection: host, port and the credentials of Valkey's gateway user.
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
        self.reply(200, {"result": "memoryadmin local store: POST Upstash REST commands here"})

    def do_POST(self):
        with self.server.serving():
            self.answer_post()

    def answer_post(self):
        try:
            body = self.read_body()
        except Refusal as refusal:
            self.close_connection = True
            self.reply(refusal.status, {"error": refusal.error}, close=True)
            return
        gateway = self.server
        if gateway.latency_ms:
            time.sleep(gateway.latency_ms / 1000)
        base64_encoding = (self.headers.get("Upstash-Encoding") or "").lower() == "base64"
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep to parse
            self.reply(400, {"error": "ERR failed to parse the request body as JSON"})
            return
        try:
            if path == "":
                status, answer = self.single(payload, base64_encoding)
            elif path in ("/pipeline", "/multi-exec"):
                status, answer = self.batch(payload, base64_encoding, transaction=path == "/multi-exec")
            else:
                status, answer = 404, {"error": f"ERR unknown endpoint {path}"}
        except CommandError as error:
            status, answer = 400, {"error": str(error)}
        except RecursionError:  # a script's reply nested deeper than Python parses
            status, answer = 400, {"error": "ERR the reply is nested too deeply for the local store"}
        except (ValkeyConnectionError, ValkeyTimeoutError, OSError) as error:
            status, answer = 500, {"error": f"ERR the local Valkey is not answering: {error}"}
        self.reply(status, answer)

    def read_body(self):
        """The body, once the headers show that it is worth reading: the token and the size come first."""
        expected = f"Bearer {self.server.token}".encode()
        given = (self.headers.get("Authorization") or "").encode()
        if not hmac.compare_digest(given, expected):
            raise Refusal(401, "Unauthorized")
        length = self.headers.get("Content-Length")
        if length is None or "Transfer-Encoding" in self.headers:
            raise Refusal(411, "ERR a request needs a Content-Length header")
        if not (length.isascii() and length.isdigit()):
            raise Refusal(400, f"ERR invalid Content-Length header: {length[:40]!r}")
        if int(length) > self.server.max_request_bytes:
            raise Refusal(400, "ERR max request size exceeded")
        return self.rfile.read(int(length))

    def single(self, payload, base64_encoding):
        (reply,) = self.server.valkey.run([command_args(payload)])
        if isinstance(reply, ResponseError):
            return 400, {"error": error_text(reply)}
        return 200, {"result": encode_result(reply, base64_encoding)}

    def batch(self, payload, base64_encoding, transaction):
        if not isinstance(payload, list) or not payload:
            raise CommandError("ERR a pipeline must be a non-empty JSON array of commands")
        commands = [command_args(command) for command in payload]
        if transaction:
            replies = self.server.valkey.run([[b"MULTI"], *commands, [b"EXEC"]])
            queued, executed = replies[1:-1], replies[-1]
            errors = [reply for reply in queued if isinstance(reply, ResponseError)]
            if errors or isinstance(executed, ResponseError):
                raise CommandError(error_text(errors[0] if errors else executed))
            replies = executed
        else:
            replies = self.server.valkey.run(commands)
        answers = []
        for reply in replies:
            if isinstance(reply, ResponseError):
                answers.append({"error": error_text(reply)})
            else:
                answers.append({"result": encode_result(reply, base64_encoding)})
        return 200, answers

    def reply(self, status, answer, close=False):
        data = response(status, answer, close)
        self.wfile.write(data)
        self.log_request(status, len(data))


def response(status, answer, close=False):
    """A whole HTTP response in one piece: it goes out in one write, headers and body in the same segment."""
    body = json.dumps(answer, separators=(",", ":")).encode()
    reason = BaseHTTPRequestHandler.responses.get(status, ("",))[0]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return f"{head}\r\n".encode() + body


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # http.server's default of 5 refuses connections under load

    def __init__(
        self,
        address,
        token,
        valkey_pipe,
        latency_ms=0,
        max_request_bytes=MAX_REQUEST_BYTES,
        read_timeout=READ_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
    ):
        self.token = token
        self.valkey = valkey_pipe
        self.latency_ms = latency_ms
        self.max_request_bytes = max_request_bytes
        self.read_timeout = read_timeout
        self._connection_slots = threading.BoundedSemaphore(max_connections)
        self.requests_served = 0  # round trips, for tests and benchmarks
        self.in_flight = 0  # requests being answered (a slow one may outlive its client's timeout)
        self._count_lock = threading.Lock()
        super().__init__(address, GatewayHandler)

    def process_request(self, request, client_address):
        if not self._connection_slots.acquire(blocking=False):
            # Refused at once, with Upstash's error text: waiting for a slot would stall the accept loop.
            with suppress(OSError):
                request.sendall(response(503, {"error": "ERR max concurrent connections exceeded"}, close=True))
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_slots.release()

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

    def wait_idle(self, timeout=10.0):
        """Until no request is being answered (tests: a timed-out request still runs later)."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
