"""Redacting one message from the transcript page: the link, the confirmation, the write, its audit."""

import json
import re

import pytest

from memoryadmin.audit.models import AuditEvent
from memoryadmin.dashboard.converters import encode_key

from .conftest import SHOWN_ENV
from .factories import langchain

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"
KEY = "support bot/42 ünïcødé"
SUMMARY = f"memoryadmin:summary:{KEY}"
OLDEST = langchain("human", f"Hi, I am {EMAIL}")


def url(index=0, key=KEY):
    return f"/sessions/{encode_key(key)}/messages/{index}/redact/"


@pytest.fixture
def session(store):
    store.call("LPUSH", KEY, OLDEST, langchain("ai", "Noted."))
    store.call("HSET", SUMMARY, "text", f"The customer is {EMAIL}")
    return KEY


def confirmation_form(html):
    """The confirmation page's form as a browser without JS would post it: its action and its fields."""
    form = re.search(r'<form method="post"( action="([^"]*)")?>(.*?)</form>', html, re.S)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(3)))
    return form.group(2), fields


def test_the_transcript_links_each_message_to_its_redaction(web, session):
    html = web.get(f"/sessions/{encode_key(KEY)}/").content.decode()
    assert f'href="{url(0)}?order=newest-first">Redact…' in html
    assert f'href="{url(1)}?order=newest-first">Redact…' in html


def test_viewers_see_no_redact_link_and_get_a_403_that_changes_nothing(client, viewer, connection, store, session):
    client.force_login(viewer)
    assert "Redact…" not in client.get(f"/sessions/{encode_key(KEY)}/").content.decode()
    before = store.call("LRANGE", KEY, 0, -1)
    assert client.get(url(), {"order": "newest-first"}).status_code == 403
    response = client.post(url(), {**SHOWN_ENV, "order": "newest-first", "sha1": "0" * 40})
    assert response.status_code == 403
    assert store.call("LRANGE", KEY, 0, -1) == before and store.call("EXISTS", SUMMARY) == 1
    assert AuditEvent.objects.filter(action="session.redact", outcome="denied").count() == 2


def test_the_confirmation_shows_the_message_and_its_form_redacts_it_without_js(web, store, session):
    page = web.get(url(), {"order": "newest-first"})
    html = page.content.decode()
    assert "Redact message #1?" in html and "human" in html and EMAIL in html and "96\xa0bytes" in html
    assert "ünïcødé" in html
    assert store.call("LINDEX", KEY, -1) == OLDEST.encode()  # a GET changes nothing
    action, fields = confirmation_form(html)
    assert fields["connection"] == "env" and fields["order"] == "newest-first" and len(fields["sha1"]) == 40
    response = web.post(action or url(), fields, follow=True)
    assert response.redirect_chain[-1][0] == f"/sessions/{encode_key(KEY)}/#m0"
    assert "Message #1 was redacted" in response.content.decode()
    assert json.loads(store.call("LINDEX", KEY, -1))["data"]["content"] == "[redacted]"
    assert store.call("LINDEX", KEY, 0) == langchain("ai", "Noted.").encode()
    assert store.call("EXISTS", SUMMARY) == 0


def test_the_audit_event_says_which_message_and_its_fingerprints_never_its_text(web, store, session):
    _, fields = confirmation_form(web.get(url(), {"order": "newest-first"}).content.decode())
    web.post(url(), fields)
    event = AuditEvent.objects.get(action="session.redact")
    after = store.call("LINDEX", KEY, -1)
    assert event.outcome == "ok" and event.session_key == KEY
    assert event.details["message"] == 1 and event.details["order"] == "newest-first"
    assert event.details["sha1_before"] == fields["sha1"] and len(event.details["sha1_after"]) == 40
    assert (event.details["size_before"], event.details["size_after"]) == (len(OLDEST), len(after))
    assert EMAIL not in json.dumps(event.details) + event.error and "Hi, I am" not in json.dumps(event.details)


def test_a_tampered_fingerprint_redacts_nothing(web, store, session):
    before = store.call("LRANGE", KEY, 0, -1)
    response = web.post(url(), {**SHOWN_ENV, "order": "newest-first", "sha1": "a" * 40}, follow=True)
    assert "Nothing was redacted: message #1 changed after it was shown" in response.content.decode()
    assert response.redirect_chain[-1][0] == url() + "?order=newest-first"  # shown again, as it is now
    assert store.call("LRANGE", KEY, 0, -1) == before and store.call("EXISTS", SUMMARY) == 1
    event = AuditEvent.objects.get(action="session.redact")
    assert event.outcome == "failed" and event.details["outcome"] == "changed"
    for sha1 in ("", "not hex", "A" * 40):
        assert web.post(url(), {**SHOWN_ENV, "order": "newest-first", "sha1": sha1}).status_code == 400
    assert store.call("LRANGE", KEY, 0, -1) == before


def test_a_message_rewritten_after_the_confirmation_is_left_alone(web, store, session):
    _, fields = confirmation_form(web.get(url(), {"order": "newest-first"}).content.decode())
    store.call("LSET", KEY, -1, langchain("human", "another message"))
    web.post(url(), fields)
    assert store.call("LINDEX", KEY, -1) == langchain("human", "another message").encode()


def test_a_write_from_a_page_of_another_connection_changes_nothing(web, store, session):
    _, fields = confirmation_form(web.get(url(), {"order": "newest-first"}).content.decode())
    response = web.post(url(), {**fields, "connection": ""})
    assert response.status_code == 409 and store.call("LINDEX", KEY, -1) == OLDEST.encode()


def test_a_message_or_session_that_is_gone_is_a_404(web, store, session):
    assert web.get(url(5), {"order": "newest-first"}).status_code == 404
    assert web.get(url(key="gone"), {"order": "newest-first"}).status_code == 404
    response = web.post(url(key="gone"), {**SHOWN_ENV, "order": "newest-first", "sha1": "0" * 40})
    assert response.status_code == 404 and b"cleared or has expired" in response.content


def test_a_linked_page_offers_no_redaction(web, store, session, second):
    from memoryadmin.services.upstash import get_client

    get_client(second.to_store_connection()).call("LPUSH", KEY, OLDEST)
    html = web.get(f"/sessions/{encode_key(KEY)}/?connection={second.pk}").content.decode()
    assert "Redact…" not in html
