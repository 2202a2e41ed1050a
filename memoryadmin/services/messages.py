"""One stored list element -> one `Message`, for every writer format; never raises.

The writers (see DESIGN.md, "What is in the store"):

- LangChain Python `message_to_dict`, LangChain JS / Flowise `toDict`:
  `{"type": "human", "data": {"content": ..., ...}}`, pushed with LPUSH
  (newest first). Very old LangChain JS wrote `{"type", "role", "text"}`;
  its own reader still accepts that, so we do too.
- LlamaIndex `ChatMessage.dict()`: `{"role": "user", "content": ...}` or,
  newer, `{"role": ..., "blocks": [{"block_type": "text", "text": ...}]}`,
  pushed with RPUSH (oldest first).

Nothing guarantees the data is well formed, so every reader below tolerates
missing fields and wrong types, and anything unreadable becomes a Message
with `problem` set and `raw` kept: the page shows it with a warning.

A very large element is often read only in part (its first bytes: the store
limits the size of a reply). A cut element is no JSON, so its start is read
leniently: the writer and role from its first key, and the beginning of its
text; the Message says it is `cut` and how big the whole element is.
"""

import json
import logging
import re
import traceback
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LANGCHAIN = "langchain"
LLAMAINDEX = "llamaindex"
UNKNOWN = "unknown"

# Every writer's role label -> the roles the app displays.
ROLES = {
    "human": "human",
    "user": "human",
    "ai": "ai",
    "assistant": "ai",
    "chatbot": "ai",  # Cohere
    "model": "ai",  # Gemini
    "system": "system",
    "developer": "system",  # OpenAI's newer name for system instructions
    "tool": "tool",
    "function": "function",
}

# LangChain's ChatMessage names its speaker in data.role: Python stores it as "chat", JS as "generic".
SPEAKER_IN_DATA = ("chat", "generic")

IMAGE_KINDS = ("image_url", "image")

# Inline images (data: URLs) are often megabytes of base64; a prefix says what they are.
DATA_URL_PREFIX = 100


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # pretty-printed JSON, or the raw string when it is not JSON


@dataclass
class Part:
    kind: str  # "text", "image_url", or the part's own type ("image", "audio", "document", ...)
    text: str = ""  # the text of a text part; a short label for the others
    url: str = ""  # image parts only


@dataclass
class Message:
    role: str = "other"  # human | ai | system | tool | function | other
    role_label: str = "unknown"  # as the writer stored it
    text: str = ""
    parts: list[Part] = field(default_factory=list)  # only when the content holds more than text
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str = ""
    name: str = ""
    raw: str = ""
    size: int = 0  # bytes
    format: str = UNKNOWN  # langchain | llamaindex | unknown
    problem: str = ""
    cut: bool = False  # only the start of the element was read: `raw` is that start, `size` the whole one's

    @property
    def newest_first(self) -> bool | None:
        """The list order this message's writer uses (LPUSH vs RPUSH), None when unknown."""
        return {LANGCHAIN: True, LLAMAINDEX: False}.get(self.format)


def parse_element(value: bytes | str, size: int | None = None) -> Message:
    """One stored list element (as LRANGE returns it) -> a Message; a problem note instead of an exception.

    `size`: the whole element's size in bytes, when `value` is only its start (a cut element).
    """
    data = _as_bytes(value)
    cut = size is not None and size > len(data)
    raw, is_utf8 = _decode(data, cut)
    problems = [] if is_utf8 else ["Contains bytes that are not valid UTF-8"]
    try:
        message = _interpret_start(raw) if cut else _interpret(raw, problems)
    except Exception as error:
        # Stored data is arbitrary: a shape no reader foresaw must cost one
        # warning on one message, never the page.
        # Where it failed, not what it said: an error's message may quote the stored text.
        log.warning(
            "Could not read a stored message (%s bytes): %s\n%s",
            len(data),
            type(error).__name__,
            "".join(traceback.format_tb(error.__traceback__)),
        )
        problems.append(f"Could not read this message ({type(error).__name__})")
        message = Message()
    message.raw, message.size, message.problem, message.cut = raw, size if cut else len(data), "; ".join(problems), cut
    return message


def detect_order(messages: list[Message]) -> str | None:
    """The list order of a session, from the first message whose writer is known."""
    for message in messages:
        if message.newest_first is not None:
            return "newest-first" if message.newest_first else "oldest-first"
    return None


def _as_bytes(value):
    if isinstance(value, bytes):
        return value
    # surrogatepass: a str holding lone surrogates still encodes, and is then reported as not UTF-8.
    return str(value).encode("utf-8", errors="surrogatepass")


def _decode(data, cut=False):
    """The element as text, and whether it was valid UTF-8 (a cut one's last character may have been cut in two)."""
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError as error:
        if cut and error.start >= len(data) - 3 and error.reason == "unexpected end of data":
            return data[: error.start].decode("utf-8"), True
        return data.decode("utf-8", errors="replace"), False


