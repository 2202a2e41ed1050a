"""The local store has Upstash's limits, read-only token and sync token, through real HTTP and the real SDK."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from memoryadmin.localstore.gateway import MAX_KEY_BYTES, MAX_REQUEST_BYTES
from memoryadmin.localstore.store import LocalStore

from .conftest import TEST_TOKEN
from .waiting import wait_for

READ_ONLY_TOKEN = "read-only-token-9876"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
READ_ONLY = {"Authorization": f"Bearer {READ_ONLY_TOKEN}"}


def sdk(store, token=TEST_TOKEN, **options):
    return Redis(store.url, token, allow_telemetry=False, rest_retries=0, **options)


def size_error(limit, actual):
    return f"ERR max request size exceeded. Limit: {limit} bytes, Actual: {actual} bytes."


def body_length(answer):
    return len(json.dumps(answer, separators=(",", ":")))


@pytest.fixture(scope="module")
def small_store():
    """Small limits, so that going over them is cheap; and a read-only token."""
    with LocalStore(
        port=0, token=TEST_TOKEN, max_request_bytes=2000, max_key_bytes=100, read_only_token=READ_ONLY_TOKEN
    ) as store:
        yield store


@pytest.fixture
def small(small_store):
    """The small store, emptied."""
    httpx.post(small_store.url, headers=AUTH, json=["FLUSHDB"]).raise_for_status()
    return small_store


# --- max request size: replies count too ---------------------------------------------------------------------


def test_a_reply_over_the_limit_is_refused_with_upstash_error(small):
    value = "x" * 1500
    assert httpx.post(small.url, headers=AUTH, json=["SET", "k", value]).status_code == 200
    assert httpx.post(small.url, headers=AUTH, json=["GET", "k"]).json() == {"result": value}
    httpx.post(small.url, headers=AUTH, json=["APPEND", "k", "y" * 1000])  # the request is small; the value grows
    reply = httpx.post(small.url, headers=AUTH, json=["GET", "k"])
    assert reply.status_code == 400
    assert reply.json()["error"].startswith(size_error(2000, body_length({"result": value + "y" * 1000})))
    assert reply.headers["Upstash-Sync-Token"]
    # The base64 encoding counts as sent: it is a third longer.
    assert httpx.post(small.url, headers=AUTH, json=["GETRANGE", "k", 0, 1399]).status_code == 200
    encoded = httpx.post(small.url, headers={**AUTH, "Upstash-Encoding": "base64"}, json=["GETRANGE", "k", 0, 1599])
    assert encoded.status_code == 400


def test_a_reply_of_exactly_the_limit_passes(small):
    value = "x" * (2000 - body_length({"result": ""}))
    httpx.post(small.url, headers=AUTH, json=["SET", "k", value[:1000]])
    httpx.post(small.url, headers=AUTH, json=["APPEND", "k", value[1000:]])
    reply = httpx.post(small.url, headers=AUTH, json=["GET", "k"])
    assert reply.status_code == 200
    assert len(reply.content) == 2000


@pytest.mark.parametrize("endpoint", ["/pipeline", "/multi-exec"])
def test_a_pipeline_whose_reply_is_too_big_is_refused_as_a_whole(small, endpoint):
    """Upstash's shape: a top-level error with HTTP 400, not a list. The commands did run."""
    commands = [["RPUSH", "l", "x" * 600], ["RPUSH", "l", "y" * 600], ["LRANGE", "l", 0, -1], ["LRANGE", "l", 0, -1]]
    reply = httpx.post(f"{small.url}{endpoint}", headers=AUTH, json=commands)
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("ERR max request size exceeded. Limit: 2000 bytes, Actual: ")
    assert httpx.post(small.url, headers=AUTH, json=["LLEN", "l"]).json() == {"result": 2}


def test_upstash_redis_itself_fails_on_that_shape(small):
    """upstash-redis 1.8 reads the top-level error as a list of replies: the app's client must handle it."""
    client = sdk(small)
    for _ in range(3):
        client.rpush("l", "x" * 700)
    with pytest.raises(UpstashError, match="ERR max request size exceeded"):
        client.lrange("l", 0, -1)
    pipeline = client.pipeline()
    pipeline.lrange("l", 0, -1)
    pipeline.llen("l")
    with pytest.raises(AttributeError):
        pipeline.exec()
    assert client.lrange("l", 0, 0) == ["x" * 700]  # a window of the list is fine


def test_reading_a_whole_big_list_fails_at_upstash_limit(local_store, store):
    """The suite's store has Upstash's 10 MB: replies over it fail, windows of the same list do not."""
    client = sdk(local_store)
    element = "m" * 1_000_000
    for _ in range(11):
        client.rpush("big-session", element)
    with pytest.raises(UpstashError, match=f"ERR max request size exceeded. Limit: {MAX_REQUEST_BYTES} bytes"):
        client.lrange("big-session", 0, -1)
    assert client.lrange("big-session", 0, 4) == [element] * 5


