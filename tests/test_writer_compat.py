"""Redacted elements still load in each writer's own reader, run here: the libraries themselves.

Elements are written by the library (LangChain Python's message_to_dict, LangChain JS's toDict through
node, LlamaIndex's Upstash chat store into the local store), redacted whole and text-only, and read
back by the same library: it must parse them, the searched text must be gone (in the element as stored,
escaped or not), and the ids that pair tool calls with their results must survive.
"""

import json
import subprocess
from pathlib import Path

import pytest
from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)
from llama_index.core.base.llms.types import TextBlock, ToolCallBlock
from llama_index.core.llms import ChatMessage
from llama_index.storage.chat_store.upstash import UpstashChatStore

from memoryadmin.services import redaction
from memoryadmin.services.content_search import Matcher, match_element
from memoryadmin.services.sessions import OLDEST_FIRST

from .conftest import TEST_TOKEN

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"
NAME = "Zoë Ålund"  # non-ASCII: LangChain Python and LlamaIndex store it escaped (\u00eb)
WRITERS = Path(__file__).resolve().parent / "writers"


def redactions(element, query):
    """(element redacted whole, element redacted text-only) for a query."""
    whole, was_whole = redaction.redacted_element(element)
    text_only, _ = redaction.redacted_element(element, Matcher(query))
    assert was_whole
    return {"whole": whole, "text": text_only}


def assert_gone(element, query):
    """The query is in the element neither as stored (raw, escaped) nor in its decoded text."""
    matcher = Matcher(query)
    assert match_element(matcher, element, None) is None
    assert query.casefold() not in element.decode().casefold()
    assert json.dumps(query)[1:-1].casefold() not in element.decode().casefold()


# ---- LangChain Python ------------------------------------------------------------------------------------

PYTHON_MESSAGES = {
    "human": HumanMessage(f"Hi, I am {NAME}, write to {EMAIL}", name=NAME, id="run-1"),
    "human parts": HumanMessage(
        [{"type": "text", "text": f"I am {NAME}"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    ),
    "ai with tool calls": AIMessage(
        f"Looking up {NAME}",
        tool_calls=[{"name": "find_customer", "args": {"email": EMAIL, "name": NAME}, "id": "call_7"}],
        additional_kwargs={
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "find_customer", "arguments": json.dumps({"email": EMAIL})},
                }
            ],
            "refusal": f"not for {NAME}",
        },
        response_metadata={"model_name": "gpt-4o", "logprobs": {"content": [{"token": NAME}]}},
        usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        invalid_tool_calls=[{"name": "bad", "args": f'{{"name": "{NAME}"', "id": "call_8", "error": "bad JSON"}],
    ),
    "tool": ToolMessage(f"Found {NAME} <{EMAIL}>", tool_call_id="call_7", name="find_customer", artifact={"e": EMAIL}),
    "system": SystemMessage(f"The customer is {NAME}."),
}


@pytest.mark.parametrize("kind", PYTHON_MESSAGES)
@pytest.mark.parametrize("how", ["whole", "text"])
def test_langchain_python_reads_redacted_elements(kind, how):
    original = PYTHON_MESSAGES[kind]
    element = json.dumps(message_to_dict(original)).encode()  # as UpstashRedisChatMessageHistory stores it
    assert b"\\u00eb" in element  # the writer escapes non-ASCII
    redacted = redactions(element, NAME)[how]
    [message] = messages_from_dict([json.loads(redacted)])
    assert type(message) is type(original)
    assert_gone(redacted, NAME)
    assert redacted.isascii()  # written as the writer writes: json.dumps, ensure_ascii
    if isinstance(original, AIMessage):
        assert [call["id"] for call in message.tool_calls] == ["call_7"]
        assert [call["name"] for call in message.tool_calls] == ["find_customer"]
        assert [call["id"] for call in message.additional_kwargs["tool_calls"]] == ["call_7"]
        assert [call["id"] for call in message.invalid_tool_calls] == ["call_8"]
    if isinstance(original, ToolMessage):
        assert (message.tool_call_id, message.name) == ("call_7", "find_customer")
    if how == "whole":
        assert_gone(redacted, EMAIL)
        assert message.content == redaction.MARKER
        assert message.response_metadata == {} and not getattr(message, "usage_metadata", None)
        assert all(call["args"] == {} for call in getattr(message, "tool_calls", []))


def test_langchain_python_text_only_keeps_the_rest_of_the_text():
    element = json.dumps(message_to_dict(PYTHON_MESSAGES["human"])).encode()
    redacted, whole = redaction.redacted_element(element, Matcher(EMAIL))
    [message] = messages_from_dict([json.loads(redacted)])
    assert not whole
    assert message.content == f"Hi, I am {NAME}, write to {redaction.MARKER}"


# ---- LangChain JS / Flowise ------------------------------------------------------------------------------


