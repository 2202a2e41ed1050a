"""Granting permissions to groups from data migrations."""

from django.contrib.auth.management import create_permissions


def add_permissions(apps, role_permissions):
    """Give groups ("Admin": ["app.codename", ...]) permissions, inside a migration.

    Permissions are normally made after all migrations ran; the groups need them now.
    """
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, permissions in role_permissions.items():
        group, _ = Group.objects.get_or_create(name=role)
        for permission in permissions:
            app_label, codename = permission.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
