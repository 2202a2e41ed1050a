"""Secrets at rest: Fernet with keys from the environment.

MEMORYADMIN_ENCRYPTION_KEYS holds one or more Fernet keys, comma-separated:
the first encrypts, all decrypt (MultiFernet), so a new key can be put in
front, `rotate_encryption_keys` run, and the old key dropped.
"""

import base64
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

MISSING_KEYS_MESSAGE = (
    "MEMORYADMIN_ENCRYPTION_KEYS is not set. Set it to one or more Fernet keys, comma-separated "
    "(the first encrypts); `python manage.py generate_encryption_key` prints a new one."
)


class SecretUnreadable(Exception):
    """A stored secret was encrypted with a key that is no longer configured."""


def generate_key():
    return Fernet.generate_key().decode("ascii")


def key_derived_from_secret_key():
    """For DEBUG only: a stable key so development works without configuration."""
    digest = hashlib.sha256(f"memoryadmin-secrets:{settings.SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def configured_keys():
    keys = [key.strip() for key in settings.MEMORYADMIN_ENCRYPTION_KEYS if key.strip()]
    if keys:
        return keys
    if settings.DEBUG:
        return [key_derived_from_secret_key()]
    raise ImproperlyConfigured(MISSING_KEYS_MESSAGE)


def _fernet():
    try:
        return MultiFernet([Fernet(key) for key in configured_keys()])
    except ValueError as error:
        raise ImproperlyConfigured(
            f"MEMORYADMIN_ENCRYPTION_KEYS holds a key that is not a Fernet key: {error}"
        ) from error


def encrypt(plaintext):
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token):
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as error:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with the configured MEMORYADMIN_ENCRYPTION_KEYS "
            "(was the key it was encrypted with removed?). Put that key back, or enter the secret again."
        ) from error


def rotate(token):
    """The same secret encrypted under the first key, or None when it already is."""
    first = Fernet(configured_keys()[0])
    try:
        first.decrypt(token.encode("ascii"))
        return None
    except InvalidToken:
        pass
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as error:
        raise SecretUnreadable("A stored secret cannot be decrypted with any configured key.") from error


def masked(secret):
    """What a page may show of a secret."""
    return f"••••{secret[-4:]}" if len(secret) > 8 else "••••"


def secret_property(stored_field):
    """A model attribute that reads and writes the plaintext of an encrypted column.

    Decrypting on access (not on load) keeps a row with an unreadable secret
    listable and editable: only using the secret fails, with a clear message.
    Models list their encrypted columns in SECRET_FIELDS for key rotation.
    """

    def read(instance):
        stored = getattr(instance, stored_field)
        return decrypt(stored) if stored else ""

    def write(instance, plaintext):
        setattr(instance, stored_field, encrypt(plaintext) if plaintext else "")

    return property(read, write)
