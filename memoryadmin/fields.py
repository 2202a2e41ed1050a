"""Model fields for text that comes from the store: keys, snippets, errors, audit details.

A Redis key or message may hold any character, NUL (U+0000) included. SQLite
keeps it; PostgreSQL's text and jsonb refuse it, so a row naming such a key
could not be saved. These fields store NUL as MARK + "0" and MARK itself as
MARK + MARK, and give the exact text back when read: code that acts on a key
gets its exact bytes, and a lookup (filter(key=...), __in) is escaped the same
way. Text with neither (nearly all) is stored as it is, so rows written before
read back unchanged, and the database shows "␀0" where a key has a NUL.

The columns are ordinary text and JSON columns: for migrations these fields
are the Django fields they extend (deconstruct), so using them changes no schema.
"""

import re

from django.db import models

MARK = "\u2400"  # ␀ SYMBOL FOR NULL
_ESCAPED = re.compile(f"{MARK}([{MARK}0])")


def escape(text):
    return text.replace(MARK, MARK + MARK).replace("\x00", MARK + "0")


def unescape(text):
    if MARK not in text:
        return text
    return _ESCAPED.sub(lambda match: MARK if match[1] == MARK else "\x00", text)


def _each_string(value, change):
    """The JSON value with `change` applied to every string in it, object keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {_each_string(key, change): _each_string(item, change) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_each_string(item, change) for item in value]
    return value


class _SameColumn:
    """Migrations see the Django field this one extends: its column is theirs."""

    migrated_as = None

    def deconstruct(self):
        name, _, args, kwargs = super().deconstruct()
        return name, self.migrated_as, args, kwargs


class _StoreText(_SameColumn):
    def from_db_value(self, value, expression, connection):
        return value if value is None else unescape(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value if value is None else escape(value)


class StoreTextField(_StoreText, models.TextField):
    """A TextField that holds any text, NUL included, on every database."""

    migrated_as = "django.db.models.TextField"


class StoreCharField(_StoreText, models.CharField):
    """A CharField that holds any text, NUL included (an escaped NUL counts two characters)."""

    migrated_as = "django.db.models.CharField"


class StoreJSONField(_SameColumn, models.JSONField):
    """A JSONField whose strings may hold NUL (PostgreSQL's jsonb refuses \\u0000)."""

    migrated_as = "django.db.models.JSONField"

    def from_db_value(self, value, expression, connection):
        return _each_string(super().from_db_value(value, expression, connection), unescape)

    def get_prep_value(self, value):
        return super().get_prep_value(_each_string(value, escape))
