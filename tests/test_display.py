"""The busiest pages' display data, made in Python (dashboard/display.py): what the template filters made."""

import pytest
from django.db import connection as database
from django.template.defaultfilters import truncatechars
from django.test.utils import CaptureQueriesContext

from memoryadmin.dashboard.display import clip

from .factories import write_langchain_session


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        "x" * 20,
        "x" * 21,
        "e\u0301" * 15,  # combining accents: NFC makes é, and they count as one character each
        "a" + "\u0301" * 30,  # combining characters do not count
        "\u0958" * 12,  # NFC decomposes it into two characters, one combining
        "\u2126" * 25,  # a singleton: NFC replaces it
        "<b>&amp;</b>" * 3,
        "\ud800 lone surrogate",
    ],
)
def test_clip_is_truncatechars(text):
    for length in (1, 5, 20, 21, 40):
        assert clip(text, length) == truncatechars(text, length), (text, length)


@pytest.mark.django_db
def test_a_page_reads_the_saved_connections_once(web, store, second):
    write_langchain_session(store, "s:1", ["hi"])
    with CaptureQueriesContext(database) as queries:
        assert web.get("/?q=s:*").status_code == 200
    assert sum('"connections_connection"' in query["sql"] for query in queries.captured_queries) == 1
