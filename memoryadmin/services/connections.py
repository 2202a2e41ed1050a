"""Which store the app talks to."""

from django.conf import settings

from .upstash import StoreConnection


class NoConnectionConfigured(Exception):
    pass


def environment_connection():
    """The connection defined by UPSTASH_REDIS_REST_URL / _TOKEN and MEMORYADMIN_* settings."""
    if not settings.UPSTASH_REDIS_REST_URL or not settings.UPSTASH_REDIS_REST_TOKEN:
        raise NoConnectionConfigured(
            "No store is configured: set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN "
            "(or run `make run`, which starts the local store)."
        )
    return StoreConnection(
        name="default (environment)",
        url=settings.UPSTASH_REDIS_REST_URL,
        token=settings.UPSTASH_REDIS_REST_TOKEN,
        key_pattern=settings.MEMORYADMIN_KEY_PATTERN,
        display_prefix=settings.MEMORYADMIN_KEY_PREFIX,
        list_order=settings.MEMORYADMIN_LIST_ORDER,
        summary_namespace=settings.MEMORYADMIN_SUMMARY_NAMESPACE,
        timeout=settings.MEMORYADMIN_STORE_TIMEOUT,
        retries=settings.MEMORYADMIN_STORE_RETRIES,
        page_size=settings.MEMORYADMIN_PAGE_SIZE,
        scan_budget=settings.MEMORYADMIN_SCAN_BUDGET,
        default_ttl=settings.MEMORYADMIN_DEFAULT_TTL,
    )