def test_the_gateway_counts_body_bytes_and_the_largest_request_and_reply(small):
    """For the bench's bytes per request: a refused reply counts at the size it would have had."""
    small.gateway.traffic(reset_largest=True)
    before = small.gateway.traffic()
    value = "v" * 1500
    request = json.dumps(["SET", "k", value]).encode()
    httpx.post(small.url, headers=AUTH, content=request)
    httpx.post(small.url, headers=AUTH, json=["APPEND", "k", "w" * 1000])
    too_big = httpx.post(small.url, headers=AUTH, json=["GET", "k"])
    assert too_big.status_code == 400
    would_have_been = body_length({"result": value + "w" * 1000})
    after = small.gateway.traffic(reset_largest=True)
    assert after["served"] - before["served"] == 3
    assert after["largest_request"] == len(request)
    assert after["largest_reply"] == would_have_been
    assert (
        after["reply_bytes"] - before["reply_bytes"]
        == body_length({"result": "OK"}) + body_length({"result": 2500}) + would_have_been
    )
    assert small.gateway.traffic()["largest_reply"] == 0  # started afresh


# --- max key size ---------------------------------------------------------------------------------------------


def test_a_key_over_the_limit_is_refused_with_upstash_error(small):
    reply = httpx.post(small.url, headers=AUTH, json=["SET", "k" * 101, "v"])
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("ERR max key size exceeded. Limit: 100 bytes, Actual: 101 bytes.")
    assert httpx.post(small.url, headers=AUTH, json=["SET", "k" * 100, "v"]).json() == {"result": "OK"}
    assert httpx.post(small.url, headers=AUTH, json=["DBSIZE"]).json() == {"result": 1}


def test_key_size_counts_bytes(small):
    reply = httpx.post(small.url, headers=AUTH, json=["SET", "é" * 51, "v"])  # 51 characters, 102 bytes
    assert "Actual: 102 bytes" in reply.json()["error"]


def test_values_and_members_longer_than_the_key_limit_are_fine(small):
    long = "v" * 500
    for command in (["SET", "k", long], ["RPUSH", "l", long, long], ["HSET", "h", long, long], ["ECHO", long]):
        assert httpx.post(small.url, headers=AUTH, json=command).status_code == 200, command


@pytest.mark.parametrize(
    "command",
    [
        ["MGET", "a", "b", "k" * 101],  # keys to the end
        ["MSET", "a", "1", "k" * 101, "2"],  # every other argument
        ["EVAL", "return 1", 2, "a", "k" * 101],  # numkeys: Valkey says where the keys are
        ["XREAD", "COUNT", 1, "STREAMS", "a", "k" * 101, "0", "0"],
        ["OBJECT", "ENCODING", "k" * 101],  # a subcommand's key
    ],
)
def test_keys_anywhere_in_a_command_are_checked(small, command):
    reply = httpx.post(small.url, headers=AUTH, json=command)
    assert reply.status_code == 400
    assert "max key size exceeded" in reply.json()["error"]


def test_arguments_that_are_not_keys_may_be_long(small):
    script = "return #ARGV[1]"
    assert httpx.post(small.url, headers=AUTH, json=["EVAL", script, 1, "a", "x" * 500]).json() == {"result": 500}


def test_a_pipeline_with_a_key_over_the_limit_does_not_run_at_all(small):
    reply = httpx.post(f"{small.url}/pipeline", headers=AUTH, json=[["SET", "a", "1"], ["GET", "k" * 101]])
    assert reply.status_code == 400
    assert "max key size exceeded" in reply.json()["error"]
    assert httpx.post(small.url, headers=AUTH, json=["EXISTS", "a"]).json() == {"result": 0}


def test_the_suite_store_has_upstash_key_limit(local_store, store):
    client = sdk(local_store)
    with pytest.raises(UpstashError, match=f"ERR max key size exceeded. Limit: {MAX_KEY_BYTES} bytes"):
        client.rpush("k" * (MAX_KEY_BYTES + 1), "message")
    assert client.rpush("k" * MAX_KEY_BYTES, "message") == 1


# --- rate limit -----------------------------------------------------------------------------------------------


def test_requests_over_the_rate_limit_are_refused(store):
    with LocalStore(port=0, token=TEST_TOKEN, max_requests_per_second=5) as limited:
        client = sdk(limited)
        pipeline = client.pipeline()
        for _ in range(3):
            pipeline.ping()
        assert pipeline.exec() == ["PONG"] * 3  # a pipeline's commands count one each, as Upstash counts them
        assert [client.ping(), client.ping()] == ["PONG", "PONG"]
        reply = httpx.post(limited.url, headers=AUTH, json=["PING"])
        assert reply.status_code == 400
        assert reply.json()["error"] == "ERR max requests limit exceeded. Limit: 5 per second"
        time.sleep(0.25)  # a fifth of a second earns one command
        assert client.ping() == "PONG"


