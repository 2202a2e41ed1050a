"""The read-only token: reads use it, only writes use the full token; how it is stored, shown and tested.

Two local stores are two databases. A front that passes each request to the store whose token it
carries (TokenRouter) makes where a key was read from, or landed, show which token the app sent.
"""

import inspect
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection as db

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob
from memoryadmin.connections.models import Connection
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.localstore.store import LocalStore
from memoryadmin.services import bulk, scripts, sessions, summaries
from memoryadmin.services.connections import check_connection, environment_connection
from memoryadmin.services.summarizers import SummaryResult
from memoryadmin.services.upstash import (
    StoreAuthError,
    StoreClient,
    StoreCommandError,
    StoreConnection,
    StorePermissionError,
    get_client,
    get_writer,
)

from .conftest import SHOWN_ENV, TEST_TOKEN
from .factories import write_langchain_session
from .fake_store import FakeStore, Reply, b64
from .test_connections import form_data

pytestmark = pytest.mark.django_db

READ_ONLY = "read-only-token-5678"
NOPERM = "NOPERM this user has no permissions to run the '{}' command or its subcommand"


class TokenRouter(ThreadingHTTPServer):
    """An HTTP front on 127.0.0.1 that passes each request to the store whose token it carries.

    `seen` lists (token, first command name) of every request, in order.
    """

    daemon_threads = True

    def __init__(self, routes):
        self.routes = routes  # token -> the store's URL
        self.seen = []
        self.upstream = httpx.Client(timeout=10)
        super().__init__(("127.0.0.1", 0), _Forward)
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()
        self.upstream.close()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        payload = json.loads(body)
        first = payload[0] if payload and isinstance(payload[0], str) else payload[0][0]
        self.server.seen.append((token, first.upper()))
        forwarded = {name: self.headers[name] for name in ("Authorization", "Upstash-Encoding") if self.headers[name]}
        reply = self.server.upstream.post(self.server.routes[token] + self.path, content=body, headers=forwarded)
        head = [f"HTTP/1.1 {reply.status_code} {reply.reason_phrase}", "Content-Type: application/json"]
        head.append(f"Content-Length: {len(reply.content)}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + reply.content)


@pytest.fixture(scope="module")
def reads_store():
    """The database the read-only token reaches through the router (a second local store)."""
    with LocalStore(port=0, token=READ_ONLY) as store:
        yield store


@pytest.fixture(scope="module")
def router(local_store, reads_store):
    front = TokenRouter({TEST_TOKEN: local_store.url, READ_ONLY: reads_store.url})
    yield front
    front.close()


@pytest.fixture
def dbs(connection, local_store, reads_store, router):
    """(the full token's database, the read-only token's): clients straight to each, both emptied."""
    full, reads = StoreClient(local_store.url, TEST_TOKEN), StoreClient(reads_store.url, READ_ONLY)
    reads.call("FLUSHDB")
    router.seen.clear()
    yield full, reads
    full.close()
    reads.close()


@pytest.fixture
def routed(dbs, router, settings):
    """The environment's connection, through the router, with both tokens (what the views use)."""
    settings.UPSTASH_REDIS_REST_URL = router.url
    settings.UPSTASH_REDIS_REST_READ_ONLY_TOKEN = READ_ONLY
    return environment_connection()


def tokens_used(router):
    return {token for token, _ in router.seen}


# --- every read with the read-only token, only writes with the full one -----------------------


def test_reads_go_with_the_read_only_token(routed, dbs, router):
    full, reads = dbs
    write_langchain_session(full, "chat", ["in the full token's database"])
    write_langchain_session(reads, "chat", ["read", "with", "the read-only token"])
    reads.call("HSET", "memoryadmin:summary:chat", "text", "summary read with the read-only token")

    page = sessions.scan_sessions(routed)
    assert [(row.key, row.message_count) for row in page.rows] == [("chat", 3)]
    assert sessions.scan_sessions(routed, pattern="chat").exact  # the exact lookup too
    transcript = sessions.get_transcript(routed, "chat")
    assert [message.text for _, message in transcript.messages] == ["read", "with", "the read-only token"]
    export = sessions.read_whole_session(routed, "chat", window=2)  # two windows: EVAL_RO, twice
    assert b"the read-only token" in [element for window in export.windows for element in window][-1]
    assert b"the read-only token" in b"".join(sessions.read_message(routed, "chat", 2, sessions.NEWEST_FIRST).parts)
    summary, length = summaries.read_summary(routed, "chat")
    assert summary.text == "summary read with the read-only token" and length == 3
    assert bulk.apply_to_batch(routed, ["chat", "nothing"], "count") == [3, -2]  # a dry run's count

    assert tokens_used(router) == {READ_ONLY}
    assert (READ_ONLY, "EVAL_RO") in router.seen and (READ_ONLY, "EVAL") not in router.seen


def test_writes_go_with_the_full_token(routed, dbs, router):
    full, reads = dbs
    for database in (full, reads):
        for key in ("ttl", "persisted", "cleared", "summarized", "bulk"):
            write_langchain_session(database, key, ["hi", "hello"])
    full.call("EXPIRE", "persisted", 100)
    reads.call("EXPIRE", "persisted", 100)

    sessions.set_ttl(routed, "ttl", 3600)
    sessions.persist_session(routed, "persisted")
    assert sessions.clear_session(routed, "cleared") == 2
    result = SummaryResult(text="written with the full token", method="extractive", message_count=2, duration_ms=1)
    assert summaries.write_summary(routed, "summarized", result, datetime.now(UTC))
    assert bulk.apply_to_batch(routed, ["bulk"], "clear", receipt=("memoryadmin:bulk-result:t", 0)) == [2]

    assert 3500 < full.call("TTL", "ttl") <= 3600 and full.call("TTL", "persisted") == -1
    assert full.call("EXISTS", "cleared", "bulk") == 0
    assert full.call("HGET", "memoryadmin:summary:summarized", "text") == b"written with the full token"
    assert reads.call("TTL", "ttl") == -1 and 0 < reads.call("TTL", "persisted") <= 100
    assert reads.call("EXISTS", "cleared", "bulk", "memoryadmin:summary:summarized") == 2
    assert tokens_used(router) == {TEST_TOKEN}


def test_pages_read_with_the_read_only_token_and_buttons_write_with_the_full_one(web, routed, dbs, router):
    full, reads = dbs
    write_langchain_session(full, "chat", ["one"])
    write_langchain_session(reads, "chat", ["one", "two", "visible through the read-only token"])
    assert "visible through the read-only token" in web.get(f"/sessions/{encode_key('chat')}/").content.decode()
    assert tokens_used(router) == {READ_ONLY}
    router.seen.clear()
    web.post(f"/sessions/{encode_key('chat')}/ttl/", {"preset": "86400", **SHOWN_ENV})
    assert full.call("TTL", "chat") > 0 and reads.call("TTL", "chat") == -1
    assert (TEST_TOKEN, "EVAL") in router.seen


def test_a_bulk_job_counts_with_the_read_only_token_and_runs_with_the_full_one(web, routed, dbs, router):
    full, reads = dbs
    for key in ("a", "b"):
        write_langchain_session(full, key, ["x"])
        write_langchain_session(reads, key, ["x", "y", "z"])
    web.post("/bulk/new/", {"action": "clear", "scope": "selected", "k": [encode_key("a"), encode_key("b")]})
    job = BulkJob.objects.get()
    assert job.total_messages == 6  # counted in the read-only token's database
    assert tokens_used(router) == {READ_ONLY}
    router.seen.clear()
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"})
    job.refresh_from_db()
    assert job.status == "done" and job.done == 2
    assert full.call("EXISTS", "a", "b") == 0 and reads.call("EXISTS", "a", "b") == 2
    assert tokens_used(router) == {TEST_TOKEN}


def test_without_a_read_only_token_the_full_token_does_everything(dbs, router):
    full, reads = dbs
    only_full = StoreConnection(name="full only", slug="full-only", url=router.url, token=TEST_TOKEN)
    assert get_client(only_full) is get_writer(only_full)
    write_langchain_session(full, "chat", ["a", "b", "c"])
    assert [row.key for row in sessions.scan_sessions(only_full).rows] == ["chat"]
    assert len(list(sessions.read_whole_session(only_full, "chat").windows)[0]) == 3
    assert bulk.apply_to_batch(only_full, ["chat"], "count") == [3]
    sessions.set_ttl(only_full, "chat", 60)
    assert 0 < full.call("TTL", "chat") <= 60 and reads.call("DBSIZE") == 0
    assert tokens_used(router) == {TEST_TOKEN}


def test_a_read_only_script_cannot_write_whoever_sends_it(connection, store):
    """The full token may run EVAL_RO for a read-only token refused scripts: the store still refuses its writes."""
    write_langchain_session(store, "chat", ["hi"])
    with pytest.raises(StoreCommandError, match="Write commands are not allowed from read-only scripts"):
        scripts.read(connection, bulk.BATCH_SCRIPT, ["chat", "memoryadmin:summary:chat"], "clear", 0)
    assert store.call("EXISTS", "chat") == 1


def test_one_client_per_token_built_once_and_rebuilt_when_a_token_changes(router):
    both = StoreConnection(name="both", slug="both", url=router.url, token=TEST_TOKEN, read_only_token=READ_ONLY)
    reader, writer = get_client(both), get_writer(both)
    assert reader is not writer
    assert get_client(both) is reader and get_writer(both) is writer
    other = StoreConnection(name="both", slug="both", url=router.url, token=TEST_TOKEN, read_only_token="new-one")
    assert get_client(other) is not reader and get_writer(other) is not writer
    without = StoreConnection(name="both", slug="both", url=router.url, token=TEST_TOKEN)
    assert get_client(without) is get_writer(without)


# --- what a read-only token may be refused, and read-your-writes across the two tokens ------------


def answer(seen):
    """A store whose read-only token is refused writes, scripts and transactions (an ACL of +@read alone)."""
    read_only = seen.headers["Authorization"] == f"Bearer {READ_ONLY}"
    headers = {"upstash-sync-token": f"after {seen.body[0] if seen.path == '/' else seen.path}"}
    if seen.path == "/multi-exec" and read_only:
        return Reply(400, {"error": NOPERM.format("multi")}, headers=headers)
    if seen.path in ("/pipeline", "/multi-exec"):
        return Reply(200, [{"result": 1}] * len(seen.body), headers=headers)
    command = seen.body[0].upper()
    if read_only and command in ("DEL", "EVAL_RO", "EVAL"):
        return Reply(400, {"error": NOPERM.format(command.lower())}, headers=headers)
    if command == "SCAN":
        return Reply(200, {"result": [b64("0"), []]}, headers=headers)
    if command == "PING":
        return Reply(200, {"result": b64("PONG")}, headers=headers)
    return Reply(200, {"result": 0 if command == "DEL" else 1}, headers=headers)


@pytest.fixture
def strict():
    """A fake store that refuses its read-only token all but plain reads, and a connection to it."""
    with FakeStore() as fake:
        fake.replies["*"] = answer
        yield (
            fake,
            StoreConnection(name="strict", slug="strict", url=fake.url, token="full-1234", read_only_token=READ_ONLY),
        )


def sent(fake):
    return [
        (seen.headers["Authorization"].removeprefix("Bearer "), seen.path, seen.body[0] if seen.path == "/" else None)
        for seen in fake.seen
    ]


def test_a_read_only_token_refused_scripts_runs_them_read_only_with_the_full_token(strict):
    fake, conn = strict
    assert scripts.read(conn, "return 1", []) == 1
    assert scripts.read(conn, "return 1", []) == 1  # the refusal is remembered: one request, by digest now
    assert sent(fake) == [(READ_ONLY, "/", "EVAL_RO"), ("full-1234", "/", "EVAL_RO"), ("full-1234", "/", "EVALSHA_RO")]


@pytest.mark.parametrize(
    "refused",
    [
        NOPERM.format("del"),  # Upstash's words
        "ERR User reader has no permissions to run the 'del' command",  # Valkey's, once a client drops the code
    ],
)
def test_a_command_refused_to_the_token_is_a_clear_error(refused):
    with FakeStore() as fake:
        fake.replies["*"] = Reply(400, {"error": refused})
        client = StoreClient(fake.url, READ_ONLY)
        with pytest.raises(StorePermissionError, match="A read-only token may not write") as caught:
            client.call("DEL", "k")
        client.close()
    assert refused in str(caught.value) and not caught.value.retry


def test_reads_wait_for_the_writes_made_with_the_full_token(strict):
    fake, conn = strict
    get_writer(conn).call("SET", "k", "v")
    get_client(conn).call("GET", "k")
    write, read = fake.seen
    assert (
        write.headers["Authorization"] == "Bearer full-1234" and read.headers["Authorization"] == f"Bearer {READ_ONLY}"
    )
    assert read.headers["Upstash-Sync-Token"] == "after SET"  # what the write's reply carried


# --- "Test connection" -------------------------------------------------------------------------


def test_the_check_accepts_a_read_only_token_that_reads_and_may_not_write(admin_web, strict):
    fake, _ = strict
    html = admin_web.post(
        "/connections/test/", form_data(url=fake.url, token="full-1234", read_only_token=READ_ONLY)
    ).content.decode()
    assert "alert-success" in html and "The read-only token reads and was refused a write" in html
    assert "It may not run scripts" in html
    probes = [body for token, path, body in sent(fake) if body == "DEL"]
    assert len(probes) == 2  # one per token, on a key made up for the check
    assert all(seen.body[1].startswith("memoryadmin:token-check:") for seen in fake.seen if seen.body[0] == "DEL")
    assert READ_ONLY not in html and "full-1234" not in html


def test_the_check_refuses_a_read_only_token_that_may_write(admin_web, routed, dbs):
    full, reads = dbs
    write_langchain_session(reads, "chat", ["hi"])
    html = admin_web.post(
        "/connections/test/", form_data(url=routed.url, token=TEST_TOKEN, read_only_token=READ_ONLY)
    ).content.decode()
    assert "alert-error" in html and "The read-only token may write" in html
    assert reads.call("DBSIZE") == 1 and full.call("DBSIZE") == 0  # the probe changed nothing
    event = AuditEvent.objects.get(action="connection.test")
    assert event.outcome == "failed" and READ_ONLY not in json.dumps([event.details, event.error])


def test_the_check_says_when_the_rest_token_may_not_write(admin_web, strict):
    fake, _ = strict
    html = admin_web.post("/connections/test/", form_data(url=fake.url, token=READ_ONLY)).content.decode()
    assert "alert-error" in html and "The REST token may not write" in html
    assert "check that the REST token field holds the database" in html


def test_a_wrong_read_only_token_is_named_as_such(admin_web, connection):
    html = admin_web.post(
        "/connections/test/", form_data(url=connection.url, token=TEST_TOKEN, read_only_token="wrong-read-only")
    ).content.decode()
    assert "alert-error" in html and "With the read-only token: The store rejected the read-only token." in html
    wrong = StoreConnection(name="w", slug="wrong", url=connection.url, token=TEST_TOKEN, read_only_token="wrong-1")
    with pytest.raises(StoreAuthError, match="rejected the read-only token"):
        sessions.scan_sessions(wrong)


def test_the_check_without_a_read_only_token_says_so(admin_web, connection):
    html = admin_web.post("/connections/test/", form_data(url=connection.url, token=TEST_TOKEN)).content.decode()
    assert "alert-success" in html and "No read-only token: reads use the full token too." in html


# --- the form, the pages, the environment, key rotation ------------------------------------------


def test_the_read_only_token_is_encrypted_and_never_shown(admin_web):
    admin_web.post("/connections/new/", form_data(read_only_token=READ_ONLY))
    saved = Connection.objects.get(name="staging")
    assert saved.read_only_token == READ_ONLY
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM connections_connection WHERE id = %s", [saved.pk])
        assert READ_ONLY not in " ".join(map(str, cursor.fetchone()))
    for url in ("/connections/", f"/connections/{saved.pk}/"):
        html = admin_web.get(url).content.decode()
        assert READ_ONLY not in html and "••••5678" in html and "••••9876" in html


def test_a_refused_form_never_shows_the_tokens_back(admin_web):
    html = admin_web.post("/connections/new/", form_data(read_only_token=READ_ONLY, page_size="0")).content.decode()
    assert "Between 1 and 500" in html
    assert READ_ONLY not in html and "tok-abcdef-9876" not in html
    assert not Connection.objects.exists()


def test_empty_keeps_the_stored_read_only_token_and_the_box_removes_it(admin_web):
    admin_web.post("/connections/new/", form_data(read_only_token=READ_ONLY))
    saved = Connection.objects.get(name="staging")
    admin_web.post(f"/connections/{saved.pk}/", form_data(token="", timeout="7"))
    saved.refresh_from_db()
    assert saved.timeout == 7 and saved.read_only_token == READ_ONLY
    assert "Remove the stored read-only token" in admin_web.get(f"/connections/{saved.pk}/").content.decode()
    admin_web.post(f"/connections/{saved.pk}/", form_data(token="", remove_read_only_token="on"))
    saved.refresh_from_db()
    assert saved.read_only_token == "" and saved.token == "tok-abcdef-9876"
    assert saved.to_store_connection().read_only_token == ""


def test_a_new_url_needs_the_read_only_token_again_or_its_removal(admin_web):
    admin_web.post("/connections/new/", form_data(read_only_token=READ_ONLY))
    saved = Connection.objects.get(name="staging")
    moved = form_data(url="https://elsewhere.upstash.io", token="new-full-token-1111")
    assert "enter the read-only token again" in admin_web.post(f"/connections/{saved.pk}/", moved).content.decode()
    saved.refresh_from_db()
    assert saved.url == "https://example.upstash.io"
    admin_web.post(f"/connections/{saved.pk}/", {**moved, "remove_read_only_token": "on"})
    saved.refresh_from_db()
    assert saved.url == "https://elsewhere.upstash.io" and saved.read_only_token == ""


def test_the_read_only_token_cannot_be_the_full_one(admin_web):
    html = admin_web.post("/connections/new/", form_data(read_only_token="tok-abcdef-9876")).content.decode()
    assert "This is the REST token itself" in html
    assert not Connection.objects.exists()


def test_the_connection_list_says_which_tokens_are_set(admin_web, settings):
    admin_web.post("/connections/new/", form_data())
    admin_web.post("/connections/new/", form_data(name="with both", read_only_token=READ_ONLY))
    html = admin_web.get("/connections/").content.decode()
    assert "no read-only token" in html  # the environment's and "staging"
    assert "read-only <code>••••5678</code>" in html
    settings.UPSTASH_REDIS_REST_READ_ONLY_TOKEN = READ_ONLY
    html = admin_web.get("/connections/").content.decode()
    assert "read-only token set" in html and READ_ONLY not in html


def test_the_environment_connection_takes_its_read_only_token_from_the_environment(settings, connection):
    assert environment_connection().read_only_token == ""
    settings.UPSTASH_REDIS_REST_READ_ONLY_TOKEN = READ_ONLY
    assert environment_connection().read_only_token == READ_ONLY


def test_key_rotation_re_encrypts_the_read_only_token_too(settings, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [old]
    saved = Connection(name="prod", url="https://x.upstash.io")
    saved.token, saved.read_only_token = "full-token-1234", READ_ONLY
    saved.save()
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys")
    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [new]  # the old key removed
    reloaded = Connection.objects.get(pk=saved.pk)
    assert reloaded.read_only_token == READ_ONLY and reloaded.token == "full-token-1234"


# --- against the local store's own read-only token ----------------------------------------------

needs_local_read_only_token = pytest.mark.skipif(
    "read_only_token" not in inspect.signature(LocalStore).parameters,
    reason="LocalStore has no read_only_token= argument yet (the local store's --read-only-token)",
)


@pytest.fixture(scope="module")
def guarded_store():
    with LocalStore(port=0, token="guarded-full-token", read_only_token=READ_ONLY) as store:
        yield store


@needs_local_read_only_token
def test_a_real_read_only_token_reads_everything_and_writes_nothing(guarded_store):
    conn = StoreConnection(
        name="guarded", slug="guarded", url=guarded_store.url, token="guarded-full-token", read_only_token=READ_ONLY
    )
    writer, reader = get_writer(conn), get_client(conn)
    writer.call("FLUSHDB")
    write_langchain_session(writer, "chat", ["a", "b", "c"])
    assert [row.key for row in sessions.scan_sessions(conn).rows] == ["chat"]
    assert len(sessions.get_transcript(conn, "chat").messages) == 3
    assert len(list(sessions.read_whole_session(conn, "chat").windows)[0]) == 3
    assert bulk.apply_to_batch(conn, ["chat"], "count") == [3]
    with pytest.raises(StorePermissionError):
        reader.call("DEL", "chat")
    sessions.set_ttl(conn, "chat", 60)
    assert 0 < reader.call("TTL", "chat") <= 60
    assert sessions.clear_session(conn, "chat") == 3
    check = check_connection(conn)
    assert check.ok and "The read-only token reads and was refused a write" in check.message
