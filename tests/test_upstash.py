"""The store client: decoding, timeouts, retries and error mapping, against real servers."""

import dataclasses
import functools
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from memoryadmin.services.upstash import (
    QuietAfterTimeout,
    StoreAuthError,
    StoreClient,
    StoreCommandError,
    StoreConnection,
    StoreUnavailable,
    connection_clients,
    count_commands,
    decode_reply,
    get_client,
    get_writer,
    last_sync_token,
)

from .fake_store import FakeStore, Reply, b64
from .threads import once_all_are_ready, run_together
from .waiting import wait_for


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_strings_come_back_as_bytes_even_when_not_utf8(store):
    store.call("EVAL", "return redis.call('RPUSH', KEYS[1], string.char(255, 254), 'é')", 1, "bin")
    assert store.call("LRANGE", "bin", 0, -1) == [b"\xff\xfe", "é".encode()]
    assert store.pipeline([["LLEN", "bin"], ["SET", "k", "v"], ["GET", "nope"]]) == [2, b"OK", None]


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("aGk=", b"hi"),
        ("//4=", b"\xff\xfe"),
        ("OK", b"OK"),  # the status reply, as Upstash sends it (not base64)
        ("T0s=", b"OK"),  # a value that says OK
        ("", b""),
        (7, 7),
        (None, None),
        (
            ["OK", "T0s=", "aGk=", 3, None, [], ["OK", "//4=", [5]]],
            [b"OK", b"OK", b"hi", 3, None, [], [b"OK", b"\xff\xfe", [5]]],
        ),
    ],
)
def test_a_rest_result_is_decoded_with_bytes_for_its_strings(raw, decoded):
    assert decode_reply(raw) == decoded


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"a": "aGk="}, "a JSON object in a result"),
        (["aGk=", {}], "a JSON object in a result"),
        ("abc", "Incorrect padding"),
        (["aGk=", ["abc"]], "Incorrect padding"),
    ],
)
def test_what_is_no_rest_result_is_a_value_error_that_says_why(raw, why):
    with pytest.raises(ValueError) as caught:
        decode_reply(raw)
    assert str(caught.value) == why


def test_transaction_runs_atomically(store):
    assert store.pipeline([["INCR", "n"], ["INCR", "n"]], transaction=True) == [1, 2]


def test_command_error_is_mapped(store):
    store.call("SET", "s", "x")
    with pytest.raises(StoreCommandError, match="WRONGTYPE"):
        store.call("LLEN", "s")


def test_wrong_token_is_an_auth_error(connection):
    client = get_client(dataclasses.replace(connection, name="wrong", token="wrong-token"))
    with pytest.raises(StoreAuthError, match="rejected the REST token"):
        client.call("PING")