def test_no_rate_limit_by_default(local_store, store):
    pipeline = sdk(local_store).pipeline()
    for _ in range(5000):
        pipeline.ping()
    assert len(pipeline.exec()) == 5000


# --- read-only token ------------------------------------------------------------------------------------------


def test_the_read_only_token_reads(small):
    httpx.post(f"{small.url}/pipeline", headers=AUTH, json=[["RPUSH", "l", "a", "b"], ["SET", "s", "v"]])
    reader = sdk(small, READ_ONLY_TOKEN)
    assert reader.lrange("l", 0, -1) == ["a", "b"]
    assert reader.get("s") == "v"
    assert reader.scan(0, match="*", count=10, type="list") == (0, ["l"])
    assert reader.ping() == "PONG"
    transaction = reader.multi()  # the app reads a transcript page in a transaction
    transaction.llen("l")
    transaction.lindex("l", 0)
    assert transaction.exec() == [2, "a"]


@pytest.mark.parametrize(
    "command",
    [
        ["SET", "s", "changed"],
        ["LSET", "l", 0, "changed"],
        ["SETRANGE", "s", 0, "x"],
        ["UNLINK", "l"],
        ["EXPIRE", "l", 1],
        ["FLUSHDB"],
        ["EVAL", "return redis.call('DEL', KEYS[1])", 1, "l"],
        ["EVAL", "return redis.call('GET', KEYS[1])", 1, "s"],  # Upstash refuses its read-only token EVAL itself
        ["PUBLISH", "channel", "message"],
    ],
)
def test_the_read_only_token_cannot_write(small, command):
    """Valkey's ACL refuses it, not a list of names in the gateway."""
    httpx.post(f"{small.url}/pipeline", headers=AUTH, json=[["RPUSH", "l", "a"], ["SET", "s", "v"]])
    reply = httpx.post(small.url, headers=READ_ONLY, json=command)
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("NOPERM ")
    assert f"'{command[0].lower()}' command" in reply.json()["error"]
    state = httpx.post(f"{small.url}/pipeline", headers=AUTH, json=[["LRANGE", "l", 0, -1], ["GET", "s"]])
    assert state.json() == [{"result": ["a"]}, {"result": "v"}]


def test_the_read_only_token_in_pipelines_and_transactions(small):
    httpx.post(small.url, headers=AUTH, json=["SET", "s", "v"])
    pipeline = httpx.post(f"{small.url}/pipeline", headers=READ_ONLY, json=[["GET", "s"], ["SET", "s", "w"]])
    assert pipeline.status_code == 200
    assert pipeline.json()[0] == {"result": "v"}
    assert pipeline.json()[1]["error"].startswith("NOPERM ")
    transaction = httpx.post(f"{small.url}/multi-exec", headers=READ_ONLY, json=[["DEL", "s"], ["GET", "s"]])
    assert transaction.status_code == 400
    assert transaction.json()["error"].startswith("NOPERM ")
    assert httpx.post(small.url, headers=AUTH, json=["GET", "s"]).json() == {"result": "v"}
    with pytest.raises(UpstashError, match="NOPERM"):
        sdk(small, READ_ONLY_TOKEN).set("s", "w")


def test_without_a_read_only_token_there_is_none(local_store):
    reply = httpx.post(local_store.url, headers=READ_ONLY, json=["GET", "s"])
    assert reply.status_code == 401


def test_the_read_only_token_must_differ_from_the_token():
    with pytest.raises(ValueError, match="differ"):
        LocalStore(port=0, token=TEST_TOKEN, read_only_token=TEST_TOKEN)


def test_error_codes_that_valkey_py_drops_are_kept(small):
    reply = httpx.post(small.url, headers=AUTH, json=["EVALSHA", "0" * 40, 0])
    assert reply.json()["error"].startswith("NOSCRIPT ")


# --- sync token -----------------------------------------------------------------------------------------------


def test_every_reply_carries_an_increasing_sync_token(small):
    replies = [
        httpx.post(small.url, headers=AUTH, json=["SET", "k", "v"]),
        httpx.post(small.url, headers=AUTH, json=["GET", "k"]),
        httpx.post(small.url, headers=AUTH, json=["LLEN", "k"]),  # an error reply
        httpx.post(f"{small.url}/pipeline", headers=AUTH, json=[["GET", "k"]]),
        httpx.post(f"{small.url}/multi-exec", headers=AUTH, json=[["GET", "k"]]),
        httpx.post(small.url, headers=READ_ONLY, json=["GET", "k"]),
    ]
    tokens = [int(reply.headers["Upstash-Sync-Token"]) for reply in replies]
    assert tokens == sorted(set(tokens))


