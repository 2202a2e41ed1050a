"""Permalinks to another connection: a GET never switches, and no write lands on a store the operator did not see."""

import re

import pytest

from memoryadmin.audit.models import AuditEvent
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services.upstash import get_client
from memoryadmin.summaries.models import SummaryJob

from .factories import write_langchain_session

pytestmark = pytest.mark.django_db

KEY = "shared/session 1"
T = encode_key(KEY)


@pytest.fixture
def staging(second):
    """The same key on both stores: a write on the wrong one would go unnoticed."""
    return get_client(second.to_store_connection())


@pytest.fixture
def both(store, staging):
    write_langchain_session(store, KEY, ["env hello", "env reply"])
    write_langchain_session(staging, KEY, ["staging hello", "staging reply", "staging more"])
    return store, staging


def selected_connection(html):
    return re.search(r'<option value="([^"]+)" selected>', html).group(1)


def test_following_a_link_to_another_connection_does_not_switch(web, both, second):
    page = web.get(f"/sessions/{T}/?connection={second.pk}")
    html = page.content.decode()
    assert page.status_code == 200 and "staging hello" in html and "env hello" not in html
    assert "You are viewing <strong>staging bot</strong> from a link" in html
    assert "your connection is still <strong>default (environment)</strong>" in html
    assert selected_connection(html) == "env"  # the header names the operator's own connection
    assert "env hello" in web.get(f"/sessions/{T}/").content.decode()  # nothing was remembered


def test_a_link_that_404s_does_not_switch_either(web, both, second):
    assert web.get(f"/sessions/{encode_key('nope')}/?connection={second.pk}").status_code == 404
    assert selected_connection(web.get("/").content.decode()) == "env"


def test_a_link_to_a_deleted_connection_is_404(web, both):
    assert web.get(f"/sessions/{T}/?connection=999").status_code == 404


def test_reading_via_a_link_is_audited_under_the_linked_connection(web, both, second):
    web.get(f"/sessions/{T}/?connection={second.pk}")
    event = AuditEvent.objects.get(action="session.read")
    assert event.connection_slug == str(second.pk) and event.connection_name == "staging bot"


def test_a_denied_read_via_a_link_is_audited_under_the_linked_connection(client, django_user_model, both, second):
    client.force_login(django_user_model.objects.create_user("norole", password="x"))
    assert client.get(f"/sessions/{T}/?connection={second.pk}").status_code == 403
    event = AuditEvent.objects.get(outcome="denied")
    assert event.connection_slug == str(second.pk)


def test_a_linked_page_is_read_only_until_the_operator_switches(web, both, second):
    html = web.get(f"/sessions/{T}/?connection={second.pk}").content.decode()
    assert "Set TTL" not in html and "Remove TTL" not in html
    assert "Clear session" not in html and "Re-summarize</button>" not in html
    switch = re.search(r'<form method="post" action="/connections/switch/".*?</form>', html, re.S).group(0)
    assert f'name="connection" value="{second.pk}"' in switch and f'name="next" value="/sessions/{T}/"' in switch
    # The banner's button switches and comes back to the session, now writable.
    response = web.post("/connections/switch/", {"connection": str(second.pk), "next": f"/sessions/{T}/"})
    assert response.status_code == 302 and response["Location"] == f"/sessions/{T}/"
    html = web.get(response["Location"]).content.decode()
    assert "from a link" not in html and "Set TTL" in html and "staging hello" in html


def test_links_on_a_linked_page_stay_on_the_linked_connection(web, store, staging, second, settings):
    settings.MEMORYADMIN_TRANSCRIPT_WINDOW = 2
    write_langchain_session(staging, KEY, ["first", "second", "third", "x" * 30000])
    html = web.get(f"/sessions/{T}/?connection={second.pk}").content.decode()
    earlier = re.search(r'hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"connection={second.pk}" in earlier
    assert "second" in web.get(earlier, headers={"HX-Request": "true"}).content.decode()
    raw = re.search(r'href="([^"]+/raw/[^"]*)"', html).group(1).replace("&amp;", "&")
    assert (
        b"".join(web.get(raw).streaming_content).decode()
        == '{"type": "ai", "data": {"content": "' + "x" * 30000 + '", "additional_kwargs": {}}}'
    )


def test_write_forms_name_the_connection_they_were_shown_for(web, both):
    html = web.get(f"/sessions/{T}/").content.decode()
    forms = re.findall(r'<form method="post" action="/(?:sessions|summaries)/.*?</form>', html, re.S)
    assert len(forms) == 3  # TTL, remove TTL, re-summarize
    assert all('<input type="hidden" name="connection" value="env">' in form for form in forms)
    assert """hx-vals='{"connection": "env"}'""" in html  # the htmx "Clear session…" button
    clear_page = web.get(f"/sessions/{T}/clear/").content.decode()
    assert '<input type="hidden" name="connection" value="env">' in clear_page


WRITES = {
    "ttl": (f"/sessions/{T}/ttl/", {"preset": "3600"}),
    "persist": (f"/sessions/{T}/persist/", {}),
    "clear": (f"/sessions/{T}/clear/", {}),
    "summarize": (f"/summaries/sessions/{T}/", {}),
}


def unchanged(store, staging):
    """Length, TTL and summary of the session on both stores."""
    return [
        (each.call("LLEN", KEY), each.call("TTL", KEY), each.call("EXISTS", f"memoryadmin:summary:{KEY}"))
        for each in (store, staging)
    ]


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("write", WRITES)
def test_a_write_from_a_page_of_another_connection_changes_nothing(web, both, second, write, htmx):
    store, staging = both
    store.call("EXPIRE", KEY, 500)
    before = unchanged(store, staging)
    path, data = WRITES[write]
    headers = {"HX-Request": "true"} if htmx else {}
    response = web.post(path, {**data, "connection": str(second.pk)}, headers=headers)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Nothing was changed" in html and "“staging bot”" in html and "“default (environment)”" in html
    assert ("<html" in html) is not htmx
    assert unchanged(store, staging) == before
    assert not SummaryJob.objects.exists()
    assert not AuditEvent.objects.filter(outcome__in=["ok", "pending", "failed"]).exists()


@pytest.mark.parametrize("shown", [None, "999"])
@pytest.mark.parametrize("write", WRITES)
def test_a_write_that_names_no_existing_connection_changes_nothing(web, both, write, shown):
    store, staging = both
    before = unchanged(store, staging)
    path, data = WRITES[write]
    response = web.post(path, data if shown is None else {**data, "connection": shown})
    assert response.status_code == 409 and "Nothing was changed" in response.content.decode()
    assert unchanged(store, staging) == before and not SummaryJob.objects.exists()


@pytest.mark.parametrize("write", WRITES)
def test_a_write_from_a_page_of_the_current_connection_goes_through(web, both, write, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    store, staging = both
    path, data = WRITES[write]
    assert web.post(path, {**data, "connection": "env"}).status_code == 302
    assert AuditEvent.objects.get(action=f"session.{write}").connection_slug == "env"
