"""Legal holds through the pages: who may place, lift and see them, and the writes a hold refuses."""

import pytest
from django.db import connection as database
from django.test.utils import CaptureQueriesContext

from memoryadmin.audit.models import AuditEvent
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.holds.models import LegalHold
from memoryadmin.services import holds

from .conftest import SHOWN_ENV, user_with_role
from .factories import write_langchain_session

pytestmark = pytest.mark.django_db

KEY = "chat:why*not?\nline two"  # wildcards and a newline: held exactly, through its URL token
T = encode_key(KEY)


@pytest.fixture
def admin_role(client, django_user_model, connection):
    client.force_login(user_with_role(django_user_model, "adele", "Admin"))
    return client


def hold_directly(pattern=KEY, reason="case 2024-17"):
    return LegalHold.objects.create(
        connection_slug="env",
        connection_name="default (environment)",
        pattern=holds.exact_pattern(pattern),
        reason=reason,
    )


def test_an_admin_puts_a_session_on_hold_from_its_page(admin_role, store):
    write_langchain_session(store, KEY, ["hello", "hi"])
    page = admin_role.get(f"/sessions/{T}/").content.decode()
    assert f'href="/holds/new/?session={T}"' in page

    form = admin_role.get(f"/holds/new/?session={T}")
    assert form.status_code == 200 and "chat:why*not?" in form.content.decode()
    response = admin_role.post("/holds/new/", {"session": T, "reason": "subpoena 12", **SHOWN_ENV})

    assert response.status_code == 302 and response["Location"] == f"/sessions/{T}/"
    hold = LegalHold.objects.get()
    assert holds.exact_key(hold.pattern) == KEY and hold.reason == "subpoena 12"
    assert hold.created_by.username == "adele"
    event = AuditEvent.objects.get(action="hold.create")
    assert event.outcome == "ok" and event.session_key == KEY and event.details["hold"] == hold.pk


def test_an_admin_holds_a_typed_key_or_pattern(admin_role):
    admin_role.post("/holds/new/", {"kind": "key", "target": "user:*", "reason": "one key", **SHOWN_ENV})
    admin_role.post("/holds/new/", {"kind": "pattern", "target": "tenant:7:*", "reason": "a tenant", **SHOWN_ENV})
    exact, pattern = LegalHold.objects.all()
    assert exact.pattern == "user:\\*" and pattern.pattern == "tenant:7:*"
    assert set(holds.held_keys("env", ["user:*", "user:1", "tenant:7:a"])) == {"user:*", "tenant:7:a"}


@pytest.mark.parametrize(
    "data, error",
    [
        ({"kind": "pattern", "target": "", "reason": "r"}, "Give a session key or a pattern."),
        ({"kind": "pattern", "target": "k" * 40_000, "reason": "r"}, "at most 32,768"),
        ({"kind": "key", "target": "user:1", "reason": ""}, "This field is required."),
        ({"session": "not*a*token", "reason": "r"}, "damaged"),
    ],
)
def test_a_hold_that_cannot_be_is_a_form_error(admin_role, data, error):
    response = admin_role.post("/holds/new/", {**data, **SHOWN_ENV})
    assert response.status_code == 422 and error in response.content.decode()
    assert not LegalHold.objects.exists()


def test_a_hold_form_from_a_page_of_another_connection_places_nothing(admin_role):
    response = admin_role.post("/holds/new/", {"kind": "key", "target": "user:1", "reason": "r", "connection": "9"})
    assert response.status_code == 409
    assert not LegalHold.objects.exists()


@pytest.mark.parametrize("role", ["Operator", "Viewer"])
def test_only_an_admin_places_or_lifts_a_hold(client, connection, django_user_model, role):
    client.force_login(user_with_role(django_user_model, "someone", role))
    hold = hold_directly()
    data = {"kind": "pattern", "target": "user:*", "reason": "r", **SHOWN_ENV}
    assert client.get("/holds/new/").status_code == 403
    assert client.post("/holds/new/", data).status_code == 403
    assert client.get(f"/holds/{hold.pk}/lift/").status_code == 403
    assert client.post(f"/holds/{hold.pk}/lift/", {"reason": "r", **SHOWN_ENV}).status_code == 403
    assert list(LegalHold.objects.values_list("pk", "lifted_at")) == [(hold.pk, None)]
    denied = AuditEvent.objects.filter(outcome="denied").values_list("action", flat=True)
    assert sorted(denied) == ["hold.create", "hold.create", "hold.lift", "hold.lift"]