def _interpret(raw, problems):
    """Parse the JSON and hand it to the reader of its shape; problems collects what was wrong."""
    if not raw.strip():
        problems.append("Empty element")
        return Message()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        problems.append(f"Not valid JSON: {error.msg} (line {error.lineno} column {error.colno})")
        return Message()
    except RecursionError:
        problems.append("Not readable as JSON: nested too deeply")
        return Message()
    except ValueError as error:  # e.g. an integer longer than Python converts
        problems.append(f"Not valid JSON: {error}")
        return Message()
    if not isinstance(value, dict):
        problems.append(f"Not a message object (the JSON is {_json_kind(value)})")
        return Message()
    if isinstance(value.get("type"), str) and isinstance(value.get("data"), dict):
        return _from_langchain(value["type"], value["data"], problems)
    if isinstance(value.get("type"), str) and "text" in value and "data" not in value:
        return _from_langchain(value["type"], {"content": value["text"], "role": value.get("role")}, problems)
    if isinstance(value.get("role"), str):
        return _from_llamaindex(value, problems)
    problems.append(f"Unknown message shape (keys: {_key_list(value)})")
    return Message()


# The first key of each writer's element, as json.dumps and JSON.stringify write it: LangChain's
# {"type": ..., "data": {...}}, LlamaIndex's {"role": ...}.
_LANGCHAIN_START = re.compile(r'\s*\{\s*"type"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"data"\s*:\s*\{')
_LLAMAINDEX_START = re.compile(r'\s*\{\s*"role"\s*:\s*"((?:[^"\\]|\\.)*)"')
# Where the message's text begins: its content as a string, or its first text part or block.
_TEXT_START = re.compile(r'"(?:content|text)"\s*:\s*"')
# The longest run of complete JSON string characters (a cut may fall inside an escape, or between the two
# halves of a surrogate pair, which would leave a lone surrogate).
_STRING_CHARACTERS = re.compile(
    r'(?:[^"\\]|\\["\\/bfnrt]|\\u(?![dD][89abAB])[0-9a-fA-F]{4}|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[0-9a-fA-F]{4})*'
)
_PART_KINDS = re.compile(r'"(?:type|block_type)"\s*:\s*"(image_url|image|audio|video|file|document)"')


def _interpret_start(raw):
    """What the start of a cut element says: its writer and role from its first key, the start of its text.

    The first key is the one the writers write first; the text is the first string under "content" or
    "text" (a message's content comes before its other fields). Parts it names (images...) are listed.
    """
    if match := _LANGCHAIN_START.match(raw):
        message = Message(format=LANGCHAIN)
        message.role, message.role_label = _langchain_role(_json_string(match.group(1)), {})
    elif match := _LLAMAINDEX_START.match(raw):
        message = Message(format=LLAMAINDEX, role_label=_json_string(match.group(1)))
        message.role = _normalise_role(message.role_label)
    else:
        return Message()
    if text := _TEXT_START.search(raw, match.end()):
        message.text = _json_string(_STRING_CHARACTERS.match(raw, text.end()).group())
    kinds = _PART_KINDS.findall(raw, match.end())
    if kinds:
        message.parts = [Part(kind="text", text=message.text)] if message.text else []
        message.parts += [Part(kind=kind, text=f"[{kind} part]") for kind in kinds]
    return message


def _json_string(characters):
    """The text of JSON string characters (without their quotes)."""
    try:
        return json.loads(f'"{characters}"')
    except ValueError:
        return characters


# ``` on a line of its own opens a block (an optional language word after it), and the next ``` closes it.
_CODE_BLOCK = re.compile(r"^```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^```[ \t]*(?:\n|\Z)|\Z)", re.M | re.S)


@dataclass
class TextPiece:
    text: str
    code: bool = False  # inside a ``` block
    language: str = ""  # the word after a block's opening ```, as written


def text_pieces(text: str) -> list[TextPiece]:
    """Message text split at its ``` blocks, the one markup a transcript shows (on the page and in exports).

    A block not closed runs to the end of the text. The newline that ends the prose before a block and
    the newlines that end a block's code belong to the block's own lines, not to the text shown.
    """
    pieces, position = [], 0
    for match in _CODE_BLOCK.finditer(text):
        if prose := text[position : match.start()].removesuffix("\n"):
            pieces.append(TextPiece(prose))
        pieces.append(TextPiece(match.group(2).rstrip("\n"), code=True, language=match.group(1)))
        position = match.end()
    if position < len(text):
        pieces.append(TextPiece(text[position:]))
    return pieces


def _from_langchain(message_type, data, problems):
    role, role_label = _langchain_role(message_type, data)
    text, parts = _read_content(data.get("content"), problems)
    return Message(
        role=role,
        role_label=role_label,
        text=text,
        parts=parts,
        tool_calls=_tool_calls(data.get("tool_calls"), _dict(data.get("additional_kwargs"))),
        tool_call_id=_str(data.get("tool_call_id")),
        name=_str(data.get("name")),
        format=LANGCHAIN,
    )


