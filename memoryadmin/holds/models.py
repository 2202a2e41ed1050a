from django.conf import settings
from django.db import models
from django.utils import timezone

from memoryadmin.fields import StoreTextField


class LegalHold(models.Model):
    """Sessions of one connection that nothing may clear, redact or expire until the hold is lifted.

    A hold is lifted, never deleted: the list keeps who placed and lifted it, when and why.
    """

    connection_slug = models.CharField(max_length=20)
    connection_name = models.CharField(max_length=100)
    pattern = StoreTextField(
        help_text="A glob pattern with SCAN MATCH's syntax; one session key is its pattern with * ? [ \\ escaped."
    )
    reason = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        # The one query every held-session check makes: a connection's active holds.
        indexes = [models.Index(fields=["connection_slug", "lifted_at"])]

    def __str__(self):
        return f"legal hold #{self.pk}"

    @property
    def is_active(self):
        return self.lifted_at is None
