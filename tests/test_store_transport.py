"""The client's transport core — requests, replies, counting, the quiet after a timeout — against the real local store.

Where the local store cannot misbehave as a test needs (a reply cut off), the fake store does, and
the app's own client talks to it over real HTTP.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from memoryadmin.services import upstash
from memoryadmin.services.upstash import (
    QuietAfterTimeout,
    StoreClient,
    StoreCommandError,
    StoreReplyError,
    StoreUnavailable,
)

from .fake_store import FakeStore, Reply
from .waiting import wait_for

UNREADABLE_ADVICE = (
    "A proxy between the app and the store, or a URL that is not an Upstash REST URL, may be at fault: "
    "try again, and if it keeps happening, check this connection's URL."
)


def test_a_value_ok_in_a_list_comes_back_like_any_other(store):
    """The store sends a stored "OK" as the status reply's bare "OK", in lists too (so does Upstash)."""
    store.call("RPUSH", "chat", "OK", "fine", "OK")
    assert store.call("LRANGE", "chat", 0, -1) == [b"OK", b"fine", b"OK"]
    assert store.call("EVAL", "return {redis.call('SET', KEYS[1], 'v'), 'x'}", 1, "k") == [b"OK", b"x"]


# --- what the operator is told ------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (
            Reply(200, {"result": {"nested": "object"}}),
            "a result that is not what the store sends (a JSON object in a result)",
        ),
        (
            Reply(200, {"result": 1}, cut_after=3),
            "it was cut off (peer closed connection without sending complete message body "
            "(received 3 bytes, expected 13)); its commands may have run",
        ),
    ],
)
def test_a_reply_that_cannot_be_read_says_whose_and_why(reply, why):
    with FakeStore() as fake:
        fake.replies["*"] = reply
        client = StoreClient(fake.url, "token", timeout=5)
        with pytest.raises(StoreReplyError) as caught:
            client.call("RPUSH", "chat", "hello")
    host = fake.url.removeprefix("http://")
    assert str(caught.value) == f"The reply of the store at {host} could not be read: {why}. {UNREADABLE_ADVICE}"


# --- the quiet after a timeout --------------------------------------------------------


class StoppedClock:
    """time.monotonic as the test sets it."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_the_quiet_lasts_its_seconds_to_the_instant(monkeypatch):
    clock = StoppedClock(1000.0)
    monkeypatch.setattr(upstash.time, "monotonic", clock)
    breaker = QuietAfterTimeout(2)
    breaker.settle(1000.0, answered=False, probe=False)  # a timeout: quiet until 1002
    clock.now = 1001.999
    assert breaker.admit() == (True, True)
    breaker.settle(1001.999, answered=False, probe=True)  # the probe timed out: quiet until 1003.999
    clock.now = 1003.999
    assert breaker.admit() == (True, False)  # over at its last instant: an ordinary request


def test_a_timeout_sent_with_the_latest_answered_request_still_quiets_the_store():
    """Only a request sent BEFORE the latest answered one was stuck while the store recovered."""
    breaker = QuietAfterTimeout(10)
    sent_at = time.monotonic()
    breaker.settle(sent_at, answered=True, probe=False)
    breaker.settle(sent_at, answered=False, probe=False)
    assert breaker.admit() == (True, True)


def test_each_timeout_quiets_the_store_with_one_probe_at_a_time(local_store, connection):
    """After a probe that timed out too, the next request is a probe again, and finds the store back."""
    gateway = local_store.gateway
    client = StoreClient(connection.url, connection.token, timeout=2)  # its own quiet: 2 s after a timeout
    host = client.host
    try:
        gateway.latency_ms = 5000
        with pytest.raises(StoreUnavailable) as timed_out:
            client.call("PING")
        assert str(timed_out.value) == (
            f"The store at {host} did not answer within 2 s. It may be overloaded or unreachable; try again in a moment."
        )
        with ThreadPoolExecutor(max_workers=1) as pool:
            probe = pool.submit(client.call, "PING")
            wait_for(lambda: gateway.in_flight >= 2, what="the probe to reach the store")
            with pytest.raises(StoreUnavailable) as quiet:
                client.call("PING")
            assert not probe.done()  # failed at once, not after the probe
            assert str(quiet.value) == (
                f"The store at {host} did not answer within 2 s a moment ago. "
                "It may be overloaded or unreachable; try again in a few seconds."
            )
            with pytest.raises(StoreUnavailable, match="did not answer within 2 s"):
                probe.result(timeout=30)
        gateway.latency_ms = 0
        assert client.call("PING") == b"PONG"  # within the probe's quiet: the next probe goes
    finally:
        gateway.latency_ms = 0
        client.close()


class Patient(StoreClient):
    """The app's client with a quiet as long as its timeout: a loaded machine cannot outlast it mid-test."""

    QUIET_AFTER_TIMEOUT = 60.0


def answered_with_a_result(client):
    assert client.call("PING") == b"PONG"


def answered_with_a_refusal(client):
    client.call("SET", "text", "x")
    with pytest.raises(StoreCommandError):
        client.call("LLEN", "text")


def stopped_before_sending(client):
    with pytest.raises(TypeError):
        client.call("SET", "k", b"bytes JSON cannot carry")  # our own mistake: nothing was sent


@pytest.mark.parametrize(
    "before",
    [
        answered_with_a_result,
        answered_with_a_refusal,
        stopped_before_sending,
    ],
)
def test_after_anything_but_silence_requests_go_side_by_side(local_store, connection, before):
    """Only silence quiets the store: after an answer, two requests at once both go (not one probe)."""
    gateway = local_store.gateway
    client = Patient(connection.url, connection.token, timeout=60)
    try:
        before(client)
        gateway.latency_ms = 1000
        served = gateway.requests_served
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(client.call, "PING")
            wait_for(lambda: gateway.requests_served > served, what="the first request to reach the store")
            assert client.call("PING") == b"PONG"
            assert first.result(timeout=30) == b"PONG"
    finally:
        gateway.latency_ms = 0
        client.close()
