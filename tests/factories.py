"""Stored elements as the writers make them, for tests that write sessions of their own."""

import json


def langchain(kind, text, **data):
    """A {"type","data"} element (Flowise, LangChain JS and Python): LPUSHed, newest first."""
    return json.dumps({"type": kind, "data": {"content": text, "additional_kwargs": {}, **data}})


def llamaindex(role, text):
    """A {"role","content"} element (LlamaIndex): RPUSHed, oldest first."""
    return json.dumps({"role": role, "content": text, "additional_kwargs": {}})


def write_langchain_session(store, key, texts):
    """Chronological texts, alternating human/ai, pushed the way LangChain does (LPUSH)."""
    elements = [langchain("human" if i % 2 == 0 else "ai", text) for i, text in enumerate(texts)]
    for start in range(0, len(elements), 1000):
        store.call("LPUSH", key, *elements[start : start + 1000])


def write_llamaindex_session(store, key, texts):
    elements = [llamaindex("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(texts)]
    for start in range(0, len(elements), 1000):
        store.call("RPUSH", key, *elements[start : start + 1000])
