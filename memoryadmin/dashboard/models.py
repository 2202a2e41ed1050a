from django.db import models

from memoryadmin.fields import StoreTextField


class KeyHandle(models.Model):
    """A session key too long to travel in a URL, by the handle that stands for it there (see converters.py).

    Rows are never deleted: a handle may be in a permalink.
    """

    digest = models.CharField(max_length=43, primary_key=True)  # SHA-256 of the key's UTF-8, base64url
    key = StoreTextField()

    def __str__(self):
        return self.digest
