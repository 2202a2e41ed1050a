"""The local store speaks the Upstash REST protocol well enough for the real upstash-redis client."""

import base64
import json
import socket
import threading
import time

import httpx
import pytest
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from memoryadmin.localstore.store import LocalStore

from .conftest import TEST_TOKEN


@pytest.fixture
def redis(local_store, store):
    """The SDK's own client, exactly as a chat app would use it (store is flushed by `store`)."""
    client = Redis(local_store.url, TEST_TOKEN, allow_telemetry=False, rest_retries=0)
    yield client
    client.close()


def test_commands_the_app_uses(redis):
    assert redis.lpush("s", "first", "second") == 2
    assert redis.rpush("s", "third") == 3
    assert redis.lrange("s", 0, -1) == ["second", "first", "third"]
    assert redis.lindex("s", -1) == "third"
    assert redis.llen("s") == 3
    assert redis.type("s") == "list"
    assert redis.ttl("s") == -1
    assert redis.expire("s", 100) is True
    assert 0 < redis.ttl("s") <= 100
    assert redis.persist("s") is True
    assert redis.ttl("s") == -1
    assert redis.hset("h", values={"text": "hi", "message_count": "3"}) == 2
    assert redis.hgetall("h") == {"text": "hi", "message_count": "3"}
    assert redis.unlink("s", "h") == 2
    assert redis.ttl("s") == -2
    assert redis.ping() == "PONG"


def test_scan_with_match_count_and_type(redis):
    for i in range(30):
        redis.rpush(f"chat:{i}", "x")
    redis.set("chat:string", "not a list")
    found, cursor = set(), 0
    while True:
        cursor, keys = redis.scan(cursor, match="chat:*", count=7, type="list")
        found.update(keys)
        if cursor == 0:
            break
    assert found == {f"chat:{i}" for i in range(30)}


def test_pipeline_and_transaction(redis):
    pipeline = redis.pipeline()
    pipeline.rpush("l", "a", "b")
    pipeline.llen("l")
    pipeline.lrange("l", 0, -1)
    assert pipeline.exec() == [2, 2, ["a", "b"]]
    transaction = redis.multi()
    transaction.incr("n")
    transaction.incr("n")
    assert transaction.exec() == [1, 2]


def test_errors_come_back_as_upstash_errors(redis):
    redis.set("a-string", "x")
    with pytest.raises(UpstashError, match="WRONGTYPE"):
        redis.lpush("a-string", "y")
    with pytest.raises(UpstashError, match="ERR"):
        redis.execute(["NOSUCHCOMMAND"])
    pipeline = redis.pipeline()
    pipeline.llen("a-string")
    with pytest.raises(UpstashError, match="WRONGTYPE"):
        pipeline.exec()


def test_pipeline_answers_one_result_or_error_each(local_store, store):
    store.call("SET", "a-string", "x")
    reply = httpx.post(
        f"{local_store.url}/pipeline",
        headers={"Authorization": f"Bearer {TEST_TOKEN}"},
        json=[["SET", "k", "v"], ["LLEN", "a-string"], ["GET", "k"]],
    )
    assert reply.status_code == 200
    assert reply.json()[0] == {"result": "OK"}
    assert "WRONGTYPE" in reply.json()[1]["error"]
    assert reply.json()[2] == {"result": "v"}


def test_single_command_error_is_http_400(local_store):
    reply = httpx.post(local_store.url, headers={"Authorization": f"Bearer {TEST_TOKEN}"}, json=["NOSUCHCOMMAND"])
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("ERR")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TEST_TOKEN}])
def test_wrong_or_missing_token_is_401(local_store, headers):
    reply = httpx.post(local_store.url, headers=headers, json=["PING"])
    assert reply.status_code == 401
    assert reply.json() == {"error": "Unauthorized"}


def test_sdk_reports_auth_failure(local_store):
    with pytest.raises(UpstashError, match="Unauthorized"):
        Redis(local_store.url, "wrong-token", allow_telemetry=False, rest_retries=0).get("x")


