"""The transcript page, its "earlier messages" fragment and the raw element view."""

import json
import re

import pytest

from memoryadmin.dashboard.converters import encode_key

from .factories import langchain, write_langchain_session, write_llamaindex_session

pytestmark = pytest.mark.django_db

AWKWARD_KEYS = [
    "with space",
    "slash/and/more",
    "percent%20sign",
    "hash#fragment",
    "question?x=1",
    "ünïcødé 東京 🚀",
    "new\nline",
    "../../etc/passwd",
    "",
]


def url(key, suffix=""):
    return f"/sessions/{encode_key(key)}/{suffix}"


def shown_texts(html):
    return re.findall(r'<div class="text">([^<]*)</div>', html)


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_round_trip_from_list_to_transcript(web, store, key):
    write_langchain_session(store, key, ["hello from " + key])
    listing = web.get("/").content.decode()
    link = re.search(r'<td class="key"><a href="([^"]+)">', listing).group(1)
    response = web.get(link)
    assert response.status_code == 200
    assert response.context["transcript"].key == key


def test_transcript_in_chronological_order_with_roles(web, store):
    write_llamaindex_session(store, "li", ["question?", "answer!"])
    html = web.get(url("li")).content.decode()
    assert shown_texts(html) == ["question?", "answer!"]
    assert "role-human" in html and "role-ai" in html


def test_earlier_messages_fragment(web, store, settings):
    settings.MEMORYADMIN_TRANSCRIPT_WINDOW = 10
    write_langchain_session(store, "long", [f"m{i}" for i in range(25)])
    page = web.get(url("long")).content.decode()
    assert shown_texts(page) == [f"m{i}" for i in range(15, 25)]
    link = re.search(r'hx-get="([^"]+)"', page.split('class="earlier"')[1]).group(1).replace("&amp;", "&")
    fragment = web.get(link, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment
    assert shown_texts(fragment) == [f"m{i}" for i in range(5, 15)]
    assert "Earlier messages (5 more)" in fragment


def test_tool_calls_multipart_and_malformed_elements(web, store):
    tool_call = {"name": "lookup_order", "args": {"order": "A-1"}, "id": "call_1", "type": "tool_call"}
    store.call(
        "LPUSH",
        "mixed",
        langchain(
            "human",
            [{"type": "text", "text": "see photo"}, {"type": "image_url", "image_url": {"url": "https://x/p.png"}}],
        ),
        langchain("ai", "", tool_calls=[tool_call]),
        langchain("tool", "shipped", tool_call_id="call_1", name="lookup_order"),
        "{not json",
    )
    store.call("EVAL", "return redis.call('LPUSH', KEYS[1], string.char(255) .. 'broken')", 1, "mixed")
    html = web.get(url("mixed")).content.decode()
    assert "see photo" in html and "https://x/p.png" in html
    assert "lookup_order" in html and "&quot;order&quot;: &quot;A-1&quot;" in html
    assert "reply to call_1" in html
    assert html.count('class="problem-note"') == 2


def test_missing_session_is_a_404_page(web, store):
    response = web.get(url("gone"))
    assert response.status_code == 404
    assert b"cleared or has expired" in response.content


def test_non_list_key_is_not_a_session(web, store):
    store.call("SET", "plain", "x")
    response = web.get(url("plain"))
    assert response.status_code == 404
    assert b"not a chat session" in response.content


@pytest.mark.parametrize("token", ["%25%25", "bad token", "AAA"])
def test_tampered_key_token_is_404(web, token):
    assert web.get(f"/sessions/{token}/").status_code == 404


def test_tampered_window_params_are_a_400(web, store):
    write_langchain_session(store, "lc", ["x"])
    assert web.get(url("lc"), {"before": "-1"}).status_code == 400
    assert web.get(url("lc"), {"order": "sideways"}).status_code == 400


def test_huge_message_is_truncated_with_a_link_to_all_of_it(web, store):
    big = "word " * 100_000
    store.call("LPUSH", "huge", langchain("human", big))
    page = web.get(url("huge")).content.decode()
    assert len(page) < 200_000
    raw_link = re.search(r'href="([^"]+/raw/[^"]*)"', page).group(1).replace("&amp;", "&")
    raw = web.get(raw_link)
    assert raw["Content-Type"].startswith("text/plain")
    assert json.loads(b"".join(raw.streaming_content))["data"]["content"] == big


def test_summary_panel_shows_stale_summary(web, store):
    write_langchain_session(store, "lc", ["a", "b", "c"])
    store.call("HSET", "memoryadmin:summary:lc", "text", "They talked.", "method", "extractive", "message_count", "2")
    html = web.get(url("lc")).content.decode()
    assert "They talked." in html
    assert "stale" in html
    assert "covers 2 of 3 messages" in html
