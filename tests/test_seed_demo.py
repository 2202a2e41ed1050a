"""seed_demo: realistic demo data in every writer's format, written through the app's client."""

import json
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from memoryadmin.dashboard.management.demo_data import (
    AWKWARD_SESSION_KEY,
    LONG_SESSION_KEY,
    MALFORMED_SESSION_KEY,
    seed_demo,
    store_is_empty,
)
from memoryadmin.services.messages import parse_element

SUMMARY_PREFIX = "memoryadmin:summary:"


@pytest.fixture
def seeded(store):
    return seed_demo(store)


def all_keys(store):
    keys, cursor = [], "0"
    while True:
        cursor, batch = store.call("SCAN", cursor, "COUNT", 1000)
        keys += [key.decode() for key in batch]
        cursor = cursor.decode()
        if cursor == "0":
            return keys


def types_of(store, keys):
    return dict(zip(keys, (reply.decode() for reply in store.pipeline([["TYPE", key] for key in keys]))))


def session_keys(store):
    return sorted(key for key, kind in types_of(store, all_keys(store)).items() if kind == "list")


def elements(store, key):
    return store.call("LRANGE", key, 0, -1)


def writer_of(key):
    """Which writer a demo session key belongs to, from its name."""
    if key.startswith("message_store:"):
        return "langchain_python"
    if key.startswith("llamaindex:chat:"):
        return "llamaindex"
    return "flowise"


def test_counts_describe_what_is_in_the_store(seeded, store):
    sessions = session_keys(store)
    lengths = store.pipeline([["LLEN", key] for key in sessions])
    ttls = store.pipeline([["TTL", key] for key in sessions])

    assert seeded["sessions"] == len(sessions) >= 200
    assert seeded["messages"] == sum(lengths)
    assert seeded["flowise"] + seeded["langchain_python"] + seeded["llamaindex"] == len(sessions)
    for writer in ("flowise", "langchain_python", "llamaindex"):
        assert seeded[writer] == sum(writer_of(key) == writer for key in sessions) > 10
    assert seeded["with_ttl"] == sum(ttl > 0 for ttl in ttls)
    assert store.call("DBSIZE") == len(sessions) + seeded["non_session_keys"] + seeded["summaries"]


def test_only_sessions_are_lists(seeded, store):
    kinds = types_of(store, all_keys(store))

    assert {key: kinds[key] for key in kinds if kinds[key] != "list" and not key.startswith(SUMMARY_PREFIX)} == {
        "ratelimit:user:42": "string",
        "cache:embedding:abc": "string",
        "config:chatflow:support": "hash",
        "flowise:chatflows": "set",
    }
    assert all(kinds[key] == "hash" for key in kinds if key.startswith(SUMMARY_PREFIX))
    assert kinds[AWKWARD_SESSION_KEY] == kinds[LONG_SESSION_KEY] == kinds[MALFORMED_SESSION_KEY] == "list"


def test_long_session(seeded, store):
    assert store.call("LLEN", LONG_SESSION_KEY) == seeded["long_session_messages"] >= 5000


def test_few_sessions_expire_within_hours_to_days(seeded, store):
    ttls = [ttl for ttl in store.pipeline([["TTL", key] for key in session_keys(store)]) if ttl > 0]

    assert 0 < len(ttls) < seeded["sessions"] / 4
    assert all(2 * 3600 - 5 <= ttl <= 5 * 86400 for ttl in ttls)


def test_every_writer_stores_its_own_format_in_its_own_order(seeded, store):
    seen = {"flowise": 0, "langchain_python": 0, "llamaindex": 0}
    for key in session_keys(store):
        if key == MALFORMED_SESSION_KEY:
            continue
        writer = writer_of(key)
        messages = [parse_element(element) for element in elements(store, key)]
        assert [message.problem for message in messages if message.problem] == [], key
        assert {message.format for message in messages} == {"llamaindex" if writer == "llamaindex" else "langchain"}
        # LPUSH writers keep the newest message at index 0, LlamaIndex the oldest: a conversation starts with
        # the system prompt or the customer, and ends with the assistant.
        chronological = messages if writer == "llamaindex" else messages[::-1]
        assert chronological[0].role in ("system", "human"), key
        assert chronological[-1].role == "ai", key
        seen[writer] += 1
    assert all(seen.values())


def test_python_and_js_elements_differ_as_the_writers_do(seeded, store):
    python_key = next(key for key in session_keys(store) if writer_of(key) == "langchain_python")
    flowise_key = next(key for key in session_keys(store) if writer_of(key) == "flowise")

    python_data = json.loads(elements(store, python_key)[0])["data"]
    flowise_data = json.loads(elements(store, flowise_key)[0])["data"]

    # message_to_dict dumps every pydantic field; JS toDict leaves undefined fields out.
    assert {"type", "name", "id"} <= python_data.keys()
    assert not {"type", "name", "id"} & flowise_data.keys()


