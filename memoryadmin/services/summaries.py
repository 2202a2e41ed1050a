"""Session summaries: a hash at `<summary namespace><session key>` (see README).

Fields: text, method, message_count, generated_at (ISO 8601 UTC), duration_ms.
Chat apps may write them too, so every field is optional when reading.
"""

from dataclasses import dataclass
from datetime import datetime


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


def summary_key(connection, session_key):
    return f"{connection.summary_namespace}{session_key}"


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
