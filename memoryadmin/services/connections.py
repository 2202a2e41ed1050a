"""Which store the app talks to: the environment's connection and the saved ones.

The operator's choice is remembered in their session; without one, the saved
connection marked default is used, else the environment's, else the first.
Only a POST to the switcher changes it. A link may name another connection
(`?connection=`): that page is read from it, and nothing is remembered. A
write names the connection its page showed, and is refused unless that is
still the operator's: a write never lands on a store they did not see.
"""

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

from memoryadmin.connections.models import Connection

from .sessions import SCAN_COUNT
from .upstash import StoreClient, StoreConnection, StoreError, StorePermissionError

ENVIRONMENT_SLUG = "env"
ENVIRONMENT_NAME = "default (environment)"
SESSION_KEY = "memoryadmin_connection"
# The query parameter of a link, and the form field of a write, that name a connection.
CONNECTION_FIELD = "connection"


class NoConnectionConfigured(Exception):
    pass


class ConnectionChanged(Exception):
    """A write from a page of another connection than the operator's current one: refused, nothing changed."""


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
        read_only_token=settings.UPSTASH_REDIS_REST_READ_ONLY_TOKEN,
        key_pattern=settings.MEMORYADMIN_KEY_PATTERN,
        display_prefix=settings.MEMORYADMIN_KEY_PREFIX,
        list_order=settings.MEMORYADMIN_LIST_ORDER,
        summary_namespace=settings.MEMORYADMIN_SUMMARY_NAMESPACE,
        timeout=settings.MEMORYADMIN_STORE_TIMEOUT,
        retries=settings.MEMORYADMIN_STORE_RETRIES,
        page_size=settings.MEMORYADMIN_PAGE_SIZE,
        scan_budget=settings.MEMORYADMIN_SCAN_BUDGET,
        max_request_bytes=settings.MEMORYADMIN_MAX_REQUEST_BYTES,
        default_ttl=settings.MEMORYADMIN_DEFAULT_TTL,
    )


def _saved_connections(request=None):
    """(pk, name, is_production, is_default) of each saved connection, by name: one query serves the default
    connection and the switcher, read once per request (kept on it) when there is one."""
    saved = getattr(request, "_memoryadmin_saved_connections", None)
    if saved is None:
        saved = list(Connection.objects.values_list("pk", "name", "is_production", "is_default"))
        if request is not None:
            request._memoryadmin_saved_connections = saved
    return saved


def connection_choices(request=None):
    choices = [ConnectionChoice(ENVIRONMENT_SLUG, ENVIRONMENT_NAME, False)] if environment_is_configured() else []
    for pk, name, is_production, _ in _saved_connections(request):
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


def _default_slug(request=None):
    saved = _saved_connections(request)
    default = next((pk for pk, _, _, is_default in saved if is_default), None)
    if default is not None:
        return str(default)
    if environment_is_configured():
        return ENVIRONMENT_SLUG
    return str(saved[0][0]) if saved else None


def default_connection():
    """The connection operators start on (the default one, else the environment's, else the first), or None."""
    slug = _default_slug()
    return find_connection(slug) if slug else None


def current_connection(request):
    """The connection this operator works on (their choice, else the default).

    Kept on the request: the view and the page header both ask for it.
    """
    if getattr(request, "_memoryadmin_connection", None):
        return request._memoryadmin_connection
    for choose in (lambda: request.session.get(SESSION_KEY), lambda: _default_slug(request)):
        slug = choose()
        connection = find_connection(slug) if slug else None
        if connection:
            request._memoryadmin_connection = connection
            return connection
    raise NoConnectionConfigured(
        "No store is configured: an admin can add a connection, or set UPSTASH_REDIS_REST_URL and "
        "UPSTASH_REDIS_REST_TOKEN (`make run` starts a local store)."
    )


def viewed_connection(request):
    """The connection a GET reads: the one its link names, else the operator's own.

    Following a link remembers nothing (see choose_connection). None when the
    link names a connection that does not exist (any more).
    """
    current = current_connection(request)
    linked = request.GET.get(CONNECTION_FIELD) if request.method == "GET" else None
    if not linked or linked == current.slug:
        return current
    return find_connection(linked)