def node(request):
    done = subprocess.run(
        ["node", str(WRITERS / "langchain_js.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)


JS_MESSAGES = [
    {"kind": "human", "fields": {"content": f"Hi, I am {NAME}, write to {EMAIL}", "name": NAME}},
    {
        "kind": "human",
        "fields": {
            "content": [{"type": "text", "text": f"I am {NAME}"}, {"type": "image_url", "image_url": "https://x"}]
        },
    },
    {
        "kind": "ai",
        "fields": {
            "content": f"Looking up {NAME}",
            "tool_calls": [{"name": "find_customer", "args": {"email": EMAIL, "name": NAME}, "id": "call_7"}],
            "response_metadata": {"model_name": "gpt-4o"},
        },
    },
    {
        "kind": "tool",
        "fields": {"content": f"Found {NAME} <{EMAIL}>", "tool_call_id": "call_7", "name": "find_customer"},
    },
    {"kind": "system", "fields": {"content": f"The customer is {NAME}."}},
]


def test_langchain_js_reads_redacted_elements():
    elements = [element.encode() for element in node({"make": JS_MESSAGES})]
    assert all(NAME.encode() in element for element in elements)  # JSON.stringify keeps UTF-8 as is
    for how in ("whole", "text"):
        redacted = [redactions(element, NAME)[how] for element in elements]
        for element in redacted:
            assert_gone(element, NAME)
            assert b'{"type":' in element  # JSON.stringify's compact separators
        read = node({"read": [element.decode() for element in redacted]})
        assert [message.get("type") for message in read] == ["human", "human", "ai", "tool", "system"], read
        assert [call["id"] for call in read[2]["tool_calls"]] == ["call_7"]
        assert [call["name"] for call in read[2]["tool_calls"]] == ["find_customer"]
        assert read[3]["tool_call_id"] == "call_7" and read[3]["name"] == "find_customer"
        if how == "whole":
            assert all(message["content"] == redaction.MARKER for message in read)
            assert read[2]["tool_calls"][0]["args"] == {}
            assert read[0]["name"] is None  # a person's name is personal data; a tool's stays


def test_a_lone_surrogate_is_written_as_json_stringify_writes_it():
    element = '{"type":"human","data":{"content":"é \\ud800 jane"}}'.encode()
    redacted, _ = redaction.redacted_element(element, Matcher("jane"))
    assert redacted == '{"type":"human","data":{"content":"é \\ud800 [redacted]"}}'.encode()
    assert node({"read": [redacted.decode()]})[0]["type"] == "human"


# ---- LlamaIndex ------------------------------------------------------------------------------------------

LLAMA_MESSAGES = [
    ChatMessage(role="system", content=f"The customer is {NAME}."),
    ChatMessage(role="user", content=f"Hi, I am {NAME}, write to {EMAIL}"),
    ChatMessage(
        role="assistant",
        blocks=[
            TextBlock(text=f"Looking up {NAME}"),
            ToolCallBlock(tool_call_id="call_7", tool_name="find_customer", tool_kwargs={"email": EMAIL}),
        ],
        additional_kwargs={
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "find_customer", "arguments": json.dumps({"n": NAME})},
                }
            ]
        },
    ),
    ChatMessage(
        role="tool", content=f"Found {NAME}", additional_kwargs={"tool_call_id": "call_7", "name": "find_customer"}
    ),
]


@pytest.fixture
def chat_store(local_store, connection):
    """LlamaIndex's Upstash chat store itself, on the local store (RPUSH of json.dumps(ChatMessage.dict()))."""
    return UpstashChatStore(redis_url=local_store.url, redis_token=TEST_TOKEN)


@pytest.mark.parametrize("whole", [True, False])
def test_llamaindex_reads_sessions_redacted_in_the_store(connection, store, chat_store, whole):
    for message in LLAMA_MESSAGES:
        chat_store.add_message("chat-1", message)
    assert b"\\u00eb" in store.call("LINDEX", "chat-1", 0)
    result = redaction.redact_session(connection, "chat-1", Matcher(NAME), None, whole)
    assert result.redacted == 4 and result.not_redacted == 0
    read = chat_store.get_messages("chat-1")  # the store's own reader: ChatMessage.parse_raw of each
    assert [message.role.value for message in read] == ["system", "user", "assistant", "tool"]
    for element in store.call("LRANGE", "chat-1", 0, -1):
        assert_gone(element, NAME)
    [call] = [block for block in read[2].blocks if isinstance(block, ToolCallBlock)]
    assert (call.tool_call_id, call.tool_name) == ("call_7", "find_customer")
    assert read[2].additional_kwargs["tool_calls"][0]["id"] == "call_7"
    assert read[3].additional_kwargs == {"tool_call_id": "call_7", "name": "find_customer"}
    if whole:
        assert all(message.content == redaction.MARKER for message in read)
        assert call.tool_kwargs == {}
    else:
        assert read[1].content == f"Hi, I am {redaction.MARKER}, write to {EMAIL}"


def test_llamaindex_reads_a_redacted_message_of_its_older_content_shape(connection, store, chat_store):
    element = json.dumps({"role": "user", "content": f"I am {NAME}", "additional_kwargs": {"name": NAME}})
    store.call("RPUSH", "chat-old", element)
    identity = redaction.element_identity(connection, "chat-old", 0, OLDEST_FIRST)
    done = redaction.redact_message(connection, "chat-old", 0, OLDEST_FIRST, identity.sha1)
    assert done.outcome == redaction.REDACTED
    [message] = chat_store.get_messages("chat-old")
    assert message.content == redaction.MARKER and message.additional_kwargs == {}
    assert ChatMessage.model_validate(json.loads(store.call("LINDEX", "chat-old", 0))).role.value == "user"
