from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from memoryadmin.services.erasure import check_certificate_file


class Command(BaseCommand):
    help = (
        "Check an erasure certificate (the JSON file downloaded from an erasure job): that one of this "
        "deployment's MEMORYADMIN_SIGNING_KEYS signed it and nothing in it was edited since. Exit status 0 "
        "when valid, 1 when not."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the certificate file (erasure-certificate-<job>.json)")

    def handle(self, *args, file, **options):
        try:
            data = Path(file).read_bytes()
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from error
        valid, why = check_certificate_file(data)
        if not valid:
            raise CommandError(why, returncode=1)
        self.stdout.write(why)
