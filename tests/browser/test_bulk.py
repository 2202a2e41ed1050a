"""An erasure request, end to end: find every session mentioning an address, purge them, prove it."""

import csv
import re

from playwright.sync_api import expect

from tests.factories import langchain, llamaindex

ADDRESS = "jane.doe@example.com"


def test_find_and_purge_a_persons_conversations(operator_page, store):
    page = operator_page
    store.pipeline([["LPUSH", f"chat:{i:03}", langchain("human", f"question {i}")] for i in range(120)])
    store.call("LPUSH", "chat:007", langchain("human", f"Please write to {ADDRESS.upper()}"))
    store.call("RPUSH", "llamaindex:jane", llamaindex("user", f"my mail is {ADDRESS}"))

    page.goto("/")
    page.get_by_role("link", name="Search content").click()
    estimate = page.locator("#search-estimate")
    expect(estimate).to_contain_text("one command per session")
    expect(estimate).to_contain_text("This store holds 121 keys now (DBSIZE)")
    expect(estimate).to_contain_text("at most about 123 commands in 2 round trips")
    page.get_by_label("Text to find").fill(ADDRESS)
    page.get_by_role("button", name="Search").click()
    results = page.locator("#search-results")
    expect(results).to_contain_text("2 sessions match")
    expect(results.locator("mark")).to_have_count(2)

    page.get_by_label("Clear (purge) the sessions").check()
    page.get_by_label(re.compile("Request reference")).fill("TICKET-9")
    page.get_by_role("button", name="Continue to the dry run…").click()
    status = page.locator("#job-status")
    expect(status).to_contain_text("awaiting confirmation")
    expect(status).to_contain_text("The dry run found 2 sessions")
    # 1 batch: EVAL, the receipt's GET and SET, TYPE, LLEN and UNLINK per session; then the receipt's DEL.
    expect(status).to_contain_text("The run will take at most 10 commands in 2 round trips")

    page.get_by_label(re.compile("Type 2 or the connection name")).fill("3")
    page.get_by_role("button", name="Clear 2 sessions").click()
    expect(page.locator("#alerts")).to_contain_text("Type 2 (the number of sessions)")
    assert store.call("EXISTS", "chat:007", "llamaindex:jane") == 2  # a wrong count changes nothing

    page.get_by_label(re.compile("Type 2 or the connection name")).fill("2")
    page.get_by_role("button", name="Clear 2 sessions").click()
    expect(status).to_contain_text("Status: done")
    expect(page.locator(".counters")).to_contain_text("Done2")
    expect(status).to_contain_text("the run 10 commands in 2 round trips (estimated at the dry run: at most 10)")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download the report")).click()
    with open(download.value.path(), encoding="utf-8", newline="") as report:
        outcomes = {row["session_key"]: row["outcome"] for row in csv.DictReader(report)}
    assert outcomes == {"chat:007": "done", "llamaindex:jane": "done"}
    expect(page.locator("#verification")).to_contain_text("0 remaining")
    assert store.call("EXISTS", "chat:007", "llamaindex:jane") == 0
    assert store.call("EXISTS", "chat:008") == 1


def test_bulk_ttl_on_the_selected_rows(operator_page, store):
    page = operator_page
    for key in ("bot:a", "bot:b", "bot:c"):
        store.call("LPUSH", key, langchain("human", "hi"))
    page.goto("/")
    page.get_by_label("Select bot:a").check()
    page.get_by_label("Select bot:c").check()
    page.get_by_label("Action").select_option("expire")
    page.locator("#bulk-preset").select_option(label="1 day")
    page.get_by_role("button", name="Apply to selected…").click()
    expect(page.locator("#job-status")).to_contain_text("The dry run found 2 sessions")
    page.get_by_role("button", name="Set TTL 2 sessions").click()
    expect(page.locator("#job-status")).to_contain_text("Status: done")
    assert 86000 < store.call("TTL", "bot:a") <= 86400 and store.call("TTL", "bot:b") == -1
