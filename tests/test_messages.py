"""parse_element: every writer's format, tool calls, multi-part content, malformed elements."""

import json

import pytest

from memoryadmin.services import messages
from memoryadmin.services.messages import Message, Part, ToolCall, detect_order, parse_element


def element(value):
    """A stored element as the client returns it: JSON bytes."""
    return json.dumps(value).encode()


def langchain_python(message_type, content, **fields):
    """LangChain Python `message_to_dict`: the whole pydantic dump under data."""
    data = {
        "content": content,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": message_type,
        "name": None,
        "id": None,
    }
    if message_type == "human":
        data["example"] = False
    if message_type == "ai":
        data.update(example=False, tool_calls=[], invalid_tool_calls=[], usage_metadata=None)
    data.update(fields)
    return element({"type": message_type, "data": data})


def langchain_js(message_type, content, **fields):
    """LangChain JS / Flowise `toDict`: undefined fields are simply absent."""
    data = {"content": content, "additional_kwargs": {}, "response_metadata": {}, **fields}
    return element({"type": message_type, "data": data})


OPENAI_TOOL_CALL = {
    "id": "call_Xy12",
    "type": "function",
    "function": {"name": "lookup_order", "arguments": '{"order_id": "NW-10442"}'},
}
PRETTY_ORDER_ARGUMENTS = '{\n  "order_id": "NW-10442"\n}'


# --- LangChain Python -------------------------------------------------------


def test_langchain_python_human_message():
    value = langchain_python("human", "Where is my order NW-10442?")

    message = parse_element(value)

    assert message.role == "human"
    assert message.role_label == "human"
    assert message.text == "Where is my order NW-10442?"
    assert message.parts == []
    assert message.tool_calls == []
    assert message.format == "langchain"
    assert message.problem == ""
    assert message.raw == value.decode()
    assert message.size == len(value)


def test_langchain_python_ai_tool_calls():
    value = langchain_python(
        "ai",
        "",
        tool_calls=[{"name": "lookup_order", "args": {"order_id": "NW-10442"}, "id": "call_Xy12", "type": "tool_call"}],
        # OpenAI chat models keep their own copy of the same call; it must not show twice.
        additional_kwargs={"tool_calls": [OPENAI_TOOL_CALL], "refusal": None},
    )

    message = parse_element(value)

    assert message.role == "ai"
    assert message.tool_calls == [ToolCall(id="call_Xy12", name="lookup_order", arguments=PRETTY_ORDER_ARGUMENTS)]


def test_older_langchain_ai_message_with_openai_tool_calls_only():
    value = langchain_python("ai", "", tool_calls=[], additional_kwargs={"tool_calls": [OPENAI_TOOL_CALL]})

    assert parse_element(value).tool_calls == [
        ToolCall(id="call_Xy12", name="lookup_order", arguments=PRETTY_ORDER_ARGUMENTS)
    ]


def test_legacy_function_call():
    value = langchain_python(
        "ai", "", additional_kwargs={"function_call": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}}
    )

    assert parse_element(value).tool_calls == [
        ToolCall(id="", name="get_weather", arguments='{\n  "city": "Zürich"\n}')
    ]


def test_tool_call_arguments_that_are_not_json_are_shown_as_written():
    call = {**OPENAI_TOOL_CALL, "function": {"name": "lookup_order", "arguments": '{"order_id": "NW-1'}}
    value = langchain_python("ai", "", additional_kwargs={"tool_calls": [call]})

    assert parse_element(value).tool_calls[0].arguments == '{"order_id": "NW-1'


def test_tool_call_arguments_nested_too_deeply_are_shown_as_written():
    deep = "[" * 5000 + "]" * 5000
    call = {**OPENAI_TOOL_CALL, "function": {"name": "lookup_order", "arguments": deep}}
    value = langchain_python("ai", "", additional_kwargs={"tool_calls": [call]})

    message = parse_element(value)

    assert message.tool_calls[0].arguments == deep
    assert message.problem == ""


