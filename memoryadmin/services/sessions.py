"""Sessions: discovery by SCAN, page metadata, transcript windows, TTL and clear.

Costs, by design (DESIGN.md, "Upstash access rules"): a page of the session
list is one SCAN call per cursor step plus one script call for all rows'
metadata; a transcript page is one script call (two for the first page of an
oldest-first session longer than the window, whose order is only known once
its elements are read); single-session writes are one atomic script each.
An export reads the whole session, one script call per window, bounded in
messages and in bytes. Nothing reads a whole list to count it.

Every read is bounded in bytes too: the store refuses any request or reply
over its size limit (the connection's `max_request_bytes`; Upstash's 10 MB on Free
and Pay-as-you-go). A list row reads the first PREVIEW_BYTES of the messages
at its ends; a transcript window cuts each message to TRANSCRIPT_MESSAGE_BYTES
and stops at TRANSCRIPT_BYTES; a message too big for one reply is read in
parts (`read_element`), for "show the whole message", exports and searches.
"""

import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import scripts
from .messages import Message, detect_order, parse_element
from .summaries import Summary, parse_summary, summary_key, summary_state
from .upstash import StoreError, get_client

# Upstash caps SCAN's COUNT near 1,000; asking for more buys nothing.
SCAN_COUNT = 1000
NEWEST_FIRST = "newest-first"
OLDEST_FIRST = "oldest-first"
TTL_NONE = -1  # what TTL answers for a key without expiry
MAX_TTL = 10 * 365 * 86400

# Check and act in one atomic step, so a key that stopped being a session (or
# vanished) between the page and the click is left alone. KEYS: session,
# summary. Replies: -2 when the key is gone, -3 when it is not a list (bulk batches say the same per key).
GONE, NOT_A_LIST = -2, -3
LIST_GUARD = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -2 end
if kind ~= 'list' then return -3 end
"""


def _after_guard(commands):
    """The inner cost of a script that starts with LIST_GUARD: its TYPE, then, for a list, `commands` more."""

    def inner_commands(reply, keys, args):
        return 1 if reply in (GONE, NOT_A_LIST) else 1 + commands

    return inner_commands


def _steps(taken, wanted, step):
    """The LRANGEs of a read in steps of `step` elements that took `taken` of the `wanted` ones.

    Every step when it took them all; else it stopped inside the step holding the first element it did
    not take (over its byte budget, or past the list's end).
    """
    return -(-wanted // step) if taken >= wanted else taken // step + 1


CLEAR_SCRIPT = scripts.Script(
    LIST_GUARD
    + """
local count = redis.call('LLEN', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2])
return count
""",
    _after_guard(2),  # LLEN, UNLINK
)
EXPIRE_SCRIPT = scripts.Script(
    LIST_GUARD
    + """
local before = redis.call('TTL', KEYS[1])
if ARGV[1] == 'persist' then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return {before, redis.call('TTL', KEYS[1])}
""",
    _after_guard(4),  # TTL, two PERSIST or two EXPIRE, TTL
)

# What a reply may carry (reply_budget): each element counts as its bytes plus ELEMENT_OVERHEAD.
ELEMENT_OVERHEAD = 16
COST_FUNCTION = f"local function cost(text) return #text + {ELEMENT_OVERHEAD} end\n"
PREVIEW_BYTES = 2048  # of each message a list row shows: enough for its role and the start of its text
TRANSCRIPT_MESSAGE_BYTES = 64 * 1024  # of each message of a transcript window (a page shows 20,000 characters)
TRANSCRIPT_BYTES = 2_000_000  # of a transcript window in all: a window of big messages holds fewer of them
PART_BYTES = 4_000_000  # of a message read in parts
DIGEST_BYTES = 64 * 1024  # of a message read in parts, that each part checks is still the same


def _rows_commands(reply, keys, args):
    """Per session a TYPE; for a list, LLEN, TTL, the summary's HGET and a LINDEX per end (all ARGV but the last)."""
    return sum(1 if row is None else 3 + len(args) for row in reply)


