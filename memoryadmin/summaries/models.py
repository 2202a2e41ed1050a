from django.conf import settings
from django.db import models
from django.db.models import Q

from memoryadmin.bulk.models import Billed, Claimed
from memoryadmin.fields import StoreCharField, StoreTextField
from memoryadmin.services.secrets import masked, secret_property
from memoryadmin.services.summarizers import DEFAULT_PROMPT, EXTRACTIVE, OPENAI, SummarizerConfig


class SummarizerSettings(models.Model):
    """How this deployment summarizes (one row); the API key is encrypted at rest."""

    SECRET_FIELDS = ("api_key_encrypted",)
    PROVIDERS = [(EXTRACTIVE, "Extractive (offline, built in)"), (OPENAI, "OpenAI-compatible endpoint")]

    provider = models.CharField(max_length=20, choices=PROVIDERS, default=EXTRACTIVE)
    base_url = models.URLField(
        "base URL",
        max_length=500,
        blank=True,
        help_text="e.g. https://api.openai.com/v1, or http://127.0.0.1:11434/v1 for Ollama",
    )
    model = models.CharField(max_length=200, blank=True)
    api_key_encrypted = models.TextField(blank=True, editable=False)
    max_input_chars = models.PositiveIntegerField(
        "max input (characters per request)",
        default=12000,
        help_text="Longer transcripts are summarized in parts, then merged.",
    )
    timeout = models.FloatField("timeout (seconds)", default=30.0)
    prompt_template = models.TextField(
        default=DEFAULT_PROMPT, help_text="{transcript} is replaced by the conversation."
    )
    updated_at = models.DateTimeField(auto_now=True)

    api_key = secret_property("api_key_encrypted")

    class Meta:
        verbose_name_plural = "summarizer settings"

    @classmethod
    def load(cls):
        current, _ = cls.objects.get_or_create(pk=1)
        return current

    @property
    def masked_api_key(self):
        return masked(self.api_key) if self.api_key_encrypted else ""

    def to_config(self):
        return SummarizerConfig(
            provider=self.provider,
            base_url=self.base_url,
            model=self.model,
            api_key=self.api_key,
            max_input_chars=self.max_input_chars,
            timeout=self.timeout,
            prompt_template=self.prompt_template,
        )


class SummaryBatch(Claimed, Billed):
    """Many re-summarizations asked for at once (selected rows, or all stale sessions of a filter).

    "All stale" is planned by a worker (status planning) that queues a job per stale session
    a SCAN step at a time, saving the cursor after each step: a killed planning resumes there.
    """

    PLANNING, QUEUED = "planning", "queued"
    STATUSES = [(PLANNING, "finding sessions"), (QUEUED, "queued")]

    connection_slug = models.CharField(max_length=20)
    connection_name = models.CharField(max_length=100)
    description = StoreCharField(max_length=500)
    pattern = StoreTextField(blank=True, help_text="For 'all stale matching': the key pattern scanned.")
    status = models.CharField(max_length=10, choices=STATUSES, default=PLANNING)
    examined = models.PositiveIntegerField(default=0)
    cursor = models.CharField(max_length=40, default="0", help_text="SCAN cursor to resume the planning from.")
    error = StoreTextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)


class SummaryJob(Claimed, Billed):
    """One re-summarization of one session: queued, then run by the worker."""

    QUEUED, RUNNING, DONE, FAILED, GONE = "queued", "running", "done", "failed", "gone"
    STATUSES = [(QUEUED, "queued"), (RUNNING, "running"), (DONE, "done"), (FAILED, "failed"), (GONE, "session gone")]
    ACTIVE = (QUEUED, RUNNING)

    connection_slug = models.CharField(max_length=20)
    connection_name = models.CharField(max_length=100)
    session_key = StoreTextField()
    batch = models.ForeignKey(SummaryBatch, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=10, choices=STATUSES, default=QUEUED, db_index=True)
    error = StoreTextField(blank=True)
    method = models.CharField(max_length=200, blank=True)
    message_count = models.PositiveIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    duration_ms = models.PositiveIntegerField(null=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Two clicks (or two operators) never run two jobs for one session at once.
            models.UniqueConstraint(
                fields=["connection_slug", "session_key"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_summary_job_per_session",
            )
        ]

    @property
    def is_active(self):
        return self.status in self.ACTIVE
