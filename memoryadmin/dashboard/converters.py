"""Session keys in URLs: base64url of the key's UTF-8 bytes, or a handle for long keys.

A Redis key may hold any byte (spaces, `/`, `%`, `#`, `?`, newlines): in a path
it would break routing, and in a form field browsers rewrite newlines. An
opaque token survives both.

A key can be 32 KB (Upstash's limit), and its token a third longer: servers
refuse such URLs (gunicorn takes a request line of at most 4,094 bytes, nginx
8 KB by default). A key whose token would be longer than MAX_TOKEN_LENGTH gets
a handle instead: `~` (outside the base64url alphabet, so the two never mix)
and the key's SHA-256, kept in a table (KeyHandle) when the URL is made.
Short keys keep their URLs, and a long token made before handles still opens.
"""

import base64
import hashlib

from django.apps import apps

# Keeps every session URL well under 2 KB (keys up to 768 bytes keep a plain token).
MAX_TOKEN_LENGTH = 1024
HANDLE_PREFIX = "~"


def _b64(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _handles():
    # Looked up when used: this module is imported by the URLconf and by scripts (the bench)
    # before the app registry is ready.
    return apps.get_model("dashboard", "KeyHandle")


def encode_key(key):
    """The key's token; for a long key, its handle (remembered, so that decode_key finds it)."""
    token = _b64(key.encode("utf-8"))
    if len(token) <= MAX_TOKEN_LENGTH:
        return token
    digest = _b64(hashlib.sha256(key.encode("utf-8")).digest())
    handles = _handles()
    handles.objects.bulk_create([handles(digest=digest, key=key)], ignore_conflicts=True)
    return HANDLE_PREFIX + digest


def decode_key(token):
    """Raises ValueError for anything that is not a token or handle we made."""
    if token.startswith(HANDLE_PREFIX):
        key = _handles().objects.filter(digest=token[len(HANDLE_PREFIX) :]).values_list("key", flat=True).first()
        if key is None:
            raise ValueError("unknown handle")
        return key
    padded = token + "=" * (-len(token) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")


class SessionKeyConverter:
    regex = "~[A-Za-z0-9_-]{43}|[A-Za-z0-9_-]*"

    def to_python(self, value):
        return decode_key(value)  # ValueError -> 404

    def to_url(self, value):
        return encode_key(value)
