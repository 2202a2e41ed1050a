"""The audit log: what is recorded for each action, the page, the CSV export, append-only."""

import csv
import gc
import io
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.db import connection as database
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, BulkJobKey
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services import audit

from .conftest import SHOWN_ENV
from .factories import write_langchain_session
from .threads import run_together

pytestmark = pytest.mark.django_db

KEY = "audit me/ünï #1\nline"
T = encode_key(KEY)


@pytest.fixture
def session(store):
    write_langchain_session(store, KEY, ["a", "b", "c"])
    return KEY


def only_event(**filters):
    (event,) = AuditEvent.objects.filter(**filters)
    return event


def test_transcript_read_is_recorded_with_who_where_and_what(web, session, operator):
    web.get(f"/sessions/{T}/", HTTP_USER_AGENT="pytest-browser/1.0", REMOTE_ADDR="10.1.2.3")
    event = only_event(action="session.read")
    assert event.user == operator and event.username == "olga"
    assert event.session_key == KEY  # exact, newline and all
    assert event.connection_name == "default (environment)" and event.connection_slug == "env"
    assert event.outcome == "ok"
    assert event.details == {"before": None, "messages_shown": 3}
    assert event.ip == "10.1.2.3" and event.user_agent == "pytest-browser/1.0"
    assert len(event.request_id) == 32


def test_a_clients_request_id_is_not_trusted_by_default(web, session):
    response = web.get(f"/sessions/{T}/", HTTP_X_REQUEST_ID="forged-id-12345678")
    generated = only_event(action="session.read").request_id
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert response["X-Request-ID"] == generated


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("proxy-id-12345678", True),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", True),  # a UUID
        ("short", False),
        ("x" * 41, False),  # longer than the audit field
        ("id with spaces 1234", False),
        ("id,other-id-1234567", False),  # two headers joined
    ],
)
def test_request_id_from_a_trusted_proxy_when_well_formed(web, session, settings, given, kept):
    settings.MEMORYADMIN_TRUST_REQUEST_ID = True
    response = web.get(f"/sessions/{T}/", HTTP_X_REQUEST_ID=given)
    recorded = only_event(action="session.read").request_id
    assert response["X-Request-ID"] == recorded
    assert recorded == given if kept else re.fullmatch(r"[0-9a-f]{32}", recorded)


def test_ttl_persist_and_clear_are_recorded_with_details(web, session):
    web.post(f"/sessions/{T}/ttl/", {"preset": "3600", **SHOWN_ENV})
    ttl = only_event(action="session.ttl")
    assert ttl.outcome == "ok" and ttl.details["seconds"] == 3600
    assert ttl.details["ttl_before"] == -1 and 3590 < ttl.details["ttl_after"] <= 3600
    web.post(f"/sessions/{T}/persist/", SHOWN_ENV)
    assert only_event(action="session.persist").details["ttl_after"] == -1
    web.post(f"/sessions/{T}/clear/", SHOWN_ENV)
    cleared = only_event(action="session.clear")
    assert cleared.outcome == "ok" and cleared.details == {"messages_removed": 3}


def test_a_transcript_read_is_recorded_by_one_insert_after_the_read(web, session):
    with CaptureQueriesContext(database) as queries:
        assert web.get(f"/sessions/{T}/").status_code == 200
    audit_writes = [q["sql"].split()[0] for q in queries.captured_queries if '"audit_auditevent"' in q["sql"]]
    assert audit_writes[0] == "INSERT" and "UPDATE" not in audit_writes
    assert only_event(action="session.read").outcome == "ok"


def test_a_failed_transcript_read_is_recorded_as_failed(web, session, local_store, settings):
    assert web.get(f"/sessions/{encode_key('gone')}/").status_code == 404
    gone = only_event(action="session.read", session_key="gone")
    assert gone.outcome == "failed" and "cleared or has expired" in gone.error
    assert gone.details == {"before": None}
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.3
    local_store.gateway.latency_ms = 1000
    response = web.get(f"/sessions/{T}/")
    local_store.gateway.latency_ms = 0
    assert response.status_code == 503
    slow = only_event(action="session.read", session_key=KEY)
    assert slow.outcome == "failed" and "did not answer" in slow.error


