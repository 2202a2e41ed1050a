"""The Upstash client: one per connection, built once, with timeouts and error mapping.

Everything the app sends to a store goes through `StoreClient`, which wraps
the upstash-redis SDK's own HTTP transport (`upstash_redis.http`) with two
changes the SDK does not offer:

- a timeout on every request (the SDK's httpx client has none, so a dead
  store would hang a worker forever) and a bounded retry of connection
  failures only: a request that timed out is not sent again, so the operator
  waits at most one timeout; and for a moment after a timeout, requests
  fail at once rather than pile up behind a store that is not answering;
- our own decoding of the base64 replies. The SDK decodes every string as
  UTF-8, so one stored value that is not UTF-8 makes a whole pipeline raise.
  Here every string comes back as `bytes`; callers decode what they know is
  text and keep the bytes of what may not be (message elements).

Failures become one of three exceptions that views turn into a clear page:
`StoreUnavailable` (503), `StoreAuthError` and `StoreCommandError` (502).
"""

import json
import logging
import threading
import time
from binascii import a2b_base64
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from upstash_redis.errors import UpstashError
from upstash_redis.http import SyncHttpClient, make_headers

log = logging.getLogger(__name__)


class StoreError(Exception):
    """Something went wrong talking to the store; the message is for the operator."""

    http_status = 503
    title = "The store is unavailable"


class StoreUnavailable(StoreError):
    """The store could not be reached, or did not answer in time."""


class StoreAuthError(StoreError):
    http_status = 502
    title = "The store refused the credentials"


class StoreCommandError(StoreError):
    http_status = 502
    title = "The store refused a command"


@dataclass(frozen=True)
class StoreConnection:
    """Where a store is and how the app reads it (one per configured connection)."""

    name: str
    url: str
    token: str
    slug: str = "env"  # "env" for the environment's connection, else the saved connection's id
    key_pattern: str = "*"
    display_prefix: str = ""
    list_order: str = "auto"  # auto | newest-first | oldest-first
    summary_namespace: str = "memoryadmin:summary:"
    timeout: float = 5.0
    retries: int = 2
    page_size: int = 50
    scan_budget: int = 10_000
    default_ttl: int = 7 * 86400
    is_production: bool = False

    @property
    def host(self):
        return urlsplit(self.url).netloc or self.url

    def client_fingerprint(self):
        """What the client is built from: a change rebuilds it."""
        return (self.url, self.token, self.timeout, self.retries)


def decode_reply(raw):
    """A base64-encoded REST result -> the same structure with bytes for strings.

    binascii directly: a search decodes every message of every session, and
    base64.b64decode's argument checks cost four times the decoding itself.
    """
    if type(raw) is str:
        return b"OK" if raw == "OK" else a2b_base64(raw)
    if type(raw) is list:
        return [a2b_base64(item) if type(item) is str and item != "OK" else decode_reply(item) for item in raw]
    return raw  # int or None


def _raise_for_status(response):
    """httpx response hook: turn HTTP failures into our exceptions before the SDK parses."""
    if response.status_code == 401:
        raise StoreAuthError("The store rejected the REST token (HTTP 401). Check the token of this connection.")
    if response.status_code >= 500 or response.status_code in (404, 405):
        response.read()
        raise StoreUnavailable(f"The store answered HTTP {response.status_code}: {response.text[:200] or 'no details'}")


