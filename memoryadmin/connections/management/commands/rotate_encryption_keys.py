from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from memoryadmin.services import audit
from memoryadmin.services.secrets import SecretUnreadable, rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of MEMORYADMIN_ENCRYPTION_KEYS. "
        "Put the new key first, run this, then remove the old key. Safe to run again."
    )

    def handle(self, *args, **options):
        rotated = unchanged = 0
        with transaction.atomic():
            for model in apps.get_models():
                for field in getattr(model, "SECRET_FIELDS", ()):
                    for row in model.objects.select_for_update().exclude(**{field: ""}):
                        stored = getattr(row, field)
                        try:
                            fresh = rotate(stored)
                        except SecretUnreadable as error:
                            raise CommandError(
                                f"{model.__name__} {row.pk} ({field}): {error} Nothing was changed."
                            ) from error
                        if fresh is None:
                            unchanged += 1
                            continue
                        model.objects.filter(pk=row.pk).update(**{field: fresh})
                        rotated += 1
            audit.record(None, "secrets.rotate", details={"rotated": rotated, "unchanged": unchanged})
        self.stdout.write(f"Re-encrypted {rotated} secret(s) under the first key ({unchanged} already were).")
