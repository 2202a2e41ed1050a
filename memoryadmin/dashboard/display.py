"""What the two busiest pages show of each row and message, worked out once in Python.

Each template variable, filter and tag costs a few microseconds in the Django template language;
a list page has 50 rows and a transcript page 50 messages, so the pages' per-row display data
(URLs, truncations, sizes, TTL texts) is made here and the templates only print it. The output
is exactly what the filters made (`clip` is `truncatechars`).
"""

import unicodedata
from dataclasses import dataclass, field

from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.text import Truncator

from memoryadmin.services.messages import Message, ToolCall
from memoryadmin.services.sessions import TTL_NONE, SessionRow

from .converters import encode_key
from .templatetags.memoryadmin_tags import clock, duration, message_text, session_url, shorten

# What a transcript page shows of a message's text, raw element and tool-call arguments (characters).
TEXT_CHARS = 20_000
RAW_FALLBACK_CHARS = 2_000  # of a message with no text: its raw element in place of the text
PART_LABEL_CHARS = 200
PREVIEW_CHARS = 140  # of a list row's newest message


def clip(text, length):
    """`truncatechars` (the same text), without its character-by-character loop when nothing is cut."""
    normalized = unicodedata.normalize("NFC", str(text))
    if len(normalized) <= length:
        return normalized  # what Truncator.chars answers when it cuts nothing
    return Truncator(text).chars(length)


@dataclass
class Block:
    """A `<div>` of a message's body: its classes, a badge naming a part's kind, its content (escaped on output
    unless already safe HTML)."""

    classes: str
    content: str
    badge: str = ""


@dataclass
class ShownMessage:
    index: int  # chronological, from 0
    message: Message
    blocks: list[Block]
    raw: str  # clipped
    tool_calls: list[ToolCall]  # arguments clipped
    size: str  # the whole element's, as filesizeformat writes it
    whole_url: str | None  # "Show the whole message", when the page shows only part of it
    redact_url: str

    @property
    def number(self):
        return self.index + 1


def _by_index(url):
    """`url(index)` for a URL reversed with index 0: reversed once a page rather than once a message."""
    start, end = url.rsplit("/0/", 1)
    return lambda index: f"{start}/{index}/{end}"


def _blocks(message):
    if message.parts:
        return [
            Block("text", message_text(clip(part.text, TEXT_CHARS)))
            if part.kind == "text"
            else Block(f"part part-{part.kind}", clip(part.url or part.text, PART_LABEL_CHARS), badge=part.kind)
            for part in message.parts
        ]
    if message.text:
        return [Block("text", message_text(clip(message.text, TEXT_CHARS)))]
    if not message.tool_calls:
        return [Block("text raw", clip(message.raw, RAW_FALLBACK_CHARS))]
    return []


def shown_messages(key, messages):
    """The transcript's (index, Message) pairs as its page shows them."""
    raw_url = _by_index(reverse("message_raw", args=[key, 0]))
    redact_url = _by_index(reverse("message_redact", args=[key, 0]))
    shown = []
    for index, message in messages:
        whole = message.cut or len(message.text) > TEXT_CHARS or message.size > TEXT_CHARS
        calls = [ToolCall(call.id, call.name, clip(call.arguments, TEXT_CHARS)) for call in message.tool_calls]
        shown.append(
            ShownMessage(
                index=index,
                message=message,
                blocks=_blocks(message),
                raw=clip(message.raw, TEXT_CHARS),
                tool_calls=calls,
                size=filesizeformat(message.size),
                whole_url=raw_url(index) if whole else None,
                redact_url=redact_url(index),
            )
        )
    return shown


@dataclass
class ShownRow:
    row: SessionRow
    token: str  # the key's URL token
    url: str
    ttl_title: str = ""  # "3 d 4 h (273600 s)"; "" when it never expires
    ttl_clock: str = ""
    preview: str = ""  # the start of the newest message's text (or raw element)
    preview_size: str = field(default="")  # of a large message whose start only was read

    @property
    def never_expires(self):
        return self.row.ttl == TTL_NONE


def shown_rows(rows):
    """The list page's rows as it shows them."""
    shown = []
    for row in rows:
        item = ShownRow(row=row, token=encode_key(row.key), url=session_url(row.key))
        if row.ttl != TTL_NONE:
            item.ttl_title, item.ttl_clock = f"{duration(row.ttl)} ({row.ttl} s)", clock(row.ttl)
        if row.preview:
            item.preview = shorten(row.preview.text or row.preview.raw, PREVIEW_CHARS)
            if row.preview.cut:
                item.preview_size = filesizeformat(row.preview.size)
        shown.append(item)
    return shown