def test_langchain_python_tool_message():
    value = langchain_python(
        "tool", '{"status": "shipped"}', tool_call_id="call_Xy12", name="lookup_order", artifact=None, status="success"
    )

    message = parse_element(value)

    assert (message.role, message.tool_call_id, message.name) == ("tool", "call_Xy12", "lookup_order")
    assert message.text == '{"status": "shipped"}'


@pytest.mark.parametrize(
    ("message_type", "fields", "role", "role_label"),
    [
        ("human", {}, "human", "human"),
        ("ai", {}, "ai", "ai"),
        ("system", {}, "system", "system"),
        ("developer", {}, "system", "developer"),
        ("tool", {"tool_call_id": "call_1"}, "tool", "tool"),
        ("function", {"name": "get_weather"}, "function", "function"),
        ("remove", {"id": "msg-1"}, "other", "remove"),
        ("AIMessageChunk", {}, "ai", "AIMessageChunk"),
        ("HumanMessageChunk", {}, "human", "HumanMessageChunk"),
        ("SystemMessageChunk", {}, "system", "SystemMessageChunk"),
        ("ToolMessageChunk", {"tool_call_id": "call_1"}, "tool", "ToolMessageChunk"),
        ("chat", {"role": "assistant"}, "ai", "assistant"),
        ("chat", {"role": "moderator"}, "other", "moderator"),
        ("chat", {}, "other", "chat"),
        ("ChatMessageChunk", {"role": "user"}, "human", "user"),
        ("generic", {"role": "user"}, "human", "user"),
        ("something-new", {}, "other", "something-new"),
    ],
)
def test_langchain_roles(message_type, fields, role, role_label):
    message = parse_element(langchain_python(message_type, "hello", **fields))

    assert (message.role, message.role_label, message.format) == (role, role_label, "langchain")


# --- Flowise / LangChain JS -------------------------------------------------


def test_flowise_human_and_ai_messages():
    human = parse_element(langchain_js("human", "Can I change my flight to Lisbon?"))
    ai = parse_element(langchain_js("ai", "Of course, which date?", tool_calls=[], invalid_tool_calls=[]))

    assert (human.role, human.text, human.format, human.problem) == (
        "human",
        "Can I change my flight to Lisbon?",
        "langchain",
        "",
    )
    assert (ai.role, ai.text, ai.tool_calls) == ("ai", "Of course, which date?", [])


def test_flowise_agent_tool_call_and_result():
    tool_call = {
        "name": "search_flights",
        "args": {"to": "LIS", "date": "2026-05-02"},
        "id": "call_9",
        "type": "tool_call",
    }
    call = parse_element(langchain_js("ai", "", tool_calls=[tool_call], invalid_tool_calls=[]))
    result = parse_element(langchain_js("tool", '[{"flight": "TP1345"}]', tool_call_id="call_9", name="search_flights"))

    assert call.tool_calls == [
        ToolCall(id="call_9", name="search_flights", arguments='{\n  "to": "LIS",\n  "date": "2026-05-02"\n}')
    ]
    assert (result.role, result.tool_call_id, result.name) == ("tool", "call_9", "search_flights")


def test_oldest_langchain_js_format():
    message = parse_element(element({"type": "ai", "text": "Hello! How can I help?"}))

    assert (message.role, message.text, message.format, message.problem) == (
        "ai",
        "Hello! How can I help?",
        "langchain",
        "",
    )


# --- Multi-part content ----------------------------------------------------