# The rows of a list page. KEYS: session, its summary, session, its summary... ARGV: the list indexes
# of the ends to read (0, -1 or both), then how many bytes of each. Reply, per session: nil if it is no
# list (any more), else {length, TTL, the summary's message_count, then per end: its size, its first bytes}.
ROWS_SCRIPT = scripts.Script(
    """
local bytes = tonumber(ARGV[#ARGV])
local reply = {}
for i = 1, #KEYS, 2 do
  local row = false
  if redis.call('TYPE', KEYS[i]).ok == 'list' then
    row = {redis.call('LLEN', KEYS[i]), redis.call('TTL', KEYS[i]), redis.call('HGET', KEYS[i + 1], 'message_count')}
    for n = 1, #ARGV - 1 do
      local element = redis.call('LINDEX', KEYS[i], ARGV[n])
      row[#row + 1] = #element
      row[#row + 1] = string.sub(element, 1, bytes)
    end
  end
  reply[#reply + 1] = row
end
return reply
""",
    _rows_commands,
)

# A transcript window: the messages before chronological index `before` (the latest without it), at most
# `count`, newest first, each cut to `cap` bytes, until a byte budget (a window holds at least one).
# KEYS: session, summary. ARGV: list order, before ('' for the latest), count, cap, budget. Reply:
# {length, TTL, the summary's HGETALL, the chronological index after the newest message read, then
# per message, newest first: its size, its first `cap` bytes}. Read in steps of TRANSCRIPT_STEP from the newest.
TRANSCRIPT_STEP = 20


