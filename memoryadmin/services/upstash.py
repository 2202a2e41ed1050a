"""The Upstash client: one per connection, built once, with timeouts and error mapping.

Everything the app sends to a store goes through `StoreClient`, and every
request goes through the upstash-redis SDK's own transport,
`upstash_redis.http.SyncHttpClient.execute`: it formats the command, POSTs it
with the SDK's headers (`make_headers`), parses the JSON reply and turns each
`{"result"}` into its result and each `{"error"}` into an UpstashError. Around
it, StoreClient adds what the SDK does not do:

- a timeout on every request: the SDK's httpx client has none (a dead store
  would hang a worker forever), so it is given ours. The SDK retries any
  failure, including a timeout or a reply cut off after the store ran the
  command; it is given retries=0 and our loop retries connection failures
  only, so the operator waits at most one timeout and a write never runs
  twice. For a moment after a timeout, requests fail at once rather than pile
  up behind a store that is not answering;
- every reply shape as one of the StoreErrors below, with the store's own
  words and what to do. An httpx response hook on our client reads each body
  and refuses any status but 200 before the SDK parses it (upstash-redis 1.8
  reads a reply whatever its status, and crashes with an AttributeError on a
  pipeline refused as a whole, which Upstash answers with one top-level
  `{"error"}` and HTTP 400); when the SDK cannot take a 200 reply (not JSON,
  the wrong shape, a command refused), the body is looked at again to say why;
- our own decoding of the base64 replies (encoding=None: the SDK hands back
  the base64 strings). The SDK decodes every string as UTF-8, so one stored
  value that is not UTF-8 would make a whole pipeline raise. Here every string
  comes back as `bytes`; callers decode what they know is text and keep the
  bytes of what may not be (message elements);
- read-your-writes on global databases: each client sends the last
  `Upstash-Sync-Token` a reply carried, in headers built per request (the
  SDK's client keeps it in one shared, mutated headers dict), so a replica
  serving a read waits until it has this client's earlier writes. The two
  clients of a connection (below) share it: a read with the read-only token
  waits for the writes made with the full one;
- counting commands (billing is per command: a pipeline of N is N) and round
  trips, per client and per unit of work (`count_commands`): see "The bill" below.

Each Upstash database has a full token and a read-only token. A connection may
hold both: then every read goes with the read-only token and only writes with
the full one, so that no bug of ours can write where the operator only reads.
Callers say which they do: `get_client(connection)` reads, `get_writer(connection)`
writes; scripts go through `scripts`, which chooses for them.

The bill. Upstash bills every command: a pipeline of N is N, and a script is
its EVAL (or EVALSHA) plus every redis.call() it makes (`scripts` counts
those). Every request the store answered counts its commands, refused ones
too (they may have run). `count_commands()` counts one unit of work (a
request, a job step) across any stores; `client.totals()` what a client has
had answered. On a Global database Upstash bills each write 1 + its read
regions; these counts are of commands sent, once each.
"""

import contextvars
import json
import logging
import re
import threading
import time
from binascii import a2b_base64
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from upstash_redis.errors import UpstashError
from upstash_redis.http import SyncHttpClient, make_headers

log = logging.getLogger(__name__)


class StoreError(Exception):
    """Something went wrong talking to the store; the message is for the operator.

    `retry`: whether trying again can help. `check_connection`: whether the
    connection's URL or token may be at fault.
    """

    http_status = 503
    title = "The store is unavailable"
    retry = True
    check_connection = True


class StoreUnavailable(StoreError):
    """The store could not be reached, did not answer in time, or answered with a server error."""


class StoreAuthError(StoreError):
    """HTTP 401, WRONGPASS, NOAUTH: the token is wrong or missing."""

    http_status = 502
    title = "The store refused the credentials"


class StorePermissionError(StoreError):
    """NOPERM: the token is valid but may not run this command (a read-only token asked to write, say)."""

    http_status = 502
    title = "The store refused this token a command"
    retry = False


