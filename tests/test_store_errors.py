"""A dead, slow or misconfigured store gives a clear page quickly, never a traceback."""

import socket
import time

import pytest
from django.test import Client

from .factories import write_langchain_session

pytestmark = pytest.mark.django_db


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dead_store_is_a_503_page(web, settings):
    settings.UPSTASH_REDIS_REST_URL = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    response = web.get("/")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert b"Could not reach the store" in response.content
    assert b"Try again" in response.content


def test_slow_store_is_a_503_within_the_timeout(web, settings, local_store, store):
    write_langchain_session(store, "lc", ["x"])
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.5
    local_store.gateway.latency_ms = 2000
    started = time.monotonic()
    response = web.get("/")
    elapsed = time.monotonic() - started
    local_store.gateway.latency_ms = 0
    assert response.status_code == 503
    assert b"did not answer within 0.5 s" in response.content
    assert elapsed < 1.5


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
