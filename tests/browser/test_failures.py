"""When things fail, the operator is told what happened and what to do: the store going away
mid-session (and coming back), a server error or a lost network in an htmx request."""

import socket

from playwright.sync_api import expect

from tests.factories import write_langchain_session

from .support import detail_path, screenshot


def dead_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_store_down_mid_session_shows_the_banner_and_recovers(operator_page, store, local_store, settings, console):
    """The store slows past the timeout, then is gone, then is back."""
    # The browser logs the failed requests, and htmx its error responses: expected here.
    console.allow(r"status of 50[23]", r"Response Status Error Code 50[23]")
    settings.MEMORYADMIN_TRANSCRIPT_WINDOW = 2
    write_langchain_session(store, "chat", ["one", "two", "three", "four"])
    page = operator_page
    page.goto(detail_path("chat"))
    expect(page.locator(".message")).to_have_count(2)

    # Slow: a fragment (earlier messages) times out; the banner says what happened and what to do.
    settings.MEMORYADMIN_STORE_TIMEOUT = 0.3
    local_store.gateway.latency_ms = 1000
    page.get_by_role("link", name="Earlier messages (2 more)").click()
    banner = page.locator("#alerts [role=alert]")
    expect(banner).to_contain_text("The store is unavailable. The store at")
    expect(banner).to_contain_text("did not answer within 0.3 s")
    expect(banner.get_by_role("link", name="Try again")).to_have_attribute("href", detail_path("chat"))
    expect(page.locator(".message")).to_have_count(2)  # the page itself is untouched
    screenshot(page, "store-slow-banner", full_page=False)

    # Gone: a whole page says so too.
    settings.UPSTASH_REDIS_REST_URL = dead_url()
    local_store.gateway.latency_ms = 0
    page.reload()
    expect(page).to_have_title("The store is unavailable · Memory Admin")
    expect(page.get_by_role("alert")).to_contain_text("Could not reach the store")
    expect(page.get_by_role("alert")).to_contain_text("Check that it is running and the URL is right, then try again.")
    screenshot(page, "store-down-page", full_page=False)

    # Back: "Try again" shows the session, and its fragments work again.
    settings.UPSTASH_REDIS_REST_URL, settings.MEMORYADMIN_STORE_TIMEOUT = local_store.url, 5
    page.get_by_role("link", name="Try again").click()
    expect(page.locator(".message")).to_have_count(2)
    expect(page.locator("#alerts")).to_be_empty()
    page.get_by_role("link", name="Earlier messages (2 more)").click()
    expect(page.locator(".message .text")).to_have_text(["one", "two", "three", "four"])


def test_a_failure_htmx_cannot_swap_is_explained_in_the_banner(operator_page, store, settings, console):
    console.allow(r"status of 500", r"Response Status Error Code 500", r"ERR_FAILED", r"htmx:(sendError|afterRequest)")
    settings.MEMORYADMIN_TRANSCRIPT_WINDOW = 2
    write_langchain_session(store, "chat", ["one", "two", "three", "four"])
    page = operator_page
    page.goto(detail_path("chat"))
    banner = page.locator("#alerts [role=alert]")
    earlier = page.get_by_role("link", name="Earlier messages (2 more)")

    # A server error: nothing is swapped in, but the banner says so, with the request id for an admin.
    page.route(
        "**/sessions/*/?before=*",
        lambda route: route.fulfill(status=500, headers={"X-Request-ID": "abc123"}, body="oops"),
    )
    earlier.click()
    expect(banner).to_contain_text("That did not work (HTTP 500). Reload the page and try again")
    expect(banner).to_contain_text("tell an admin the request id abc123")

    # The app unreachable (the network, or the server itself).
    page.unroute("**/sessions/*/?before=*")
    page.route("**/sessions/*/?before=*", lambda route: route.abort())
    earlier.click()
    expect(banner).to_contain_text("Memory Admin could not be reached")

    page.keyboard.press("Escape")
    expect(banner).to_have_count(0)
    page.unroute("**/sessions/*/?before=*")
    earlier.click()
    expect(page.locator(".message")).to_have_count(4)