def test_multi_part_content_keeps_every_part_in_order():
    data_url = "data:image/png;base64," + "A" * 10_000
    content = [
        {"type": "text", "text": "The jacket arrived torn, see photos."},
        {"type": "image_url", "image_url": {"url": "https://img.example.com/a.jpg", "detail": "auto"}},
        {"type": "image_url", "image_url": "https://img.example.com/b.jpg"},
        "Plain string part.",
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "audio", "input_audio": {"data": "UklGR...", "format": "wav"}},
        {"type": "image", "source_type": "base64", "data": "iVBOR...", "mime_type": "image/png"},
        42,
    ]

    message = parse_element(langchain_js("human", content))

    assert message.text == "The jacket arrived torn, see photos.\n\nPlain string part."
    assert message.parts == [
        Part(kind="text", text="The jacket arrived torn, see photos."),
        Part(kind="image_url", text="https://img.example.com/a.jpg", url="https://img.example.com/a.jpg"),
        Part(kind="image_url", text="https://img.example.com/b.jpg", url="https://img.example.com/b.jpg"),
        Part(kind="text", text="Plain string part."),
        Part(kind="image_url", text=data_url[:100], url=data_url[:100]),
        Part(kind="audio", text="[audio part]"),
        Part(kind="image", text="[image part]"),
        Part(kind="unknown", text="[a number part]"),
    ]
    assert message.problem == ""


def test_content_split_into_text_parts_reads_as_plain_text():
    content = [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}]

    message = parse_element(langchain_python("ai", content))

    assert message.text == "First.\n\nSecond."
    assert message.parts == []


@pytest.mark.parametrize(
    ("content", "text", "problem"),
    [
        (42, "42", "Unexpected content: a number instead of text"),
        ({"answer": "yes"}, '{"answer": "yes"}', "Unexpected content: an object instead of text"),
        (True, "true", "Unexpected content: true/false instead of text"),
    ],
)
def test_content_of_unexpected_type(content, text, problem):
    message = parse_element(langchain_js("ai", content))

    assert (message.role, message.text, message.problem) == ("ai", text, problem)


# --- LlamaIndex -------------------------------------------------------------


def test_llamaindex_old_content_shape():
    message = parse_element(element({"role": "user", "content": "I need a hotel in Kyoto", "additional_kwargs": {}}))

    assert (message.role, message.role_label, message.text, message.format, message.problem) == (
        "human",
        "user",
        "I need a hotel in Kyoto",
        "llamaindex",
        "",
    )


def test_llamaindex_assistant_tool_call_and_tool_result():
    call = parse_element(
        element({"role": "assistant", "content": None, "additional_kwargs": {"tool_calls": [OPENAI_TOOL_CALL]}})
    )
    result = parse_element(
        element(
            {
                "role": "tool",
                "content": "Order NW-10442 shipped",
                "additional_kwargs": {"tool_call_id": "call_Xy12", "name": "lookup_order"},
            }
        )
    )

    assert (call.role, call.text, call.problem) == ("ai", "", "")
    assert call.tool_calls == [ToolCall(id="call_Xy12", name="lookup_order", arguments=PRETTY_ORDER_ARGUMENTS)]
    assert (result.role, result.tool_call_id, result.name) == ("tool", "call_Xy12", "lookup_order")


def test_llamaindex_blocks_shape():
    value = element(
        {
            "role": "user",
            "additional_kwargs": {},
            "blocks": [
                {"block_type": "text", "text": "Is this the right adapter?"},
                {
                    "block_type": "image",
                    "image": None,
                    "path": None,
                    "url": "https://img.example.com/adapter.jpg",
                    "image_mimetype": "image/jpeg",
                    "detail": None,
                },
                {"block_type": "document", "data": None, "url": "https://example.com/manual.pdf", "title": "manual"},
            ],
        }
    )

    message = parse_element(value)

    assert (message.role, message.text, message.format) == ("human", "Is this the right adapter?", "llamaindex")
    assert message.parts == [
        Part(kind="text", text="Is this the right adapter?"),
        Part(kind="image", text="https://img.example.com/adapter.jpg", url="https://img.example.com/adapter.jpg"),
        Part(kind="document", text="[document part]"),
    ]


def test_llamaindex_text_only_blocks_read_as_plain_text():
    message = parse_element(
        element({"role": "assistant", "additional_kwargs": {}, "blocks": [{"block_type": "text", "text": "Done."}]})
    )

    assert (message.role, message.text, message.parts) == ("ai", "Done.", [])