class StoreCommandError(StoreError):
    """The store refused a command (WRONGTYPE, a syntax error...): its own text, as it said it."""

    http_status = 502
    title = "The store refused a command"
    check_connection = False


class StoreLimitError(StoreError):
    """The request, or its reply, was over the store's request-size limit: sending it again cannot help."""

    http_status = 502
    title = "The request was too big for the store"
    retry = False
    check_connection = False


class StorePlanLimitError(StoreError):
    """A limit of the store's plan: requests per day or month, concurrent connections, data size; or HTTP 429."""

    http_status = 503
    title = "The store's plan limit was reached"
    check_connection = False


class StoreReplyError(StoreError):
    """A reply that could not be read: not JSON, cut off, or not the shape of an Upstash reply."""

    http_status = 502
    title = "The store's reply could not be read"


# What each limit means for the operator; the store's own text follows. Matched in lower case.
REQUEST_TOO_BIG = (
    "This request, or its reply, was over the store's size limit (10 MB on Free and Pay-as-you-go). "
    "The app keeps every read under the connection's request limit setting (10 MB unless raised): if "
    "this store's limit is lower, lower the setting. What still works: other pages and sessions, and clearing a "
    "session or changing its TTL, which do not read its messages."
)
PLAN_LIMITS = (
    (
        "max requests limit exceeded",
        "The store's plan allows no more requests for now (its request limit): "
        "try again later or raise the plan in the Upstash console.",
    ),
    (
        "max daily request limit exceeded",
        "The store's plan allows no more requests today (its daily request limit): "
        "try again later or raise the plan in the Upstash console.",
    ),
    (
        "max concurrent connections exceeded",
        "Too many connections to the store at once (its plan's limit): "
        "try again in a moment; if it keeps happening, raise the plan.",
    ),
    (
        "db capacity quota exceeded",
        "The store is full (its plan's data size limit). Reading and clearing sessions still work; "
        "other writes (TTL changes, summaries) are refused until data is removed or the plan is raised.",
    ),
)
RATE_LIMITED = "The store, or a proxy in front of it, is limiting requests: try again later or raise the plan."


def refusal(status, text, host, from_store=True, token_name="REST token"):
    """The StoreError a refusal means: by the store's text first, else by the HTTP status.

    `from_store`: `text` is an Upstash `{"error": ...}`; otherwise it is what a
    page said (a proxy's, or not a store's at all). `token_name`: which of the
    connection's tokens was sent.
    """
    lowered = text.lower()
    answered = f"The store at {host} answered HTTP {status}" + (f": “{text}”." if text else ".")
    if "max request size exceeded" in lowered or status == 413:
        return StoreLimitError(f"{REQUEST_TOO_BIG} {answered}")
    for marker, advice in PLAN_LIMITS:
        if marker in lowered:
            return StorePlanLimitError(f"{advice} {answered}")
    if status == 429:
        return StorePlanLimitError(f"{RATE_LIMITED} {answered}")
    # Upstash answers "NOPERM this user has no permissions to run the 'del' command ..."; Redis and Valkey
    # say the same words, which some clients (and the local store) pass on without the NOPERM code.
    if lowered.startswith("noperm") or "no permissions to run" in lowered:
        return StorePermissionError(
            f"The store refused this connection's token a command: “{text}”. A read-only token may not write: "
            "check that the REST token field holds the database's full token and the read-only token field "
            "its read-only one."
        )
    if status == 401 or lowered.startswith(("wrongpass", "noauth")):
        return StoreAuthError(f"The store rejected the {token_name}. Check the token of this connection. {answered}")
    if status >= 500 or status in (404, 405):
        return StoreUnavailable(
            f"{answered} Try again in a moment; if it keeps happening, check the store's status in the Upstash console."
        )
    if from_store:
        return StoreCommandError(f"The store refused a command: {text}")
    what = f"HTTP {status} with “{text}”" if text else f"an empty HTTP {status} reply"
    return unreadable(host, f"{what} instead of a store's reply")


