"""Create the Viewer, Operator and Admin groups with their permissions."""

from django.db import migrations

from memoryadmin.accounts.grants import add_permissions

VIEWER = ["accounts.view_session"]
OPERATOR = VIEWER + [
    "accounts.expire_session",
    "accounts.clear_session",
    "accounts.summarize_session",
    "accounts.run_bulk_job",
]
ADMIN = OPERATOR + [
    "connections.view_connection",
    "connections.add_connection",
    "connections.change_connection",
    "connections.delete_connection",
    "audit.view_auditevent",
]
# Frozen here: a migration must not change when roles.py does.
ROLE_PERMISSIONS = {"Viewer": VIEWER, "Operator": OPERATOR, "Admin": ADMIN}


def create_roles(apps, schema_editor):
    add_permissions(apps, ROLE_PERMISSIONS)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("audit", "0001_initial"),
        ("connections", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