def _transcript_commands(reply, keys, args):
    """TYPE; for a list, LLEN, TTL, the summary's HGETALL, and an LRANGE per step it read (`_steps`)."""
    if reply in (GONE, NOT_A_LIST):
        return 1
    length, _, _, top, *read = reply
    before = length if args[1] == "" else int(args[1])
    wanted = max(0, top - max(0, before - int(args[2])))
    return 4 + _steps(len(read) // 2, wanted, TRANSCRIPT_STEP)


TRANSCRIPT_SCRIPT = scripts.Script(
    LIST_GUARD
    + COST_FUNCTION
    + f"local step = {TRANSCRIPT_STEP}\n"
    + """
local newest_first = ARGV[1] == 'newest-first'
local count, cap, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local length = redis.call('LLEN', KEYS[1])
local before = ARGV[2] == '' and length or tonumber(ARGV[2])
local top, bottom = math.min(before, length), math.max(0, before - count)
local reply = {length, redis.call('TTL', KEYS[1]), redis.call('HGETALL', KEYS[2]), top}
local bytes, position = 0, top
while position > bottom do
  local low = math.max(bottom, position - step)
  local chunk
  if newest_first then
    chunk = redis.call('LRANGE', KEYS[1], length - position, length - 1 - low)
  else
    chunk = redis.call('LRANGE', KEYS[1], low, position - 1)
  end
  for n = 1, #chunk do
    local element = chunk[newest_first and n or #chunk + 1 - n]
    local piece = string.sub(element, 1, cap)
    if #reply > 4 and bytes + cost(piece) > budget then return reply end
    bytes = bytes + cost(piece)
    reply[#reply + 1] = #element
    reply[#reply + 1] = piece
  end
  position = low
end
return reply
""",
    _transcript_commands,
)

# A window of an export, counted from the oldest end of the list so that messages the chat app adds
# meanwhile do not shift it. KEYS: session, and the summary (on the first window only). ARGV: the
# chronological index of the first message, how many at most, a byte budget (a window holds at least
# one message), the list order. Reply: {length, TTL, the summary's HGETALL, elements oldest first...}.
# An element over the budget is a window of its own, and its size stands in its place: it is read in
# parts. It reads in steps of WINDOW_STEP, so that a budget reached early reads no further.
WINDOW_STEP = 100


def _window_commands(reply, keys, args):
    """TYPE; for a list, the summary's HGETALL (with its key), LLEN, TTL, and an LRANGE per step it read (`_steps`).

    A big element's size stands in for it: it was taken.
    """
    if reply in (GONE, NOT_A_LIST):
        return 1
    return 3 + (len(keys) == 2) + _steps(len(reply) - 3, int(args[1]), WINDOW_STEP)


WINDOW_SCRIPT = scripts.Script(
    LIST_GUARD
    + f"local step = {WINDOW_STEP}\n"
    + """
local first, count, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local newest_first = ARGV[4] == 'newest-first'
local summary = KEYS[2] and redis.call('HGETALL', KEYS[2]) or {}
local reply = {redis.call('LLEN', KEYS[1]), redis.call('TTL', KEYS[1]), summary}
local bytes, position, stop = 0, first, first + count
while position < stop do
  local last = math.min(position + step, stop) - 1
  local chunk
  if newest_first then
    chunk = redis.call('LRANGE', KEYS[1], -(last + 1), -(position + 1))
  else
    chunk = redis.call('LRANGE', KEYS[1], position, last)
  end
  for n = 1, #chunk do
    local element = chunk[newest_first and #chunk + 1 - n or n]
    if #reply > 3 and bytes + #element > budget then return reply end
    if #element > budget then
      reply[#reply + 1] = #element
      return reply
    end
    bytes = bytes + #element
    reply[#reply + 1] = element
  end
  if #chunk <= last - position then return reply end
  position = last + 1
end
return reply
""",
    _window_commands,
)
# An export holds one window in memory, not the session; the byte budget keeps windows of big
# messages far below the store's request limit.
EXPORT_WINDOW = 1000
EXPORT_WINDOW_BYTES = 1_000_000

# A part of one element. KEYS: session. ARGV: its list index, the offset of the part, its size, how many
# bytes of the element's start to digest. Reply: -1 if there is no such element, else {the element's size,
# the digest of its start, the part}.
PART_SCRIPT = scripts.Script(
    LIST_GUARD
    + """
local element = redis.call('LINDEX', KEYS[1], ARGV[1])
if not element then return -1 end
local offset, bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
return {#element, redis.sha1hex(string.sub(element, 1, tonumber(ARGV[4]))), string.sub(element, offset + 1, offset + bytes)}
""",
    _after_guard(1),  # LINDEX, found or not
)


def reply_budget(connection):
    """The stored bytes one reply may carry under the connection's request limit (`max_request_bytes`).

    A reply is JSON with every string in base64, 4 bytes for 3, and a few bytes of framing each: counted
    as its bytes plus ELEMENT_OVERHEAD, an element takes at most 4/3 of its count in the reply, so 60% of
    the limit makes replies of at most about 80% of it.
    """
    return connection.max_request_bytes * 3 // 5


class SessionNotFound(Exception):
    """The key is gone (cleared or expired) or is not a list."""


class MessageChanged(StoreError):
    """A message read in parts changed between two of them: the chat app rewrote or trimmed its list."""

    http_status = 409
    title = "The message changed while it was read"
    check_connection = False


@dataclass
class SessionRow:
    key: str
    display_name: str
    message_count: int
    ttl: int
    preview: Message | None
    writer: str
    summary_state: str = "none"  # none | fresh | stale


@dataclass
class SessionPage:
    pattern: str
    rows: list[SessionRow]
    next_cursor: str | None = None  # where "scan more" resumes; None when the scan is complete
    next_after: str | None = None  # the last key of that SCAN step already shown
    examined: int = 0  # keys SCAN looked at (about COUNT per step)
    unaddressable: int = 0  # keys that are not UTF-8: the REST API cannot name them
    exact: bool = False  # the pattern had no wildcard and was looked up directly


@dataclass
class Transcript:
    key: str
    display_name: str
    message_count: int
    ttl: int
    order: str
    start: int  # chronological index of the first message shown
    messages: list[tuple[int, Message]] = field(default_factory=list)
    summary: Summary | None = None
    writer: str = "unknown"

    @property
    def has_earlier(self):
        return self.start > 0


@dataclass
class WholeSession:
    """A session being read whole, oldest message first (for exports)."""

    key: str
    display_name: str
    message_count: int  # when the reading began; the windows stop there
    ttl: int
    order: str
    writer: str
    summary: Summary | None
    windows: Iterator[list[bytes]]  # the stored elements, window by window, each read as it is reached


@dataclass
class TtlChange:
    before: int
    after: int


def display_name(connection, key):
    prefix = connection.display_prefix
    return key[len(prefix) :] if prefix and key.startswith(prefix) and key != prefix else key


def writer_label(key, message):
    if message is None or message.format == "unknown":
        return "unknown"
    if message.format == "llamaindex":
        return "LlamaIndex"
    if key.startswith("message_store:"):
        return "LangChain (Python)"
    return "Flowise / LangChain JS"


# A glob pattern, token by token: an escaped character (group 1), a wildcard (group 2), or anything else.
_GLOB_TOKEN = re.compile(r"\\(.)|([*?\[])|.", re.S)


def has_wildcards(pattern):
    """Whether the pattern has a wildcard that is not escaped (`\\*` is a star; `\\\\*` is a backslash, then any)."""
    return any(match.group(2) for match in _GLOB_TOKEN.finditer(pattern))


def _unescape(pattern):
    """The key a glob pattern without wildcards matches: each escaped character as itself."""
    return re.sub(r"\\(.)", r"\1", pattern, flags=re.S)


def decode_keys(raw_keys):
    """SCAN's bytes -> str keys; keys that are not UTF-8 cannot be sent back over REST (JSON)."""
    keys, unaddressable = [], 0
    for raw in raw_keys:
        try:
            keys.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            unaddressable += 1
    return keys, unaddressable


def scan_sessions(connection, pattern=None, cursor="0", after=None, no_ttl=False):
    """One page of sessions (lists) whose keys match the pattern (`no_ttl`: only those without a TTL).

    Scans until the page is full or the connection's budget of examined keys
    is spent; the page says where to resume. A SCAN step can return more
    keys than the page needs: the rest are shown next time by repeating that
    step (same cursor) and taking the keys after the last one shown. Keys of
    a step are sorted because a repeated step may list them in another order
    (the server rehashes as keys come and go). With `no_ttl`, each step's
    keys are first checked with one pipeline of TTLs, so a page still fills
    up with sessions without a TTL, within the same budget of examined keys.
    """
    client = get_client(connection)
    pattern = pattern or connection.key_pattern
    if not has_wildcards(pattern):
        page = _exact_lookup(connection, client, pattern)
        page.rows = [row for row in page.rows if not no_ttl or row.ttl == TTL_NONE]
        return page
    page = SessionPage(pattern=pattern, rows=[])
    keys = []
    while page.next_cursor is None:
        step_cursor = cursor
        raw_cursor, raw_keys = client.call("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, "TYPE", "list")
        cursor = raw_cursor.decode()
        page.examined += SCAN_COUNT
        step_keys, unaddressable = decode_keys(raw_keys)
        page.unaddressable += unaddressable
        # A key repeated by SCAN, within or across steps, is shown once.
        step_keys = sorted(set(step_keys).difference(keys))
        if after is not None:
            step_keys = [key for key in step_keys if key > after]
            after = None
        if no_ttl:
            step_keys = _without_ttl(client, step_keys)
        room = connection.page_size - len(keys)
        keys.extend(step_keys[:room])
        if len(step_keys) > room:
            page.next_cursor, page.next_after = step_cursor, keys[-1]
        elif cursor == "0":
            break
        elif len(keys) == connection.page_size or page.examined >= connection.scan_budget:
            page.next_cursor = cursor
    # A TTL set since its step was checked: that row is left out.
    page.rows = [row for row in _session_rows(connection, keys) if not no_ttl or row.ttl == TTL_NONE]
    return page


def _without_ttl(client, keys):
    """The keys that have no TTL (one pipeline of TTLs)."""
    ttls = client.pipeline([["TTL", key] for key in keys]) if keys else []
    return [key for key, ttl in zip(keys, ttls) if ttl == TTL_NONE]


def scan_all(connection, pattern, cursor="0"):
    """Every session key matching the pattern, from a SCAN cursor on (for jobs).

    In batches, one SCAN step each: (keys, the cursor to resume from after them).
    """
    client = get_client(connection)
    while True:
        raw_cursor, raw_keys = client.call("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, "TYPE", "list")
        cursor = raw_cursor.decode()
        yield decode_keys(raw_keys)[0], cursor
        if cursor == "0":
            return


def _exact_lookup(connection, client, pattern):
    """The sessions whose key (or display name) is what was typed.

    Read as typed first: a backslash is often part of a key (paths, escaped
    ids). Read as a glob pattern too, so that `why\\*not` finds `why*not`.
    """
    keys = [pattern, _unescape(pattern)]
    prefix = connection.display_prefix
    keys += [prefix + key for key in keys if prefix and not key.startswith(prefix)]
    candidates = list(dict.fromkeys(keys))
    kinds = client.pipeline([["TYPE", candidate] for candidate in candidates])
    lists = [candidate for candidate, kind in zip(candidates, kinds) if kind == b"list"]
    return SessionPage(pattern=pattern, rows=_session_rows(connection, lists), exact=True)


def _session_rows(connection, keys):
    """Metadata of all rows in ONE script call: length, TTL, the summary's coverage and the messages at both ends.

    Both ends, because which one is the newest depends on the writer, known
    only from the element itself (unless the connection forces an order). Of
    each, its first PREVIEW_BYTES: a row shows the start of one message.
    """
    if not keys:
        return []
    ends = {NEWEST_FIRST: [0], OLDEST_FIRST: [-1]}.get(connection.list_order, [0, -1])
    names = [name for key in keys for name in (key, summary_key(connection, key))]
    replies = scripts.read(connection, ROWS_SCRIPT, names, *ends, PREVIEW_BYTES)
    rows = []
    for key, reply in zip(keys, replies):
        if reply is None:
            continue  # expired, cleared or no list any more since SCAN saw it
        length, ttl, covered, *read = reply
        parsed = [parse_element(start, size) for size, start in zip(read[::2], read[1::2])]
        preview = parsed[0]
        if len(parsed) == 2 and preview.newest_first is False:
            preview = parsed[1]
        rows.append(
            SessionRow(
                key=key,
                display_name=display_name(connection, key),
                message_count=length,
                ttl=ttl,
                preview=preview,
                writer=writer_label(key, preview),
                summary_state=summary_state(covered, length),
            )
        )
    return rows


def _read_window(connection, key, order, before, window):
    """One script call: length, TTL, summary and the window's messages, each cut to a size, in a byte budget."""
    budget = min(TRANSCRIPT_BYTES, reply_budget(connection))
    cap = min(TRANSCRIPT_MESSAGE_BYTES, budget)
    names = [key, summary_key(connection, key)]
    reply = scripts.read(
        connection, TRANSCRIPT_SCRIPT, names, order, "" if before is None else before, window, cap, budget
    )
    _check_found(reply, key)
    length, ttl, summary, top, *read = reply
    messages = [parse_element(start, size) for size, start in zip(read[::2], read[1::2])]
    messages.reverse()  # read newest first
    return length, ttl, parse_summary(summary), list(enumerate(messages, start=top - len(messages)))


def _check_found(reply, key, left_alone=False):
    """A guarded script's reply, when it says the key is gone or is not a list (`left_alone`: by a write)."""
    if reply == GONE:
        raise SessionNotFound(f"There is no session {key!r}: it was cleared or has expired.")
    if reply == NOT_A_LIST:
        raise SessionNotFound(
            f"{key!r} is not a list, so it is not a chat session" + ("; it was left alone." if left_alone else ".")
        )


def get_transcript(connection, key, before=None, order=None, window=50):
    """A window of a session in chronological order: the latest messages, or those before `before`.

    At most `window` messages, fewer when they are big (TRANSCRIPT_BYTES); a message over
    TRANSCRIPT_MESSAGE_BYTES comes cut (Message.cut). `order` is the list order found by an
    earlier page of the same session; without it (and when the connection does not force one)
    it is detected from the messages read.
    """
    if connection.list_order in (NEWEST_FIRST, OLDEST_FIRST):
        order = connection.list_order
    guessed = order or NEWEST_FIRST
    length, ttl, summary, messages = _read_window(connection, key, guessed, before, window)
    if order is None:
        detected = detect_order([message for _, message in messages]) or NEWEST_FIRST
        if detected != guessed:
            # Read as newest-first, but it is an oldest-first list: the window
            # holds the wrong end (unless the whole list fit in it).
            if before is not None or len(messages) < length:
                length, ttl, summary, messages = _read_window(connection, key, detected, before, window)
            else:
                messages = [(index, message) for index, (_, message) in enumerate(reversed(messages))]
        order = detected
    first = next((message for _, message in messages if message.format != "unknown"), None)
    return Transcript(
        key=key,
        display_name=display_name(connection, key),
        message_count=length,
        ttl=ttl,
        order=order,
        start=messages[0][0] if messages else 0,
        messages=messages,
        summary=summary,
        writer=writer_label(key, first),
    )


def _read_from_oldest(connection, key, order, first, count, budget, summary=None):
    """Elements from chronological index `first` on (at most `count`, about `budget` bytes), in one round trip.

    An element over the budget comes alone, and is read in parts.
    """
    keys = [key, summary] if summary else [key]
    reply = scripts.read(connection, WINDOW_SCRIPT, keys, first, count, budget, order)
    _check_found(reply, key)
    length, ttl, summary_fields, *elements = reply
    if elements and type(elements[0]) is int:
        elements = [b"".join(read_element(connection, key, list_index(order, first)).parts)]
    return length, ttl, parse_summary(summary_fields), elements


def read_whole_session(connection, key, window=EXPORT_WINDOW, window_bytes=EXPORT_WINDOW_BYTES):
    """The whole session, oldest message first, read window by window as `windows` is iterated.

    Windows of at most `window` messages and about `window_bytes` (and a message too big for
    one reply, read in parts, in a window of its own).

    The first window is read here, so a session that is not there raises SessionNotFound at once.
    The order is found as for a transcript page: the connection's, else detected from the first
    window, read as newest-first (an oldest-first list longer than that window costs one more read).
    Reading stops at the length the session had when it began; a session cleared or expired
    meanwhile ends the windows early, with what was read.
    """
    forced = connection.list_order in (NEWEST_FIRST, OLDEST_FIRST)
    order = connection.list_order if forced else NEWEST_FIRST
    summary = summary_key(connection, key)
    window_bytes = min(window_bytes, reply_budget(connection))
    length, ttl, summary_read, elements = _read_from_oldest(connection, key, order, 0, window, window_bytes, summary)
    messages = [parse_element(element) for element in elements]
    detected = order if forced else detect_order(messages) or NEWEST_FIRST
    if detected != order:
        if len(elements) < length:
            length, ttl, summary_read, elements = _read_from_oldest(
                connection, key, detected, 0, window, window_bytes, summary
            )
            messages = [parse_element(element) for element in elements]
        else:  # the whole list, read from the wrong end
            elements.reverse()
            messages.reverse()
    first_known = next((message for message in messages if message.format != "unknown"), None)
    return WholeSession(
        key=key,
        display_name=display_name(connection, key),
        message_count=length,
        ttl=ttl,
        order=detected,
        writer=writer_label(key, first_known),
        summary=summary_read,
        windows=_windows(connection, key, detected, elements, length, window, window_bytes),
    )


def _windows(connection, key, order, first_window, length, window, window_bytes):
    position = len(first_window)
    yield first_window
    del first_window  # one window in memory at a time
    while position < length:
        try:
            _, _, _, elements = _read_from_oldest(
                connection, key, order, position, min(window, length - position), window_bytes
            )
        except SessionNotFound:
            return  # cleared or expired meanwhile: the windows end with what was read
        if not elements:
            return
        # httpx keeps each response in a reference cycle (response <-> its stream): the reply's body is freed
        # only by the cycle collector, which big replies alone seldom wake. Free each one before the next.
        gc.collect(1)
        yield elements
        position += len(elements)


def list_index(order, index):
    """The list index of chronological message `index`, counted from the oldest end (messages added meanwhile
    do not move it)."""
    return -(index + 1) if order == NEWEST_FIRST else index


@dataclass
class ElementParts:
    """A stored element being read in parts, each its own reply under the store's request limit."""

    size: int
    parts: Iterator[bytes]  # read as iterated; MessageChanged if the element changes meanwhile


def read_element(connection, key, index):
    """The element at list index `index`, in parts of PART_BYTES; the first is read here (SessionNotFound).

    Each part checks that the element is still the same one, by its size and a digest of its
    start: a list the chat app trims or rewrites meanwhile moves another element to that index.
    """
    part_bytes = min(PART_BYTES, reply_budget(connection))
    reply = scripts.read(connection, PART_SCRIPT, [key], index, 0, part_bytes, DIGEST_BYTES)
    _check_found(reply, key)
    if reply == -1:
        raise SessionNotFound(f"Session {key!r} has no message #{_position(index)} (any more).")
    size, digest, first = reply
    return ElementParts(size, _parts(connection, key, index, (size, digest), first, part_bytes))


def _position(index):
    """The message number (from 1, oldest first) of a list index counted from the oldest end."""
    return -index if index < 0 else index + 1


def _parts(connection, key, index, identity, first, part_bytes):
    yield first
    offset = len(first)
    while offset < identity[0]:
        reply = scripts.read(connection, PART_SCRIPT, [key], index, offset, part_bytes, DIGEST_BYTES)
        if type(reply) is not list or tuple(reply[:2]) != identity or not reply[2]:
            raise MessageChanged(
                f"The message changed while it was being read ({offset:,} of its {identity[0]:,} bytes had been "
                "read): the chat app trimmed or rewrote the session meanwhile. Read it again to see it whole."
            )
        yield reply[2]
        offset += len(reply[2])


def read_message(connection, key, index, order):
    """The element at chronological `index` (for "show the whole message"), being read in parts."""
    return read_element(connection, key, list_index(order, index))


def _guarded(connection, script, key, *args):
    result = scripts.write(connection, script, [key, summary_key(connection, key)], *args)
    _check_found(result, key, left_alone=True)
    return result


def set_ttl(connection, key, seconds):
    """Expire the session (and its summary) in `seconds`."""
    if not 1 <= seconds <= MAX_TTL:
        raise ValueError(f"A TTL must be between 1 second and {MAX_TTL // 86400} days.")
    before, after = _guarded(connection, EXPIRE_SCRIPT, key, seconds)
    return TtlChange(before, after)


def persist_session(connection, key):
    """Remove the session's TTL (and its summary's): it never expires."""
    before, after = _guarded(connection, EXPIRE_SCRIPT, key, "persist")
    return TtlChange(before, after)


def clear_session(connection, key):
    """Delete the session and its summary; returns how many messages it held."""
    return _guarded(connection, CLEAR_SCRIPT, key)
