from django.db import migrations

from memoryadmin.accounts.grants import add_permissions

# Frozen here: a migration must not change when roles.py does.
GRANTS = {
    "Operator": ["accounts.redact_session"],
    "Admin": ["accounts.redact_session", "accounts.manage_legal_hold"],
}


def grant(apps, schema_editor):
    add_permissions(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_summarizer_settings_for_admins")]

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
                ],
            },
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
