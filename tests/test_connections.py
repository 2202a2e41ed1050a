"""Managing connections in the app, testing them, switching between them, and the client registry."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from memoryadmin.audit.models import AuditEvent
from memoryadmin.connections.models import Connection
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services.upstash import get_client

from .conftest import TEST_TOKEN
from .factories import write_langchain_session

pytestmark = pytest.mark.django_db


def form_data(**overrides):
    data = {
        "name": "staging",
        "url": "https://example.upstash.io",
        "token": "tok-abcdef-9876",
        "key_pattern": "*",
        "display_prefix": "",
        "list_order": "auto",
        "summary_namespace": "memoryadmin:summary:",
        "default_ttl": "604800",
        "page_size": "50",
        "scan_budget": "10000",
        "max_request_bytes": "10000000",
        "timeout": "5",
    }
    return {**data, **overrides}


def test_add_connection_token_encrypted_and_never_shown(admin_web):
    response = admin_web.post("/connections/new/", form_data(), follow=True)
    assert response.status_code == 200
    saved = Connection.objects.get(name="staging")
    assert saved.token == "tok-abcdef-9876"
    for url in ("/connections/", f"/connections/{saved.pk}/"):
        html = admin_web.get(url).content.decode()
        assert "tok-abcdef-9876" not in html
        assert "••••9876" in html


def test_empty_token_on_edit_keeps_the_stored_one(admin_web):
    admin_web.post("/connections/new/", form_data())
    saved = Connection.objects.get(name="staging")
    admin_web.post(f"/connections/{saved.pk}/", form_data(token="", name="staging 2"))
    saved.refresh_from_db()
    assert saved.name == "staging 2" and saved.token == "tok-abcdef-9876"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"url": "http://example.upstash.io"}, "Use an https:// URL"),
        ({"url": "ftp://x"}, "Enter a valid URL"),
        ({"token": ""}, "needs its REST token"),
        ({"page_size": "0"}, "Between 1 and 500"),
        ({"max_request_bytes": "999999"}, "Between 1,000,000 and 1,000,000,000"),
    ],
)
def test_validation(admin_web, overrides, error):
    response = admin_web.post("/connections/new/", form_data(**overrides))
    assert error in response.content.decode()
    assert not Connection.objects.exists()


def test_a_form_that_failed_validation_does_not_echo_its_tokens(admin_web):
    sent = form_data(page_size="0", read_only_token="ro-token-secret-5555")
    response = admin_web.post("/connections/new/", sent)
    html = response.content.decode()
    assert response.status_code == 200 and "Between 1 and 500" in html  # the form, shown again with its error
    assert "tok-abcdef-9876" not in html and "ro-token-secret-5555" not in html
    assert not Connection.objects.exists()


def test_a_pro_plan_raises_the_request_limit_its_reads_are_sized_by(admin_web):
    from memoryadmin.services.sessions import reply_budget

    admin_web.post("/connections/new/", form_data(max_request_bytes="100000000"))
    connection = Connection.objects.get(name="staging").to_store_connection()
    assert connection.max_request_bytes == 100_000_000
    assert reply_budget(connection) == 60_000_000


def test_http_is_allowed_for_localhost(admin_web):
    admin_web.post("/connections/new/", form_data(url="http://127.0.0.1:8079"))
    assert Connection.objects.filter(url="http://127.0.0.1:8079").exists()


def test_test_connection_success_and_wrong_token(admin_web, local_store, store):
    write_langchain_session(store, "abc", ["hi"])
    ok = admin_web.post("/connections/test/", form_data(url=local_store.url, token=TEST_TOKEN)).content.decode()
    assert "Connected to" in ok and "1 session matching" in ok
    assert "<html" not in ok
    bad = admin_web.post("/connections/test/", form_data(url=local_store.url, token="nope")).content.decode()
    assert "rejected the REST token" in bad
    assert not Connection.objects.exists()  # testing saves nothing


def test_test_connection_of_a_saved_one_uses_its_stored_token(admin_web, second):
    html = admin_web.post("/connections/test/", form_data(url=second.url, token="", pk=second.pk)).content.decode()
    assert "Connected to" in html


def test_environment_connection_is_listed_as_not_editable(admin_web):
    html = admin_web.get("/connections/").content.decode()
    assert "default (environment)" in html and "not editable" in html
    assert TEST_TOKEN not in html


def test_delete_asks_first(admin_web, second):
    assert "Delete connection" in admin_web.get(f"/connections/{second.pk}/delete/").content.decode()
    assert Connection.objects.filter(pk=second.pk).exists()
    admin_web.post(f"/connections/{second.pk}/delete/")
    assert not Connection.objects.filter(pk=second.pk).exists()


def test_switching_shows_the_other_stores_sessions(admin_web, store, second):
    write_langchain_session(store, "env-session", ["hi"])
    write_langchain_session(get_client(second.to_store_connection()), "staging-session", ["hi"])
    assert "env-session" in admin_web.get("/").content.decode()
    admin_web.post("/connections/switch/", {"connection": str(second.pk)})
    html = admin_web.get("/").content.decode()
    assert "staging-session" in html and "env-session" not in html
    assert re.search(rf'<option value="{second.pk}" selected>staging bot', html)


def test_production_connection_is_marked_on_every_page(admin_web, second):
    second.is_production = True
    second.save()
    admin_web.post("/connections/switch/", {"connection": str(second.pk)})
    assert "PRODUCTION" in admin_web.get("/").content.decode()


def test_switching_to_a_missing_connection_is_refused(admin_web):
    response = admin_web.post("/connections/switch/", {"connection": "999"}, follow=True)
    assert "no longer exists" in response.content.decode()


def test_one_default_at_a_time_and_it_is_used_first(admin_web, second, store):
    admin_web.post(
        f"/connections/{second.pk}/", form_data(name="staging bot", url=second.url, token="", is_default="on")
    )
    write_langchain_session(get_client(second.to_store_connection()), "staging-session", ["hi"])
    assert "staging-session" in admin_web.get("/").content.decode()
    admin_web.post("/connections/new/", form_data(name="other", is_default="on"))
    assert list(Connection.objects.filter(is_default=True).values_list("name", flat=True)) == ["other"]


def test_client_is_reused_across_requests_and_rebuilt_after_an_edit(admin_web, second):
    admin_web.post("/connections/switch/", {"connection": str(second.pk)})
    admin_web.get("/")
    first = get_client(Connection.objects.get(pk=second.pk).to_store_connection())
    admin_web.get("/")
    assert get_client(Connection.objects.get(pk=second.pk).to_store_connection()) is first
    admin_web.post(f"/connections/{second.pk}/", form_data(name="staging bot", url=second.url, token="", timeout="7"))
    rebuilt = get_client(Connection.objects.get(pk=second.pk).to_store_connection())
    assert rebuilt is not first and rebuilt.timeout == 7


def test_operators_without_permission_cannot_manage_connections(web):
    assert web.get("/connections/").status_code == 403
    assert web.post("/connections/new/", form_data()).status_code == 403


def test_a_permalink_opens_the_session_on_its_own_connection(admin_web, store, second):
    write_langchain_session(get_client(second.to_store_connection()), "staging-session", ["hi"])
    admin_web.post("/connections/switch/", {"connection": str(second.pk)})
    page = admin_web.get(f"/sessions/{encode_key('staging-session')}/").content.decode()
    link = re.search(r'id="permalink" type="url" readonly value="([^"]+)"', page).group(1).replace("&amp;", "&")
    admin_web.post("/connections/switch/", {"connection": "env"})  # the colleague is elsewhere
    followed = admin_web.get(link)
    assert followed.status_code == 200 and "You are viewing <strong>staging bot</strong>" in followed.content.decode()
    assert admin_web.get(f"/sessions/{encode_key('staging-session')}/?connection=999").status_code == 404


# --- "Test connection": where a token goes, what is audited, what a strange URL answers -------------


class FakeStore:
    """A throwaway HTTP server on 127.0.0.1 that records the Authorization headers it receives.

    It answers every request with `reply` (status, content type, body); "{auth}" in the body is
    replaced by the Authorization header received, as a hostile server might echo it.
    """

    def __init__(self):
        self.authorizations = []
        self.reply = (200, "application/json", '{"result": "UE9ORw=="}')  # "PONG", base64
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                fake.authorizations.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, content_type, body = fake.reply
                payload = body.replace("{auth}", self.headers.get("Authorization") or "").encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_port}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_store():
    fake = FakeStore()
    yield fake
    fake.close()


def test_the_saved_token_is_never_sent_to_another_url(admin_web, second, fake_store):
    response = admin_web.post("/connections/test/", form_data(url=fake_store.url, token="", pk=second.pk))
    assert response.status_code == 422
    assert "enter the REST token again" in response.content.decode()
    assert fake_store.authorizations == []


def test_a_new_url_is_tested_with_the_token_typed(admin_web, second, fake_store):
    admin_web.post("/connections/test/", form_data(url=fake_store.url, token="typed-token-1234", pk=second.pk))
    assert fake_store.authorizations == ["Bearer typed-token-1234", "Bearer typed-token-1234"]  # PING, SCAN


def test_editing_the_url_needs_the_token_again(admin_web, second, fake_store):
    html = admin_web.post(f"/connections/{second.pk}/", form_data(url=fake_store.url, token="")).content.decode()
    assert "enter the REST token again" in html
    second.refresh_from_db()
    assert second.url != fake_store.url and second.token == "other-token-abcdef"
    admin_web.post(f"/connections/{second.pk}/", form_data(url=fake_store.url, token="typed-token-1234"))
    second.refresh_from_db()
    assert second.url == fake_store.url and second.token == "typed-token-1234"


def test_every_test_is_audited_without_the_token(admin_web, second, fake_store):
    admin_web.post("/connections/test/", form_data(url=second.url, token="", pk=second.pk))
    admin_web.post("/connections/test/", form_data(url=fake_store.url, token="", pk=second.pk))
    fake_store.reply = (500, "text/plain", "echo: {auth}")
    html = admin_web.post("/connections/test/", form_data(url=fake_store.url, token="typed-token-1234")).content
    assert b"typed-token-1234" not in html

    ok, moved, echoed = AuditEvent.objects.filter(action="connection.test").order_by("id")
    assert ok.outcome == "ok" and ok.username == "ada"
    assert ok.connection_slug == str(second.pk) and ok.connection_name == "staging bot"
    assert ok.details == {"host": second.url.split("//")[1]}
    assert moved.outcome == "failed" and "enter the REST token again" in moved.error
    assert moved.details == {"host": fake_store.host}
    assert echoed.outcome == "failed" and echoed.connection_slug == "" and "HTTP 500" in echoed.error
    for event in (ok, moved, echoed):
        recorded = json.dumps([event.details, event.error, event.session_key])
        assert "other-token-abcdef" not in recorded and "typed-token-1234" not in recorded


@pytest.mark.parametrize(
    "reply",
    [
        (200, "text/html", "<!doctype html><html><body>Sign in</body></html>"),
        (404, "text/html", "<html><body>Not found</body></html>"),
        (200, "application/json", "{not json"),
        (200, "application/json", '{"unexpected": 1}'),
        (200, "application/json", "[1, 2]"),
        (200, "application/json", '"PONG"'),
        (200, "application/json", '{"result": "!!!"}'),
        (200, "application/json", '{"result": {"nested": true}}'),
        (200, "application/json", '{"result": "UE9ORw=="}'),  # PONG to PING, and to SCAN too
    ],
)
def test_a_url_that_does_not_answer_like_upstash_gives_a_clear_message(admin_web, fake_store, reply):
    fake_store.reply = reply
    response = admin_web.post("/connections/test/", form_data(url=fake_store.url, token="typed-token-1234"))
    html = response.content.decode()
    assert response.status_code == 200 and "alert-error" in html and "Connected to" not in html
    assert re.search(r'class="alert alert-error">\s*\S', html)  # a message, not an empty alert
    assert AuditEvent.objects.get(action="connection.test").outcome == "failed"


@pytest.mark.parametrize("pk", ["abc", "99999", "9" * 30, "1.5", "-1"])
def test_a_bad_connection_id_is_a_form_error(admin_web, pk, fake_store):
    response = admin_web.post("/connections/test/", form_data(url=fake_store.url, token="", pk=pk))
    assert response.status_code == 422
    assert "no longer exists" in response.content.decode()
    assert fake_store.authorizations == []
