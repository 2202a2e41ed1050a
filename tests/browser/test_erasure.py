"""The operator's erasure day, in the browser: search, redact or purge, dry run, typed confirmation,
verification, certificate; then the certificate checks out, an edited copy does not, and the app's
database keeps no copy of what was searched for. On the three writers' formats."""

import json
import re

import pytest
from django.core.management import CommandError, call_command
from playwright.sync_api import expect

from memoryadmin.services.messages import parse_element
from tests.privacy import copies_in_database

NAME = "Renée Dupré"
ADDRESS = "renee.dupre@example.com"


def flowise(kind, text):
    """LangChain JS (Flowise's Upstash memory): JSON.stringify of a StoredMessage, non-ASCII as is."""
    data = {"content": text, "additional_kwargs": {}, "response_metadata": {}}
    return json.dumps({"type": kind, "data": data}, ensure_ascii=False, separators=(",", ":"))


def langchain_python(kind, text):
    """LangChain Python (message_to_dict, json.dumps): non-ASCII escaped as \\u00e9."""
    data = {"content": text, "additional_kwargs": {}, "response_metadata": {}, "type": kind, "name": None, "id": None}
    return json.dumps({"type": kind, "data": data})


def llamaindex(role, text):
    """LlamaIndex's Upstash chat store (json.dumps of ChatMessage.dict()), newer blocks form."""
    return json.dumps({"role": role, "additional_kwargs": {}, "blocks": [{"block_type": "text", "text": text}]})


@pytest.fixture
def erasure_request(store):
    """One person in three chat apps' memories, and others who must be left alone."""
    store.call(
        "LPUSH",
        "flowise-7f3a",
        flowise("human", f"Hello, I am {NAME}, write to {ADDRESS}"),
        flowise("ai", "Thanks, noted."),
    )
    store.call(
        "LPUSH",
        "message_store:py-19",
        langchain_python("human", f"My name is {NAME}."),
        langchain_python("ai", "Hello!"),
    )
    store.call(
        "RPUSH", "llamaindex:chat:u-3", llamaindex("user", f"{NAME.upper()} here"), llamaindex("assistant", "Hi")
    )
    for index in range(5):
        store.call("LPUSH", f"flowise-other-{index}", flowise("human", f"question {index} from Rene Dupre"))
    return ["flowise-7f3a", "message_store:py-19", "llamaindex:chat:u-3"]


@pytest.mark.parametrize("action", ["Redact the matching messages", "Clear (purge) the sessions"])
def test_an_erasure_request_from_search_to_a_checked_certificate(
    operator_page, erasure_request, store, tmp_path, action
):
    page = operator_page
    untouched = {key: store.call("LRANGE", key, 0, -1) for key in (f"flowise-other-{i}" for i in range(5))}
    page.goto("/")
    page.get_by_role("link", name="Search content").click()
    page.get_by_label("Text to find").fill(NAME.lower())  # typed in another case than stored
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#search-results")).to_contain_text("3 sessions match")

    page.get_by_label(action).check()
    page.get_by_label(re.compile("Request reference")).fill("DPO-2026-042")
    page.get_by_role("button", name="Continue to the dry run…").click()
    status = page.locator("#job-status")
    expect(status).to_contain_text("The dry run found 3 sessions")
    page.get_by_label(re.compile("Type 3 or the connection name")).fill("3")
    page.get_by_role("button", name=re.compile("3 sessions$")).click()
    expect(status).to_contain_text("Status: done")
    expect(page.locator("#verification")).to_contain_text("0 remaining")

    for key, elements in untouched.items():
        assert store.call("LRANGE", key, 0, -1) == elements
    if action.startswith("Redact"):
        for key in erasure_request:
            elements = store.call("LRANGE", key, 0, -1)
            assert len(elements) == 2  # the conversation stays, the person goes
            stored = b"".join(elements).decode()
            assert "Dupr" not in stored and ADDRESS not in stored
            assert all(not parse_element(element).problem for element in elements)  # still each writer's format
    else:
        assert store.call("EXISTS", *erasure_request) == 0

    page.get_by_role("link", name="Erasure certificate").click()
    expect(page.locator(".certificate")).to_contain_text("DPO-2026-042")
    expect(page.locator(".certificate")).to_contain_text("0 remaining")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download it signed (JSON)").click()
    certificate = tmp_path / "certificate.json"
    certificate.write_bytes(open(download.value.path(), "rb").read())
    call_command("verify_erasure_report", str(certificate))
    edited = json.loads(certificate.read_text())
    edited["certificate"]["confirmed_by"] = "someone-else"
    certificate.write_text(json.dumps(edited))
    with pytest.raises(CommandError):
        call_command("verify_erasure_report", str(certificate))

    # Nothing of what was searched for stays in the app's own database.
    assert copies_in_database(NAME) == []
    assert copies_in_database(ADDRESS) == []
