from datetime import UTC, timedelta
from functools import lru_cache

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from memoryadmin.dashboard.converters import encode_key
from memoryadmin.services.connections import CONNECTION_FIELD
from memoryadmin.services.content_search import SNIPPET_CONTEXT
from memoryadmin.services.messages import text_pieces

register = template.Library()

_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


@register.filter
def duration(seconds):
    """3 d 4 h; the two largest units are enough to read at a glance."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    parts = []
    for unit, size in _UNITS:
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2]) or "0 s"


@register.filter
def clock(seconds):
    """A TTL to the second, `6 d 23:59:58`; static/js/app.js ticks it down in the same format."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours}:{rest // 60:02}:{rest % 60:02}"
    return f"{days} d {text}" if days else text


@register.filter
def expires_at(seconds):
    """When a TTL of `seconds` (from now) runs out, in UTC like every time on the pages."""
    return f"{timezone.now().astimezone(UTC) + timedelta(seconds=int(seconds)):%Y-%m-%d %H:%M} UTC"


@register.filter
def when(moment):
    """Absolute (UTC, machine-readable too) and relative: operators compare with logs and with "just now"."""
    if not moment:
        return ""
    moment = moment.astimezone(UTC) if timezone.is_aware(moment) else moment
    ago = "just now" if timezone.now() - moment < timedelta(minutes=1) else f"{timesince(moment, depth=1)} ago"
    return format_html(
        '<time datetime="{}">{} UTC</time> <span class="muted">({})</span>',
        moment.isoformat(timespec="seconds"),
        moment.strftime("%Y-%m-%d %H:%M:%S"),
        ago,
    )


@lru_cache(maxsize=1)
def _session_url_prefix():
    # The empty key's token is empty: "/sessions//" less its last slash.
    return reverse("session_detail", args=[""])[:-1]


@register.filter
def session_url(key):
    """The session page's URL: reversed once, since the list renders one per row."""
    return f"{_session_url_prefix()}{encode_key(key)}/"


@register.filter
def isolate(text):
    """Text in a plain-text place (a title, a dialog), between FIRST STRONG and POP DIRECTIONAL ISOLATE.

    In HTML, a key goes in a `.key` element instead (isolated by the stylesheet).
    """
    return f"\u2068{text}\u2069"


@register.filter
def shorten(text, length):
    """At most `length` characters, … where cut (truncatechars's word-aware machinery costs more per row)."""
    text = str(text)
    return text if len(text) <= length else text[: length - 1] + "…"


@register.filter
def key_token(key):
    """The URL-safe token of a session key (for element ids and links)."""
    return encode_key(key)


@register.simple_tag
def connection_field(connection):
    """The hidden field of a write form: the connection its page showed (the write is refused on any other)."""
    return format_html('<input type="hidden" name="{}" value="{}">', CONNECTION_FIELD, connection.slug)


@register.filter(needs_autoescape=True)
def message_text(text, autoescape=True):
    """Message text with ``` fenced blocks as <pre><code>; everything is escaped, nothing else is markup.

    Text without fences comes out exactly as `{{ text }}` would (escaped).
    """
    escape = conditional_escape if autoescape else str
    pieces = []
    for piece in text_pieces(str(text)):
        if piece.code:
            language_class = f' class="language-{escape(piece.language)}"' if piece.language else ""
            pieces.append(f'<pre class="code"><code{language_class}>{escape(piece.text)}</code></pre>')
        else:
            pieces.append(escape(piece.text))
    return mark_safe("".join(pieces))


@register.simple_tag(takes_context=True)
def retry_url(context):
    """Where "Try again" goes: the page the operator was on, never a POST-only URL."""
    request = context.get("request")
    if request is None:
        return ""
    htmx = getattr(request, "htmx", None)
    if htmx:
        return htmx.current_url_abs_path or ""
    return request.get_full_path() if request.method == "GET" else ""


@register.filter
def highlighted_snippet(hit):
    """A search hit's snippet, escaped, with the match marked; … where the message goes on."""
    text, start, end = hit.snippet, hit.match_start, hit.match_end
    before = "…" if start >= SNIPPET_CONTEXT else ""
    after = "…" if len(text) - end >= SNIPPET_CONTEXT else ""
    return format_html("{}{}<mark>{}</mark>{}{}", before, text[:start], text[start:end], text[end:], after)
