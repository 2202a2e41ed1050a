from django.conf import settings
from django.db import models
from django.utils import timezone

from memoryadmin.fields import StoreJSONField, StoreTextField


class AuditEvent(models.Model):
    """Who did what, when, on which connection and session, and how it ended.

    Append-only: a row is never edited or deleted through the app. The one
    change allowed is the outcome of a write, recorded before the store is
    touched (PENDING) and settled afterwards (see services/audit.py).
    """

    OK, DENIED, FAILED, PENDING = "ok", "denied", "failed", "pending"
    OUTCOMES = [(OK, "ok"), (DENIED, "denied"), (FAILED, "failed"), (PENDING, "pending (outcome unknown)")]

    ACTIONS = [
        ("session.list", "Listed sessions"),
        ("session.read", "Read a transcript"),
        ("session.export", "Exported a transcript"),
        ("session.ttl", "Set a TTL"),
        ("session.persist", "Removed a TTL"),
        ("session.clear", "Cleared a session"),
        ("session.summarize", "Re-summarized a session"),
        ("session.redact", "Redacted a message"),
        ("bulk.view", "Opened bulk jobs"),
        ("bulk.dry_run", "Bulk job: dry run"),
        ("bulk.confirm", "Bulk job: confirmed"),
        ("bulk.start", "Bulk job: started"),
        ("bulk.resume", "Bulk job: resumed"),
        ("bulk.finish", "Bulk job: finished"),
        ("bulk.cancel", "Bulk job: cancelled"),
        ("bulk.fail", "Bulk job: failed"),
        ("bulk.verify", "Bulk job: verified by searching again"),
        ("erasure.certificate", "Downloaded an erasure certificate"),
        ("search.run", "Content search"),
        ("search.erase", "Erased a search's results"),
        ("hold.view", "Opened the legal holds"),
        ("hold.create", "Put sessions on legal hold"),
        ("hold.lift", "Lifted a legal hold"),
        ("overview.view", "Opened a connection's overview"),
        ("overview.run", "Measured a connection (overview)"),
        ("retention.view", "Opened the retention policies"),
        ("retention.create", "Created a retention policy"),
        ("retention.edit", "Edited a retention policy"),
        ("retention.enable", "Enabled a retention policy"),
        ("retention.disable", "Disabled a retention policy"),
        ("retention.preview", "Previewed a retention policy"),
        ("retention.run", "Ran a retention policy"),
        ("connection.view", "Opened the connections"),
        ("connection.create", "Added a connection"),
        ("connection.edit", "Edited a connection"),
        ("connection.delete", "Deleted a connection"),
        ("connection.test", "Tested a connection"),
        ("secrets.rotate", "Rotated encryption keys"),
        ("settings.summarizer", "Changed the summarizer settings"),
        ("audit.view", "Opened the audit log"),
        ("audit.export", "Exported the audit log"),
    ]

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True, help_text="Kept when the user is deleted.")
    action = models.CharField(max_length=40, choices=ACTIONS, db_index=True)
    connection_name = models.CharField(max_length=100, blank=True)
    connection_slug = models.CharField(max_length=20, blank=True, db_index=True)
    session_key = StoreTextField(blank=True, db_index=True)
    details = StoreJSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=10, choices=OUTCOMES, db_index=True)
    error = StoreTextField(blank=True)
    job = models.CharField(max_length=40, blank=True, db_index=True, help_text="The background job this belongs to.")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=40, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action} {self.outcome}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")
