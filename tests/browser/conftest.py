"""Browser tests: Debian's Chromium driven by Playwright against the live server and the local store.

- One Chromium for this package, one browser context (cookies, storage) per test.
- The live server (pytest-django's `live_server`) and the local store (`local_store`,
  through the `connection` fixture, emptied for each test) are one per test session.
- Every test fails on a browser console error, an uncaught page error or a CSP
  violation, unless it says which errors it expects (`console.allow`).
- Every test here gets the `browser` marker and transactional database access
  (the live server runs in another thread, so data must be committed); the
  serialized rollback restores the role groups made by data migrations.

Screenshots go to test-artifacts/ (gitignored); a failing test leaves one there too.
Shared data and helpers are in support.py.
"""

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from tests.factories import write_langchain_session, write_llamaindex_session

from .support import CHAT_KEY, DESKTOP, SUPPORT_CHAT, Console, screenshot

HERE = Path(__file__).resolve().parent

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download is not available: Debian's chromium, quiet and self-contained.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Things happen on a local server in milliseconds; waiting longer only hides a broken swap.
TIMEOUT_MS = 5000

# Reported by the page itself, since a blocked inline script or style must fail the test
# whatever the browser chooses to log about it.
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline code"}`);
});
"""


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.django_db(transaction=True, serialized_rollback=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.browser_test_failed = report.failed  # for the screenshot on failure
    return report


@pytest.fixture(scope="package")
def chromium(pytestconfig, django_db_setup):
    """One browser for the whole package.

    While Playwright's sync API is started it keeps an asyncio loop running in
    this thread, which changes two things for Django until it stops:

    - Django refuses ORM calls from a thread with a running loop. Our tests'
      ORM calls are plain synchronous code, so the guard is lifted, for this
      package only: the browser (and its loop) stops when the package is done.
    - Django keeps connections in an asgiref Local, which gives code beside a
      running loop other connection objects; they get the serialized database
      that the test database setup left on the first ones (serialized_rollback
      restores the role groups from it).

    `--headed` and `--slowmo` (pytest-playwright's options) work for watching it.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No browser at {CHROMIUM}: `make test` installs it (apt-get install chromium chromium-driver).")
    serialized = {alias: getattr(connections[alias], "_test_serialized_contents", None) for alias in connections}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            for alias, contents in serialized.items():
                if contents is not None:
                    connections[alias]._test_serialized_contents = contents
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=not pytestconfig.getoption("headed", False),
                slow_mo=pytestconfig.getoption("slowmo", 0) or 0,
            )
            expect.set_options(timeout=TIMEOUT_MS)
            yield browser
            browser.close()
            connections.close_all()  # those of the loop's context, before it goes


@pytest.fixture(autouse=True)
def plain_http_cookies(settings):
    """The live server speaks plain http: Secure cookies (production's) would be dropped by the browser."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False


@pytest.fixture
def console():
    return Console()


# Not named `page` or `context`: pytest-playwright (installed for its --headed and --slowmo)
# would parametrize tests using those names by its own browser list.
@pytest.fixture
def browser_context(chromium, live_server, console, connection):
    """A fresh browser context (no cookies) on the live server, whose app talks to the emptied local store."""
    context = chromium.new_context(base_url=live_server.url, viewport=DESKTOP, reduced_motion="reduce")
    context.set_default_timeout(TIMEOUT_MS)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    context.add_init_script(CSP_WATCH)
    context.on("page", console.watch)
    yield context
    context.close()


@pytest.fixture
def browser_page(browser_context, console, request):
    page = browser_context.new_page()
    yield page
    if getattr(request.node, "browser_test_failed", False):
        screenshot(page, f"failed-{request.node.name}")
    problems = console.unexpected()
    if problems:
        pytest.fail("The browser reported errors:\n" + "\n".join(problems), pytrace=False)


def log_in(page, user, url):
    """Sign the browser in as `user` without the login form (test_login.py uses the form)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": django_settings.SESSION_COOKIE_NAME, "value": cookie, "url": url}])


@pytest.fixture
def operator_page(browser_page, operator, live_server):
    log_in(browser_page, operator, live_server.url)
    return browser_page


@pytest.fixture
def viewer_page(browser_page, viewer, live_server):
    log_in(browser_page, viewer, live_server.url)
    return browser_page


@pytest.fixture
def support_chat(store):
    """One LangChain session (LPUSH, newest first), as the chat app stores it."""
    store.call("LPUSH", CHAT_KEY, *SUPPORT_CHAT)
    return CHAT_KEY


@pytest.fixture
def many_sessions(store):
    """Sessions of all writers under a few prefixes, for the list, search and paging."""
    keys = []
    for index in range(6):
        keys.append(f"shop:chat-{index:04}")
        write_langchain_session(store, keys[-1], [f"shop question {index}", f"shop answer {index}"])
    for index in range(4):
        keys.append(f"message_store:travel-{index}")
        write_langchain_session(store, keys[-1], [f"travel question {index}", f"travel answer {index}"])
    for index in range(3):
        keys.append(f"llamaindex:chat:user-{index}")
        write_llamaindex_session(store, keys[-1], [f"helpdesk question {index}", f"helpdesk answer {index}"])
    store.call("SET", "ratelimit:1.2.3.4", "7")  # not a session: never listed
    return keys