def unreadable(host, why):
    return StoreReplyError(
        f"The reply of the store at {host} could not be read: {why}. A proxy between the app and the store, "
        "or a URL that is not an Upstash REST URL, may be at fault: try again, and if it keeps happening, "
        "check this connection's URL."
    )


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def page_text(content):
    """What a reply that is not JSON says, in a few words: an HTML page's title, else its text."""
    text = content[:4000].decode("utf-8", errors="replace")
    title = _TITLE.search(text)
    words = " ".join(_TAG.sub(" ", title.group(1) if title else text).split())
    return words if len(words) <= 200 else words[:199] + "…"


@dataclass
class CommandCount:
    """Commands and round trips the store answered (Upstash bills per command: a pipeline of N is N)."""

    commands: int = 0
    round_trips: int = 0

    def copy(self):
        """The count as it stands (another thread may be adding to this one)."""
        with _counting:
            return CommandCount(self.commands, self.round_trips)


_open_counts = contextvars.ContextVar("open_command_counts", default=())
# A thread started with a copy of this one's context (contextvars.copy_context().run) adds to the same counts.
_counting = threading.Lock()


@contextmanager
def count_commands():
    """Count the commands sent to any store while open, by this unit of work (a request, a job).

    A context variable, so each thread (each asyncio task) counts its own
    work only, unless it was started in a copy of another's context (then it
    adds to that one's counts); counts nest (an outer one sees what an inner
    one counts).
    """
    count = CommandCount()
    token = _open_counts.set((*_open_counts.get(), count))
    try:
        yield count
    finally:
        _open_counts.reset(token)


# Upstash's request (and reply) size limit on Free and Pay-as-you-go, kept a little under its 10 MiB.
MAX_REQUEST_BYTES = 10_000_000


@dataclass(frozen=True)
class StoreConnection:
    """Where a store is and how the app reads it (one per configured connection)."""

    name: str
    url: str
    token: str  # the full token: writes
    read_only_token: str = ""  # reads, when set (else the full token reads too)
    slug: str = "env"  # "env" for the environment's connection, else the saved connection's id
    key_pattern: str = "*"
    display_prefix: str = ""
    list_order: str = "auto"  # auto | newest-first | oldest-first
    summary_namespace: str = "memoryadmin:summary:"
    timeout: float = 5.0
    retries: int = 2
    page_size: int = 50
    scan_budget: int = 10_000
    max_request_bytes: int = MAX_REQUEST_BYTES  # a Pro plan raises it
    default_ttl: int = 7 * 86400
    is_production: bool = False

    @property
    def host(self):
        return urlsplit(self.url).netloc or self.url

    def client_fingerprint(self):
        """What the clients are built from: a change rebuilds them."""
        return (self.url, self.token, self.read_only_token, self.timeout, self.retries)


def decode_reply(raw):
    """A base64-encoded REST result -> the same structure with bytes for strings.

    binascii directly: a search decodes every message of every session, and
    base64.b64decode's argument checks cost four times the decoding itself.
    Raises ValueError for what is no REST result (bad base64, a JSON object).
    """
    if type(raw) is str:
        return b"OK" if raw == "OK" else a2b_base64(raw)
    if type(raw) is list:
        return [a2b_base64(item) if type(item) is str and item != "OK" else decode_reply(item) for item in raw]
    if type(raw) is dict:
        raise ValueError("a JSON object in a result")
    return raw  # int or None


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
        """`answered`: True, False (the store was silent) or None (nothing was sent: it tells nothing)."""
        with self._lock:
            if probe:
                self._probing = False
            if answered:
                self._last_answer_sent_at = max(self._last_answer_sent_at, sent_at)
                self._quiet_until = 0.0
            elif answered is False and sent_at >= self._last_answer_sent_at:
                self._quiet_until = time.monotonic() + self.seconds


