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
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import valkey
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import ResponseError
from valkey.exceptions import TimeoutError as ValkeyTimeoutError

log = logging.getLogger(__name__)

# Commands that would change the state of a pooled connection shared by
# other requests, or block it forever. Upstash refuses them over REST too.
REFUSED_COMMANDS = {
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SELECT",
    "QUIT",
    "RESET",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "MONITOR",
    "SYNC",
    "PSYNC",
    "CLIENT",
    "HELLO",
    "AUTH",
}


class CommandError(Exception):
    """A request the gateway refuses before it reaches Valkey."""


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
    if args[0].decode("utf-8", errors="replace").upper() in REFUSED_COMMANDS:
        raise CommandError(f"ERR command is not available: {args[0].decode('utf-8', 'replace')}")
    return args


class ValkeyPipe:
    """Sends batches of commands to Valkey over pooled connections, pipelined."""

    def __init__(self, host, port):
        self.pool = valkey.ConnectionPool(host=host, port=port, socket_keepalive=True)

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
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        gateway = self.server
        if gateway.latency_ms:
            time.sleep(gateway.latency_ms / 1000)
        expected = f"Bearer {gateway.token}".encode()
        given = (self.headers.get("Authorization") or "").encode()
        if not hmac.compare_digest(given, expected):
            self.reply(401, {"error": "Unauthorized"})
            return
        base64_encoding = (self.headers.get("Upstash-Encoding") or "").lower() == "base64"
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            payload = json.loads(body or b"null")
        except ValueError:
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
        except (ValkeyConnectionError, ValkeyTimeoutError, OSError) as error:
            status, answer = 500, {"error": f"ERR the local Valkey is not answering: {error}"}
        self.reply(status, answer)

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

    def reply(self, status, answer):
        body = json.dumps(answer, separators=(",", ":")).encode()
        reason = self.responses.get(status, ("",))[0]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        # One write: headers and body in the same segment.
        self.wfile.write(head + body)
        self.log_request(status, len(body))


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # http.server's default of 5 refuses connections under load

    def __init__(self, address, token, valkey_pipe, latency_ms=0):
        self.token = token
        self.valkey = valkey_pipe
        self.latency_ms = latency_ms
        self.requests_served = 0  # round trips, for tests and benchmarks
        self.in_flight = 0  # requests being answered (a slow one may outlive its client's timeout)
        self._count_lock = threading.Lock()
        super().__init__(address, GatewayHandler)

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
