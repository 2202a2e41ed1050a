"""Which store the app talks to: the environment's connection and the saved ones.

The operator's choice is remembered in their session; without one, the saved
connection marked default is used, else the environment's, else the first.
"""

from dataclasses import dataclass

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

from memoryadmin.connections.models import Connection

from .sessions import SCAN_COUNT
from .upstash import StoreClient, StoreConnection, StoreError

ENVIRONMENT_SLUG = "env"
ENVIRONMENT_NAME = "default (environment)"
SESSION_KEY = "memoryadmin_connection"


class NoConnectionConfigured(Exception):
    pass


@dataclass(frozen=True)
class ConnectionChoice:
    """A connection as the switcher lists it (no secret decrypted)."""

    slug: str
    name: str
    is_production: bool


def environment_is_configured():
    return bool(settings.UPSTASH_REDIS_REST_URL and settings.UPSTASH_REDIS_REST_TOKEN)


def environment_connection():
    """The connection defined by UPSTASH_REDIS_REST_URL / _TOKEN and MEMORYADMIN_* settings."""
    if not environment_is_configured():
        raise NoConnectionConfigured(
            "No store is configured: set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN, "
            "or add a connection (run `make run` for the local store)."
        )
    return StoreConnection(
        slug=ENVIRONMENT_SLUG,
        name=ENVIRONMENT_NAME,
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


def connection_choices():
    choices = [ConnectionChoice(ENVIRONMENT_SLUG, ENVIRONMENT_NAME, False)] if environment_is_configured() else []
    for pk, name, is_production in Connection.objects.values_list("pk", "name", "is_production"):
        choices.append(ConnectionChoice(str(pk), name, is_production))
    return choices


def find_connection(slug):
    """The StoreConnection for a slug, or None when there is no such connection."""
    if slug == ENVIRONMENT_SLUG:
        return environment_connection() if environment_is_configured() else None
    if not str(slug).isdigit():
        return None
    saved = Connection.objects.filter(pk=int(slug)).first()
    return saved.to_store_connection() if saved else None


def _default_slug():
    default = Connection.objects.filter(is_default=True).values_list("pk", flat=True).first()
    if default is not None:
        return str(default)
    if environment_is_configured():
        return ENVIRONMENT_SLUG
    first = Connection.objects.values_list("pk", flat=True).first()
    return str(first) if first is not None else None


def current_connection(request):
    """The connection this operator works on (their choice, else the default).

    Kept on the request: the view and the page header both ask for it.
    """
    if getattr(request, "_memoryadmin_connection", None):
        return request._memoryadmin_connection
    for slug in (request.session.get(SESSION_KEY), _default_slug()):
        connection = find_connection(slug) if slug else None
        if connection:
            request._memoryadmin_connection = connection
            return connection
    raise NoConnectionConfigured(
        "No store is configured: an admin can add a connection, or set UPSTASH_REDIS_REST_URL and "
        "UPSTASH_REDIS_REST_TOKEN (`make run` starts a local store)."
    )


def choose_connection(request, slug):
    """Remember the operator's choice; False when there is no such connection."""
    if find_connection(slug) is None:
        return False
    request.session[SESSION_KEY] = slug
    request._memoryadmin_connection = None
    return True


# --- binding a job to a store --------------------------------------------------
# A job records which store it works on, and goes on only while its connection
# still points there: an Admin may give a connection another URL or token at any time.


class StoreChanged(Exception):
    """The connection no longer points at the store a job is bound to; the message says what changed."""


def token_fingerprint(token, secret=None):
    """Tells tokens apart without keeping one: an HMAC-SHA256 of the token keyed with SECRET_KEY, truncated."""
    return salted_hmac("memoryadmin.store-token", token, secret=secret, algorithm="sha256").hexdigest()[:24]


def store_binding(connection):
    """What a job records of the store it works on: the REST URL and the token's fingerprint."""
    return {"store_url": connection.url.rstrip("/"), "token_fingerprint": token_fingerprint(connection.token)}


def binding_change(connection, job, since):
    """What changed in a job's connection since the job recorded its store, as a sentence; "" if nothing."""
    if connection is None:
        return "The connection of this job was deleted."
    if not job.store_url:
        return "It was started before jobs recorded their store: start it again."
    url = connection.url.rstrip("/")
    # A fingerprint made before a SECRET_KEY rotation is still recognised.
    same_token = any(
        constant_time_compare(token_fingerprint(connection.token, secret), job.token_fingerprint)
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    )
    if url != job.store_url:
        token = "" if same_token else " and its token changed"
        return f"The connection's URL changed from {job.store_url} to {url}{token} {since}."
    if not same_token:
        return f"The connection's token changed {since}."
    return ""


@dataclass
class ConnectionCheck:
    ok: bool
    message: str


def check_connection(connection):
    """PING and one SCAN step through the real client: is this connection usable?

    A client of its own, closed afterwards: the settings under test may not be saved.
    """
    client = StoreClient(connection.url, connection.token, connection.timeout, connection.retries)
    try:
        client.call("PING")
        cursor, keys = client.call("SCAN", "0", "MATCH", connection.key_pattern, "COUNT", SCAN_COUNT, "TYPE", "list")
    except StoreError as error:
        return ConnectionCheck(False, str(error))
    finally:
        client.close()
    more = "" if cursor == b"0" else " (first SCAN step; there are more keys)"
    return ConnectionCheck(
        True,
        f"Connected to {connection.host}: {len(keys)} session{'s' if len(keys) != 1 else ''} matching "
        f"{connection.key_pattern!r} found{more}.",
    )