# A sync token this unit of work's reads must carry, whatever this process received last: the last
# write of a job that ran elsewhere (another worker process, another host), for a read that must see it.
_reading_after = contextvars.ContextVar("reading_after", default="")


@contextmanager
def reading_after(sync_token):
    """While open, this thread's (and its context copies') requests carry `sync_token`: read-your-writes
    for writes another process made (Global databases read from replicas)."""
    reset = _reading_after.set(sync_token or "")
    try:
        yield
    finally:
        _reading_after.reset(reset)


def last_sync_token(connection):
    """The last sync token this process received from the connection's store (after its last write, say)."""
    return connection_clients(connection).writer.sync_token


class SyncToken:
    """The last `Upstash-Sync-Token` a reply carried, for the clients that share it.

    Threads share it without a lock: reading or replacing one attribute is
    atomic, and each request builds its own headers (the SDK's shared, mutated
    headers dict is not thread-safe). The token stands for the database's
    replication state, whichever token (user) the reply answered.
    """

    def __init__(self):
        self.value = ""


# The reply to the request this thread (or task) has in flight, once its headers
# have arrived. Set by StoreClient's response hook, read around the SDK's
# execute(), which keeps the response to itself: that the store answered (its
# commands count), and the body to quote when the SDK could not read it.
_reply_in_hand = contextvars.ContextVar("store_reply_in_hand", default=None)