def test_a_refused_request_answers_with_the_client_own_token(small):
    reply = httpx.post(small.url, headers={**AUTH, "Upstash-Sync-Token": "123456"}, json=["GET", "k" * 101])
    assert reply.status_code == 400
    assert reply.headers["Upstash-Sync-Token"] == "123456"


@pytest.fixture(scope="module")
def replicated_store():
    """A primary and a replica that lags 300 ms behind it."""
    with LocalStore(port=0, token=TEST_TOKEN, read_only_token=READ_ONLY_TOKEN, replica_lag_ms=300) as store:
        yield store


def test_reads_without_a_sync_token_may_be_stale(replicated_store):
    written = httpx.post(replicated_store.url, headers=AUTH, json=["SET", "stale", "new"])
    fresh_token = written.headers["Upstash-Sync-Token"]
    assert httpx.post(replicated_store.url, headers=AUTH, json=["GET", "stale"]).json() == {"result": None}
    fresh = {**AUTH, "Upstash-Sync-Token": fresh_token}
    assert httpx.post(replicated_store.url, headers=fresh, json=["GET", "stale"]).json() == {"result": "new"}
    # The replica catches up (without a token, the replica answers).
    wait_for(lambda: httpx.post(replicated_store.url, headers=AUTH, json=["GET", "stale"]).json() == {"result": "new"})


def test_a_token_the_replica_has_applied_is_served_by_the_replica(replicated_store):
    first = httpx.post(replicated_store.url, headers=AUTH, json=["SET", "counter", "1"]).headers["Upstash-Sync-Token"]
    wait_for(lambda: httpx.post(replicated_store.url, headers=AUTH, json=["GET", "counter"]).json() == {"result": "1"})
    httpx.post(replicated_store.url, headers=AUTH, json=["SET", "counter", "2"])
    seen_first = {**AUTH, "Upstash-Sync-Token": first}
    reply = httpx.post(f"{replicated_store.url}/multi-exec", headers=seen_first, json=[["GET", "counter"]])
    assert reply.json() == [{"result": "1"}]  # the replica: it has what this client saw, not the newest write
    assert int(reply.headers["Upstash-Sync-Token"]) >= int(first)


def test_upstash_redis_reads_its_own_writes_with_sync_tokens(replicated_store):
    client = sdk(replicated_store)  # read_your_writes=True, the SDK's default
    careless = sdk(replicated_store, read_your_writes=False)
    for i in range(5):
        client.rpush("session", f"message {i}")
        assert client.lrange("session", 0, -1) == [f"message {n}" for n in range(i + 1)]
        pipeline = client.pipeline()
        pipeline.llen("session")
        assert pipeline.exec() == [i + 1]
    assert careless.llen("session") < 5
    reader = sdk(replicated_store, READ_ONLY_TOKEN)
    with pytest.raises(UpstashError, match="NOPERM"):
        reader.set("session", "x")  # writes go to the primary, where the read-only user may not write either
    wait_for(lambda: careless.llen("session") == 5, what="the replica to catch up")
    assert reader.llen("session") == 5


# --- the command line -----------------------------------------------------------------------------------------


def test_command_line_flags_reach_the_store():
    """`manage.py localstore` with every limit as a flag, as `make run` starts it."""
    repo = Path(__file__).resolve().parent.parent
    command = [sys.executable, "manage.py", "localstore", "--port", "0", "--token", "flag-token"]
    command += ["--max-request-bytes", "1000", "--max-key-bytes", "10", "--max-requests-per-second", "3"]
    command += ["--max-connections", "2", "--read-only-token", "flag-read-only"]
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split("UPSTASH_REDIS_REST_URL=")[1].split()[0]
        full, read_only = {"Authorization": "Bearer flag-token"}, {"Authorization": "Bearer flag-read-only"}
        with httpx.Client(base_url=url) as client:  # one kept-alive connection
            assert client.post("/", headers=full, json=["SET", "k", "v"]).json() == {"result": "OK"}
            assert "max key size" in client.post("/", headers=full, json=["GET", "k" * 11]).json()["error"]
            assert "max request size" in client.post("/", headers=full, json=["ECHO", "x" * 1000]).json()["error"]
            assert client.post("/", headers=read_only, json=["GET", "k"]).json() == {"result": "v"}
            assert client.post("/", headers=read_only, json=["DEL", "k"]).json()["error"].startswith("NOPERM")
            assert "max requests limit" in client.post("/", headers=full, json=["GET", "k"]).json()["error"]
            address = (urlsplit(url).hostname, urlsplit(url).port)
            with socket.create_connection(address), socket.create_connection(address) as third:
                third.settimeout(5)
                assert third.recv(65536).startswith(b"HTTP/1.1 503")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
