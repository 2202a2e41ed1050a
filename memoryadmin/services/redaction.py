"""Redaction: a stored message's content replaced with a marker, in its writer's own format.

Purging a session loses the conversation; redacting keeps it loadable. The chat
app's own reader still parses a redacted element (it keeps what that reader
needs: the message's type or role, a tool message's tool_call_id, each tool
call's id and name), and the personal data is gone.

Two kinds:

- the whole message (`redacted_element(element)`): the content becomes MARKER;
  text parts, blocks, tool call arguments, response metadata and additional
  kwargs other than tool call ids are dropped or emptied; a person's `name` goes,
  a tool's stays (tool and function messages need it);
- only the matching text (`redacted_element(element, matcher)`): every match in
  every string value becomes MARKER, the rest stays. When the query still
  matches afterwards (in a key, across JSON escapes...), the whole message is
  redacted instead.

An element that is not JSON of a known writer becomes the bare MARKER: the
writer's reader could not load it before, and cannot now; writing a message of
a made-up role in its place would put words in the conversation the app never
said. JSON is written the way the element was: Python's json.dumps (", ", ": ",
non-ASCII escaped) for LangChain Python and LlamaIndex, JSON.stringify (compact,
UTF-8) for LangChain JS / Flowise.

Writing is compare-and-set (REDACT_SCRIPT): an element is replaced only if it is
still the one that was read (its SHA-1), at a list index counted from the oldest
end, which the chat app's pushes do not move. A redaction deletes the session's
summary, which may quote what was redacted. Requests stay under the store's
size limit: changes go in calls of at most reply_budget bytes, and a new
element too big for a call of its own is the whole-message form instead.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property

from . import scripts, sessions
from .content_search import match_element
from .messages import SPEAKER_IN_DATA, Message, parse_element
from .sessions import GONE, NOT_A_LIST, PREVIEW_BYTES, SessionNotFound, list_index, reply_budget
from .summaries import summary_key
from .upstash import get_client

MARKER = "[redacted]"
MAX_ATTEMPTS = 3  # writes of an element that changed meanwhile (re-read before each)
CHANGES_PER_CALL = 500  # elements per script call, so that one run stays short on the store

# Per element, what REDACT_SCRIPT did.
WRITTEN, CHANGED, NO_SUCH_ELEMENT = 1, 0, -1

# Outcomes.
REDACTED = "redacted"
CHANGED_MEANWHILE = "changed"
NOTHING_MATCHED = "nothing matched"
SESSION_GONE = "gone"
SESSION_NOT_A_LIST = "not a list"


def _redact_commands(reply, keys, args):
    """TYPE; for a list, a LINDEX per element, an LSET per element written, and the summary's DEL if any was."""
    if reply in (GONE, NOT_A_LIST):
        return 1
    written = reply.count(WRITTEN)
    return 1 + len(reply) + written + (written > 0)


# KEYS: session, summary. ARGV: per element its list index, the SHA-1 it must still have, its new value.
# Reply: -2 / -3 (sessions.GONE, NOT_A_LIST), else per element 1 written, 0 changed, -1 no such element.
REDACT_SCRIPT = scripts.Script(
    sessions.LIST_GUARD
    + """
local replies, written = {}, false
for i = 1, #ARGV, 3 do
  local element = redis.call('LINDEX', KEYS[1], ARGV[i])
  if not element then
    replies[#replies + 1] = -1
  elseif redis.sha1hex(element) ~= ARGV[i + 1] then
    replies[#replies + 1] = 0
  else
    redis.call('LSET', KEYS[1], ARGV[i], ARGV[i + 2])
    replies[#replies + 1] = 1
    written = true
  end
end
if written then redis.call('DEL', KEYS[2]) end
return replies
""",
    _redact_commands,
)


# ---- the element --------------------------------------------------------------------------------------

# Fields of a tool call kept as they are (scalars only); its arguments are emptied; any other field is nulled
# (kept present: LangChain Python's InvalidToolCall requires its `error`).
CALL_IDS = ("id", "name", "type", "index", "tool_call_id", "tool_name", "block_type")
CALL_ARGUMENTS = ("args", "arguments", "tool_kwargs", "input")
# Fields of a LangChain message's data kept as they are.
LANGCHAIN_KEPT = ("type", "id", "tool_call_id", "status")
# Roles whose `name` is a tool's or a function's (which their readers need), not a person's.
TOOL_ROLES = ("tool", "function")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_FIRST_KEY = re.compile(r'\s*\{\s*"(?:[^"\\]|\\.)*"(\s*:\s*)')