class StoreClient:
    """A thread-safe client for one store (the httpx client keeps connections alive)."""

    # Pauses before the retries of a request that could not connect.
    RETRY_PAUSES = (0.1, 0.3, 0.9)
    # After a timeout, requests fail at once for this long (seconds, at most the
    # timeout), but for one at a time that checks whether the store is back.
    QUIET_AFTER_TIMEOUT = 2.0

    def __init__(self, url, token, timeout=5.0, retries=2, sync=None, token_name="REST token"):
        self.url = url.rstrip("/")
        self.token_name = token_name  # which of the connection's tokens, for error messages
        self.host = urlsplit(self.url).netloc or self.url
        self.timeout = timeout
        self.retries = max(0, retries)
        self._headers = make_headers(token, "base64", allow_telemetry=False)
        self._breaker = QuietAfterTimeout(min(self.QUIET_AFTER_TIMEOUT, timeout))
        # encoding=None: the SDK hands back the base64 strings and we decode them.
        # retries=0: our loop retries, and only what never reached the store.
        self._sdk = SyncHttpClient(encoding=None, retries=0, retry_interval=0)
        self._sdk._client.close()
        self._sdk._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            event_hooks={"response": [self._take_reply]},
        )
        # The last sync token a reply carried, shared with the other client of the connection, if any.
        self._sync = sync if sync is not None else SyncToken()
        self._totals = CommandCount()
        self._totals_lock = threading.Lock()

    def call(self, *command):
        """Run one command; strings in the reply are bytes."""
        result = self._request(self.url, list(command), 1, from_pipeline=False)
        try:
            return decode_reply(result)
        except ValueError as error:
            raise unreadable(self.host, f"a result that is not what the store sends ({error})") from None

    def pipeline(self, commands, transaction=False):
        """Run commands in one round trip (atomically with transaction=True)."""
        if not commands:
            return []
        endpoint = f"{self.url}/multi-exec" if transaction else f"{self.url}/pipeline"
        results = self._request(endpoint, [list(command) for command in commands], len(commands), from_pipeline=True)
        if len(results) != len(commands):
            raise unreadable(self.host, f"{len(results)} replies for {len(commands)} commands")
        try:
            return [decode_reply(result) for result in results]
        except ValueError as error:
            raise unreadable(self.host, f"a result that is not what the store sends ({error})") from None

    def count_inner_commands(self, commands):
        """Count the commands a script ran inside a request already counted (scripts.py works them out)."""
        self._count(commands, round_trips=0)

    def totals(self):
        """Commands and round trips this client has had answered so far."""
        with self._totals_lock:
            return CommandCount(self._totals.commands, self._totals.round_trips)

    def close(self):
        self._sdk.close()

    def _request(self, endpoint, payload, commands, from_pipeline):
        """The SDK's result(s) for `payload`, or raise the StoreError the failure means."""
        send, probe = self._breaker.admit()
        if not send:
            raise StoreUnavailable(
                f"The store at {self.host} did not answer within {self.timeout:g} s a moment ago. "
                "It may be overloaded or unreachable; try again in a few seconds."
            )
        sent_at = time.monotonic()
        answered = None  # until _execute returns or raises a StoreError: a payload that would not encode is never sent
        no_reply = _reply_in_hand.set(None)
        try:
            result = self._execute(endpoint, payload, commands, from_pipeline)
            answered = True
            return result
        except StoreError as error:
            # Only silence counts against the store; a refusal or a garbled reply is an answer.
            answered = not isinstance(error.__cause__, httpx.TimeoutException)
            raise
        finally:
            if _reply_in_hand.get() is not None:
                # The store has answered (even if the body did not arrive): the commands count, as they may have run.
                self._count(commands)
            _reply_in_hand.reset(no_reply)
            self._breaker.settle(sent_at, answered, probe)

    @property
    def sync_token(self):
        return self._sync.value

    def _execute(self, endpoint, payload, commands, from_pipeline):
        """SyncHttpClient.execute, retrying only what never reached the store; its failures mapped to ours."""
        token = _reading_after.get() or self._sync.value
        headers = {**self._headers, "Upstash-Sync-Token": token} if token else self._headers
        for attempt in range(self.retries + 1):
            try:
                return self._sdk.execute(endpoint, headers, payload, from_pipeline=from_pipeline)
            except StoreError:
                # From our response hook: with retries=0, execute() re-raises what it caught, unchanged.
                raise
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as error:
                # Nothing reached the store (or a kept-alive connection had been
                # closed under us): safe to send again. (A reply cut off is raised
                # by the response hook, as a StoreError.)
                if attempt == self.retries:
                    raise StoreUnavailable(
                        f"Could not reach the store at {self.host} ({type(error).__name__}). "
                        "Check that it is running and the URL is right, then try again."
                    ) from error
                time.sleep(self.RETRY_PAUSES[min(attempt, len(self.RETRY_PAUSES) - 1)])
            except httpx.TimeoutException as error:
                raise self._timed_out() from error
            except httpx.InvalidURL as error:
                raise StoreUnavailable(f"This connection's URL is not a valid URL ({error}). Check it.") from error
            except httpx.HTTPError as error:
                # A connection lost while sending (it may have arrived: not sent again), or a URL httpx refuses.
                raise StoreUnavailable(
                    f"The request to the store at {self.host} failed ({type(error).__name__}: {error}). "
                    "Check this connection's URL, then try again."
                ) from error
            except (UpstashError, ValueError, AttributeError, TypeError, KeyError, AssertionError):
                # A 200 reply the SDK could not take: r.json() raised (not JSON), or format_response did
                # (UpstashError for an {"error"}; AttributeError, TypeError, KeyError for a body of the
                # wrong shape; AssertionError from execute() itself when the body is JSON null).
                reply = _reply_in_hand.get()
                if reply is None:
                    raise  # the payload would not encode: our own bug, not the store's reply
                raise self._what_is_wrong(200, reply.content, commands, from_pipeline) from None

    def _what_is_wrong(self, status, content, commands=0, from_pipeline=False):
        """The StoreError a reply means: one not HTTP 200, or a 200 the SDK could not take.

        Parsed here, on these failure paths only: the SDK's exception does not
        say whether a pipeline was refused as a whole, had the wrong number of
        replies, or one of its commands was refused.
        """
        try:
            body = json.loads(content)
        except ValueError:
            return refusal(status, page_text(content), self.host, False, self.token_name)
        error = body.get("error") if type(body) is dict else None
        if error is not None:
            # A single command's refusal, a pipeline refused as a whole, a 401, a limit.
            return refusal(status, str(error), self.host, token_name=self.token_name)
        if status != 200:
            return refusal(status, page_text(content), self.host, False, self.token_name)
        if not from_pipeline:
            return unreadable(self.host, "a reply without a result")
        if type(body) is not list or len(body) != commands:
            count = f"{len(body)} replies" if type(body) is list else "no list of replies"
            return unreadable(self.host, f"{count} for {commands} commands")
        for reply in body:
            error = reply.get("error") if type(reply) is dict else None
            if error is not None:
                return refusal(200, str(error), self.host, token_name=self.token_name)
            if type(reply) is not dict or "result" not in reply:
                break
        return unreadable(self.host, "a reply without a result among a pipeline's replies")

    def _take_reply(self, response):
        """httpx response hook: the store has answered. Read the body here; anything but a 200 is refused here.

        The SDK reads a body whole inside its post(), where a reply cut off would
        look like a connection that failed (and be sent again), and it parses any
        status as a reply. What this raises comes out of execute() unchanged.
        """
        _reply_in_hand.set(response)
        # Kept here rather than through the SDK's sync_token_cb, which only sees the replies it reads.
        sync_token = response.headers.get("upstash-sync-token")
        if sync_token:
            self._sync.value = sync_token
        try:
            content = response.read()
        except httpx.TimeoutException as error:
            raise self._timed_out() from error
        except httpx.HTTPError as error:
            raise unreadable(self.host, f"it was cut off ({error}); its commands may have run") from error
        if response.status_code != 200:
            raise self._what_is_wrong(response.status_code, content)

    def _timed_out(self):
        return StoreUnavailable(
            f"The store at {self.host} did not answer within {self.timeout:g} s. "
            "It may be overloaded or unreachable; try again in a moment."
        )

    def _count(self, commands, round_trips=1):
        with self._totals_lock:
            self._totals.commands += commands
            self._totals.round_trips += round_trips
        with _counting:
            for count in _open_counts.get():
                count.commands += commands
                count.round_trips += round_trips


