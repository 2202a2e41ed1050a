"""The overview in Chromium: a Viewer measures a seeded store and reads its charts (no console or CSP error)."""

from playwright.sync_api import expect

from tests.factories import langchain, llamaindex


def test_a_viewer_measures_the_store_and_reads_the_charts(viewer_page, store):
    page = viewer_page
    store.pipeline([["LPUSH", f"chat:{n:03}", langchain("human", f"question {n}")] for n in range(30)])
    store.pipeline([["EXPIRE", f"chat:{n:03}", 3600] for n in range(20)])
    store.call("RPUSH", "llamaindex:big", *[llamaindex("user", "x" * 1000) for _ in range(50)])
    store.call("SET", "ratelimit:1.2.3.4", "7")
    page.goto("/")
    page.get_by_role("link", name="Overview").click()
    page.get_by_role("button", name="Measure now").click()
    run = page.locator("#overview-run")
    expect(run).to_contain_text("Status: done")
    expect(page.locator(".overview-figures")).to_contain_text("Sessions31")
    expect(page.locator("svg.chart")).to_have_count(6)
    expect(page.locator("svg.chart").first).to_be_visible()
    # Each chart's figures, in a table for screen readers.
    writers = page.get_by_role("table", name="Sessions by writer")
    expect(writers.get_by_role("row", name="Flowise / LangChain JS 30")).to_have_count(1)
    expect(page.locator("#biggest tbody tr").first).to_contain_text("llamaindex:big")
    page.locator("#no-ttl a").click()
    expect(page.locator("table.sessions td.key a")).to_have_count(11)  # the 10 without a TTL, and the LlamaIndex one

    page.goto("/overview/")
    page.get_by_role("button", name="Measure now").click()
    expect(run).to_contain_text("Status: done")
    expect(page.get_by_role("heading", name="Trend over the last runs")).to_be_visible()
