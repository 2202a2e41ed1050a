from django.db import migrations

from memoryadmin.accounts.grants import add_permissions

# Frozen here: a migration must not change when roles.py does.
GRANTS = {"Admin": ["accounts.manage_retention"]}


def grant(apps, schema_editor):
    add_permissions(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_redaction_and_legal_hold")]

    operations = [
        migrations.AlterModelOptions(
            name="sessionaccess",
            options={
                "default_permissions": (),
                "managed": False,
                "permissions": [
                    ("view_session", "List sessions and read transcripts"),
                    ("expire_session", "Set or remove a session's TTL"),
                    ("clear_session", "Clear a session"),
                    ("summarize_session", "Re-summarize sessions"),
                    ("run_bulk_job", "Run bulk jobs (purge, TTL, re-summarize)"),
                    ("redact_session", "Redact messages (replace their content with a marker)"),
                    ("manage_legal_hold", "Put sessions on legal hold and lift holds"),
                    ("manage_retention", "Create, edit, enable and disable retention policies"),
                ],
            },
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
