import uuid

from django.conf import settings
from django.db import models

from memoryadmin.fields import StoreJSONField, StoreTextField


class Claimed(models.Model):
    """Who runs a job now (see services/jobs.py): a killed worker's job is found, resumed, and given up in the end."""

    worker = models.CharField(max_length=200, blank=True, help_text="host:pid:claim of the process running it")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker took it up.")

    class Meta:
        abstract = True


class WorkerJob(Claimed):
    """What every long job keeps so a killed worker's job can be found and resumed."""

    cancel_requested = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Billed(models.Model):
    """What a job's work cost in store commands (Upstash bills each), added up as it goes (services/jobs.py)."""

    store_commands = models.PositiveBigIntegerField(default=0)
    store_round_trips = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True


class StoreJob(models.Model):
    """Which store, exactly, a job works on: it goes on only while its connection still points there."""

    store_url = models.TextField(blank=True, help_text="The connection's REST URL when the job began.")
    token_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="HMAC of the connection's token then (never the token)."
    )

    class Meta:
        abstract = True


class SearchJob(WorkerJob, StoreJob, Billed):
    """A content search over the sessions of a connection (for erasure requests).

    The query is personal data (an e-mail address, a name): it is kept as a keyed hash and a masked
    form for the record, and encrypted only while it is needed (services/content_search.py).
    """

    SECRET_FIELDS = ("query_encrypted",)

    QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
    STATUSES = [(QUEUED, "queued"), (RUNNING, "running"), (DONE, "done"), (CANCELLED, "cancelled"), (FAILED, "failed")]
    ACTIVE = (QUEUED, RUNNING)

    connection_slug = models.CharField(max_length=20)
    connection_name = models.CharField(max_length=100)
    query_hash = models.CharField(
        max_length=64, help_text="Keyed hash of the query as the search matches it (casefolded unless a regex)."
    )
    query_masked = models.CharField(max_length=200, help_text="What pages show of the query: j***@example.com.")
    query_encrypted = models.TextField(
        blank=True, editable=False, help_text="The query, encrypted; emptied when the search's data is erased."
    )
    is_regex = models.BooleanField(default=False)
    key_pattern = models.CharField(max_length=500, default="*")
    role = models.CharField(max_length=20, blank=True, help_text="Only messages of this role.")
    status = models.CharField(max_length=10, choices=STATUSES, default=QUEUED)
    cursor = models.CharField(max_length=40, default="0", help_text="SCAN cursor to resume from.")
    examined_keys = models.PositiveIntegerField(default=0)
    sessions_read = models.PositiveIntegerField(default=0)
    messages_read = models.PositiveBigIntegerField(default=0)
    matched_sessions = models.PositiveIntegerField(default=0)
    error = StoreTextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    # Its estimated cost, before it started: from the keys in the store then (DBSIZE), when they could be counted.
    keys_in_store = models.PositiveBigIntegerField(null=True, blank=True)
    estimated_commands = models.PositiveBigIntegerField(null=True, blank=True)
    estimated_round_trips = models.PositiveBigIntegerField(null=True, blank=True)
    # When and why its personal data (the query, the hits' snippets) was erased.
    erased_at = models.DateTimeField(null=True, blank=True)
    erase_reason = models.CharField(max_length=100, blank=True)
    # Which signing key made query_hash (services/signing.py): to check a guess against it after a rotation.
    query_hash_key_id = models.CharField(max_length=20, blank=True)
    # A verification of an erasure reads after the erasure's last write (the sync token it left).
    read_after = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def is_active(self):
        return self.status in self.ACTIVE


class SearchHit(models.Model):
    job = models.ForeignKey(SearchJob, on_delete=models.CASCADE, related_name="hits")
    session_key = StoreTextField()
    matches = models.PositiveIntegerField()
    first_match = models.PositiveIntegerField(help_text="Chronological index of the first matching message.")
    order = models.CharField(max_length=20)
    snippet = StoreTextField()
    match_start = models.PositiveIntegerField(help_text="Where the match is in the snippet.")
    match_end = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]


