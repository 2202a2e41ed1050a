"""Clearing a session: confirmation page, htmx redirect, what is deleted and what is not."""

import pytest

from memoryadmin.dashboard.converters import encode_key

from .conftest import SHOWN_ENV
from .factories import write_langchain_session

pytestmark = pytest.mark.django_db

KEY = "support bot/2026 #42 100% ünïcødé?\nsecond line"


def url(key):
    return f"/sessions/{encode_key(key)}/clear/"


@pytest.fixture
def session(store):
    write_langchain_session(store, KEY, ["a", "b", "c"])
    store.call("HSET", f"memoryadmin:summary:{KEY}", "text", "s")
    write_langchain_session(store, "neighbour", ["x"])
    return KEY


def test_confirmation_page_names_the_session_and_changes_nothing(web, store, session):
    html = web.get(url(session)).content.decode()
    assert "Clear this session?" in html
    assert "ünïcødé" in html
    assert store.call("LLEN", session) == 3


def test_clear_without_htmx_redirects_to_the_list_with_a_message(web, store, session):
    response = web.post(url(session), SHOWN_ENV, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert "3 messages and its summary were deleted" in response.content.decode()
    assert store.call("EXISTS", session, f"memoryadmin:summary:{session}") == 0
    assert store.call("LLEN", "neighbour") == 1


def test_clear_with_htmx_asks_the_browser_to_go_to_the_list(web, store, session):
    response = web.post(url(session), SHOWN_ENV, headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == "/"
    assert store.call("EXISTS", session) == 0


def test_clearing_twice_says_it_is_gone(web, store, session):
    web.post(url(session), SHOWN_ENV)
    response = web.post(url(session), SHOWN_ENV)
    assert response.status_code == 404
    assert b"cleared or has expired" in response.content


def test_a_non_list_key_is_left_alone(web, store):
    store.call("SET", "cache:x", "keep me")
    response = web.post(url("cache:x"), SHOWN_ENV)
    assert response.status_code == 404
    assert store.call("GET", "cache:x") == b"keep me"
