"""Session keys in URLs: base64url of the key's UTF-8 bytes.

A Redis key may hold any byte (spaces, `/`, `%`, `#`, `?`, newlines): in a path
it would break routing, and in a form field browsers rewrite newlines. An
opaque token survives both.
"""

import base64


def encode_key(key):
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii").rstrip("=")


def decode_key(token):
    """Raises ValueError for anything that is not a token we made."""
    padded = token + "=" * (-len(token) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")


class SessionKeyConverter:
    regex = "[A-Za-z0-9_-]*"

    def to_python(self, value):
        return decode_key(value)  # ValueError -> 404

    def to_url(self, value):
        return encode_key(value)