def test_dead_store_fails_fast_after_bounded_retries():
    port = free_port()
    client = StoreClient(f"http://127.0.0.1:{port}", "t", timeout=1, retries=2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        client.call("PING")
    assert time.monotonic() - started < 2  # two short pauses, no hang
    assert str(caught.value) == (
        f"Could not reach the store at 127.0.0.1:{port} (ConnectError). "
        "Check that it is running and the URL is right, then try again."
    )


class HangingUp:
    """A server that reads each request and closes the connection without a word, as a kept-alive
    connection the server had closed does: nothing was answered, so sending again is safe."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += conn.recv(65536)
                head, _, body = received.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1

    def close(self):
        self.sock.close()


@pytest.mark.parametrize(("retries", "sent", "pauses"), [(-1, 1, 0), (0, 1, 0), (1, 2, 0.1), (4, 5, 2.2)])
def test_a_request_nothing_answered_is_sent_again_up_to_the_retries_after_growing_pauses(retries, sent, pauses):
    """Pauses of 0.1, 0.3, then 0.9 s between sends; the last failure says what happened, whole."""
    server = HangingUp()
    client = StoreClient(f"http://127.0.0.1:{server.port}", "t", timeout=5, retries=retries)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        client.call("PING")
    waited = time.monotonic() - started
    server.close()
    assert server.requests == sent
    assert pauses <= waited < pauses + 1.5
    assert str(caught.value) == (
        f"Could not reach the store at 127.0.0.1:{server.port} (RemoteProtocolError). "
        "Check that it is running and the URL is right, then try again."
    )


@pytest.mark.parametrize(
    ("url", "base", "host"),
    [
        (
            "https://eu1-able-bird-12345.upstash.io",
            "https://eu1-able-bird-12345.upstash.io",
            "eu1-able-bird-12345.upstash.io",
        ),
        (
            "https://eu1-able-bird-12345.upstash.io/",
            "https://eu1-able-bird-12345.upstash.io",
            "eu1-able-bird-12345.upstash.io",
        ),
        ("http://LOCALBOX//", "http://LOCALBOX", "LOCALBOX"),
        ("localhost:8080", "localhost:8080", "localhost:8080"),  # no scheme: named by what was typed
    ],
)
def test_a_url_loses_only_its_trailing_slashes_and_its_host_names_the_store(url, base, host):
    """The endpoints are the URL + /pipeline, /multi-exec; the host is how messages name the store."""
    client = StoreClient(url, "t")
    assert (client.url, client.host) == (base, host)


def test_every_request_goes_to_its_endpoint_with_the_token_and_no_telemetry():
    """The SDK's telemetry headers are never sent."""
    with FakeStore() as fake:
        fake.replies["*"] = lambda seen: Reply(
            200, [{"result": "OK"}] * len(seen.body) if seen.path != "/" else {"result": "OK"}
        )
        client = StoreClient(fake.url, "secret-token")
        assert client.call("SET", "k", "v") == b"OK"
        assert client.pipeline([["SET", "k", "v"]]) == [b"OK"]
        assert client.pipeline([["SET", "k", "v"], ["SET", "j", "w"]], transaction=True) == [b"OK", b"OK"]
        assert [(seen.path, seen.body) for seen in fake.seen] == [
            ("/", ["SET", "k", "v"]),
            ("/pipeline", [["SET", "k", "v"]]),
            ("/multi-exec", [["SET", "k", "v"], ["SET", "j", "w"]]),
        ]
        for seen in fake.seen:
            assert seen.headers["Authorization"] == "Bearer secret-token"
            assert seen.headers["Upstash-Encoding"] == "base64"
            assert not [name for name in seen.headers if name.lower().startswith("upstash-telemetry")]


def test_a_url_httpx_cannot_use_is_a_store_error():
    with pytest.raises(StoreUnavailable) as caught:
        StoreClient("http://exämple..com", "t", timeout=1, retries=0).call("PING")
    assert (
        str(caught.value)
        == "This connection's URL is not a valid URL (Invalid IDNA hostname: 'exämple..com'). Check it."
    )
    with pytest.raises(StoreUnavailable) as caught:
        StoreClient("ftp://127.0.0.1:1", "t", timeout=1, retries=0).call("PING")
    assert str(caught.value) == (
        "The request to the store at 127.0.0.1:1 failed (UnsupportedProtocol: Request URL has an unsupported "
        "protocol 'ftp://'.). Check this connection's URL, then try again."
    )


def test_slow_store_times_out_once_without_retry(local_store, connection):
    client = get_client(dataclasses.replace(connection, name="slow", timeout=1))
    local_store.gateway.latency_ms = 4000
    served = local_store.gateway.requests_served
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        client.call("PING")
    assert str(caught.value) == (
        f"The store at {local_store.url.removeprefix('http://')} did not answer within 1 s. "
        "It may be overloaded or unreachable; try again in a moment."
    )
    assert local_store.gateway.requests_served == served + 1  # sent once: a timeout may have run the command
    assert time.monotonic() - started < 3  # about 1 s; waiting for the answer would take 4
    local_store.gateway.latency_ms = 0


def test_one_client_per_connection_rebuilt_when_settings_change(connection):
    first = get_client(connection)
    assert get_client(dataclasses.replace(connection, page_size=10)) is first  # not a client setting
    rebuilt = get_client(dataclasses.replace(connection, timeout=9))
    assert rebuilt is not first and rebuilt.timeout == 9
    assert get_client(dataclasses.replace(connection, timeout=9)) is rebuilt


def test_both_clients_of_a_connection_have_its_url_timeout_and_retries_and_name_their_token(connection):
    two_tokens = dataclasses.replace(connection, slug="two-tokens", read_only_token="ro", timeout=9, retries=4)
    reader, writer = get_client(two_tokens), get_writer(two_tokens)
    assert reader is not writer
    assert [(client.url, client.timeout, client.retries, client.token_name) for client in (reader, writer)] == [
        (connection.url, 9, 4, "read-only token"),
        (connection.url, 9, 4, "REST token"),
    ]


def test_threads_asking_at_once_for_a_new_connections_clients_all_get_the_same_ones(connection):
    """Built once under a lock: threads that all found none must not each build (and keep) their own."""
    for n in range(4):
        new = dataclasses.replace(connection, slug=f"at-once-{n}", name=f"at once {n}")
        ask = functools.partial(once_all_are_ready, threading.Barrier(6), functools.partial(connection_clients, new))
        built = run_together(*[ask] * 6)
        assert all(clients is built[0] for clients in built)
        assert connection_clients(new) is built[0]


def test_the_breaker_fails_fast_after_a_timeout_but_lets_one_probe_through():
    breaker = QuietAfterTimeout(10)
    assert breaker.admit() == (True, False)
    breaker.settle(time.monotonic(), answered=False, probe=False)  # a timeout
    assert breaker.admit() == (True, True)  # one request goes to see if the store is back
    assert breaker.admit() == (False, False)  # the others fail at once meanwhile
    breaker.settle(time.monotonic(), answered=False, probe=True)  # the probe timed out too
    assert breaker.admit() == (True, True)
    sent_at = time.monotonic()
    stuck_since = sent_at - 5  # sent while the store was slow
    breaker.settle(sent_at, answered=True, probe=True)  # the store is back
    assert breaker.admit() == (True, False)
    breaker.settle(stuck_since, answered=False, probe=False)  # an old request times out now
    assert breaker.admit() == (True, False)  # that does not close the store off again
    breaker.settle(sent_at, answered=False, probe=False)  # one sent with the answered probe times out now
    assert breaker.admit() == (True, True)  # that one does: it was not stuck before the store came back


def test_after_a_timeout_the_next_request_finds_the_store_back(local_store, connection):
    client = get_client(dataclasses.replace(connection, name="flaky", slug="flaky", timeout=1))
    local_store.gateway.latency_ms = 3000
    with pytest.raises(StoreUnavailable, match=r"did not answer within 1 s\. "):
        client.call("PING")
    # Within the quiet second after it, one request goes: the probe. It times out too.
    with pytest.raises(StoreUnavailable, match=r"did not answer within 1 s\. "):
        client.call("PING")
    local_store.gateway.latency_ms = 0
    assert client.call("PING") == b"PONG"  # the next probe, as soon as the last is over: recovered by itself
    assert client.call("PING") == b"PONG"


def test_while_the_probe_waits_other_requests_fail_at_once(local_store, connection):
    client = get_client(dataclasses.replace(connection, name="flaky2", slug="flaky2", timeout=2))
    local_store.gateway.latency_ms = 5000
    with pytest.raises(StoreUnavailable):
        client.call("PING")
    with ThreadPoolExecutor(max_workers=1) as pool:
        probe = pool.submit(client.call, "PING")
        # The probe is in the store, next to the request that timed out (still in its 5 s there).
        wait_for(lambda: local_store.gateway.in_flight >= 2, what="the probe to reach the store")
        with pytest.raises(StoreUnavailable) as caught:
            client.call("PING")
        assert str(caught.value) == (
            f"The store at {local_store.url.removeprefix('http://')} did not answer within 2 s a moment ago. "
            "It may be overloaded or unreachable; try again in a few seconds."
        )
        # At once (milliseconds), not after waiting for the probe (its 2 s timeout).
        assert not probe.done()
        with pytest.raises(StoreUnavailable):
            probe.result(timeout=30)
    local_store.gateway.latency_ms = 0


# --- read-your-writes: the sync token -----------------------------------------


class TokenDesk:
    """Answers like a global database: each reply hands out a new sync token (the error replies too)."""

    def __init__(self):
        self.handed_out = 0

    def __call__(self, request):
        self.handed_out += 1
        headers = {"upstash-sync-token": f"sync-{self.handed_out}"}
        if request.path == "/pipeline":
            return Reply(200, [{"result": 1}] * len(request.body), headers=headers)
        if request.body[0] == "LLEN":
            return Reply(
                400, {"error": "WRONGTYPE Operation against a key holding the wrong kind of value"}, headers=headers
            )
        return Reply(200, {"result": b64("PONG")}, headers=headers)


def sent_tokens(fake):
    return [seen.headers.get("Upstash-Sync-Token") for seen in fake.seen]


def test_the_last_sync_token_received_goes_with_the_next_request():
    with FakeStore() as fake:
        fake.replies["*"] = TokenDesk()
        client = StoreClient(fake.url, "t")
        client.call("SET", "k", "v")
        client.pipeline([["GET", "k"], ["TTL", "k"]])
        with pytest.raises(StoreCommandError):
            client.call("LLEN", "k")
        fake.replies["*"] = Reply(200, {"result": b64("PONG")})  # a reply without a token keeps the last one
        client.call("PING")
        client.call("PING")
        assert sent_tokens(fake) == [None, "sync-1", "sync-2", "sync-3", "sync-3"]


def test_a_store_that_hands_out_no_sync_token_leaves_an_empty_one():
    """Not None: a job stores it as the token its reads carry (a text field, blank when there is none)."""
    with FakeStore() as fake:
        connection = StoreConnection(name="regional", url=fake.url, token="t", slug="no-sync-token")
        get_writer(connection).call("PING")
        assert last_sync_token(connection) == ""
        assert fake.seen[0].headers.get("Upstash-Sync-Token") is None


def test_each_client_keeps_its_own_sync_token():
    with FakeStore() as fake:
        fake.replies["*"] = TokenDesk()
        first, second = StoreClient(fake.url, "t"), StoreClient(fake.url, "t")
        first.call("SET", "k", "v")
        second.call("GET", "k")
        first.call("GET", "k")
        second.call("GET", "k")
        assert sent_tokens(fake) == [None, None, "sync-1", "sync-2"]


def test_threads_sharing_a_client_all_send_the_token_they_were_handed():
    with FakeStore() as fake:
        fake.replies["*"] = TokenDesk()
        client = StoreClient(fake.url, "t")
        client.call("PING")
        replies = run_together(*[lambda: [client.call("PING") for _ in range(20)]] * 6)
        assert replies == [[b"PONG"] * 20] * 6
        handed_out = {f"sync-{n}" for n in range(1, 122)}
        assert len(fake.seen) == 121 and set(sent_tokens(fake)[1:]) <= handed_out


# --- billing: commands and round trips ----------------------------------------


def test_a_pipeline_of_n_counts_n_commands_and_one_round_trip(store):
    before = store.totals()
    with count_commands() as counted:
        store.pipeline([["RPUSH", "chat", str(n)] for n in range(7)])
    assert (counted.commands, counted.round_trips) == (7, 1)
    with count_commands() as counted:
        store.pipeline([["INCR", "n"], ["INCR", "n"]], transaction=True)
        store.call("LLEN", "chat")
    assert (counted.commands, counted.round_trips) == (3, 2)
    after = store.totals()
    assert (after.commands - before.commands, after.round_trips - before.round_trips) == (10, 3)


def test_counts_nest_and_a_refused_command_still_counts(store):
    store.call("SET", "s", "x")
    with count_commands() as job:
        store.call("GET", "s")
        with count_commands() as step:
            with pytest.raises(StoreCommandError):
                store.call("LLEN", "s")  # answered (and billed) even though refused
        store.pipeline([["GET", "s"], ["GET", "s"]])
    assert (step.commands, step.round_trips) == (1, 1)
    assert (job.commands, job.round_trips) == (4, 3)


def test_a_store_never_reached_counts_nothing():
    client = StoreClient(f"http://127.0.0.1:{free_port()}", "t", timeout=1, retries=0)
    with count_commands() as counted, pytest.raises(StoreUnavailable):
        client.pipeline([["PING"], ["PING"]])
    assert (counted.commands, counted.round_trips) == (0, 0)
    assert client.totals().commands == 0


def test_each_thread_counts_its_own_work_and_the_client_counts_all(connection):
    client = StoreClient(connection.url, connection.token)
    counts = {}

    def work(name, size):
        with count_commands() as counted:
            for _ in range(25):
                client.pipeline([["PING"]] * size)
        counts[name] = (counted.commands, counted.round_trips)

    run_together(*[functools.partial(work, n, n) for n in range(1, 7)])
    assert counts == {n: (25 * n, 25) for n in range(1, 7)}
    assert (client.totals().commands, client.totals().round_trips) == (25 * 21, 150)
    client.close()