def test_an_operator_sees_the_holds_active_first_with_who_when_and_why(client, operator, connection):
    lifted = hold_directly("old", reason="closed case")
    LegalHold.objects.filter(pk=lifted.pk).update(lifted_by=operator, lifted_at=lifted.created_at, lift_reason="done")
    active = hold_directly("user:1", reason="open case")
    client.force_login(operator)
    html = client.get("/holds/").content.decode()
    assert html.index(f'id="hold-{active.pk}"') < html.index(f'id="hold-{lifted.pk}"')
    assert "open case" in html and "closed case" in html and "by olga: done" in html
    assert "Lift…" not in html and "Put on hold…" not in html
    assert AuditEvent.objects.get(action="hold.view").username == "olga"
    assert "Legal holds</a>" in client.get("/").content.decode()


def test_the_list_shows_only_the_current_connections_holds(admin_role, second):
    LegalHold.objects.create(connection_slug=str(second.pk), connection_name="staging bot", pattern="x", reason="far")
    assert "far" not in admin_role.get("/holds/").content.decode()


def test_an_admin_lifts_a_hold_after_confirming_why(admin_role):
    hold = hold_directly()
    page = admin_role.get(f"/holds/{hold.pk}/lift/")
    assert page.status_code == 200 and "Lift legal hold" in page.content.decode()
    refused = admin_role.post(f"/holds/{hold.pk}/lift/", {"reason": "", **SHOWN_ENV})
    assert refused.status_code == 422
    hold.refresh_from_db()
    assert hold.is_active

    response = admin_role.post(f"/holds/{hold.pk}/lift/", {"reason": "case closed", **SHOWN_ENV})
    assert response.status_code == 302
    hold.refresh_from_db()
    assert not hold.is_active and hold.lift_reason == "case closed" and hold.lifted_by.username == "adele"
    event = AuditEvent.objects.get(action="hold.lift")
    assert event.outcome == "ok" and event.details["reason"] == "case closed"
    again = admin_role.post(f"/holds/{hold.pk}/lift/", {"reason": "twice", **SHOWN_ENV}, follow=True)
    assert "already lifted" in again.content.decode()
    assert AuditEvent.objects.filter(action="hold.lift").count() == 1


def test_a_held_session_shows_the_banner_and_offers_no_clear_nor_set_ttl(web, store):
    write_langchain_session(store, KEY, ["hello"])
    hold = hold_directly(reason="subpoena 12")
    with CaptureQueriesContext(database) as queries:
        html = web.get(f"/sessions/{T}/").content.decode()
    assert "On legal hold" in html and f"hold #{hold.pk}" in html and "subpoena 12" in html
    assert "Clear session" not in html and "Set TTL" not in html
    assert "Remove TTL" in html
    assert "Put on hold…" not in html  # the operator may not; see test_an_admin_puts_a_session_on_hold_from_its_page
    assert sum("holds_legalhold" in query["sql"] for query in queries.captured_queries) == 1


def test_a_session_not_held_shows_no_banner(web, store):
    write_langchain_session(store, KEY, ["hello"])
    hold_directly("another")
    html = web.get(f"/sessions/{T}/").content.decode()
    assert "On legal hold" not in html and "Clear session" in html and "Set TTL" in html


@pytest.mark.parametrize("htmx", [False, True])
def test_clearing_a_held_session_is_refused_and_the_store_untouched(web, store, htmx):
    write_langchain_session(store, KEY, ["hello", "hi"])
    hold = hold_directly(reason="subpoena 12")
    headers = {"HX-Request": "true"} if htmx else {}
    response = web.post(f"/sessions/{T}/clear/", SHOWN_ENV, headers=headers)
    assert response.status_code == 409
    html = response.content.decode()
    assert "On legal hold" in html and f"#{hold.pk}" in html and "subpoena 12" in html
    assert ("<html" in html) is not htmx
    assert store.call("LLEN", KEY) == 2
    event = AuditEvent.objects.get(action="session.clear")
    assert event.outcome == "failed" and f"legal hold #{hold.pk}" in event.error


def test_setting_a_ttl_on_a_held_session_is_refused_but_removing_one_is_not(web, store):
    write_langchain_session(store, KEY, ["hello"])
    store.call("EXPIRE", KEY, 5000)
    hold_directly()
    response = web.post(f"/sessions/{T}/ttl/", {"preset": "3600", **SHOWN_ENV})
    assert response.status_code == 409
    assert 3600 < store.call("TTL", KEY) <= 5000
    assert AuditEvent.objects.get(action="session.ttl").outcome == "failed"

    assert web.post(f"/sessions/{T}/persist/", SHOWN_ENV).status_code == 302
    assert store.call("TTL", KEY) == -1
    assert AuditEvent.objects.get(action="session.persist").outcome == "ok"


def test_after_the_hold_is_lifted_the_session_can_be_cleared(web, store, rf, admin):
    write_langchain_session(store, KEY, ["hello"])
    hold = hold_directly()
    request = rf.post("/")
    request.user = admin
    holds.lift_hold(request, hold, "case closed")
    assert web.post(f"/sessions/{T}/clear/", SHOWN_ENV).status_code == 302
    assert store.call("EXISTS", KEY) == 0
