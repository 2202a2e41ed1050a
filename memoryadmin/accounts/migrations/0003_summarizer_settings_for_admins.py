from django.db import migrations

from memoryadmin.accounts.grants import add_permissions

GRANTS = {"Admin": ["summaries.view_summarizersettings", "summaries.change_summarizersettings"]}


def grant(apps, schema_editor):
    add_permissions(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_roles"), ("summaries", "0001_initial")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
