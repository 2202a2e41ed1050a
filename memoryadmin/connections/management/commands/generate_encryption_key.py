from django.core.management.base import BaseCommand

from memoryadmin.services.secrets import generate_key


class Command(BaseCommand):
    help = "Print a new Fernet key for MEMORYADMIN_ENCRYPTION_KEYS."
    requires_system_checks = []  # it is what you run when the keys check fails

    def handle(self, *args, **options):
        self.stdout.write(generate_key())
