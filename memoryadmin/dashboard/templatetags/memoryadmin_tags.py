from django import template

from memoryadmin.dashboard.converters import encode_key

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
def key_token(key):
    """The URL-safe token of a session key (for element ids and links)."""
    return encode_key(key)
