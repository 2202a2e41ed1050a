"""No response to a signed-in user may be stored by a cache, and a page and its htmx fragment never stand in for each
other: checked over the whole route table, streamed downloads included."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.cache import get_max_age

from memoryadmin.bulk.models import SearchJob
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.summaries.models import SummaryBatch, SummaryJob

from .conftest import SHOWN_ENV
from .factories import write_langchain_session
from .test_bulk import start

pytestmark = pytest.mark.django_db

KEY = "cache/me #1"


def routes(resolver=None, prefix=""):
    """(name, route) of every URL pattern of the app's own URLconf, the Django admin's left out (it is checked apart)."""
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if entry.app_name != "admin":
                yield from routes(entry, route)
        elif isinstance(entry, URLPattern):
            yield entry.name, route


@pytest.fixture
def every_url(admin_web, store):
    """A real path for every route: its session, job, search or batch exists."""
    write_langchain_session(store, KEY, ["hello", "hi"])
    bulk_job = start(admin_web, action="clear", scope="selected", keys=[KEY]).pk
    search = SearchJob.objects.create(connection_slug="env", connection_name="default", query_masked="x***").pk
    batch = SummaryBatch.objects.create(connection_slug="env", connection_name="default", description="d").pk
    summary_job = SummaryJob.objects.create(connection_slug="env", connection_name="default", session_key=KEY).pk
    pks = {"bulk": bulk_job, "search": search, "summary_batch": batch, "summary_job": summary_job}
    paths = []
    for name, route in routes():
        pk = next((pk for prefix, pk in pks.items() if (name or "").startswith(prefix)), 1)
        path = route.replace("<session_key:key>", encode_key(KEY)).replace("<int:pk>", str(pk))
        path = path.replace("<int:index>", "0").replace("<slug:fmt>", "json")
        assert "<" not in path, f"a converter this test does not fill in: {route}"
        paths.append("/" + path)
    return paths


def test_every_response_to_a_signed_in_user_is_no_store_and_varies_on_htmx(admin_web, every_url):
    checked = set()
    for path in [*every_url, "/django-admin/", "/no/such/page/"]:
        for headers in ({}, {"HX-Request": "true"}):
            response = admin_web.get(path, headers=headers)
            if response.streaming:
                b"".join(response.streaming_content)
            checked.add(response.status_code)
            assert "no-store" in response.get("Cache-Control", ""), (path, headers, response.status_code)
            assert get_max_age(response) in (None, 0), path
            assert "HX-Request" in response.get("Vary", ""), (path, headers)
    assert {200, 404, 405} <= checked  # pages, downloads, refusals and errors alike


def test_a_form_post_answer_is_no_store_too(admin_web, every_url):
    response = admin_web.post(f"/sessions/{encode_key(KEY)}/ttl/", {"preset": "3600", **SHOWN_ENV})
    assert response.status_code == 302 and "no-store" in response["Cache-Control"]


def test_static_files_stay_cacheable(client, admin, settings):
    settings.WHITENOISE_USE_FINDERS = True  # the tests run without collectstatic
    client.force_login(admin)
    response = client.get("/static/js/app.js")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")
