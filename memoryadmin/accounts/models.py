from django.db import models


class SessionAccess(models.Model):
    """No table: it carries the permissions on chat sessions that roles are made of.

    Custom permissions rather than fixed roles, so a deployment can remix
    them into groups of its own in the Django admin.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_session", "List sessions and read transcripts"),
            ("expire_session", "Set or remove a session's TTL"),
            ("clear_session", "Clear a session"),
            ("summarize_session", "Re-summarize sessions"),
            ("run_bulk_job", "Run bulk jobs (purge, TTL, re-summarize)"),
            ("redact_session", "Redact messages (replace their content with a marker)"),
            ("manage_legal_hold", "Put sessions on legal hold and lift holds"),
            ("manage_retention", "Create, edit, enable and disable retention policies"),
        ]
