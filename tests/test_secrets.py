"""Secrets at rest: Fernet encryption, key rotation, the missing-key check."""

import pytest
from cryptography.fernet import Fernet
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection as db

from memoryadmin.audit.models import AuditEvent
from memoryadmin.connections.checks import encryption_keys_configured
from memoryadmin.connections.models import Connection
from memoryadmin.services import secrets

pytestmark = pytest.mark.django_db

TOKEN = "AXsecret-token-value-1234"


def raw_row(pk):
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM connections_connection WHERE id = %s", [pk])
        return " ".join(str(value) for value in cursor.fetchone())


def make_connection(token=TOKEN):
    saved = Connection(name="prod", url="https://x.upstash.io")
    saved.token = token
    saved.save()
    return saved


def test_token_is_not_stored_in_plaintext():
    saved = make_connection()
    row = raw_row(saved.pk)
    assert TOKEN not in row
    assert "secret-token" not in row
    assert Connection.objects.get(pk=saved.pk).token == TOKEN


def test_rotation_moves_every_secret_to_the_new_key(settings, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [old]
    saved = make_connection()
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys")
    assert "Re-encrypted 1 secret(s)" in capsys.readouterr().out
    call_command("rotate_encryption_keys")  # safe twice: nothing left to do
    assert "Re-encrypted 0 secret(s) under the first key (1 already were)" in capsys.readouterr().out
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [new]  # the old key removed
    assert Connection.objects.get(pk=saved.pk).token == TOKEN
    rotations = AuditEvent.objects.filter(action="secrets.rotate").order_by("id")
    assert [event.details for event in rotations] == [{"rotated": 1, "unchanged": 0}, {"rotated": 0, "unchanged": 1}]


def test_a_secret_under_a_removed_key_is_a_clear_error(settings):
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    saved = make_connection()
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    reloaded = Connection.objects.get(pk=saved.pk)  # the row still loads
    with pytest.raises(secrets.SecretUnreadable) as unreadable:
        _ = reloaded.token
    # Shown as is on the error page: it names the setting and says what to do.
    assert str(unreadable.value) == (
        "A stored secret cannot be decrypted with the configured MEMORYADMIN_ENCRYPTION_KEYS "
        "(was the key it was encrypted with removed?). Put that key back, or enter the secret again."
    )
    with pytest.raises(CommandError) as refused:
        call_command("rotate_encryption_keys")
    assert str(refused.value) == (
        f"Connection {saved.pk} (token_encrypted): A stored secret cannot be decrypted with any configured key. "
        "Nothing was changed."
    )


def test_missing_keys_stop_production_start_up(settings):
    settings.MEMORYADMIN_ENCRYPTION_KEYS = []
    settings.DEBUG = False
    (problem,) = encryption_keys_configured(None)
    assert isinstance(problem, Error)
    assert "MEMORYADMIN_ENCRYPTION_KEYS" in problem.msg and "generate_encryption_key" in problem.msg
    with pytest.raises(ImproperlyConfigured, match="MEMORYADMIN_ENCRYPTION_KEYS is not set.*generate_encryption_key"):
        secrets.encrypt("x")


def test_a_key_that_is_not_a_fernet_key_is_named_as_the_problem(settings):
    settings.MEMORYADMIN_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), "not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="MEMORYADMIN_ENCRYPTION_KEYS holds a key that is not a Fernet key"):
        secrets.encrypt("x")


def test_missing_keys_in_debug_derive_one_with_a_warning(settings):
    settings.MEMORYADMIN_ENCRYPTION_KEYS = []
    settings.DEBUG = True
    (problem,) = encryption_keys_configured(None)
    assert isinstance(problem, Warning)
    assert secrets.decrypt(secrets.encrypt("dev")) == "dev"


def test_generate_encryption_key_prints_a_usable_key(capsys):
    call_command("generate_encryption_key")
    Fernet(capsys.readouterr().out.strip())  # raises if it is not a Fernet key


def test_masking_shows_only_the_last_four():
    assert secrets.masked(TOKEN) == "••••1234"
    assert secrets.masked("short") == "••••"


def test_masking_shows_nothing_of_a_secret_of_eight_characters_or_fewer():
    assert secrets.masked("12345678") == "••••"  # the last four would be half of it
    assert secrets.masked("123456789") == "••••6789"


def test_a_cleared_secret_is_stored_as_none_at_all():
    saved = make_connection()
    saved.read_only_token = "AXread-only-token-5678"
    saved.save()
    assert Connection.objects.get(pk=saved.pk).masked_read_only_token == "••••5678"
    saved.read_only_token = ""
    saved.save()
    reloaded = Connection.objects.get(pk=saved.pk)
    assert reloaded.read_only_token == ""
    assert reloaded.masked_read_only_token == ""  # the page shows no read-only token, not a masked one
    assert reloaded.read_only_token_encrypted == ""  # nothing for a key rotation to re-encrypt
