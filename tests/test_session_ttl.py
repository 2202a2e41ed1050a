"""Setting and removing a session's TTL, with and without htmx."""

import pytest

from memoryadmin.dashboard.converters import encode_key

from .conftest import SHOWN_ENV
from .factories import write_langchain_session

pytestmark = pytest.mark.django_db


def url(key, action):
    return f"/sessions/{encode_key(key)}/{action}/"


@pytest.fixture
def session(store):
    write_langchain_session(store, "my session/1", ["a", "b"])
    store.call("HSET", "memoryadmin:summary:my session/1", "text", "s")
    return "my session/1"


def test_preset_ttl_with_htmx_returns_the_ttl_fragment(web, store, session):
    response = web.post(url(session, "ttl"), {"preset": "86400", **SHOWN_ENV}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and 'id="ttl"' in html
    assert "Expires in" in html and "Saved." in html
    assert 86300 < store.call("TTL", session) <= 86400
    assert 86300 < store.call("TTL", f"memoryadmin:summary:{session}") <= 86400


def test_custom_ttl_without_htmx_redirects_with_a_message(web, store, session):
    response = web.post(
        url(session, "ttl"),
        {"preset": "custom", "custom_value": "90", "custom_unit": "minutes", **SHOWN_ENV},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == f"/sessions/{encode_key(session)}/"
    assert "expires in 1 h 30 min" in response.content.decode()
    assert 5300 < store.call("TTL", session) <= 5400


@pytest.mark.parametrize(
    "data",
    [
        {"preset": "custom"},
        {"preset": "custom", "custom_value": "0", "custom_unit": "days"},
        {"preset": "custom", "custom_value": "99999", "custom_unit": "days"},
        {"preset": "12345"},
    ],
)
def test_invalid_ttl_is_refused_and_nothing_changes(web, store, session, data):
    response = web.post(url(session, "ttl"), {**data, **SHOWN_ENV}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert store.call("TTL", session) == -1


def test_persist_removes_the_ttl(web, store, session):
    store.call("EXPIRE", session, 100)
    response = web.post(url(session, "persist"), SHOWN_ENV, headers={"HX-Request": "true"})
    assert "never expires" in response.content.decode()
    assert store.call("TTL", session) == -1


def test_ttl_on_a_vanished_session_is_404(web, store):
    response = web.post(url("vanished", "ttl"), {"preset": "3600", **SHOWN_ENV}, headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert store.call("EXISTS", "vanished") == 0


def test_get_is_not_allowed(web, session):
    assert web.get(url(session, "ttl")).status_code == 405


def test_csrf_is_enforced(client, operator, connection, session):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post(url(session, "ttl"), {"preset": "3600"}).status_code == 403


@pytest.mark.parametrize(
    ("default_ttl", "selected"),
    [(604800, '<option value="604800" selected>'), (5400, '<option value="minutes" selected>')],
)
def test_the_connection_default_ttl_is_offered_first(web, session, settings, default_ttl, selected):
    settings.MEMORYADMIN_DEFAULT_TTL = default_ttl
    assert selected in web.get(f"/sessions/{encode_key(session)}/").content.decode()