def test_llamaindex_tool_call_blocks_become_tool_calls():
    value = element(
        {
            "role": "assistant",
            "additional_kwargs": {},
            "blocks": [
                {"block_type": "thinking", "content": "The user wants the order status.", "num_tokens": None},
                {
                    "block_type": "tool_call",
                    "tool_call_id": "call_7",
                    "tool_name": "lookup_order",
                    "tool_kwargs": {"order_id": "NW-10442"},
                },
            ],
        }
    )

    message = parse_element(value)

    assert message.tool_calls == [ToolCall(id="call_7", name="lookup_order", arguments=PRETTY_ORDER_ARGUMENTS)]
    assert message.parts == [Part(kind="thinking", text="[thinking part]")]


@pytest.mark.parametrize(
    ("role_label", "role"),
    [
        ("user", "human"),
        ("assistant", "ai"),
        ("chatbot", "ai"),
        ("model", "ai"),
        ("system", "system"),
        ("developer", "system"),
        ("tool", "tool"),
        ("function", "function"),
        ("narrator", "other"),
    ],
)
def test_llamaindex_roles(role_label, role):
    message = parse_element(element({"role": role_label, "content": "hi", "additional_kwargs": {}}))

    assert (message.role, message.role_label, message.format) == (role, role_label, "llamaindex")


# --- Malformed elements -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param(b"", "Empty element", id="empty"),
        pytest.param(b"   \n", "Empty element", id="blank"),
        pytest.param(b"hello there", "Not valid JSON: Expecting value (line 1 column 1)", id="plain-text"),
        pytest.param(
            b'{"type": "human", "data": {"content": "cut o',
            "Not valid JSON: Unterminated string starting at (line 1 column 39)",
            id="truncated",
        ),
        pytest.param(b"42", "Not a message object (the JSON is a number)", id="number"),
        pytest.param(b"[1, 2]", "Not a message object (the JSON is a list)", id="list"),
        pytest.param(b'"just a string"', "Not a message object (the JSON is a string)", id="string"),
        pytest.param(b"null", "Not a message object (the JSON is null)", id="null"),
        pytest.param(b'{"b": 1, "a": 2}', "Unknown message shape (keys: a, b)", id="unknown-shape"),
        pytest.param(b"{}", "Unknown message shape (keys: none)", id="empty-object"),
        pytest.param(
            element({f"k{i}": i for i in range(10)}),
            "Unknown message shape (keys: k0, k1, k2, k3, k4, k5, k6, k7, ...)",
            id="many-keys",
        ),
        pytest.param(
            b'{"type": "human", "data": "hi"}', "Unknown message shape (keys: data, type)", id="data-not-object"
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "Not readable as JSON: nested too deeply", id="deep-nesting"),
        pytest.param(
            b'{"n": ' + b"9" * 5000 + b"}",
            "Not valid JSON: Exceeds the limit (4300 digits) for integer string conversion",
            id="huge-integer",
        ),
    ],
)
def test_malformed_elements(value, problem):
    message = parse_element(value)

    assert message.problem.startswith(problem)
    assert (message.role, message.role_label, message.format) == ("other", "unknown", "unknown")
    assert message.raw == value.decode()
    assert message.size == len(value)


def test_non_utf8_bytes_are_replaced_and_the_message_still_read():
    value = b'{"type": "human", "data": {"content": "caf\xe9 au lait"}}'

    message = parse_element(value)

    assert message.problem == "Contains bytes that are not valid UTF-8"
    assert (message.role, message.text, message.format) == ("human", "caf\ufffd au lait", "langchain")
    assert message.raw == '{"type": "human", "data": {"content": "caf\ufffd au lait"}}'
    assert message.size == len(value)


def test_non_utf8_bytes_that_are_not_json_either():
    message = parse_element(b"\xff\xfelegacy export")

    assert message.problem == (
        "Contains bytes that are not valid UTF-8; Not valid JSON: Expecting value (line 1 column 1)"
    )
    assert message.raw == "\ufffd\ufffdlegacy export"


def test_huge_element_is_read_whole():
    content = "The customer pasted a very long log. " * 150_000  # about 5.5 MB
    value = langchain_js("human", content)

    message = parse_element(value)

    assert message.problem == ""
    assert message.text == content
    assert message.raw == value.decode()
    assert message.size == len(value) > 5_000_000