def test_a_transcript_is_not_shown_when_its_read_cannot_be_recorded(web, session, monkeypatch):
    def refuse(*args, **kwargs):
        raise DatabaseError("the audit database is down")

    monkeypatch.setattr(AuditEvent.objects, "create", refuse)
    with pytest.raises(DatabaseError):
        web.get(f"/sessions/{T}/")


def test_a_write_that_finds_no_session_is_recorded_as_failed(web, store):
    web.post(f"/sessions/{encode_key('gone')}/clear/", SHOWN_ENV)
    event = only_event(action="session.clear")
    assert event.outcome == "failed" and "cleared or has expired" in event.error


def test_a_failed_store_write_is_still_audited(web, session, local_store, settings):
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.3
    local_store.gateway.latency_ms = 1000
    response = web.post(f"/sessions/{T}/clear/", SHOWN_ENV)
    local_store.gateway.latency_ms = 0
    assert response.status_code == 503
    event = only_event(action="session.clear")
    assert event.outcome == "failed" and "did not answer" in event.error


@pytest.mark.parametrize(
    ("path", "data", "action", "store_state"),
    [
        ("clear/", {}, "session.clear", lambda store: store.call("LLEN", KEY)),
        ("ttl/", {"preset": "3600"}, "session.ttl", lambda store: store.call("TTL", KEY)),
    ],
    ids=["clear", "ttl"],
)
def test_the_event_is_pending_before_the_store_is_written(
    web, session, store, monkeypatch, path, data, action, store_state
):
    # What the store held when the event was recorded: the session as it was before the write.
    seen_at_record = []
    record = audit.record

    def noting_the_store(*args, **kwargs):
        event = record(*args, **kwargs)
        seen_at_record.append((event.action, event.outcome, store_state(store)))
        return event

    before = store_state(store)
    monkeypatch.setattr(audit, "record", noting_the_store)
    web.post(f"/sessions/{T}/{path}", {**data, **SHOWN_ENV})
    assert store_state(store) != before  # the write happened...
    assert seen_at_record == [(action, "pending", before)]  # ...after its event was recorded, pending
    assert only_event(action=action).outcome == "ok"