class BulkJob(WorkerJob, StoreJob):
    """One bulk action on a frozen set of sessions: dry run, typed confirmation, batches."""

    CLEAR, EXPIRE, PERSIST, SUMMARIZE, REDACT = "clear", "expire", "persist", "summarize", "redact"
    ACTIONS = [
        (CLEAR, "Clear"),
        (EXPIRE, "Set TTL"),
        (PERSIST, "Remove TTL"),
        (SUMMARIZE, "Re-summarize"),
        (REDACT, "Redact"),
    ]
    # Erasure jobs: a clear or a redaction of a search's results; verified by searching again, certified.
    ERASURES = (CLEAR, REDACT)
    WHOLE_MESSAGES, MATCHING_TEXT = "messages", "text"
    REDACTIONS = [(WHOLE_MESSAGES, "the whole matching messages"), (MATCHING_TEXT, "only the matching text")]
    KEYS, PATTERN, SEARCH = "keys", "pattern", "search"
    SELECTIONS = [
        (KEYS, "selected sessions"),
        (PATTERN, "every session matching a pattern"),
        (SEARCH, "content search results"),
    ]

    # A retention policy's TTL rules act only on the sessions whose TTL meets the condition (then, atomically).
    ALWAYS, NO_TTL, TTL_OVER = "", "no_ttl", "ttl_over"
    CONDITIONS = [(ALWAYS, "every session"), (NO_TTL, "sessions without a TTL"), (TTL_OVER, "TTLs longer than it")]

    COUNTING, AWAITING, QUEUED, RUNNING, PAUSED, FAILED, CANCELLED, DONE, DISCARDED, PREVIEWED = (
        "counting",
        "awaiting",
        "queued",
        "running",
        "paused",
        "failed",
        "cancelled",
        "done",
        "discarded",
        "previewed",
    )
    STATUSES = [
        (COUNTING, "dry run"),
        (AWAITING, "awaiting confirmation"),
        (QUEUED, "queued"),
        (RUNNING, "running"),
        (PAUSED, "paused after an error"),
        (FAILED, "failed"),
        (CANCELLED, "cancelled"),
        (DONE, "done"),
        (DISCARDED, "not confirmed"),
        (PREVIEWED, "preview (never runs)"),
    ]
    ACTIVE = (COUNTING, QUEUED, RUNNING)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="Names its keys in the store.")
    connection_slug = models.CharField(max_length=20)
    connection_name = models.CharField(max_length=100)
    connection_is_production = models.BooleanField(default=False)
    action = models.CharField(max_length=10, choices=ACTIONS)
    ttl_seconds = models.PositiveIntegerField(null=True, blank=True)
    condition = models.CharField(max_length=10, choices=CONDITIONS, blank=True, default=ALWAYS)
    # A retention policy's job: its preview (a dry run only), or one of its runs (confirmed by the policy).
    policy = models.ForeignKey(
        "retention.RetentionPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    is_preview = models.BooleanField(default=False)
    redaction = models.CharField(max_length=10, choices=REDACTIONS, blank=True, help_text="What a redaction replaces.")
    reference = models.CharField(
        max_length=200, blank=True, help_text="The request it answers, as the operator typed it (a ticket id)."
    )
    selection = models.CharField(max_length=10, choices=SELECTIONS)
    pattern = StoreTextField(blank=True)
    search = models.ForeignKey(SearchJob, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=10, choices=STATUSES, default=COUNTING, db_index=True)
    # Dry run: what the frozen selection covers.
    examined_keys = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0, help_text="Sessions in the frozen selection.")
    total_messages = models.PositiveBigIntegerField(default=0)
    # Run: progress through the frozen keys, in position order.
    next_position = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Gone, no longer a list, or on legal hold.")
    held = models.PositiveIntegerField(default=0, help_text="Sessions on legal hold, left alone (counted in skipped).")
    failed = models.PositiveIntegerField(default=0)
    messages_removed = models.PositiveBigIntegerField(default=0)
    messages_redacted = models.PositiveBigIntegerField(default=0)
    # An erasure from a search is verified: the same search, run again over the same scope once the job is done.
    verification = models.ForeignKey(
        SearchJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="verified_jobs"
    )
    remaining = models.PositiveIntegerField(null=True, blank=True, help_text="Sessions still matching at verification.")
    # Their keys, kept here: the verification's own results expire with every search's.
    remaining_keys = StoreJSONField(default=list, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Store commands (Upstash bills each) and round trips: the dry run's, the most the run can cost
    # (worked out at the end of the dry run, see services/bulk.py run_cost), and the run's.
    dry_run_commands = models.PositiveBigIntegerField(default=0)
    dry_run_round_trips = models.PositiveBigIntegerField(default=0)
    estimated_commands = models.PositiveBigIntegerField(null=True, blank=True)
    estimated_round_trips = models.PositiveBigIntegerField(null=True, blank=True)
    run_commands = models.PositiveBigIntegerField(default=0)
    run_round_trips = models.PositiveBigIntegerField(default=0)
    error = StoreTextField(blank=True)
    summary_batch = models.ForeignKey("summaries.SummaryBatch", null=True, blank=True, on_delete=models.SET_NULL)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def is_active(self):
        return self.status in self.ACTIVE

    @property
    def audit_job(self):
        return f"bulk:{self.pk}"

    @property
    def verification_pending(self):
        """An erasure done, whose verification has not ended yet (the page polls until it has)."""
        return (
            self.is_erasure
            and self.status == self.DONE
            and self.verified_at is None
            and (self.verification is None or self.verification.is_active)
        )

    @property
    def is_erasure(self):
        """A clear or a redaction of a content search's results: verified, and certified."""
        return self.search_id is not None and self.action in self.ERASURES


class BulkJobKey(models.Model):
    """One session of a job's frozen selection, and what the job did to it."""

    PENDING, DONE, GONE, NOT_A_LIST, HELD, NO_MATCH = "", "done", "gone", "not a list", "on hold", "no match"
    UNCHANGED = "unchanged"  # a conditional TTL whose condition no longer held at the run (left alone)
    SKIPPED = (GONE, NOT_A_LIST, HELD, NO_MATCH, UNCHANGED)
    CHANGED = "changed"  # a redaction found the matching messages changing under it each time it tried (failed)

    # No index of its own: one_key_per_position's (job, position) serves every lookup by job, and a
    # dry run writes one index less per frozen key.
    job = models.ForeignKey(BulkJob, on_delete=models.CASCADE, related_name="keys", db_index=False)
    position = models.PositiveIntegerField()
    key = StoreTextField()
    messages = models.PositiveIntegerField(
        null=True, help_text="LLEN at the dry run; for a redaction, the matching messages the search found."
    )
    outcome = models.CharField(max_length=10, blank=True, default=PENDING)
    redacted = models.PositiveIntegerField(null=True, blank=True, help_text="Messages a redaction replaced.")
    # [[sha1 before, sha1 after], ...] of each message a redaction replaced: proof without the text.
    element_hashes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["job", "position"], name="one_key_per_position")]
        indexes = [models.Index(fields=["key"])]
