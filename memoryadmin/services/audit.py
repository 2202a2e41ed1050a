"""Recording what operators do.

Ordering of writes to the store: the event is saved as PENDING *before* the
store is touched, then settled as ok or failed. So a write that reached the
store is never unaudited: if the app dies in between, a pending event (with
who, what and which key) remains; and if the audit database is down, the
store is not written at all.
"""

import gc
import json
import threading
from contextlib import contextmanager

from django.db.models import Q

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJobKey
from memoryadmin.security import client_ip


def record(
    request,
    action,
    *,
    connection=None,
    session_key="",
    outcome=AuditEvent.OK,
    details=None,
    error="",
    job="",
    user=None,
):
    """Save one event, with who and where from the request.

    Background work has no request: it passes None and the user it acts for.
    """
    user = user or getattr(request, "user", None)
    authenticated = bool(user and user.is_authenticated)
    return AuditEvent.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        action=action,
        connection_name=connection.name if connection else "",
        connection_slug=connection.slug if connection else "",
        session_key=session_key,
        details=details or {},
        outcome=outcome,
        error=error,
        job=job,
        ip=(client_ip(request) or None) if request else None,
        user_agent=(request.headers.get("User-Agent", "")[:300] if request else ""),
        request_id=getattr(request, "request_id", ""),
    )


def settle(event, outcome, details=None, error=""):
    """The outcome of a pending event: the only change an event ever gets."""
    fields = {"outcome": outcome, "error": error[:2000]}
    if details:
        fields["details"] = {**event.details, **details}
    AuditEvent.objects.filter(pk=event.pk, outcome=AuditEvent.PENDING).update(**fields)


@contextmanager
def audited(request, action, *, connection, session_key="", details=None):
    """Record the intent, run the action, settle the outcome; yields a dict for result details.

    Used for writes (see the ordering above); reads that render a page use `audited_read`.

    Any exception settles the event as failed (with its message) and is re-raised. Streamed
    downloads use AuditedDownload instead.
    """
    event = record(
        request, action, connection=connection, session_key=session_key, outcome=AuditEvent.PENDING, details=details
    )
    result = {}
    try:
        yield result
    except Exception as error:
        settle(event, AuditEvent.FAILED, result, error=str(error))
        raise
    settle(event, AuditEvent.OK, result)


@contextmanager
def audited_read(request, action, *, connection, session_key="", details=None):
    """A read recorded when it has ended, ok or failed (with its message, re-raised): one INSERT, where
    `audited` makes two.

    A read changes nothing in the store, so nothing has to be on record before it runs; what must hold
    is that everything shown is on record, and every failed read too. The view renders after this block,
    so an event that cannot be saved (the audit database is down) fails the request: nothing is shown.
    A worker killed in the middle of a read records nothing, and shows nothing either.
    """
    result = {}
    try:
        yield result
    except Exception as error:
        record(
            request,
            action,
            connection=connection,
            session_key=session_key,
            outcome=AuditEvent.FAILED,
            details={**(details or {}), **result},
            error=str(error)[:2000],
        )
        raise
    record(request, action, connection=connection, session_key=session_key, details={**(details or {}), **result})


# Whether this thread is in a garbage collection: finalizers run there, at any allocation, possibly
# in the middle of a query on this thread's database connection, where a query of their own deadlocks.
_collection = threading.local()


def _note_collection(phase, info):  # pragma: no mutate block
    # Not mutated: mutmut's wrapper would run inside collections, re-entering its own bookkeeping (a crash).
    _collection.running = phase == "start"


gc.callbacks.append(_note_collection)


class AuditedDownload:
    """A streamed download audited to its end: the store is read as the body is sent.

    `chunks(result)` is a generator of the body that fills `result` with the event's details. The
    event is recorded pending before the first chunk, settled ok when the chunks end, failed on an
    error, and failed ("interrupted") by `close()`, which the server calls in the request's thread
    when the response ends (StreamingHttpResponse closes what it streams). A download closed by
    the garbage collector (an abandoned response: Django's test client closes its responses when
    they are collected) stays pending: a query there could run in the middle of another one on the
    same connection and deadlock.
    """

    def __init__(self, request, action, chunks, *, connection, session_key="", details=None):
        self.event = record(
            request, action, connection=connection, session_key=session_key, outcome=AuditEvent.PENDING, details=details
        )
        self.result = {}
        self._body = self._settled(chunks(self.result))

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._body)

    def _settled(self, chunks):
        try:
            yield from chunks
        except GeneratorExit:
            raise  # closed: close() settles, in the request's thread
        except Exception as error:
            settle(self.event, AuditEvent.FAILED, self.result, error=str(error))
            raise
        settle(self.event, AuditEvent.OK, self.result)

    def close(self):
        self._body.close()
        if getattr(_collection, "running", False):
            return
        # Only a pending event changes: one that ended ok or failed keeps its outcome.
        settle(
            self.event, AuditEvent.FAILED, self.result, error="Stopped before the end: the download was interrupted."
        )


def recent_for_session(connection, session_key, limit=10):
    return AuditEvent.objects.filter(connection_slug=connection.slug, session_key=session_key)[:limit]


def search_events(*, user="", action="", connection="", session_key="", outcome="", since=None, until=None, **_):
    """Events matching the audit page's filters, newest first (dates are inclusive, UTC)."""
    events = AuditEvent.objects.all()
    if user:
        events = events.filter(username__iexact=user)
    if action:
        events = events.filter(action=action)
    if connection:
        events = events.filter(connection_slug=connection)
    if session_key:
        # A session purged by a bulk job is named in the job's report, not in each event.
        bulk_jobs = BulkJobKey.objects.filter(key=session_key, outcome="done").values_list("job_id", flat=True)
        events = events.filter(Q(session_key=session_key) | Q(job__in=[f"bulk:{pk}" for pk in bulk_jobs]))
    if outcome:
        events = events.filter(outcome=outcome)
    if since:
        events = events.filter(created_at__date__gte=since)
    if until:
        events = events.filter(created_at__date__lte=until)
    return events


CSV_COLUMNS = [
    "created_at",
    "username",
    "action",
    "outcome",
    "connection_name",
    "connection_slug",
    "session_key",
    "details",
    "error",
    "job",
    "ip",
    "user_agent",
    "request_id",
]


def csv_rows(events):
    """The header, then one row per event; read from the database in chunks."""
    yield CSV_COLUMNS
    for event in events.iterator(chunk_size=2000):
        row = {column: getattr(event, column) for column in CSV_COLUMNS}
        row["created_at"] = event.created_at.isoformat()
        row["details"] = json.dumps(event.details, ensure_ascii=False, sort_keys=True)
        yield [("" if row[column] is None else row[column]) for column in CSV_COLUMNS]
