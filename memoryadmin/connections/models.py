from django.db import models

from memoryadmin.services.secrets import masked, secret_property
from memoryadmin.services.upstash import MAX_REQUEST_BYTES, StoreConnection

LIST_ORDERS = [
    ("auto", "Detect per session"),
    ("newest-first", "Newest first (LPUSH: Flowise, LangChain)"),
    ("oldest-first", "Oldest first (RPUSH: LlamaIndex)"),
]


class Connection(models.Model):
    """An Upstash database the operators work on; its tokens are encrypted at rest.

    `token` is the database's full token; `read_only_token`, optional, its
    read-only one: when set, every read uses it and only writes use the full one.
    """

    SECRET_FIELDS = ("token_encrypted", "read_only_token_encrypted")

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField("REST URL", max_length=500)
    token_encrypted = models.TextField(editable=False)
    read_only_token_encrypted = models.TextField(blank=True, default="", editable=False)
    key_pattern = models.CharField(max_length=500, default="*", help_text="SCAN MATCH pattern of session keys.")
    display_prefix = models.CharField(
        max_length=200, blank=True, help_text="Stripped from keys for display, e.g. message_store:"
    )
    list_order = models.CharField(max_length=20, choices=LIST_ORDERS, default="auto")
    summary_namespace = models.CharField(max_length=200, default="memoryadmin:summary:")
    default_ttl = models.PositiveIntegerField("default TTL (seconds)", default=7 * 86400)
    page_size = models.PositiveIntegerField(default=50)
    scan_budget = models.PositiveIntegerField(default=10_000, help_text="Keys SCAN may examine for one page.")
    max_request_bytes = models.PositiveIntegerField(
        "request limit (bytes)",
        default=MAX_REQUEST_BYTES,
        help_text="The store's request and reply size limit: 10 MB on Upstash Free and Pay-as-you-go, more on Pro.",
    )
    timeout = models.FloatField("timeout (seconds)", default=5.0)
    is_default = models.BooleanField(default=False, help_text="Selected for operators who have not chosen one.")
    is_production = models.BooleanField(default=False, help_text="Marked in red on every page.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    token = secret_property("token_encrypted")
    read_only_token = secret_property("read_only_token_encrypted")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def slug(self):
        return str(self.pk)

    @property
    def masked_token(self):
        return masked(self.token)

    @property
    def masked_read_only_token(self):
        return masked(self.read_only_token) if self.read_only_token_encrypted else ""

    def to_store_connection(self):
        return StoreConnection(
            slug=str(self.pk),
            name=self.name,
            url=self.url,
            token=self.token,
            read_only_token=self.read_only_token,
            key_pattern=self.key_pattern,
            display_prefix=self.display_prefix,
            list_order=self.list_order,
            summary_namespace=self.summary_namespace,
            timeout=self.timeout,
            page_size=self.page_size,
            scan_budget=self.scan_budget,
            max_request_bytes=self.max_request_bytes,
            default_ttl=self.default_ttl,
            is_production=self.is_production,
        )
