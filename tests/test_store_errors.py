"""A dead, slow or misconfigured store gives a clear page quickly, never a traceback."""

import html
import socket
import time

import pytest
from django.test import Client

from memoryadmin.dashboard.converters import encode_key

from .factories import write_langchain_session
from .fake_store import FakeStore, Reply

pytestmark = pytest.mark.django_db


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dead_store_is_a_503_page(web, settings):
    settings.UPSTASH_REDIS_REST_URL = f"http://127.0.0.1:{free_port()}"
    settings.MEMORYADMIN_STORE_TIMEOUT = 30
    started = time.monotonic()
    response = web.get("/")
    # Refused connections: ~0.4 s of retry pauses; waiting on a timeout instead would take 30 s or more.
    assert time.monotonic() - started < 10
    assert response.status_code == 503
    assert b"Could not reach the store" in response.content
    assert b"Try again" in response.content


def test_slow_store_is_a_503_within_the_timeout(web, settings, local_store, store):
    write_langchain_session(store, "lc", ["x"])
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.5
    local_store.gateway.latency_ms = 6000
    started = time.monotonic()
    response = web.get("/")
    elapsed = time.monotonic() - started
    local_store.gateway.latency_ms = 0
    assert response.status_code == 503
    assert b"did not answer within 0.5 s" in response.content
    # ~0.5 s; a request that waited for the store's answer would take its 6 s: far from both.
    assert elapsed < 3


def test_store_error_in_an_htmx_request_is_an_alert_fragment(web, settings):
    settings.UPSTASH_REDIS_REST_URL = f"http://127.0.0.1:{free_port()}"
    response = web.get("/", {"cursor": "5"}, headers={"HX-Request": "true"})
    assert response.status_code == 503
    assert b"<html" not in response.content
    assert b'role="alert"' in response.content


def test_wrong_token_is_a_502_that_says_so(web, settings):
    settings.UPSTASH_REDIS_REST_TOKEN = "not-the-token"
    response = web.get("/")
    assert response.status_code == 502
    assert b"rejected the REST token" in response.content


def test_no_store_configured(web, settings):
    settings.UPSTASH_REDIS_REST_URL = ""
    response = web.get("/")
    assert response.status_code == 503
    assert b"UPSTASH_REDIS_REST_URL" in response.content


def test_an_unexpected_error_is_a_500_page_with_the_request_id(connection, operator, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("memoryadmin.services.sessions.scan_sessions", broken)
    client = Client(raise_request_exception=False)
    client.force_login(operator)
    response = client.get("/")
    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content
    assert response["X-Request-ID"].encode() in response.content


PROXY_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>nginx</body></html>"


@pytest.mark.parametrize(
    ("reply", "status", "title", "shown"),
    [
        (
            Reply(400, {"error": "ERR max request size exceeded. Limit: 10485760 bytes, Actual: 10486123 bytes"}),
            502,
            "The request was too big for the store",
            "ERR max request size exceeded. Limit: 10485760 bytes",
        ),
        (
            Reply(400, {"error": "ERR max requests limit exceeded. Limit: 500000, Usage: 500000"}),
            503,
            "The store's plan limit was reached",
            "ERR max requests limit exceeded",
        ),
        (Reply(429, b"Too Many Requests", "text/plain"), 503, "The store's plan limit was reached", "HTTP 429"),
        (
            Reply(400, {"error": "WRONGPASS invalid or missing auth token"}),
            502,
            "The store refused the credentials",
            "WRONGPASS invalid or missing auth token",
        ),
        (Reply(502, PROXY_PAGE, "text/html"), 503, "The store is unavailable", "502 Bad Gateway"),
        (
            Reply(200, b"<html><body>Sign in to the guest network</body></html>", "text/html"),
            502,
            "The store's reply could not be read",
            "Sign in to the guest network",
        ),
        (Reply(400, {"error": "ERR unknown command 'SCAN'"}), 502, "The store refused a command", "unknown command"),
    ],
)
@pytest.mark.parametrize("path", ["/", f"/sessions/{encode_key('chat')}/"])
def test_each_kind_of_store_failure_is_a_page_that_says_what_happened(web, settings, path, reply, status, title, shown):
    """The list (a single SCAN) and a transcript (a transaction) alike: status, title, the store's words, request id."""
    with FakeStore() as fake:
        fake.replies["*"] = reply
        settings.UPSTASH_REDIS_REST_URL = fake.url
        response = web.get(path)
    page = html.unescape(response.content.decode())
    assert response.status_code == status
    assert f"<title>{title} · Memory Admin</title>" in page
    assert shown in page
    assert response["X-Request-ID"] in page


def test_a_request_too_big_offers_no_pointless_try_again(web, settings):
    with FakeStore() as fake:
        fake.replies["*"] = Reply(400, {"error": "ERR max request size exceeded"})
        settings.UPSTASH_REDIS_REST_URL = fake.url
        response = web.get("/")
    assert b"Try again" not in response.content
    assert b"URL and token" not in response.content  # the connection is fine: the request was too big