def connection_for_write(request):
    """The operator's connection, if it is the one the page of this write showed (its form's field).

    Raises ConnectionChanged otherwise: the operator switched since (in another
    tab, say), or the form came from elsewhere.
    """
    current = current_connection(request)
    shown = request.POST.get(CONNECTION_FIELD, "")
    if shown == current.slug:
        return current
    if not shown:
        raise ConnectionChanged(
            "This form does not say which connection it was for (a page from an older version?). "
            "Reload the page and try again."
        )
    shown_connection = find_connection(shown)
    if shown_connection is None:
        raise ConnectionChanged("This page was for a connection that no longer exists.")
    raise ConnectionChanged(
        f"This page showed the connection “{shown_connection.name}”, but you are now working on "
        f"“{current.name}” (switched in another tab?). Open the session again on the connection you mean."
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


# The write a check tries: DEL of a key made up for it (see check_connection).
WRITE_PROBE_PREFIX = "memoryadmin:token-check:"


class CheckFailed(Exception):
    """A token did not do what it is for; the message says what to fix."""


def check_connection(connection):
    """Is this connection usable, with each of its tokens? Through the real client.

    The full token must answer PING and one SCAN step, and be allowed a write;
    the read-only token, if any, must answer the SCAN step and be refused the
    write. The write is DEL of a key made up for the check: a store checks a
    token's permission before it runs a command, and where it is allowed it
    deletes nothing, so the check is harmless on a production database.
    Clients of their own, closed afterwards: the settings under test may not be saved.
    The message never contains a token, even if the server echoes it back.
    """
    try:
        found = _check_token(connection, connection.token, read_only=False)
        tokens = "No read-only token: reads use the full token too."
        if found and connection.read_only_token:
            found = _check_token(connection, connection.read_only_token, read_only=True)
            tokens = "The read-only token reads and was refused a write: reads use it, writes the full token."
    except (StoreError, CheckFailed) as error:
        message = str(error)
        for token in (connection.token, connection.read_only_token):
            message = message.replace(token, "••••") if token else message
        return ConnectionCheck(False, message)
    if found is None:
        return ConnectionCheck(
            False,
            f"Unexpected reply from {connection.host}: it does not answer like an Upstash REST API. "
            "Check the REST URL (the database's UPSTASH_REDIS_REST_URL).",
        )
    (cursor, keys), note = found
    more = "" if cursor == b"0" else " (first SCAN step; there are more keys)"
    return ConnectionCheck(
        True,
        f"Connected to {connection.host}: {len(keys)} session{'s' if len(keys) != 1 else ''} matching "
        f"{connection.key_pattern!r} found{more}. {tokens}{note}",
    )


def _check_token(connection, token, read_only):
    """(the first SCAN step's reply, a note) with this token; None if the store does not answer like Upstash.

    Raises CheckFailed when the token may write and should not, or the other way round.
    """
    token_name = "read-only token" if read_only else "REST token"
    client = StoreClient(connection.url, token, connection.timeout, connection.retries, token_name=token_name)
    try:
        return _try_token(client, connection, read_only)
    except StoreError as error:
        if not read_only:
            raise
        raise CheckFailed(f"With the read-only token: {error}") from None
    finally:
        client.close()


def _try_token(client, connection, read_only):
    # An ACL of +@read alone refuses PING: the read-only token is only asked to SCAN.
    if not read_only and client.call("PING") != b"PONG":
        return None
    scan = client.call("SCAN", "0", "MATCH", connection.key_pattern, "COUNT", SCAN_COUNT, "TYPE", "list")
    if not _is_scan_reply(scan):
        return None
    try:
        deleted = client.call("DEL", f"{WRITE_PROBE_PREFIX}{uuid.uuid4().hex}")
    except StorePermissionError as refused:
        if read_only:
            return scan, _script_note(client)
        raise CheckFailed(f"The REST token may not write. {refused}") from None
    if not isinstance(deleted, int):
        return None
    if read_only:
        raise CheckFailed(
            "The read-only token may write: the store let it delete a key (one made up for this check, so "
            "nothing changed). Enter the database's read-only token (Upstash console, “Read-Only Token”)."
        )
    return scan, ""


def _script_note(client):
    """What to know about the read-only token and scripts: an ACL of +@read alone refuses even EVAL_RO."""
    try:
        client.call("EVAL_RO", "return 1", 0)
    except StorePermissionError:
        return " It may not run scripts: exports and dry runs run theirs read-only (EVAL_RO) with the full token."
    return ""


def _is_scan_reply(reply):
    """[cursor, [key, ...]] as SCAN answers."""
    return (
        isinstance(reply, list)
        and len(reply) == 2
        and isinstance(reply[0], bytes)
        and isinstance(reply[1], list)
        and all(isinstance(key, bytes) for key in reply[1])
    )


def url_host(url):
    """Where a URL points (host and port, without any user:password@): what the audit log names."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        return ""
    return netloc.rpartition("@")[2][:200]
