"""A throwaway HTTP server on 127.0.0.1 that answers whatever a test tells it to.

For the replies the local store never gives: the ones real Upstash (or a proxy
in front of it) gives when it refuses, limits or breaks. The app's real client
talks to it over real HTTP.
"""

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def b64(text):
    """A string as Upstash sends it with `Upstash-Encoding: base64`."""
    return base64.b64encode(text.encode()).decode()


@dataclass
class Reply:
    status: int = 200
    body: object = None  # bytes go as they are, anything else as JSON
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    cut_after: int | None = None  # send only this many bytes of the body, then hang up

    def encoded_body(self):
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


@dataclass
class Seen:
    path: str
    headers: object  # an email.message.Message: names are case-insensitive
    body: object


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(self.path, self.headers, json.loads(self.rfile.read(length) or b"null"))
        server = self.server
        with server.lock:
            server.seen.append(seen)
            answer = server.replies.get(self.path, server.replies.get("*"))
            reply = answer(seen) if callable(answer) else answer
        body = reply.encoded_body()
        head = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}"]
        head += [f"Content-Type: {reply.content_type}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in reply.headers.items()]
        # One write (a separate one for the body would stall on Nagle and delayed ACKs).
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body[: reply.cut_after])
        if reply.cut_after is not None:
            self.close_connection = True


class FakeStore(ThreadingHTTPServer):
    """`replies` maps a path ("/", "/pipeline", "/multi-exec", or "*") to a Reply or a function of the request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.replies = {"*": Reply(body={"result": b64("PONG")})}
        self.seen = []
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


def pong_after(seconds):
    """A reply to PING that takes `seconds` to come: a request still in flight meanwhile."""

    def reply(seen):
        time.sleep(seconds)
        return Reply(200, {"result": b64("PONG")})

    return reply