def test_base64_encoding_of_nested_results_keeps_ok(local_store, store):
    store.call("RPUSH", "l", "é", "✓")
    reply = httpx.post(
        f"{local_store.url}/pipeline",
        headers={"Authorization": f"Bearer {TEST_TOKEN}", "Upstash-Encoding": "base64"},
        json=[["SET", "k", "v"], ["LRANGE", "l", 0, -1], ["LLEN", "l"], ["GET", "missing"]],
    ).json()
    assert reply[0] == {"result": "OK"}
    assert [base64.b64decode(item).decode() for item in reply[1]["result"]] == ["é", "✓"]
    assert reply[2] == {"result": 2}
    assert reply[3] == {"result": None}


def test_non_ascii_text_round_trips_through_the_sdk(redis):
    text = 'Grüße, 東京 🚀 \u00e9 \\u00e9 "quoted" \n new line'
    redis.rpush("unicode ключ/100%#?", text)
    assert redis.lrange("unicode ключ/100%#?", 0, -1) == [text]


def test_non_utf8_bytes_come_back_exactly_in_base64(local_store, store):
    store.call("EVAL", "return redis.call('RPUSH', KEYS[1], string.char(255, 254, 0) .. 'x')", 1, "bin")
    reply = httpx.post(
        local_store.url,
        headers={"Authorization": f"Bearer {TEST_TOKEN}", "Upstash-Encoding": "base64"},
        json=["LINDEX", "bin", 0],
    ).json()
    assert base64.b64decode(reply["result"]) == b"\xff\xfe\x00x"


def test_commands_that_would_break_a_shared_connection_are_refused(redis):
    with pytest.raises(UpstashError, match="not available"):
        redis.execute(["SELECT", "1"])
    assert redis.ping() == "PONG"  # the pooled connection is still in database 0


def test_malformed_bodies_get_clear_errors(local_store):
    auth = {"Authorization": f"Bearer {TEST_TOKEN}"}
    assert httpx.post(local_store.url, headers=auth, content=b"{not json").status_code == 400
    assert "non-empty" in httpx.post(local_store.url, headers=auth, json=[]).json()["error"]
    assert httpx.post(f"{local_store.url}/pipeline", headers=auth, json=[]).status_code == 400
    assert httpx.post(f"{local_store.url}/nowhere", headers=auth, json=["PING"]).status_code == 404


def test_survives_many_concurrent_clients(local_store, store):
    errors = []

    def hammer(worker):
        client = Redis(local_store.url, TEST_TOKEN, allow_telemetry=False, rest_retries=0)
        try:
            for i in range(25):
                client.rpush(f"load:{worker}", str(i))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=hammer, args=(worker,)) for worker in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(store.pipeline([["LLEN", f"load:{w}"] for w in range(40)])) == 40 * 25


def test_reply_is_one_segment_with_nodelay(local_store):
    """Headers and body in one write: a keep-alive client never waits on Nagle + delayed ACK."""
    request = json.dumps(["PING"]).encode()
    with socket.create_connection(("127.0.0.1", local_store.gateway.server_address[1])) as sock:
        sock.settimeout(2)
        head = (
            f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(request)}\r\n\r\n"
        ).encode()
        sock.sendall(head + request)
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(b'{"result":"PONG"}')


def test_latency_is_added_to_every_request(local_store, store):
    local_store.gateway.latency_ms = 150
    started = time.monotonic()
    store.call("PING")
    assert time.monotonic() - started >= 0.15


def test_data_dir_keeps_data_across_restarts(tmp_path):
    with LocalStore(port=0, token="t", data_dir=tmp_path / "data") as first:
        Redis(first.url, "t", allow_telemetry=False).rpush("kept", "yes")
    with LocalStore(port=0, token="t", data_dir=tmp_path / "data") as second:
        assert Redis(second.url, "t", allow_telemetry=False).lrange("kept", 0, -1) == ["yes"]