def test_the_store_is_untouched_when_the_audit_database_fails(web, session, store):
    def refuse_audit_inserts(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("INSERT") and AuditEvent._meta.db_table in sql:
            raise DatabaseError("the audit database is down")
        return execute(sql, params, many, context)

    with database.execute_wrapper(refuse_audit_inserts), pytest.raises(DatabaseError):
        web.post(f"/sessions/{T}/clear/", SHOWN_ENV)
    assert store.call("LLEN", KEY) == 3  # no event, no write


def test_connection_changes_are_recorded_without_secrets(admin_web):
    admin_web.post(
        "/connections/new/",
        {
            "name": "prod",
            "url": "https://x.upstash.io",
            "token": "super-secret-token",
            "key_pattern": "*",
            "list_order": "auto",
            "summary_namespace": "memoryadmin:summary:",
            "default_ttl": "60",
            "page_size": "50",
            "scan_budget": "10000",
            "max_request_bytes": "10000000",
            "timeout": "5",
        },
    )
    event = only_event(action="connection.create")
    assert event.connection_name == "prod" and "token" in event.details["changed"]
    assert "super-secret-token" not in str(event.details)


def test_events_are_append_only():
    event = AuditEvent.objects.create(action="session.read", outcome="ok")
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()
    assert AuditEvent.objects.count() == 1


def make_events():
    now = timezone.now()
    AuditEvent.objects.create(
        action="session.clear", outcome="ok", username="olga", session_key="k1", connection_slug="env", created_at=now
    )
    AuditEvent.objects.create(
        action="session.read",
        outcome="ok",
        username="victor",
        session_key="k1",
        connection_slug="env",
        created_at=now - timedelta(days=3),
    )
    AuditEvent.objects.create(
        action="session.clear",
        outcome="denied",
        username="victor",
        session_key="k2",
        connection_slug="7",
        created_at=now - timedelta(days=10),
    )


@pytest.mark.parametrize(
    ("filters", "count"),
    [
        ({}, 3),
        ({"user": "VICTOR"}, 2),
        ({"action": "session.clear"}, 2),
        ({"outcome": "denied"}, 1),
        ({"connection": "7"}, 1),
        ({"session_key": "k1"}, 2),
        ({"since": (timezone.now() - timedelta(days=5)).date().isoformat()}, 2),
        ({"until": (timezone.now() - timedelta(days=5)).date().isoformat()}, 1),
    ],
)
def test_audit_page_filters(admin_web, filters, count):
    make_events()
    page = admin_web.get("/audit/", filters).context["page"]
    assert page.paginator.count == count


def test_audit_page_answers_was_this_session_deleted_and_by_whom(admin_web):
    make_events()
    html = admin_web.get("/audit/", {"session_key": "k1", "action": "session.clear"}).content.decode()
    assert "olga" in html and "Cleared a session" in html
    assert "victor" not in html


def test_audit_page_pages_newest_first(admin_web):
    for i in range(120):
        AuditEvent.objects.create(action="session.read", outcome="ok", session_key=f"k{i}")
    first = admin_web.get("/audit/").context["page"]
    assert first.paginator.num_pages == 3 and first[0].session_key == "k119"
    assert admin_web.get("/audit/", {"page": 3}).context["page"][-1].session_key == "k0"


def test_csv_export_of_the_filtered_rows(admin_web):
    make_events()
    response = admin_web.get("/audit/export.csv", {"user": "victor"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["action"] for row in rows] == ["session.read", "session.clear"]
    assert rows[1]["outcome"] == "denied" and rows[1]["connection_slug"] == "7"
    assert only_event(action="audit.export").details == {"filters": {"user": "victor"}}


def test_csv_export_has_every_column_as_recorded(admin_web, admin):
    request = RequestFactory().post("/", HTTP_USER_AGENT="agent/1.0", REMOTE_ADDR="10.0.0.9")
    request.user, request.request_id = admin, "r" * 32
    event = audit.record(request, "session.clear", session_key="k ü", details={"b": "ü", "a": 1}, error="no")
    response = admin_web.get("/audit/export.csv", {"action": "session.clear"})
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert row == {
        "created_at": event.created_at.isoformat(),
        "username": "ada",
        "action": "session.clear",
        "outcome": "ok",
        "connection_name": "",
        "connection_slug": "",
        "session_key": "k ü",
        "details": '{"a": 1, "b": "ü"}',
        "error": "no",
        "job": "",
        "ip": "10.0.0.9",
        "user_agent": "agent/1.0",
        "request_id": "r" * 32,
    }
    audit.record(None, "bulk.finish")  # background work for no one: no request, no user, no connection
    response = admin_web.get("/audit/export.csv", {"action": "bulk.finish"})
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert row["details"] == "{}"
    assert {column: value for column, value in row.items() if column not in ("created_at", "action", "details")} == {
        column: "ok" if column == "outcome" else ""
        for column in audit.CSV_COLUMNS
        if column not in ("created_at", "action", "details")
    }


def test_settling_an_event_changes_that_event_only():
    first, second = (audit.record(None, "session.clear", outcome=AuditEvent.PENDING) for _ in range(2))
    audit.settle(first, AuditEvent.OK, error="x" * 3000)
    first.refresh_from_db(), second.refresh_from_db()
    assert first.outcome == "ok" and first.error == "x" * 2000  # long errors are cut
    assert second.outcome == "pending"


def test_session_page_shows_its_recent_events(web, session):
    web.get(f"/sessions/{T}/")
    html = web.get(f"/sessions/{T}/").content.decode()
    assert "Recent activity on this session" in html and "Read a transcript" in html


def test_django_admin_is_read_only(admin_web):
    event = AuditEvent.objects.create(action="session.read", outcome="ok")
    assert admin_web.get("/django-admin/audit/auditevent/").status_code == 200
    assert admin_web.get(f"/django-admin/audit/auditevent/{event.pk}/change/").status_code == 200
    assert admin_web.get("/django-admin/audit/auditevent/add/").status_code == 403
    assert admin_web.post(f"/django-admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_an_anonymous_request_is_recorded_without_a_user():
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    event = audit.record(request, "session.read")
    assert event.user is None and event.username == ""


@pytest.mark.parametrize(("header", "kept"), [({}, ""), ({"HTTP_USER_AGENT": "a" * 400}, "a" * 300)])
def test_the_user_agent_is_kept_to_300_characters_and_empty_when_not_sent(header, kept):
    event = audit.record(RequestFactory().get("/", **header), "session.read")
    assert event.user_agent == kept


def downloaded(request, chunks, **kwargs):
    return audit.AuditedDownload(
        request, "session.export", chunks, connection=SimpleNamespace(slug="env", name="E"), **kwargs
    )


def two_messages_then(error=None):
    def chunks(result):
        result["messages"] = 2
        yield b"first part"
        if error:
            raise error

    return chunks


def test_a_download_is_recorded_with_who_where_and_which_connection(operator):
    request = RequestFactory().get("/", HTTP_USER_AGENT="agent/2", REMOTE_ADDR="10.9.8.7")
    request.user = operator
    download = downloaded(request, two_messages_then())
    event = AuditEvent.objects.get(pk=download.event.pk)
    assert (event.username, event.ip, event.user_agent) == ("olga", "10.9.8.7", "agent/2")
    assert (event.connection_slug, event.connection_name, event.session_key) == ("env", "E", "")
    assert event.outcome == "pending"


def test_a_failed_download_keeps_the_details_gathered_before_it_failed():
    download = downloaded(RequestFactory().get("/"), two_messages_then(OSError("the store went away")))
    with pytest.raises(OSError):
        list(download)
    event = AuditEvent.objects.get(pk=download.event.pk)
    assert event.outcome == "failed" and event.error == "the store went away"
    assert event.details == {"messages": 2}


def test_a_download_closed_before_its_end_is_failed_with_what_was_sent():
    download = downloaded(RequestFactory().get("/"), two_messages_then(), details={"format": "json"})
    next(download)
    download.close()
    event = AuditEvent.objects.get(pk=download.event.pk)
    assert event.outcome == "failed"
    assert event.error == "Stopped before the end: the download was interrupted."
    assert event.details == {"format": "json", "messages": 2}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_download_closed_on_a_thread_that_never_collected_garbage_is_settled():
    """close() asks whether this thread is in a garbage collection: a thread where none ever ran has no answer
    recorded yet, and is not in one."""
    download = downloaded(RequestFactory().get("/"), two_messages_then())
    next(download)

    def close_in_a_new_thread():
        try:
            assert not hasattr(audit._collection, "running")
            download.close()
        finally:
            database.close()

    gc.disable()  # no collection may start in the new thread (it would record that it ran)
    try:
        run_together(close_in_a_new_thread)
    finally:
        gc.enable()
    assert AuditEvent.objects.get(pk=download.event.pk).outcome == "failed"


def test_a_sessions_recent_events_are_its_own_on_its_connection_ten_at_most():
    for _ in range(12):
        AuditEvent.objects.create(action="session.read", outcome="ok", connection_slug="env", session_key="k1")
    AuditEvent.objects.create(action="session.clear", outcome="ok", connection_slug="other", session_key="k1")
    AuditEvent.objects.create(action="session.clear", outcome="ok", connection_slug="env", session_key="k2")
    recent = list(audit.recent_for_session(SimpleNamespace(slug="env"), "k1"))
    assert len(recent) == 10
    assert {(event.connection_slug, event.session_key, event.action) for event in recent} == {
        ("env", "k1", "session.read")
    }


def test_an_audit_search_by_key_names_only_the_bulk_jobs_that_purged_it():
    purged, skipped = (BulkJob.objects.create(action="clear", connection_slug="env") for _ in range(2))
    BulkJobKey.objects.create(job=purged, position=0, key="k1", outcome="done")
    BulkJobKey.objects.create(job=skipped, position=0, key="k1", outcome="gone")
    for job in (purged, skipped):
        AuditEvent.objects.create(action="bulk.finish", outcome="ok", job=job.audit_job)
    assert [event.job for event in audit.search_events(session_key="k1")] == [purged.audit_job]