def redacted_element(element: bytes, matcher=None) -> tuple[bytes, bool]:
    """(the element redacted, whether the whole message was): only the matches of `matcher`, or all of it."""
    text = element.decode("utf-8", errors="replace")
    try:
        value = json.loads(text)
        whole = _whole_message(value)
        if whole is None:
            return MARKER.encode(), True
        if matcher is not None:
            redacted = _dumps(_substituted(value, matcher), text)
            if not match_element(matcher, redacted, None):
                return redacted, False
        return _dumps(whole, text), True
    except (ValueError, RecursionError):
        return MARKER.encode(), True


def _whole_message(value):
    """The whole-message redaction of a parsed element of a known writer, else None."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("type"), str) and isinstance(value.get("data"), dict):
        return {"type": value["type"], "data": _langchain_data(value["type"], value["data"])}
    if isinstance(value.get("type"), str) and "text" in value and "data" not in value:
        # Very old LangChain JS: {"type", "role", "text"}; its reader still takes it.
        return {"type": value["type"], "role": _scalar(value.get("role")), "text": MARKER}
    if isinstance(value.get("role"), str):
        return _llamaindex_message(value)
    return None


def _langchain_data(message_type, data):
    base_type = message_type.removesuffix("MessageChunk").lower()
    kept = {}
    for name, field_value in data.items():
        if name == "content":
            kept[name] = MARKER
        elif name in LANGCHAIN_KEPT or (name == "name" and base_type in TOOL_ROLES):
            kept[name] = _scalar(field_value)
        elif name == "example":
            kept[name] = field_value is True
        elif name == "role" and base_type in SPEAKER_IN_DATA:
            kept[name] = _scalar(field_value)  # ChatMessage's speaker: its reader requires it
        elif name in ("tool_calls", "invalid_tool_calls"):
            kept[name] = _calls(field_value)
        elif name == "additional_kwargs":
            kept[name] = _kwargs(field_value, base_type)
        elif name == "response_metadata":
            kept[name] = {}
    kept.setdefault("content", MARKER)
    return kept


def _llamaindex_message(value):
    role = value["role"]
    kept = {}
    for name, field_value in value.items():
        if name == "role":
            kept[name] = role
        elif name == "content":
            kept[name] = None if field_value is None else MARKER
        elif name == "blocks":
            blocks = field_value if isinstance(field_value, list) else []
            calls = [block for block in blocks if isinstance(block, dict) and block.get("block_type") == "tool_call"]
            kept[name] = [{"block_type": "text", "text": MARKER}, *_calls(calls)]
        elif name == "additional_kwargs":
            kept[name] = _kwargs(field_value, role.lower())
    return kept


def _kwargs(kwargs, role):
    """additional_kwargs: only what pairs tool calls with their results."""
    if not isinstance(kwargs, dict):
        return {}
    kept = {}
    for name, field_value in kwargs.items():
        if name == "tool_calls":
            kept[name] = _calls(field_value)
        elif name == "function_call" and isinstance(field_value, dict):
            kept[name] = _call(field_value)
        elif name == "tool_call_id" or (name == "name" and role in TOOL_ROLES):
            kept[name] = _scalar(field_value)
    return kept


def _calls(calls):
    return [_call(call) for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []


def _call(call):
    kept = {}
    for name, field_value in call.items():
        if name in CALL_IDS:
            kept[name] = _scalar(field_value)
        elif name in CALL_ARGUMENTS:
            kept[name] = _emptied(field_value)
        elif name == "function" and isinstance(field_value, dict):  # OpenAI's {"name", "arguments": "<json>"}
            kept[name] = _call(field_value)
        else:
            kept[name] = None
    return kept


def _emptied(arguments):
    """Arguments without their values, of the same JSON kind (a JSON text stays a JSON text)."""
    if isinstance(arguments, str):
        return "{}"
    if isinstance(arguments, (dict, list)):
        return type(arguments)()
    return None


def _scalar(value):
    return value if value is None or isinstance(value, (str, int, float)) else None


def _substituted(value, matcher):
    """The parsed element with every match in every string value replaced by MARKER (keys stay)."""
    if isinstance(value, str):
        return matcher.sub(value, MARKER)
    if isinstance(value, list):
        return [_substituted(item, matcher) for item in value]
    if isinstance(value, dict):
        return {name: _substituted(item, matcher) for name, item in value.items()}
    return value


def _dumps(value, original):
    """JSON written as the original element was: its separators, and non-ASCII escaped if it had none raw."""
    first = _FIRST_KEY.match(original)
    spaced = first is not None and first.group(1).endswith(" ")
    separators = (", ", ": ") if spaced else (",", ":")
    if original.isascii():
        return json.dumps(value, separators=separators).encode()
    text = json.dumps(value, ensure_ascii=False, separators=separators)
    # As JSON.stringify does, and so that the text is UTF-8: a lone surrogate as its escape.
    return LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text).encode()


# ---- writing ------------------------------------------------------------------------------------------


@dataclass
class _Change:
    index: int  # list index, counted from the oldest end
    element: bytes  # as read
    new: bytes

    @cached_property
    def sha1(self):
        return hashlib.sha1(self.element).hexdigest()


def _encoded_bytes(text):
    """What a string weighs in a request: the client sends JSON, UTF-8 (httpx's ensure_ascii=False)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", errors="surrogatepass")) + 1


def _room(connection, key):
    """The bytes of changes one call may carry: the request limit's reply budget, less the rest of the call."""
    fixed = _encoded_bytes(key) + _encoded_bytes(summary_key(connection, key)) + _encoded_bytes(REDACT_SCRIPT.body)
    return reply_budget(connection) - fixed - 100


def _change_bytes(change):
    return _encoded_bytes(str(change.index)) + 43 + _encoded_bytes(change.new.decode())


def _fitted(connection, key, change):
    """The change, its new element the whole-message form when it is too big for a call of its own."""
    room = _room(connection, key)
    for smaller in (lambda: redacted_element(change.element)[0], lambda: MARKER.encode()):
        if _change_bytes(change) <= room:
            break
        change.new = smaller()
    return change


def _write(connection, key, changes):
    """REDACT_SCRIPT's code for each change (GONE / NOT_A_LIST for all once the session is no list), in calls
    of at most _room bytes and CHANGES_PER_CALL elements."""
    room, codes, call, used = _room(connection, key), [], [], 0
    keys = [key, summary_key(connection, key)]

    def send():
        args = [value for change in call for value in (change.index, change.sha1, change.new.decode())]
        reply = scripts.write(connection, REDACT_SCRIPT, keys, *args)
        codes.extend(reply if isinstance(reply, list) else [reply] * len(call))
        return reply in (GONE, NOT_A_LIST)

    for change in changes:
        size = _change_bytes(change)
        if call and (used + size > room or len(call) == CHANGES_PER_CALL):
            if send():
                return codes + [codes[-1]] * (len(changes) - len(codes))
            call, used = [], 0
        call.append(change)
        used += size
    if call:
        send()
    return codes


# ---- one message (the transcript page) ----------------------------------------------------------------


@dataclass
class ElementIdentity:
    """A stored element as a confirmation page shows it: its size, SHA-1 and start (parsed, maybe cut)."""

    size: int
    sha1: str
    message: Message


# A message read whole: its SHA-1 is of all of it. A size no element reaches (Upstash: 100 MB a record).
WHOLE_ELEMENT = 1 << 40


def element_identity(connection, key, index, order):
    """The element at chronological `index`: size, SHA-1 and its first PREVIEW_BYTES, in one bounded read.

    SessionNotFound when the session or the message is not there.
    """
    position = list_index(order, index)
    start = min(PREVIEW_BYTES, reply_budget(connection))
    reply = scripts.read(connection, sessions.PART_SCRIPT, [key], position, 0, start, WHOLE_ELEMENT)
    _check_there(reply, key, index)
    size, sha1, first = reply
    return ElementIdentity(size=size, sha1=sha1.decode(), message=parse_element(first, size))


@dataclass
class MessageRedaction:
    outcome: str  # REDACTED or CHANGED_MEANWHILE
    sha1_before: str
    size_before: int
    sha1_after: str = ""
    size_after: int = 0


def redact_message(connection, key, index, order, expected_sha1):
    """Redact the whole message at chronological `index`, if it is still the one whose SHA-1 was shown.

    The element is read (in parts, when big) to write its redaction in its writer's format. SessionNotFound
    when the session or the message is not there (any more).
    """
    position = list_index(order, index)
    try:
        element = b"".join(sessions.read_element(connection, key, position).parts)
    except sessions.MessageChanged:
        return MessageRedaction(CHANGED_MEANWHILE, expected_sha1, 0)
    if hashlib.sha1(element).hexdigest() != expected_sha1:
        return MessageRedaction(CHANGED_MEANWHILE, expected_sha1, len(element))
    change = _fitted(connection, key, _Change(position, element, redacted_element(element)[0]))
    [code] = _write(connection, key, [change])
    _check_there(code, key, index)
    if code == CHANGED:
        return MessageRedaction(CHANGED_MEANWHILE, expected_sha1, len(element))
    new_sha1 = hashlib.sha1(change.new).hexdigest()
    return MessageRedaction(REDACTED, expected_sha1, len(element), new_sha1, len(change.new))


def _check_there(reply, key, index):
    if reply == GONE:
        raise SessionNotFound(f"There is no session {key!r}: it was cleared or has expired.")
    if reply == NOT_A_LIST:
        raise SessionNotFound(f"{key!r} is not a list, so it is not a chat session; it was left alone.")
    if reply == NO_SUCH_ELEMENT:
        raise SessionNotFound(f"Session {key!r} has no message #{index + 1} (any more).")


# ---- a whole session (bulk jobs) ----------------------------------------------------------------------


@dataclass
class SessionRedaction:
    """What redacting a session did; SHA-1s (hex) of each redacted element before and after, never text."""

    outcome: str  # REDACTED, NOTHING_MATCHED, SESSION_GONE or SESSION_NOT_A_LIST
    sha1_before: list[str] = field(default_factory=list)
    sha1_after: list[str] = field(default_factory=list)
    changed: int = 0  # matched, but changed at each of MAX_ATTEMPTS writes: not redacted
    vanished: int = 0  # matched, but gone before it was written (the session trimmed or cleared)

    @property
    def redacted(self):
        return len(self.sha1_before)

    @property
    def not_redacted(self):
        return self.changed + self.vanished


def redact_session(connection, key, matcher, role, whole):
    """Redact the session's messages that match (`matcher`, None for all) and are of `role` (None for any).

    `whole`: the whole messages, else only the matching text (the whole message where that cannot do).
    Reads the session window by window (bounded in bytes; messages added meanwhile are not read) and
    writes each window's redactions by compare-and-set: an element that changed meanwhile is read again
    and, if it still matches, written again, MAX_ATTEMPTS times at most.
    """
    try:
        session = sessions.read_whole_session(connection, key)
    except SessionNotFound:
        kind = get_client(connection).call("TYPE", key)
        return SessionRedaction(SESSION_GONE if kind == b"none" else SESSION_NOT_A_LIST)
    result = SessionRedaction(NOTHING_MATCHED)
    position = 0
    for window in session.windows:
        changes = []
        for element in window:
            if change := _change(connection, key, list_index(session.order, position), element, matcher, role, whole):
                changes.append(change)
            position += 1
        if not _redact(connection, key, changes, matcher, role, whole, result):
            break
    if result.redacted:
        result.outcome = REDACTED
    return result


def _change(connection, key, index, element, matcher, role, whole):
    """The change that redacts the element, or None when it does not match or is redacted already."""
    if matcher is not None:
        if match_element(matcher, element, role) is None:
            return None
    elif role and parse_element(element).role != role:
        return None
    new = redacted_element(element, None if whole else matcher)[0]
    return _fitted(connection, key, _Change(index, element, new)) if new != element else None


def _redact(connection, key, changes, matcher, role, whole, result):
    """Write the changes, and again those that changed meanwhile; False once the session is gone or no list."""
    attempt = 1
    while changes:
        codes = _write(connection, key, changes)
        again = []
        for change, code in zip(changes, codes):
            if code == WRITTEN:
                result.sha1_before.append(change.sha1)
                result.sha1_after.append(hashlib.sha1(change.new).hexdigest())
            elif code == CHANGED:
                again.append(change)
            else:
                result.vanished += 1
        if GONE in codes or NOT_A_LIST in codes:
            return False
        if again and attempt == MAX_ATTEMPTS:
            result.changed += len(again)
            return True
        changes, attempt = [], attempt + 1
        for change in again:
            try:
                element = b"".join(sessions.read_element(connection, key, change.index).parts)
            except SessionNotFound:
                result.vanished += 1
                continue
            except sessions.MessageChanged:
                changes.append(change)  # still being rewritten: written again, and refused again if so
                continue
            # One that no longer matches, or is redacted already, is left as it is.
            if new := _change(connection, key, change.index, element, matcher, role, whole):
                changes.append(new)
    return True