class QuietAfterTimeout:
    """A small circuit breaker: after the store timed out, fail at once instead of queueing.

    With every worker thread waiting on a store that does not answer, new
    requests would wait in the server's queue, then their own timeout. So for
    a moment after a timeout, requests fail at once, except one at a time,
    which is sent to find out whether the store is back; any answer closes
    the breaker. A request that was sent before the latest answer and times
    out later (it was stuck while the store recovered) does not open it again.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._quiet_until = 0.0
        self._probing = False
        self._last_answer_sent_at = 0.0

    def admit(self):
        """(send it?, is it the probe?) for a request about to be sent."""
        with self._lock:
            if time.monotonic() >= self._quiet_until:
                return True, False
            if self._probing:
                return False, False
            self._probing = True
            return True, True

    def settle(self, sent_at, answered, probe):
        with self._lock:
            if probe:
                self._probing = False
            if answered:
                self._last_answer_sent_at = max(self._last_answer_sent_at, sent_at)
                self._quiet_until = 0.0
            elif sent_at >= self._last_answer_sent_at:
                self._quiet_until = time.monotonic() + self.seconds


class StoreClient:
    """A thread-safe client for one store (the httpx client keeps connections alive)."""

    # Pauses before the retries of a request that could not connect.
    RETRY_PAUSES = (0.1, 0.3, 0.9)
    # After a timeout, requests fail at once for this long (seconds, at most the
    # timeout), but for one at a time that checks whether the store is back.
    QUIET_AFTER_TIMEOUT = 2.0

    def __init__(self, url, token, timeout=5.0, retries=2):
        self.url = url.rstrip("/")
        self.host = urlsplit(self.url).netloc or self.url
        self.timeout = timeout
        self.retries = max(0, retries)
        self._headers = make_headers(token, "base64", allow_telemetry=False)
        self._breaker = QuietAfterTimeout(min(self.QUIET_AFTER_TIMEOUT, timeout))
        # encoding=None: the SDK hands back the base64 strings and we decode them.
        self._http = SyncHttpClient(encoding=None, retries=0, retry_interval=0)
        self._http._client.close()
        self._http._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            event_hooks={"response": [_raise_for_status]},
        )

    def call(self, *command):
        """Run one command; strings in the reply are bytes."""
        return decode_reply(self._send(self.url, list(command), from_pipeline=False))

    def pipeline(self, commands, transaction=False):
        """Run commands in one round trip (atomically with transaction=True)."""
        if not commands:
            return []
        endpoint = f"{self.url}/multi-exec" if transaction else f"{self.url}/pipeline"
        return [decode_reply(reply) for reply in self._send(endpoint, [list(c) for c in commands], True)]

    def close(self):
        self._http.close()

    def _send(self, endpoint, command, from_pipeline):
        send, probe = self._breaker.admit()
        if not send:
            raise StoreUnavailable(
                f"The store at {self.host} did not answer within {self.timeout:g} s a moment ago. "
                "It may be overloaded or unreachable; try again in a few seconds."
            )
        sent_at = time.monotonic()
        answered = False
        try:
            reply = self._send_with_retries(endpoint, command, from_pipeline)
            answered = True
            return reply
        except StoreError as error:
            # Only silence counts against the store; a refusal or an error reply is an answer.
            answered = not isinstance(error.__cause__, httpx.TimeoutException)
            raise
        finally:
            self._breaker.settle(sent_at, answered, probe)

    def _send_with_retries(self, endpoint, command, from_pipeline):
        for attempt in range(self.retries + 1):
            try:
                return self._http.execute(endpoint, self._headers, command, from_pipeline=from_pipeline)
            except StoreError:
                raise
            except UpstashError as error:
                raise StoreCommandError(f"The store refused a command: {error}") from error
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as error:
                # Nothing reached the store (or a kept-alive connection had been
                # closed under us): safe to send again.
                if attempt == self.retries:
                    raise StoreUnavailable(
                        f"Could not reach the store at {self.host} ({type(error).__name__}). "
                        "Check that it is running and the URL is right, then try again."
                    ) from error
                time.sleep(self.RETRY_PAUSES[min(attempt, len(self.RETRY_PAUSES) - 1)])
            except httpx.TimeoutException as error:
                raise StoreUnavailable(
                    f"The store at {self.host} did not answer within {self.timeout:g} s. "
                    "It may be overloaded or unreachable; try again in a moment."
                ) from error
            except (httpx.HTTPError, json.JSONDecodeError, ValueError) as error:
                raise StoreUnavailable(f"Unexpected reply from the store at {self.host}: {error}") from error


_clients = {}
_clients_lock = threading.Lock()


def get_client(connection):
    """The one client for this connection, rebuilt when its settings change."""
    fingerprint = connection.client_fingerprint()
    entry = _clients.get(connection.slug)
    if entry and entry[0] == fingerprint:
        return entry[1]
    with _clients_lock:
        entry = _clients.get(connection.slug)
        if entry and entry[0] == fingerprint:
            return entry[1]
        # A replaced client is not closed here: another thread may still be
        # using it; its sockets go when it is collected.
        client = StoreClient(connection.url, connection.token, connection.timeout, connection.retries)
        _clients[connection.slug] = (fingerprint, client)
    return client