class ConnectionClients:
    """The clients of one connection: one per token, sharing the sync token.

    Without a read-only token, `reader` is `writer`. A read-only token may be
    refused more than plain read commands: a script, even a read-only one
    (EVAL_RO); an ACL of `+@read` alone refuses it, and Upstash does not
    document what its read-only token allows. Whether it was refused is
    remembered here (by `scripts`), so the refusal costs one request.
    """

    def __init__(self, connection):
        sync = SyncToken()
        settings = (connection.timeout, connection.retries)
        self.writer = StoreClient(connection.url, connection.token, *settings, sync=sync)
        self.reader = self.writer
        if connection.read_only_token:
            self.reader = StoreClient(
                connection.url, connection.read_only_token, *settings, sync=sync, token_name="read-only token"
            )
        self.reader_runs_scripts = True


_clients = {}
_clients_lock = threading.Lock()


def connection_clients(connection):
    """The connection's clients, built once and rebuilt when its settings change."""
    fingerprint = connection.client_fingerprint()
    entry = _clients.get(connection.slug)
    if entry and entry[0] == fingerprint:
        return entry[1]
    with _clients_lock:
        entry = _clients.get(connection.slug)
        if entry and entry[0] == fingerprint:
            return entry[1]
        # Replaced clients are not closed here: another thread may still be
        # using them; their sockets go when they are collected.
        clients = ConnectionClients(connection)
        _clients[connection.slug] = (fingerprint, clients)
    return clients


def get_client(connection):
    """The client for reads: with the read-only token when the connection has one, else the full token."""
    return connection_clients(connection).reader


def get_writer(connection):
    """The client for writes: with the connection's full token."""
    return connection_clients(connection).writer
