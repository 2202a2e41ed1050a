"""Text from the store, saved alike on SQLite and PostgreSQL, where PostgreSQL is stricter.

Keys and messages may hold NUL: PostgreSQL's text and jsonb refuse it, SQLite keeps it. Every row
that records store text (keys, snippets, errors, audit details) stores NUL escaped
(memoryadmin/fields.py) and reads it back exactly, so jobs act on the exact key. And PostgreSQL
enforces a CharField's max_length, which SQLite ignores. These tests run on SQLite and, in the
PostgreSQL run (MEMORYADMIN_TEST_DATABASE=postgres), on PostgreSQL.
"""

import pytest
from django.db import connection as db

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJobKey, SearchHit
from memoryadmin.dashboard.converters import decode_key, encode_key
from memoryadmin.fields import MARK, escape, unescape
from memoryadmin.services import audit, summary_jobs
from memoryadmin.summaries.models import SummaryBatch, SummaryJob

from .conftest import SHOWN_ENV
from .factories import langchain, write_langchain_session
from .test_bulk import start, write_sessions
from .test_content_search import search

pytestmark = pytest.mark.django_db

# A NUL, and the escape mark itself, alone and in the sequences the escaping makes.
KEY = f"chat\x00{MARK}0 \x00{MARK} {MARK}{MARK}\x00"


def stored(model, field, pk):
    """The column as the database holds it, not through the model field."""
    table, column = model._meta.db_table, model._meta.get_field(field).column
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.mark.parametrize("text", ["", "plain", "\x00", MARK, f"{MARK}0", f"\x00{MARK}", f"{MARK}{MARK}0\x00", KEY])
def test_the_escaping_is_reversible_and_holds_no_nul(text):
    assert "\x00" not in escape(text) and unescape(escape(text)) == text


def test_text_escaped_before_is_read_as_it_was():
    # Rows written before the escaping hold no escape sequence, but for a mark with anything else after it.
    assert unescape("plain key") == "plain key" and unescape(f"{MARK}x") == f"{MARK}x"


def test_the_page_of_a_nul_key_opens_and_its_read_is_audited(web, store):
    write_langchain_session(store, KEY, ["hello\x00world"])
    response = web.get(f"/sessions/{encode_key(KEY)}/")
    assert response.status_code == 200 and response.context["transcript"].key == KEY
    event = AuditEvent.objects.get(action="session.read", session_key=KEY)  # the lookup escapes the same way
    assert event.session_key == KEY and "\x00" not in stored(AuditEvent, "session_key", event.pk)
    assert list(audit.search_events(session_key=KEY)) == [event]
    assert web.get(f"/sessions/{encode_key('chat')}/").status_code == 404  # no session there; and not this one


def test_the_audit_log_shows_and_exports_a_nul_key(admin_web, store):
    write_langchain_session(store, KEY, ["hello"])
    admin_web.get(f"/sessions/{encode_key(KEY)}/")
    assert admin_web.get("/audit/").status_code == 200
    export = admin_web.get("/audit/export.csv")
    assert export.status_code == 200 and KEY in b"".join(export.streaming_content).decode()


def test_a_bulk_purge_of_nul_keys_runs_on_the_exact_keys(web, store):
    write_sessions(store, [KEY, "chat", "chat\x00"], messages=2)
    job = start(web, action="clear", scope="selected", keys=[KEY, "chat\x00"])
    job.refresh_from_db()
    assert job.status == "awaiting" and job.total == 2 and job.total_messages == 4
    assert sorted(BulkJobKey.objects.filter(job=job).values_list("key", flat=True)) == sorted([KEY, "chat\x00"])
    assert BulkJobKey.objects.filter(key=KEY).count() == 1
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "2"})
    job.refresh_from_db()
    assert job.status == "done" and job.done == 2 and job.skipped == 0
    assert store.call("EXISTS", KEY, "chat\x00") == 0 and store.call("EXISTS", "chat") == 1
    assert audit.search_events(session_key=KEY).filter(action="bulk.finish").count() == 1  # found by its key
    assert KEY in b"".join(web.get(f"/bulk/{job.pk}/report.csv").streaming_content).decode()


def test_a_content_search_keeps_hits_with_nul_in_key_and_snippet(web, store):
    store.call("LPUSH", KEY, langchain("human", "before\x00 jane.doe@example.com \x00after"))
    job = search(web, query="jane.doe@")
    job.refresh_from_db()
    assert job.status == "done" and job.matched_sessions == 1, job.error
    hit = SearchHit.objects.get(job=job)
    assert hit.session_key == KEY and "\x00" in hit.snippet
    assert hit.snippet[hit.match_start : hit.match_end] == "jane.doe@"
    assert "\x00" not in stored(SearchHit, "snippet", hit.pk)
    assert web.get(f"/bulk/search/{job.pk}/").status_code == 200


def test_a_summary_of_a_nul_key_is_written_under_the_exact_key(connection, store, operator):
    write_langchain_session(store, KEY, ["My order NW-10442 is late", "Sorry, checking now"])
    job, _ = summary_jobs.request_summary(connection, KEY, operator)
    job.refresh_from_db()
    assert job.status == "done" and job.session_key == KEY, job.error
    assert store.call("EXISTS", f"memoryadmin:summary:{KEY}") == 1
    assert SummaryJob.objects.filter(session_key=KEY).count() == 1


def test_a_stale_batch_for_a_pattern_with_nul(web, store):
    write_langchain_session(store, KEY, ["hello", "hi"])
    response = web.post("/summaries/batches/", {**SHOWN_ENV, "q": "chat\x00*"})
    assert response.status_code == 302
    assert SummaryJob.objects.get().session_key == KEY


def test_a_stale_batch_for_a_pattern_as_long_as_the_list_takes(web, store):
    pattern = "x" * 1023 + "*"  # the sessions list's filter takes 1024 characters
    response = web.post("/summaries/batches/", {**SHOWN_ENV, "q": pattern})
    assert response.status_code == 302
    batch = SummaryBatch.objects.get()
    assert batch.pattern == pattern and len(batch.description) < 300


def test_a_long_nul_key_has_a_handle_that_gives_it_back(web, store):
    key = "x" * 2000 + "\x00" + MARK + "0"
    token = encode_key(key)
    assert token.startswith("~") and decode_key(token) == key


def test_audit_details_keep_nul_in_keys_and_values():
    details = {"pattern\x00": ["a\x00*", f"{MARK}0"], "nested": {"key": KEY, "n": 3, "none": None}}
    event = AuditEvent.objects.create(action="session.read", outcome=AuditEvent.OK, details=details)
    event = AuditEvent.objects.get(pk=event.pk)
    assert event.details == details