def _langchain_role(message_type, data):
    """(role, role_label) of a LangChain message type, chunk types ("AIMessageChunk") included."""
    base_type = message_type.removesuffix("MessageChunk").lower()
    if base_type in SPEAKER_IN_DATA:
        speaker = _str(data.get("role"))
        return (_normalise_role(speaker), speaker) if speaker else ("other", message_type)
    return _normalise_role(base_type), message_type


def _from_llamaindex(value, problems):
    additional_kwargs = _dict(value.get("additional_kwargs"))
    blocks = value.get("blocks")
    if isinstance(blocks, list):
        # Newer LlamaIndex keeps tool calls as blocks among the content: show them as tool calls.
        call_blocks = [block for block in blocks if _is_tool_call_block(block)]
        text, parts = _read_content([block for block in blocks if not _is_tool_call_block(block)], problems)
    else:
        call_blocks = []
        text, parts = _read_content(value.get("content"), problems)
    return Message(
        role=_normalise_role(value["role"]),
        role_label=value["role"],
        text=text,
        parts=parts,
        tool_calls=_tool_calls(call_blocks, additional_kwargs),
        tool_call_id=_str(additional_kwargs.get("tool_call_id")),
        name=_str(additional_kwargs.get("name")),
        format=LLAMAINDEX,
    )


def _is_tool_call_block(block):
    return isinstance(block, dict) and block.get("block_type") == "tool_call"


def _normalise_role(label):
    return ROLES.get(label.lower(), "other")


def _read_content(content, problems):
    """(text, parts) of a message's content: a string, a list of parts, or null."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if isinstance(content, list):
        parts = [_read_part(item) for item in content]
        text = "\n\n".join(part.text for part in parts if part.kind == "text" and part.text)
        # Text split into several parts reads as plain text; keep the parts only when there is more to show.
        return text, parts if any(part.kind != "text" for part in parts) else []
    problems.append(f"Unexpected content: {_json_kind(content)} instead of text")
    return json.dumps(content, ensure_ascii=False), []


def _read_part(item):
    """One content part: LangChain/OpenAI `{"type": ...}`, LlamaIndex `{"block_type": ...}`, or a bare string."""
    if isinstance(item, str):
        return Part(kind="text", text=item)
    if not isinstance(item, dict):
        return Part(kind=UNKNOWN, text=f"[{_json_kind(item)} part]")
    kind = _str(item.get("type")) or _str(item.get("block_type")) or UNKNOWN
    if kind == "text":
        return Part(kind="text", text=_str(item.get("text")))
    url = _image_url(item) if kind in IMAGE_KINDS else ""
    return Part(kind=kind, text=url or f"[{kind} part]", url=url)


def _image_url(part):
    """OpenAI/LangChain: image_url.url or image_url as a string; LlamaIndex and LangChain standard blocks: url."""
    nested = part.get("image_url")
    url = _str(nested.get("url") if isinstance(nested, dict) else nested) or _str(part.get("url"))
    return url[:DATA_URL_PREFIX] if url.startswith("data:") else url


def _tool_calls(native_calls, additional_kwargs):
    """The writer's own tool-call list if it has one, else the provider's form kept in additional_kwargs."""
    # Older LangChain messages and LlamaIndex only carry the OpenAI form in additional_kwargs.
    for calls in (native_calls, additional_kwargs.get("tool_calls")):
        if isinstance(calls, list) and calls:
            return [_tool_call(call) for call in calls]
    function_call = additional_kwargs.get("function_call")  # OpenAI's legacy function calling
    return [_tool_call(function_call)] if isinstance(function_call, dict) else []


def _tool_call(call):
    """One tool call in whichever shape the writer stored it."""
    if not isinstance(call, dict):
        return ToolCall(id="", name="", arguments=_pretty_arguments(call))
    function = call.get("function")
    if isinstance(function, dict):  # OpenAI: {"id", "type": "function", "function": {"name", "arguments": "<json>"}}
        name, arguments = function.get("name"), function.get("arguments")
    elif "tool_name" in call:  # LlamaIndex ToolCallBlock: {"tool_call_id", "tool_name", "tool_kwargs"}
        name, arguments = call.get("tool_name"), call.get("tool_kwargs")
    else:  # LangChain: {"id", "name", "args": {...}}; legacy function_call: {"name", "arguments": "<json>"}
        name, arguments = call.get("name"), call.get("args", call.get("arguments"))
    return ToolCall(
        id=_str(call.get("id")) or _str(call.get("tool_call_id")),
        name=_str(name),
        arguments=_pretty_arguments(arguments),
    )


def _pretty_arguments(arguments):
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):
            return arguments  # models do emit broken JSON; show it as written
    return json.dumps(arguments, indent=2, ensure_ascii=False)


def _json_kind(value):
    """What a JSON value is, in words, for problem notes."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _key_list(value, shown=8):
    keys = sorted(str(key) for key in value)
    listed = ", ".join(keys[:shown]) or "none"
    return listed + (", ..." if len(keys) > shown else "")


def _str(value):
    return value if isinstance(value, str) else ""


def _dict(value):
    return value if isinstance(value, dict) else {}
