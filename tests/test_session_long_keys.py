"""Keys up to Upstash's 32 KB: every session URL stays short, so servers and proxies with default limits accept it."""

import base64
import html as html_module
import re

import pytest
from django.urls import reverse

from memoryadmin.audit.models import AuditEvent
from memoryadmin.dashboard.converters import decode_key, encode_key
from memoryadmin.services.summaries import summary_key

from .conftest import SHOWN_ENV
from .factories import write_langchain_session
from .processes import app_env, request, serve_app

pytestmark = pytest.mark.django_db


def key_of_bytes(size):
    """A key of exactly `size` UTF-8 bytes, with a bit of everything a key may hold."""
    unit = "chat/ünï 東京 #?%\\ \n"
    text = unit * (size // len(unit.encode()))
    return text + "e" * (size - len(text.encode()))


LONG_KEY = key_of_bytes(32 * 1024)  # Upstash's largest key
SHORT_URL = 2048  # bytes: well under gunicorn's 4,094-byte request line and nginx's 8 KB


def session_urls(page):
    """Every URL of a page that names a session (links, forms, htmx attributes, the permalink)."""
    found = re.findall(r'(?:href|action|hx-get|hx-post|value)="([^"]*/sessions/[^"]*)"', page)
    return [html_module.unescape(url) for url in found]


@pytest.fixture
def long_session(store, connection):
    write_langchain_session(store, LONG_KEY, ["hello", "x" * 30000])
    # The namespace does not fit before a 32 KB key: its summary is named by the key's digest.
    store.call("HSET", summary_key(connection, LONG_KEY), "text", "a summary")
    return LONG_KEY


def test_every_session_url_of_a_32_kb_key_is_short_and_works(admin_web, long_session, store):
    listing = admin_web.get("/").content.decode()
    (link,) = re.findall(r'<td class="key"><a href="([^"]+)">', listing)
    assert len(link) < SHORT_URL
    page = admin_web.get(link)
    assert page.status_code == 200
    html = page.content.decode()
    assert html_module.escape(LONG_KEY) in html
    assert "a summary" in html  # read from the summary's digest-named key
    urls = session_urls(html)
    assert len(urls) >= 8  # export ×2, clear, TTL, remove TTL, re-summarize, raw message, permalink
    assert all(len(url.encode()) < SHORT_URL for url in urls), max(urls, key=len)[:200]
    for url in [url for url in urls if "/raw/" in url or "/export." in url]:
        response = admin_web.get(url)
        assert response.status_code == 200 and b"x" * 30000 in b"".join(response), url
    audit_link = html_module.unescape(re.search(r'href="(/audit/\?[^"]+)"', html).group(1))
    assert len(audit_link) < SHORT_URL
    audit_page = admin_web.get(audit_link).content.decode()
    assert f'<td class="key">{html_module.escape(LONG_KEY)}</td>' in audit_page  # filtered on the key
    (ttl_url,) = {url for url in urls if url.endswith("/ttl/")}
    assert admin_web.post(ttl_url, {"preset": "3600", **SHOWN_ENV}).status_code == 302
    assert 3590 < store.call("TTL", LONG_KEY) <= 3600
    (persist_url,) = {url for url in urls if url.endswith("/persist/")}
    assert admin_web.post(persist_url, SHOWN_ENV).status_code == 302 and store.call("TTL", LONG_KEY) == -1
    (summarize_url,) = {url for url in urls if url.startswith("/summaries/")}
    assert admin_web.post(summarize_url, SHOWN_ENV).status_code == 302
    (clear_url,) = {url for url in urls if url.endswith("/clear/")}
    assert "Clear this session?" in admin_web.get(clear_url).content.decode()
    assert admin_web.post(clear_url, SHOWN_ENV).status_code == 302 and store.call("EXISTS", LONG_KEY) == 0
    assert {event.session_key for event in AuditEvent.objects.exclude(session_key="")} == {LONG_KEY}


def test_scan_more_after_a_long_key_is_short_and_resumes(web, store, settings):
    settings.MEMORYADMIN_PAGE_SIZE = 1
    write_langchain_session(store, LONG_KEY[:-1] + "1", ["one"])
    write_langchain_session(store, LONG_KEY[:-1] + "2", ["two"])
    listing = web.get("/").content.decode()
    more = html_module.unescape(re.search(r'hx-get="(/\?[^"]*after=[^"]+)"', listing).group(1))
    assert len(more) < SHORT_URL
    rows = web.get(more, headers={"HX-Request": "true"}).content.decode()
    assert html_module.escape(LONG_KEY[:-1] + "2") in rows


def test_bulk_selection_of_a_long_key_names_it_by_its_handle(web, store):
    write_langchain_session(store, LONG_KEY, ["one"])
    listing = web.get("/").content.decode()
    (token,) = re.findall(r'name="k" value="([^"]+)"', listing)
    assert len(token) < 100 and decode_key(token) == LONG_KEY


def test_short_keys_keep_their_urls_and_old_long_links_still_open(web, store):
    assert reverse("session_detail", args=["chat-1"]) == "/sessions/Y2hhdC0x/"
    medium = "m" * 700  # its token is under the limit: unchanged
    assert encode_key(medium) == base64.urlsafe_b64encode(medium.encode()).decode().rstrip("=")
    # A link made before handles existed (a plain token, as long as it is) still opens the session.
    three_kb = "k" * 3000
    write_langchain_session(store, three_kb, ["still here"])
    old_token = base64.urlsafe_b64encode(three_kb.encode()).decode().rstrip("=")
    assert "still here" in web.get(f"/sessions/{old_token}/").content.decode()


def test_an_unknown_handle_is_404(web, store):
    token = encode_key(LONG_KEY)
    assert token.startswith("~") and decode_key(token) == LONG_KEY
    assert web.get(f"/sessions/~{'A' * 43}/").status_code == 404
    assert web.get(f"/sessions/{token[:-1]}/").status_code == 404


# --- through gunicorn, with the repo's gunicorn.conf.py ------------------------------


@pytest.fixture
def gunicorn(tmp_path, local_store):
    """gunicorn as configured in gunicorn.conf.py (its request-line limit), on this test's database."""
    env = app_env(local_store, WEB_CONCURRENCY="1", GUNICORN_LOG_LEVEL="warning")
    with serve_app(env, tmp_path / "gunicorn.log") as port:
        yield port


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # gunicorn reads what this test commits
def test_a_32_kb_key_opens_and_changes_through_gunicorn(gunicorn, client, operator, connection, store):
    write_langchain_session(store, LONG_KEY, ["hello through gunicorn"])
    client.force_login(operator)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    token = base64.urlsafe_b64encode(LONG_KEY.encode()).decode().rstrip("=")
    status, _ = request(gunicorn, "GET", f"/sessions/{token}/", cookies)
    assert status == 414  # the key as a plain token: more than gunicorn takes in a request line
    status, listing = request(gunicorn, "GET", "/", cookies)
    assert status == 200, listing[-2000:]
    (link,) = re.findall(r'<td class="key"><a href="([^"]+)">', listing)
    status, page = request(gunicorn, "GET", link, cookies)
    assert status == 200 and "hello through gunicorn" in page
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    (ttl_url,) = {url for url in session_urls(page) if url.endswith("/ttl/")}
    status, _ = request(
        gunicorn, "POST", ttl_url, cookies, body=f"preset=3600&connection=env&csrfmiddlewaretoken={csrf}"
    )
    assert status == 302 and 3590 < store.call("TTL", LONG_KEY) <= 3600
