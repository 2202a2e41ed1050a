from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from memoryadmin.fields import StoreTextField
from memoryadmin.services.sessions import MAX_TTL


class RetentionPolicy(models.Model):
    """A rule the worker applies by itself to one connection's sessions, on a schedule (services/retention.py).

    Each run is a bulk job (its dry run, its report); a policy runs only once enabled, and it is
    enabled only after a preview (a dry run) made since its last edit.
    """

    TTL_IF_NONE, CAP_TTL, CLEAR = "ttl_if_none", "cap_ttl", "clear"
    RULES = [
        (TTL_IF_NONE, "Sessions without a TTL get a TTL"),
        (CAP_TTL, "TTLs longer than a limit are cut to it"),
        (CLEAR, "Sessions are cleared"),
    ]
    DAILY, EVERY_HOURS = "daily", "hours"
    SCHEDULES = [(DAILY, "Daily at a time (UTC)"), (EVERY_HOURS, "Every N hours")]

    connection_slug = models.CharField(max_length=20)
    connection_name = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    rule = models.CharField(max_length=20, choices=RULES)
    pattern = StoreTextField(help_text="SCAN MATCH pattern of the sessions it applies to.")
    ttl_seconds = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_TTL)]
    )
    schedule = models.CharField(max_length=10, choices=SCHEDULES, default=DAILY)
    daily_at = models.TimeField(null=True, blank=True, help_text="UTC.")
    every_hours = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(24 * 7)]
    )
    enabled = models.BooleanField(default=False)
    # The one value a worker's claim of a run compares and moves on (services/retention.py claim_run).
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    enabled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    enabled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    changed_at = models.DateTimeField(
        help_text="Last change of what it does (rule, pattern, TTL): a preview must follow."
    )

    class Meta:
        ordering = ["name", "id"]
        verbose_name_plural = "retention policies"

    def __str__(self):
        return f"retention policy #{self.pk} ({self.name})"
