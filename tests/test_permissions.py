"""Each role against each action, through the views: allowed, or refused with an audited 403."""

import pytest

from memoryadmin.audit.models import AuditEvent
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.holds.models import LegalHold
from memoryadmin.retention.models import RetentionPolicy

from .conftest import SHOWN_ENV, user_with_role
from .factories import write_langchain_session

pytestmark = pytest.mark.django_db

KEY = "perm/session #1"
T = encode_key(KEY)

RETENTION_POLICY = {
    "name": "perm",
    "rule": "clear",
    "pattern": "perm/*",
    "confirm": "perm/*",
    "schedule": "daily",
    "daily_at": "03:00",
}
# action name -> (method, path, data)
ACTIONS = {
    "list": ("get", "/", None),
    "read": ("get", f"/sessions/{T}/", None),
    "raw": ("get", f"/sessions/{T}/messages/0/raw/", None),
    "overview": ("get", "/overview/", None),
    "measure": ("post", "/overview/measure/", SHOWN_ENV),
    "ttl": ("post", f"/sessions/{T}/ttl/", {"preset": "3600", **SHOWN_ENV}),
    "persist": ("post", f"/sessions/{T}/persist/", SHOWN_ENV),
    "clear-page": ("get", f"/sessions/{T}/clear/", None),
    "clear": ("post", f"/sessions/{T}/clear/", SHOWN_ENV),
    "connections": ("get", "/connections/", None),
    "add-connection": ("post", "/connections/new/", {"name": "x"}),
    "audit": ("get", "/audit/", None),
    "audit-export": ("get", "/audit/export.csv", None),
    "holds": ("get", "/holds/", None),
    "hold-page": ("get", "/holds/new/", None),
    "hold": ("post", "/holds/new/", {"kind": "pattern", "target": "perm/*", "reason": "case 1", **SHOWN_ENV}),
    "lift-page": ("get", "/holds/1/lift/", None),
    "lift": ("post", "/holds/1/lift/", {"reason": "case closed", **SHOWN_ENV}),
    "retention": ("get", "/retention/", None),
    "retention-new-page": ("get", "/retention/new/", None),
    "retention-new": ("post", "/retention/new/", {**RETENTION_POLICY, **SHOWN_ENV}),
    "retention-policy": ("get", "/retention/1/", None),
    "retention-edit-page": ("get", "/retention/1/edit/", None),
    "retention-edit": ("post", "/retention/1/edit/", {**RETENTION_POLICY, **SHOWN_ENV}),
    "retention-preview": ("post", "/retention/1/preview/", SHOWN_ENV),
    "retention-enable": ("post", "/retention/1/enable/", {"preview": "1", **SHOWN_ENV}),
    "retention-disable-page": ("get", "/retention/1/disable/", None),
    "retention-disable": ("post", "/retention/1/disable/", SHOWN_ENV),
}
VIEWER = {"list", "read", "raw", "overview", "measure"}
OPERATOR = VIEWER | {"ttl", "persist", "clear-page", "clear", "holds"}
ADMIN = set(ACTIONS)
ALLOWED = {"Viewer": VIEWER, "Operator": OPERATOR, "Admin": ADMIN}


@pytest.mark.parametrize("role", ALLOWED)
@pytest.mark.parametrize("action", ACTIONS)
def test_permission_matrix(client, connection, store, django_user_model, role, action):
    write_langchain_session(store, KEY, ["hello", "hi"])
    client.force_login(user_with_role(django_user_model, f"user-{role}", role))
    method, path, data = ACTIONS[action]
    response = getattr(client, method)(path, data or {})
    if action in ALLOWED[role]:
        assert response.status_code != 403, response.content[:300]
    else:
        assert response.status_code == 403
        assert "This needs the" in response.content.decode()
        event = AuditEvent.objects.get(outcome="denied")
        assert event.username == f"user-{role}"
        assert event.details["method"] == method.upper()
        assert store.call("LLEN", KEY) == 2 and store.call("TTL", KEY) == -1
        assert not LegalHold.objects.exists() and not RetentionPolicy.objects.exists()


def test_viewer_sees_no_write_buttons(client, connection, store, viewer):
    write_langchain_session(store, KEY, ["hello"])
    client.force_login(viewer)
    html = client.get(f"/sessions/{T}/").content.decode()
    assert "Clear session" not in html
    assert "Set TTL" not in html and "Remove TTL" not in html
    assert "Connections</a>" not in html and "Audit log</a>" not in html


def test_operator_sees_write_buttons_but_not_admin_pages(web, store):
    write_langchain_session(store, KEY, ["hello"])
    html = web.get(f"/sessions/{T}/").content.decode()
    assert "Clear session" in html and "Set TTL" in html
    assert "Audit log</a>" not in html and "Retention</a>" not in html


def test_the_403_names_the_role_needed(client, connection, store, viewer):
    write_langchain_session(store, KEY, ["hello"])
    client.force_login(viewer)
    html = client.post(f"/sessions/{T}/clear/").content.decode()
    assert "needs the Admin or Operator role" in html


def test_htmx_denial_is_an_alert_fragment(client, connection, store, viewer):
    write_langchain_session(store, KEY, ["hello"])
    client.force_login(viewer)
    response = client.post(f"/sessions/{T}/ttl/", {"preset": "3600"}, headers={"HX-Request": "true"})
    assert response.status_code == 403
    assert b"<html" not in response.content and b'role="alert"' in response.content


def test_superuser_can_do_everything(admin_web, store):
    write_langchain_session(store, KEY, ["hello"])
    assert admin_web.post(f"/sessions/{T}/clear/", SHOWN_ENV).status_code == 302
    assert admin_web.get("/audit/").status_code == 200