def test_tool_calls_and_multi_part_content(seeded, store):
    writers_with_tool_calls, writers_with_images = set(), set()
    for key in session_keys(store):
        messages = [parse_element(element) for element in elements(store, key)]
        call_ids = {call.id for message in messages for call in message.tool_calls}
        answered = {message.tool_call_id for message in messages if message.role == "tool"}
        assert call_ids == answered, key  # every call has its result, and no result is orphaned
        if call_ids:
            writers_with_tool_calls.add(writer_of(key))
        if any(part.url for message in messages for part in message.parts):
            writers_with_images.add(writer_of(key))

    assert writers_with_tool_calls == {"flowise", "langchain_python", "llamaindex"}
    assert writers_with_images == {"flowise", "langchain_python", "llamaindex"}
    assert 0 < seeded["with_tool_calls"] < seeded["sessions"] / 2
    assert 0 < seeded["with_images"] < seeded["sessions"] / 4


def test_malformed_session(seeded, store):
    stored = elements(store, MALFORMED_SESSION_KEY)
    problems = [parse_element(element).problem for element in stored]

    assert stored[0].startswith(b"\xff\xfe")  # the newest, written by EVAL
    assert problems[0].startswith("Contains bytes that are not valid UTF-8")
    assert sum(bool(problem) for problem in problems) == seeded["malformed_elements"] == 3
    assert any(problem.startswith("Not valid JSON") for problem in problems)
    assert any(problem.startswith("Unknown message shape") for problem in problems)


def test_awkward_key_round_trips(seeded, store):
    assert AWKWARD_SESSION_KEY in all_keys(store)
    assert store.call("LLEN", AWKWARD_SESSION_KEY) >= 2


def test_an_erasure_search_has_something_to_find(seeded, store):
    holding = {key for key in session_keys(store) if any(b"jane.doe@example.com" in e for e in elements(store, key))}

    assert len(holding) >= 3
    assert len({writer_of(key) for key in holding}) >= 2


def summary(store, session_key):
    reply = store.call("HGETALL", SUMMARY_PREFIX + session_key)
    return {reply[i].decode(): reply[i + 1].decode() for i in range(0, len(reply), 2)}


def test_summaries_one_fresh_one_stale(seeded, store):
    summarised = [key[len(SUMMARY_PREFIX) :] for key in all_keys(store) if key.startswith(SUMMARY_PREFIX)]
    states = {}
    for session_key in summarised:
        fields = summary(store, session_key)
        length = store.call("LLEN", session_key)
        states["fresh" if int(fields["message_count"]) == length else "stale"] = session_key
        assert int(fields["message_count"]) <= length
        assert fields["method"] == "extractive"
        assert fields["text"].startswith("The customer wrote: ")
        generated_at = datetime.fromisoformat(fields["generated_at"])
        assert generated_at.utcoffset() == timedelta(0)
        assert int(fields["duration_ms"]) >= 0
        # A summary lives as long as its session.
        assert abs(store.call("TTL", SUMMARY_PREFIX + session_key) - store.call("TTL", session_key)) <= 1

    assert len(summarised) == seeded["summaries"] == 2
    assert states.keys() == {"fresh", "stale"}
    assert store.call("TTL", states["fresh"]) > 0  # so the TTL rule above is exercised


def test_seeding_twice_writes_the_same_store(seeded, store):
    before = {key: elements(store, key) for key in session_keys(store)}

    seed_demo(store)

    assert {key: elements(store, key) for key in session_keys(store)} == before


def test_store_is_empty(store):
    assert store_is_empty(store)
    store.call("SET", "anything", "1")
    assert not store_is_empty(store)


def run_command(*args):
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_command_seeds_the_configured_store(store):
    output = run_command("--sessions", "12")

    assert len(session_keys(store)) == 12 + 3  # plus the long, malformed and awkward-key sessions
    assert output.startswith("Seeded 15 sessions (")
    assert output.count("\n") == 1


def test_command_if_empty_leaves_a_used_store_alone(store):
    store.call("SET", "someone:else", "1")

    output = run_command("--if-empty")

    assert all_keys(store) == ["someone:else"]
    assert "already holds keys" in output


def test_command_if_empty_seeds_an_empty_store(store):
    run_command("--if-empty", "--sessions", "3")

    assert len(session_keys(store)) == 3 + 3


def test_command_without_a_store_says_so(settings):
    settings.UPSTASH_REDIS_REST_URL = ""

    with pytest.raises(CommandError, match="No store is configured"):
        run_command()
