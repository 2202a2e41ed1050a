"""The store client: decoding, timeouts, retries and error mapping, against real servers."""

import dataclasses
import functools
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from memoryadmin.services.upstash import (
    QuietAfterTimeout,
    StoreAuthError,
    StoreClient,
    StoreCommandError,
    StoreUnavailable,
    count_commands,
    get_client,
)

from .fake_store import FakeStore, Reply, b64
from .threads import run_together
from .waiting import wait_for


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_strings_come_back_as_bytes_even_when_not_utf8(store):
    store.call("EVAL", "return redis.call('RPUSH', KEYS[1], string.char(255, 254), 'é')", 1, "bin")
    assert store.call("LRANGE", "bin", 0, -1) == [b"\xff\xfe", "é".encode()]
    assert store.pipeline([["LLEN", "bin"], ["SET", "k", "v"], ["GET", "nope"]]) == [2, b"OK", None]


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
    client = StoreClient(f"http://127.0.0.1:{free_port()}", "t", timeout=1, retries=2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="Could not reach the store"):
        client.call("PING")
    assert time.monotonic() - started < 2  # two short pauses, no hang


def test_a_url_httpx_cannot_use_is_a_store_error():
    with pytest.raises(StoreUnavailable, match="not a valid URL"):
        StoreClient("http://exämple..com", "t", timeout=1, retries=0).call("PING")


def test_slow_store_times_out_once_without_retry(local_store, connection):
    client = get_client(dataclasses.replace(connection, name="slow", timeout=1))
    local_store.gateway.latency_ms = 4000
    served = local_store.gateway.requests_served
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="did not answer within 1 s"):
        client.call("PING")
    assert local_store.gateway.requests_served == served + 1  # sent once: a timeout may have run the command
    assert time.monotonic() - started < 3  # about 1 s; waiting for the answer would take 4
    local_store.gateway.latency_ms = 0


def test_one_client_per_connection_rebuilt_when_settings_change(connection):
    first = get_client(connection)
    assert get_client(dataclasses.replace(connection, page_size=10)) is first  # not a client setting
    rebuilt = get_client(dataclasses.replace(connection, timeout=9))
    assert rebuilt is not first and rebuilt.timeout == 9
    assert get_client(dataclasses.replace(connection, timeout=9)) is rebuilt


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


def test_after_a_timeout_the_next_request_finds_the_store_back(local_store, connection):
    client = get_client(dataclasses.replace(connection, name="flaky", slug="flaky", timeout=0.3))
    local_store.gateway.latency_ms = 1000
    with pytest.raises(StoreUnavailable, match="did not answer within 0.3 s"):
        client.call("PING")
    local_store.gateway.latency_ms = 0
    assert client.call("PING") == b"PONG"  # the probe: recovered by itself
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
        with pytest.raises(StoreUnavailable, match="a moment ago"):
            client.call("PING")
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
