"""Keyed hashes and signatures, with keys from the environment (MEMORYADMIN_SIGNING_KEYS).

Two uses: a search's query is kept only as a keyed hash (no one can check a
guess without the key), and an erasure certificate is signed so that an
edited copy is found out later (`manage.py verify_erasure_report`). Each use
has a key of its own, derived from the configured one, so a hash of one kind
is never a valid signature of the other.

Several keys may be configured, comma-separated: the first signs and hashes,
all are tried when checking, which lets a key be rotated without making the
certificates signed before unverifiable. Unset, a key is derived from
SECRET_KEY (stable as long as SECRET_KEY is), which the README advises
against in production.
"""

import hashlib
import hmac

from django.conf import settings

ALGORITHM = "HMAC-SHA256"


def _master_keys():
    keys = [key.strip() for key in settings.MEMORYADMIN_SIGNING_KEYS if key.strip()]
    return keys or [f"derived-from-secret-key:{settings.SECRET_KEY}"]


def key_id(master):
    """A short public name of a key, so a checker knows which one signed (never the key)."""
    return hashlib.sha256(f"memoryadmin-key-id:{master}".encode()).hexdigest()[:12]


def current_key_id():
    """The key_id of the key that signs and hashes now."""
    return key_id(_master_keys()[0])


def _key(master, purpose):
    return hmac.new(master.encode(), f"memoryadmin:{purpose}".encode(), hashlib.sha256).digest()


def keyed_hash(purpose, text):
    """HMAC-SHA256 of `text` under the current key for `purpose`, as hex."""
    return hmac.new(_key(_master_keys()[0], purpose), text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def sign(purpose, data):
    """The signature of `data` (bytes): {"algorithm", "key_id", "value"}."""
    master = _master_keys()[0]
    value = hmac.new(_key(master, purpose), data, hashlib.sha256).hexdigest()
    return {"algorithm": ALGORITHM, "key_id": key_id(master), "value": value}


def verify(purpose, data, signature):
    """Whether `signature` (as sign() made it) is valid for `data` under one of the configured keys."""
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        return False
    value = signature.get("value")
    if not isinstance(value, str):
        return False
    for master in _master_keys():
        if key_id(master) != signature.get("key_id"):
            continue
        expected = hmac.new(_key(master, purpose), data, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, value):
            return True
    return False
