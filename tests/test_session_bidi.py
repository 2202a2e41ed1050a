"""Bidirectional-text characters in keys stay inside the key: every key shown in HTML is isolated.

A key holding U+202E (RIGHT-TO-LEFT OVERRIDE) would otherwise reverse the text
after it on the page ("… messages", a badge, the next column), so that what an
operator reads is not what is there. One class, `key`, is isolated by the
stylesheet (`unicode-bidi: isolate`); in plain-text places (the title, a confirm
dialog) the key is wrapped in U+2068 … U+2069 (FIRST STRONG / POP DIRECTIONAL ISOLATE).
"""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import SearchJob
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services import bulk
from memoryadmin.summaries.models import SummaryBatch, SummaryJob

from .conftest import SHOWN_ENV
from .factories import write_langchain_session
from .test_content_search import saved_hit

pytestmark = pytest.mark.django_db

KEY = "ticket \u202etxt.exe שלום 42"
T = encode_key(KEY)
FSI, PDI = "\u2068", "\u2069"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
CSS = Path(__file__).resolve().parent.parent / "static" / "css" / "app.css"


class Element:
    def __init__(self, tag, classes):
        self.tag, self.classes, self.text = tag, classes, ""


class KeyFinder(HTMLParser):
    """Each place the text holds the key: the open elements around it, innermost last."""

    def __init__(self, key):
        super().__init__()
        self.key, self.open, self.places = key, [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open.append(Element(tag, (dict(attrs).get("class") or "").split()))

    def handle_endtag(self, tag):
        while self.open and self.open.pop().tag != tag:
            pass

    def handle_data(self, data):
        for element in self.open:
            element.text += data
        if self.key in data:
            self.places.append(list(self.open))


def assert_every_key_is_isolated(html, key=KEY):
    finder = KeyFinder(key)
    finder.feed(html)
    assert finder.places, "the key is not on the page"
    for place in finder.places:
        if place[-1].tag == "title":
            assert f"{FSI}{key}{PDI}" in place[-1].text
            continue
        isolating = [element for element in place if "key" in element.classes]
        assert isolating, f"not in a .key element: inside {[element.tag for element in place[-3:]]}"
        assert isolating[-1].text.strip() == key, f"the .key element holds more than the key: {isolating[-1].text!r}"
    return finder.places


def test_the_key_class_is_isolated_by_the_stylesheet():
    rules = re.findall(r"(?m)^\.key\s*\{([^}]*)\}", CSS.read_text())
    assert any("unicode-bidi: isolate" in rule for rule in rules)


@pytest.fixture
def session(store):
    write_langchain_session(store, KEY, ["hello", "hi"])
    return KEY


def test_list_detail_and_clear_pages_isolate_the_key(web, session):
    assert_every_key_is_isolated(web.get("/").content.decode())
    detail = web.get(f"/sessions/{T}/").content.decode()
    places = assert_every_key_is_isolated(detail)
    assert any(place[-1].tag == "title" for place in places)
    assert f"Clear session “{FSI}{KEY}{PDI}”?" in re.search(r'hx-confirm="([^"]*)"', detail).group(1)
    assert_every_key_is_isolated(web.get(f"/sessions/{T}/clear/").content.decode())


def test_the_message_after_clearing_isolates_the_name(web, session):
    page = web.post(f"/sessions/{T}/clear/", SHOWN_ENV, follow=True).content.decode()
    alerts = page[page.index('id="alerts"') : page.index("</main>")]
    assert "Cleared session" in alerts
    assert_every_key_is_isolated(alerts)


def test_audit_log_isolates_the_key(admin_web, session):
    admin_web.get(f"/sessions/{T}/")
    assert AuditEvent.objects.filter(session_key=KEY).exists()
    assert_every_key_is_isolated(admin_web.get("/audit/").content.decode())


def test_bulk_job_page_isolates_the_key(web, connection, operator, session):
    job = bulk.create_job(connection, operator, "persist", keys=[KEY])
    assert_every_key_is_isolated(web.get(f"/bulk/{job.pk}/").content.decode())


def test_search_results_isolate_the_key(web, connection, operator, session):
    job = SearchJob.objects.create(
        connection_slug="env",
        connection_name=connection.name,
        query_masked="h***",
        status="done",
        requested_by=operator,
    )
    saved_hit(job, KEY, "hello")
    assert_every_key_is_isolated(web.get(f"/bulk/search/{job.pk}/").content.decode())


def test_summary_batch_problems_isolate_the_key(web, connection, operator):
    batch = SummaryBatch.objects.create(connection_slug="env", connection_name=connection.name, description="stale")
    SummaryJob.objects.create(
        connection_slug="env", connection_name=connection.name, session_key=KEY, batch=batch, status="gone", error="x"
    )
    assert_every_key_is_isolated(web.get(f"/summaries/batches/{batch.pk}/").content.decode())
