"""Sessions: discovery by SCAN, page metadata, transcript windows, TTL and clear.

Costs, by design (DESIGN.md, "Upstash access rules"): a page of the session
list is one SCAN call per cursor step plus one pipeline for all rows'
metadata; a transcript page is one transaction (two for the first page of an
oldest-first session longer than the window, whose order is only known once
its elements are read); single-session writes are one atomic script each.
An export reads the whole session, one script call per window, bounded in
messages and in bytes. Nothing reads a whole list to count it.
"""

import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .messages import Message, detect_order, parse_element
from .summaries import Summary, parse_summary, summary_key, summary_state
from .upstash import Script, StoreCommandError, get_client, get_writer, read_atomically, read_script

# Upstash caps SCAN's COUNT near 1,000; asking for more buys nothing.
SCAN_COUNT = 1000
NEWEST_FIRST = "newest-first"
OLDEST_FIRST = "oldest-first"
TTL_NONE = -1  # what TTL answers for a key without expiry
MAX_TTL = 10 * 365 * 86400

# Check and act in one atomic step, so a key that stopped being a session (or
# vanished) between the page and the click is left alone. KEYS: session,
# summary. Replies: -2 when the key is gone, -3 when it is not a list.
_GUARD = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -2 end
if kind ~= 'list' then return -3 end
"""


def _after_guard(commands):
    """The inner cost of a script that starts with _GUARD: its TYPE, then, for a list, `commands` more."""

    def inner_commands(reply, keys, args):
        return 1 if reply in (-2, -3) else 1 + commands

    return inner_commands


CLEAR_SCRIPT = Script(
    _GUARD
    + """
