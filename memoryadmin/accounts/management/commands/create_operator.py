import getpass
import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from memoryadmin.accounts.roles import ADMIN, OPERATOR, VIEWER

ROLES = {"viewer": VIEWER, "operator": OPERATOR, "admin": ADMIN}


class Command(BaseCommand):
    help = "Create a user (or change an existing one's role and password) with one of the roles."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=sorted(ROLES), required=True)
        parser.add_argument(
            "--password-from-env", metavar="VAR", help="read the password from this environment variable"
        )

    def handle(self, *args, username, role, password_from_env, **options):
        password = self._password(password_from_env)
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        try:
            validate_password(password, user)
        except ValidationError as error:
            if created:
                user.delete()
            raise CommandError(" ".join(error.messages)) from error
        user.set_password(password)
        user.is_staff = role == "admin"  # admins may open the read-only Django admin
        user.save()
        user.groups.set([Group.objects.get(name=ROLES[role])])
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {username} with the {ROLES[role]} role.")

    def _password(self, variable):
        if variable:
            password = os.environ.get(variable)
            if not password:
                raise CommandError(f"The environment variable {variable} is empty or not set.")
            return password
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("The passwords do not match.")
        return first
