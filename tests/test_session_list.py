"""The sessions list page and its "scan more" fragment."""

import re

import pytest

from .factories import langchain, write_langchain_session

pytestmark = pytest.mark.django_db


def row_keys(html):
    return re.findall(r'<td class="key"><a href="[^"]+">([^<]*)</a>', html)


def test_login_required(client, connection):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_lists_sessions_not_other_keys(web, store):
    write_langchain_session(store, "message_store:abc", ["hello", "hi there"])
    store.call("SET", "ratelimit:user:1", "5")
    html = web.get("/").content.decode()
    assert row_keys(html) == ["message_store:abc"]
    assert "hi there" in html
    assert "never" in html


def test_search_pattern(web, store):
    write_langchain_session(store, "bot-a:1", ["x"])
    write_langchain_session(store, "bot-b:1", ["x"])
    assert row_keys(web.get("/", {"q": "bot-a:*"}).content.decode()) == ["bot-a:1"]


def test_scan_more_fragment_continues_the_table(web, store, settings):
    for i in range(60):
        store.call("LPUSH", f"s:{i:02}", langchain("human", "hi"))
    first = web.get("/").content.decode()
    assert len(row_keys(first)) == 50
    link = re.search(r'hx-get="([^"]+)"', first).group(1).replace("&amp;", "&")
    more = web.get(link, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in more  # a fragment: rows only
    assert len(row_keys(more)) == 10
    assert not set(row_keys(first)) & set(row_keys(more))
    assert "End of the keyspace" in more


def test_empty_state(web, store):
    html = web.get("/", {"q": "nothing-here:*"}).content.decode()
    assert "No sessions match" in html


@pytest.mark.parametrize("params", [{"cursor": "abc"}, {"cursor": "1", "after": "%%%"}, {"cursor": "-4"}])
def test_tampered_paging_is_a_clear_400(web, params):
    response = web.get("/", params)
    assert response.status_code == 400
    assert b"damaged" in response.content


def test_stored_content_is_escaped(web, store):
    key = "<img src=x onerror=alert(1)>"
    write_langchain_session(store, key, ['<script>alert("x")</script>'])
    html = web.get("/").content.decode()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;" in html