local count = redis.call('LLEN', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2])
return count
""",
    _after_guard(2),  # LLEN, UNLINK
)
EXPIRE_SCRIPT = Script(
    _GUARD
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


# A window of an export, counted from the oldest end of the list so that messages the chat app adds
# meanwhile do not shift it. KEYS: session, and the summary (on the first window only). ARGV: the
# chronological index of the first message, how many at most, a byte budget (a window holds at least
# one message), the list order. Reply: {length, TTL, the summary's HGETALL, elements oldest first...}.
# It reads in steps of WINDOW_STEP, so that a budget reached early reads no further.
WINDOW_STEP = 100


def _window_commands(reply, keys, args):
    """TYPE; for a list, the summary's HGETALL (with its key), LLEN, TTL, and one LRANGE per step it read.

    It read every step up to `count` elements (ARGV[2]) when it returns that many; else it stopped
    inside the step holding the first element it did not take (over the budget, or past the list's end).
    """
    if reply in (-2, -3):
        return 1
    taken, count = len(reply) - 3, int(args[1])
    steps = -(-taken // WINDOW_STEP) if taken == count else taken // WINDOW_STEP + 1
    return 3 + (len(keys) == 2) + steps


WINDOW_SCRIPT = Script(
    _GUARD
    + f"local step = {WINDOW_STEP}"
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
# An export holds one window in memory, not the session. Upstash refuses a request whose reply passes
# its size limit (10 MB on most plans): the byte budget keeps windows of big messages far below it.
EXPORT_WINDOW = 1000
EXPORT_WINDOW_BYTES = 1_000_000


class SessionNotFound(Exception):
    """The key is gone (cleared or expired) or is not a list."""


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


def scan_sessions(connection, pattern=None, cursor="0", after=None):
    """One page of sessions (lists) whose keys match the pattern.

    Scans until the page is full or the connection's budget of examined keys
    is spent; the page says where to resume. A SCAN step can return more
    keys than the page needs: the rest are shown next time by repeating that
    step (same cursor) and taking the keys after the last one shown. Keys of
    a step are sorted because a repeated step may list them in another order
    (the server rehashes as keys come and go).
    """
    client = get_client(connection)
    pattern = pattern or connection.key_pattern
    if not has_wildcards(pattern):
        return _exact_lookup(connection, client, pattern)
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
        room = connection.page_size - len(keys)
        keys.extend(step_keys[:room])
        if len(step_keys) > room:
            page.next_cursor, page.next_after = step_cursor, keys[-1]
        elif cursor == "0":
            break
        elif len(keys) == connection.page_size or page.examined >= connection.scan_budget:
            page.next_cursor = cursor
    page.rows = _session_rows(connection, client, keys)
    return page


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
    return SessionPage(pattern=pattern, rows=_session_rows(connection, client, lists), exact=True)


def _session_rows(connection, client, keys):
    """Metadata of all rows in ONE pipeline: LLEN, TTL, the summary's coverage and the elements at both ends.

    Both ends, because which one is the newest depends on the writer, known
    only from the element itself (unless the connection forces an order).
    """
    if not keys:
        return []
    ends = {NEWEST_FIRST: [0], OLDEST_FIRST: [-1]}.get(connection.list_order, [0, -1])
    per_key = 3 + len(ends)
    commands = []
    for key in keys:
        commands += [["LLEN", key], ["TTL", key], ["HGET", summary_key(connection, key), "message_count"]]
        commands += [["LINDEX", key, index] for index in ends]
    try:
        replies = client.pipeline(commands)
    except StoreCommandError as error:
        if "WRONGTYPE" not in str(error):
            raise
        # A key stopped being a list since SCAN saw it: drop such keys, read again.
        kinds = client.pipeline([["TYPE", key] for key in keys])
        return _session_rows(connection, client, [key for key, kind in zip(keys, kinds) if kind == b"list"])
    rows = []
    for position, key in enumerate(keys):
        length, ttl, covered, *elements = replies[position * per_key : (position + 1) * per_key]
        if ttl == -2:
            continue  # expired or cleared since SCAN saw it
        parsed = [parse_element(element) if element is not None else None for element in elements]
        preview = parsed[0]
        if len(parsed) == 2 and preview is not None and preview.newest_first is False:
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


def _window_range(order, start, end):
    """LRANGE indexes of the chronological messages [start, end).

    Counted from the end where the oldest message is, so the indexes of
    messages already shown do not move while the chat app keeps writing.
    """
    if order == NEWEST_FIRST:
        return -end, -(start + 1)
    return start, end - 1


def _read_window(connection, key, order, before, window):
    """One transaction: length, TTL, summary and the window's elements."""
    if before is None:
        # The latest messages: their indexes from the newest end need no length.
        lrange = [0, window - 1] if order == NEWEST_FIRST else [-window, -1]
    else:
        start = max(0, before - window)
        lrange = list(_window_range(order, start, before)) if before > 0 else [1, 0]
    try:
        length, ttl, summary, elements = read_atomically(
            connection,
            [
                ["LLEN", key],
                ["TTL", key],
                ["HGETALL", summary_key(connection, key)],
                ["LRANGE", key, *lrange],
            ],
        )
    except StoreCommandError as error:
        if "WRONGTYPE" in str(error):
            raise SessionNotFound(f"{key!r} is not a list, so it is not a chat session.") from error
        raise
    if ttl == -2:
        raise SessionNotFound(f"There is no session {key!r}: it was cleared or has expired.")
    messages = [parse_element(element) for element in elements]
    if order == NEWEST_FIRST:
        messages.reverse()
    # A window asked for past the end (a link made before messages were removed) holds fewer.
    start = max(0, before - window) if before is not None else max(0, length - len(messages))
    return length, ttl, parse_summary(summary), list(enumerate(messages, start=start))


def get_transcript(connection, key, before=None, order=None, window=50):
    """A window of a session in chronological order: the latest messages, or those before `before`.

    `order` is the list order found by an earlier page of the same session;
    without it (and when the connection does not force one) it is detected
    from the elements read.
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
            if before is not None or length > window:
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
    """Elements from chronological index `first` on (at most `count`, about `budget` bytes), in one round trip."""
    keys = [key, summary] if summary else [key]
    reply = read_script(connection, WINDOW_SCRIPT, keys, first, count, budget, order)
    if reply == -2:
        raise SessionNotFound(f"There is no session {key!r}: it was cleared or has expired.")
    if reply == -3:
        raise SessionNotFound(f"{key!r} is not a list, so it is not a chat session.")
    length, ttl, summary_fields, *elements = reply
    return length, ttl, parse_summary(summary_fields), elements


def read_whole_session(connection, key, window=EXPORT_WINDOW, window_bytes=EXPORT_WINDOW_BYTES):
    """The whole session, oldest message first, read window by window as `windows` is iterated.

    The first window is read here, so a session that is not there raises SessionNotFound at once.
    The order is found as for a transcript page: the connection's, else detected from the first
    window, read as newest-first (an oldest-first list longer than that window costs one more read).
    Reading stops at the length the session had when it began; a session cleared or expired
    meanwhile ends the windows early, with what was read.
    """
    forced = connection.list_order in (NEWEST_FIRST, OLDEST_FIRST)
    order = connection.list_order if forced else NEWEST_FIRST
    summary = summary_key(connection, key)
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


def read_message(connection, key, index, order):
    """The element at chronological `index` (for "show all" of a long message)."""
    list_index = -(index + 1) if order == NEWEST_FIRST else index
    try:
        element = get_client(connection).call("LINDEX", key, list_index)
    except StoreCommandError as error:
        raise SessionNotFound(f"{key!r} is not a list.") from error
    if element is None:
        raise SessionNotFound(f"Session {key!r} has no message #{index + 1} (any more).")
    return element


def _guarded(connection, script, key, *args):
    result = get_writer(connection).run_script(script, [key, summary_key(connection, key)], *args)
    if result == -2:
        raise SessionNotFound(f"There is no session {key!r}: it was cleared or has expired.")
    if result == -3:
        raise SessionNotFound(f"{key!r} is not a list, so it is not a chat session; it was left alone.")
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
