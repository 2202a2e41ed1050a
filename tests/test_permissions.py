"""Each role against each action, through the views: allowed, or refused with an audited 403."""

from datetime import time

import pytest
from django.utils import timezone

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob
from memoryadmin.connections.models import Connection
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.holds.models import LegalHold
from memoryadmin.overview.models import OverviewRun
from memoryadmin.retention.models import RetentionPolicy
from memoryadmin.services import retention

from .conftest import SHOWN_ENV, user_with_role
from .factories import write_langchain_session
from .test_connections import form_data

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


def a_hold(store):
    hold = LegalHold.objects.create(
        connection_slug="env", connection_name="default (environment)", pattern="other/*", reason="case 0"
    )
    return {"hold": hold.pk}


def a_policy(store, **fields):
    policy = RetentionPolicy.objects.create(
        connection_slug="env",
        connection_name="default (environment)",
        name="perm",
        rule=RetentionPolicy.CLEAR,
        pattern="perm/*",
        schedule=RetentionPolicy.DAILY,
        daily_at=time(3),
        changed_at=timezone.now(),
        **fields,
    )
    return {"policy": policy.pk}


def a_previewed_policy(store):
    made = a_policy(store)
    policy = RetentionPolicy.objects.get(pk=made["policy"])
    retention.preview_policy(None, policy)  # the immediate task backend counts it at once
    return {**made, "preview": retention.latest_preview(policy).pk}


def with_a_ttl(store):
    store.call("EXPIRE", KEY, 3600)
    return {}


def policy_of(made):
    return RetentionPolicy.objects.get(pk=made["policy"])


# action name -> (method, path, data, status when allowed, setup, what an allowed write changed).
# Paths and data may name what the setup made ({hold}, {policy}, {preview}).
ACTIONS = {
    "list": ("get", "/", None, 200, None, None),
    "read": ("get", f"/sessions/{T}/", None, 200, None, None),
    "raw": ("get", f"/sessions/{T}/messages/0/raw/", None, 200, None, None),
    "overview": ("get", "/overview/", None, 200, None, None),
    "measure": ("post", "/overview/measure/", SHOWN_ENV, 302, None, lambda store, made: OverviewRun.objects.exists()),
    "ttl": (
        "post",
        f"/sessions/{T}/ttl/",
        {"preset": "3600", **SHOWN_ENV},
        302,
        None,
        lambda store, made: 3500 < store.call("TTL", KEY) <= 3600,
    ),
    "persist": (
        "post",
        f"/sessions/{T}/persist/",
        SHOWN_ENV,
        302,
        with_a_ttl,
        lambda store, made: store.call("TTL", KEY) == -1,
    ),
    "clear-page": ("get", f"/sessions/{T}/clear/", None, 200, None, None),
    "clear": ("post", f"/sessions/{T}/clear/", SHOWN_ENV, 302, None, lambda store, made: not store.call("EXISTS", KEY)),
    "connections": ("get", "/connections/", None, 200, None, None),
    "add-connection": (
        "post",
        "/connections/new/",
        form_data(),
        302,
        None,
        lambda store, made: Connection.objects.filter(name="staging").exists(),
    ),
    "audit": ("get", "/audit/", None, 200, None, None),
    "audit-export": ("get", "/audit/export.csv", None, 200, None, None),
    "holds": ("get", "/holds/", None, 200, None, None),
    "hold-page": ("get", "/holds/new/", None, 200, None, None),
    "hold": (
        "post",
        "/holds/new/",
        {"kind": "pattern", "target": "perm/*", "reason": "case 1", **SHOWN_ENV},
        302,
        None,
        lambda store, made: LegalHold.objects.filter(pattern="perm/*", lifted_at=None).exists(),
    ),
    "lift-page": ("get", "/holds/{hold}/lift/", None, 200, a_hold, None),
    "lift": (
        "post",
        "/holds/{hold}/lift/",
        {"reason": "case closed", **SHOWN_ENV},
        302,
        a_hold,
        lambda store, made: LegalHold.objects.get(pk=made["hold"]).lifted_at is not None,
    ),
    "retention": ("get", "/retention/", None, 200, None, None),
    "retention-new-page": ("get", "/retention/new/", None, 200, None, None),
    "retention-new": (
        "post",
        "/retention/new/",
        {**RETENTION_POLICY, **SHOWN_ENV},
        302,
        None,
        lambda store, made: RetentionPolicy.objects.filter(name="perm").exists(),
    ),
    "retention-policy": ("get", "/retention/{policy}/", None, 200, a_policy, None),
    "retention-edit-page": ("get", "/retention/{policy}/edit/", None, 200, a_policy, None),
    "retention-edit": (
        "post",
        "/retention/{policy}/edit/",
        {**RETENTION_POLICY, "name": "perm, renamed", **SHOWN_ENV},
        302,
        a_policy,
        lambda store, made: policy_of(made).name == "perm, renamed",
    ),
    "retention-preview": (
        "post",
        "/retention/{policy}/preview/",
        SHOWN_ENV,
        302,
        a_policy,
        lambda store, made: retention.latest_preview(policy_of(made)) is not None,
    ),
    "retention-enable": (
        "post",
        "/retention/{policy}/enable/",
        {"preview": "{preview}", **SHOWN_ENV},
        302,
        a_previewed_policy,
        lambda store, made: policy_of(made).enabled,
    ),
    "retention-disable-page": ("get", "/retention/{policy}/disable/", None, 200, a_policy, None),
    "retention-disable": (
        "post",
        "/retention/{policy}/disable/",
        SHOWN_ENV,
        302,
        lambda store: a_policy(store, enabled=True, enabled_at=timezone.now()),
        lambda store, made: not policy_of(made).enabled,
    ),
}
VIEWER = {"list", "read", "raw", "overview", "measure"}
OPERATOR = VIEWER | {"ttl", "persist", "clear-page", "clear", "holds"}
ADMIN = set(ACTIONS)
ALLOWED = {"Viewer": VIEWER, "Operator": OPERATOR, "Admin": ADMIN}


def state(store):
    """What any action of the matrix may change."""
    return (
        store.call("LLEN", KEY),
        store.call("TTL", KEY),
        list(LegalHold.objects.values_list("pk", "pattern", "lifted_at")),
        list(RetentionPolicy.objects.values_list("pk", "name", "enabled")),
        BulkJob.objects.count(),
        OverviewRun.objects.count(),
        Connection.objects.count(),
    )


@pytest.mark.parametrize("role", ALLOWED)
@pytest.mark.parametrize("action", ACTIONS)
def test_permission_matrix(client, connection, store, django_user_model, role, action):
    write_langchain_session(store, KEY, ["hello", "hi"])
    client.force_login(user_with_role(django_user_model, f"user-{role}", role))
    method, path, data, status, setup, changed = ACTIONS[action]
    made = setup(store) if setup else {}
    before = state(store)
    data = {name: value.format(**made) for name, value in (data or {}).items()}
    response = getattr(client, method)(path.format(**made), data)
    if action in ALLOWED[role]:
        assert response.status_code == status, response.content[:300]
        assert changed is None or changed(store, made)
    else:
        assert response.status_code == 403
        assert "This needs the" in response.content.decode()
        event = AuditEvent.objects.get(outcome="denied")
        assert event.username == f"user-{role}"
        assert event.details["method"] == method.upper()
        assert state(store) == before


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
