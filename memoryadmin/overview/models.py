from django.conf import settings
from django.db import models

from memoryadmin.bulk.models import Billed, StoreJob, WorkerJob
from memoryadmin.fields import StoreJSONField, StoreTextField


class OverviewRun(WorkerJob, StoreJob, Billed):
    """One measurement of a connection's store (services/overview.py), kept for good: the runs make the trend.

    `measures` holds the counters, added to after every SCAN step together with the cursor, so a
    resumed run goes on from its last saved step and counts nothing twice.
    """

    QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
    STATUSES = [(QUEUED, "queued"), (RUNNING, "running"), (DONE, "done"), (CANCELLED, "cancelled"), (FAILED, "failed")]
    ACTIVE = (QUEUED, RUNNING)

    connection_slug = models.CharField(max_length=20)
    connection_name = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=STATUSES, default=QUEUED)
    cursor = models.CharField(max_length=40, default="0", help_text="SCAN cursor to resume from.")
    examined_keys = models.PositiveBigIntegerField(default=0, help_text="Keys SCAN returned so far.")
    keys_in_store = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The store's key count when the run began (DBSIZE): the progress bar's end."
    )
    # Keys of the biggest sessions are stored text (any character): a StoreJSONField.
    measures = StoreJSONField(default=dict, blank=True)
    error = StoreTextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["connection_slug", "-created_at"])]

    @property
    def is_active(self):
        return self.status in self.ACTIVE

    @property
    def audit_job(self):
        return f"overview:{self.pk}"
