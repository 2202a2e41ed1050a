"""Session summaries: a hash at `<summary namespace><session key>` (see README).

Fields: text, method, message_count, generated_at (ISO 8601 UTC), duration_ms.
Chat apps may write them too, so every field is optional when reading.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from . import scripts
from .upstash import get_client


@dataclass
class Summary:
    text: str
    method: str
    message_count: int | None
    generated_at: datetime | None
    duration_ms: int | None

    def is_stale(self, session_length):
        """Stale when the session has more messages than the summary covers."""
        return self.message_count is not None and session_length > self.message_count


# Upstash refuses keys over 32 KB: a session key near that size has no room for the namespace.
MAX_KEY_BYTES = 32 * 1024
DIGEST_MARK = "#sha256:"


def summary_key(connection, session_key):
    """`<namespace><session key>`; for a key too long to prefix, `<namespace>#sha256:<hex of the key's UTF-8>`."""
    key = f"{connection.summary_namespace}{session_key}"
    if len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES:
        return key
    digest = hashlib.sha256(session_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{connection.summary_namespace}{DIGEST_MARK}{digest}"


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _datetime_or_none(value):
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def parse_summary(hgetall_reply):
    """An HGETALL reply (flat list of bytes) -> Summary, or None when there is none."""
    if not hgetall_reply:
        return None
    fields = {
        hgetall_reply[i].decode("utf-8", "replace"): hgetall_reply[i + 1].decode("utf-8", "replace")
        for i in range(0, len(hgetall_reply) - 1, 2)
    }
    return Summary(
        text=fields.get("text", ""),
        method=fields.get("method", "unknown"),
        message_count=_int_or_none(fields.get("message_count")),
        generated_at=_datetime_or_none(fields.get("generated_at")),
        duration_ms=_int_or_none(fields.get("duration_ms")),
    )


# Write the summary only if the session still exists (a session cleared
# meanwhile gets none), replace any older one, and give it the session's TTL.
# KEYS: session, summary. ARGV: text, method, message_count, generated_at, duration_ms.
# Reply: 0 when the session is gone, 1 when written, 2 when written with the session's TTL.
WRITTEN, WRITTEN_WITH_TTL = 1, 2


def _write_commands(reply, keys, args):
    """TYPE; then, when it wrote, DEL, HSET, PTTL, and PEXPIRE when the session has a TTL."""
    return {0: 1, WRITTEN: 4, WRITTEN_WITH_TTL: 5}[reply]


WRITE_SCRIPT = scripts.Script(
    """
if redis.call('TYPE', KEYS[1]).ok ~= 'list' then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'text', ARGV[1], 'method', ARGV[2], 'message_count', ARGV[3],
           'generated_at', ARGV[4], 'duration_ms', ARGV[5])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  return 2
end
return 1
""",
    _write_commands,
)


def write_summary(connection, session_key, result, generated_at):
    """Store a SummaryResult; False when the session is gone (nothing written)."""
    written = scripts.write(
        connection,
        WRITE_SCRIPT,
        [session_key, summary_key(connection, session_key)],
        result.text,
        result.method,
        result.message_count,
        generated_at.isoformat().replace("+00:00", "Z"),
        result.duration_ms,
    )
    return written in (WRITTEN, WRITTEN_WITH_TTL)


def read_summary(connection, session_key):
    """(Summary or None, the session's length) in one round trip."""
    summary, length = get_client(connection).pipeline(
        [["HGETALL", summary_key(connection, session_key)], ["LLEN", session_key]]
    )
    return parse_summary(summary), length


def summary_state(message_count, session_length):
    """none / fresh / stale, from the summary hash's message_count field as stored (None: no summary)."""
    if message_count is None:
        return "none"
    covered = _int_or_none(message_count)
    return "stale" if covered is None or session_length > covered else "fresh"