def test_text_input_is_read_like_bytes():
    value = langchain_python("human", "Grüße aus München")

    message = parse_element(value.decode())

    assert (message.text, message.size, message.problem) == ("Grüße aus München", len(value), "")


def test_text_with_lone_surrogates_is_reported_not_raised():
    message = parse_element('{"role": "user", "content": "broken \ud800 half"}')

    assert message.problem.startswith("Contains bytes that are not valid UTF-8")


def test_a_reader_failure_costs_one_message_not_the_page(monkeypatch):
    def broken_reader(*args):
        raise KeyError("surprise")

    monkeypatch.setattr(messages, "_from_llamaindex", broken_reader)
    value = element({"role": "user", "content": "hi"})

    message = parse_element(value)

    assert message.problem == "Could not read this message (KeyError)"
    assert message.raw == value.decode()


# --- Order ------------------------------------------------------------------


@pytest.mark.parametrize(("format", "newest_first"), [("langchain", True), ("llamaindex", False), ("unknown", None)])
def test_newest_first_follows_the_writer(format, newest_first):
    assert Message(format=format).newest_first is newest_first


UNREADABLE = parse_element(b"not json")
LANGCHAIN = parse_element(langchain_js("human", "hi"))
LLAMAINDEX = parse_element(element({"role": "user", "content": "hi"}))


@pytest.mark.parametrize(
    ("session", "order"),
    [
        ([LANGCHAIN, LLAMAINDEX], "newest-first"),
        ([UNREADABLE, LLAMAINDEX, LANGCHAIN], "oldest-first"),
        ([UNREADABLE, UNREADABLE], None),
        ([], None),
    ],
)
def test_detect_order(session, order):
    assert detect_order(session) == order


# --- the start of a cut element (a list preview, a transcript window of big messages) ----------------

IMAGE = json.dumps(
    {
        "type": "human",
        "data": {
            "content": [
                {"type": "text", "text": "Qu'y a-t-il sur l'image ? 😀"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "iVBOR" * 20_000}},
            ],
            "additional_kwargs": {},
        },
    }
).encode()


def test_the_start_of_a_cut_element_gives_its_writer_role_and_text():
    message = parse_element(IMAGE[:2048], len(IMAGE))
    assert message.cut and message.size == len(IMAGE) and not message.problem
    assert (message.format, message.role, message.role_label) == ("langchain", "human", "human")
    assert message.text == "Qu'y a-t-il sur l'image ? 😀"  # ensure_ascii: stored as \\u escapes
    assert [(part.kind, part.text) for part in message.parts] == [
        ("text", message.text),
        ("image_url", "[image_url part]"),
    ]
    llamaindex = json.dumps({"role": "assistant", "content": "word " * 1000}).encode()
    message = parse_element(llamaindex[:100], len(llamaindex))
    assert (message.format, message.role, message.text.split()[:2]) == ("llamaindex", "ai", ["word", "word"])
    assert message.newest_first is False  # the list order is still detected from a cut element


def test_an_element_cut_anywhere_reads_without_error_and_keeps_no_half_character():
    element = json.dumps({"type": "ai", "data": {"content": 'Dis "oui" \\ café 😀 ' * 20}}, ensure_ascii=False)
    data = element.encode()
    for end in range(len(data)):
        message = parse_element(data[:end], len(data))
        assert message.cut and not message.problem and "\ufffd" not in message.text + message.raw
        assert element.startswith(message.raw)
        assert 'Dis "oui" \\ café 😀 ' * 20 == message.text + ('Dis "oui" \\ café 😀 ' * 20)[len(message.text) :]


def test_a_cut_element_of_no_known_shape_is_its_start_as_text():
    message = parse_element(b"not json at all " * 10, 10_000)
    assert message.cut and message.format == "unknown" and message.raw.startswith("not json at all")
    assert parse_element(IMAGE).cut is False  # whole: read as usual
