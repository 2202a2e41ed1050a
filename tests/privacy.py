"""Where a text is left in the database: every text-like column of every model's table, read with raw SQL."""

import json
import re

from django.apps import apps
from django.db import connection, models

TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField, models.GenericIPAddressField)
JSON_ESCAPE = re.compile(r"(?:\\u[0-9a-fA-F]{4})+")


def _unescaped(text):
    """Text with its JSON \\uXXXX escapes (surrogate pairs too) decoded, as a JSON column may hold them."""

    def decode(match):
        units = match.group().split("\\u")[1:]
        return b"".join(int(unit, 16).to_bytes(2, "big") for unit in units).decode("utf-16-be", "surrogatepass")

    return JSON_ESCAPE.sub(decode, text)


def _text_columns():
    """(table, primary key column, text column) for every concrete text-like field of every installed model."""
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or not meta.managed:
            continue
        for field in meta.concrete_fields:
            if isinstance(field, TEXT_FIELDS):
                yield meta.db_table, meta.pk.column, field.column


def copies_in_database(text):
    """[(table, column, row id)] of every value holding `text`, case-insensitively, also JSON-escaped (\\u00e9)."""
    needle = text.casefold()
    escaped = json.dumps(text, ensure_ascii=True)[1:-1].casefold()
    quote = connection.ops.quote_name
    found = []
    with connection.cursor() as cursor:
        for table, pk, column in _text_columns():
            cursor.execute(
                f"SELECT {quote(pk)}, CAST({quote(column)} AS TEXT) FROM {quote(table)} "
                f"WHERE {quote(column)} IS NOT NULL"
            )
            for row_id, value in cursor.fetchall():
                folded = value.casefold()
                if needle in folded or escaped in folded or needle in _unescaped(value).casefold():
                    found.append((table, column, row_id))
    return found
