import codecs

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header, urlencode
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from memoryadmin.accounts.decorators import requires
from memoryadmin.services import audit, holds, redaction, sessions
from memoryadmin.services.connections import connection_for_write, current_connection, viewed_connection
from memoryadmin.services.sessions import SessionNotFound
from memoryadmin.summaries.views import summary_panel_context

from . import display, markdown_export
from .downloads import json_strings
from .forms import (
    NO_TTL,
    TTL_PRESETS,
    UNIT_SECONDS,
    MessageRedactionForm,
    RawMessageForm,
    SessionSearchForm,
    TranscriptWindowForm,
    ttl_form_for,
)
from .templatetags.memoryadmin_tags import duration


def render_not_found(request, message):
    """404 for a session that is gone or is no session; htmx shows it in the alert area."""
    # getattr: a 404 can be raised before the htmx middleware has run (e.g. by the static files handler).
    template = "dashboard/problem.html#alert" if getattr(request, "htmx", False) else "dashboard/problem.html"
    context = {"title": "Session not found", "message": message}
    return render(request, template, context, status=404)


@login_not_required
@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico on pages that name no icon (a raw message is plain text)."""
    return redirect(static("img/favicon.svg"))


def permalink(request, connection, key):
    """A link to the session that also names its connection."""
    url = reverse("session_detail", args=[key]) + "?" + urlencode({"connection": connection.slug})
    return request.build_absolute_uri(url)


def server_error(request):
    """The 500 page, with the request id to quote; no context processors (the database may be down)."""
    body = loader.get_template("500.html").render({"request_id": getattr(request, "request_id", "")})
    return HttpResponse(body, status=500)


def not_found(request, exception):
    return render_not_found(request, "There is no such page. Session links are opaque: copy them from the list.")


@require_GET
@requires("accounts.view_session", "session.list")
def session_list(request):
    form = SessionSearchForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(f"That search link is damaged: {form.problem()}. Start a new search.")
    connection = current_connection(request)
    pattern = form.cleaned_data["q"] or connection.key_pattern
    page = sessions.scan_sessions(
        connection,
        pattern,
        cursor=form.cleaned_data["cursor"] or "0",
        after=form.cleaned_data["after"],
        no_ttl=form.cleaned_data["ttl"] == NO_TTL,
    )
    context = {
        "connection": connection,
        "page": page,
        "rows": display.shown_rows(page.rows),
        "q": form.cleaned_data["q"],
        "ttl": form.cleaned_data["ttl"],
        "ttl_presets": TTL_PRESETS,
        "ttl_units": list(UNIT_SECONDS),
    }
    # "Scan more" asks for the next rows only; they are appended to the table.
    more = request.htmx and form.cleaned_data["cursor"]
    template = "dashboard/session_list.html#more-rows" if more else "dashboard/session_list.html"
    return render(request, template, context)


@require_GET
@requires("accounts.view_session", "session.read", connection_of=viewed_connection)
def session_detail(request, key):
    """A window of the transcript, on the operator's connection or, from a permalink, on the one it names.

    A link never switches the operator's connection: its page is read from the
    linked one, says so, and is read-only until they switch (a POST).
    """
    form = TranscriptWindowForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(
            f"That transcript link is damaged: {form.problem()}. Open the session from the list."
        )
    connection = viewed_connection(request)
    if connection is None:
        return render_not_found(request, "This link names a connection that no longer exists.")
    linked = connection.slug != current_connection(request).slug
    before, order = form.cleaned_data["before"], form.cleaned_data["order"] or None
    try:
        with audit.audited_read(
            request, "session.read", connection=connection, session_key=key, details={"before": before}
        ) as result:
            transcript = sessions.get_transcript(
                connection, key, before=before, order=order, window=settings.MEMORYADMIN_TRANSCRIPT_WINDOW
            )
            result["messages_shown"] = len(transcript.messages)
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    # The one query for holds: the banner, and the writes this page offers.
    hold = holds.hold_for(connection.slug, key)
    # Links from this page read the same connection as the page.
    context = {
        "connection": connection,
        "linked": linked,
        "transcript": transcript,
        "shown_messages": display.shown_messages(key, transcript.messages),
        "key": key,
        "can_redact": request.user.has_perm("accounts.redact_session") and not linked and hold is None,
    }
    # "Earlier messages" asks for the window before the first one shown.
    if request.htmx and before is not None:
        return render(request, "dashboard/session_detail.html#earlier", context)
    context |= {
        "hold": hold,
        "can_clear": request.user.has_perm("accounts.clear_session") and not linked and hold is None,
        **_ttl_context(connection, key, transcript.ttl, hold=hold),
        "permalink": permalink(request, connection, key),
        "audit_events": audit.recent_for_session(connection, key),
        **summary_panel_context(connection, key, transcript.summary, transcript.message_count),
    }
    return render(request, "dashboard/session_detail.html", context)


def _ttl_context(connection, key, ttl, *, hold, ttl_form=None):
    """What the TTL section shows; a session on hold offers no Set TTL (removing a TTL stays allowed)."""
    return {
        "connection": connection,
        "ttl": ttl,
        "key": key,
        "ttl_form": ttl_form if ttl_form is not None else ttl_form_for(connection),
        "can_set_ttl": hold is None,
    }


def _ttl_changed(request, key, change, connection):
    """After a TTL write: the TTL fragment for htmx, else back to the session."""
    if request.htmx:
        context = _ttl_context(connection, key, change.after, hold=holds.hold_for(connection.slug, key))
        return render(request, "dashboard/session_detail.html#ttl", context | {"saved": True})
    return redirect("session_detail", key)


@require_POST
@requires("accounts.expire_session", "session.ttl")
def session_set_ttl(request, key):
    connection = connection_for_write(request)
    form = ttl_form_for(connection, request.POST)
    if not form.is_valid():
        if request.htmx:
            context = _ttl_context(connection, key, None, hold=holds.hold_for(connection.slug, key), ttl_form=form)
            return render(request, "dashboard/session_detail.html#ttl", context, status=422)
        messages.error(request, " ".join(form.non_field_errors()) or "Choose a TTL from the list.")
        return redirect("session_detail", key)
    seconds = form.cleaned_data["seconds"]
    try:
        with audit.audited(
            request, "session.ttl", connection=connection, session_key=key, details={"seconds": seconds}
        ) as result:
            holds.refuse_if_held(connection.slug, key)  # a 409 page (StoreErrorMiddleware); the event ends failed
            change = sessions.set_ttl(connection, key, seconds)
            result.update(ttl_before=change.before, ttl_after=change.after)
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    if not request.htmx:
        messages.success(request, f"The session now expires in {duration(seconds)}.")
    return _ttl_changed(request, key, change, connection)


@require_POST
@requires("accounts.expire_session", "session.persist")
def session_persist(request, key):
    connection = connection_for_write(request)
    try:
        with audit.audited(request, "session.persist", connection=connection, session_key=key) as result:
            change = sessions.persist_session(connection, key)
            result.update(ttl_before=change.before, ttl_after=change.after)
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    if not request.htmx:
        messages.success(request, "The session no longer expires.")
    return _ttl_changed(request, key, change, connection)


@require_http_methods(["GET", "POST"])
@requires("accounts.clear_session", "session.clear")
def session_clear(request, key):
    """GET: the confirmation page (for browsers without JS); POST: clear."""
    if request.method == "GET":
        return render(request, "dashboard/session_clear.html", {"connection": current_connection(request), "key": key})
    connection = connection_for_write(request)
    try:
        with audit.audited(request, "session.clear", connection=connection, session_key=key) as result:
            holds.refuse_if_held(connection.slug, key)  # a 409 page (StoreErrorMiddleware); the event ends failed
            removed = sessions.clear_session(connection, key)
            result["messages_removed"] = removed
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    name = sessions.display_name(connection, key)
    messages.success(
        request,
        format_html(
            'Cleared session “<span class="key">{}</span>”: {} messages and its summary were deleted.', name, removed
        ),
    )
    if request.htmx:
        return HttpResponseClientRedirect(reverse("session_list"))
    return redirect("session_list")


@require_GET
@requires("accounts.view_session", "session.read", connection_of=viewed_connection)
def message_raw(request, key, index):
    """The whole stored element, as text, for messages too long to show inline: streamed as it is read, in parts."""
    form = RawMessageForm({**request.GET.dict(), "index": index})
    if not form.is_valid():
        return HttpResponseBadRequest(f"That link is damaged: {form.problem()}. Open the message from its session.")
    connection = viewed_connection(request)
    if connection is None:
        return render_not_found(request, "This link names a connection that no longer exists.")
    order = form.cleaned_data["order"] or sessions.NEWEST_FIRST
    chunks = audit.AuditedDownload(
        request,
        "session.read",
        lambda result: _message_chunks(result, connection, key, index, order),
        connection=connection,
        session_key=key,
        details={"message": index},
    )
    try:
        next(chunks)  # the first part: a message that is not there is a page, not a broken download
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    return StreamingHttpResponse(chunks, content_type="text/plain; charset=utf-8")


def _message_chunks(result, connection, key, index, order):
    """The element as it begins to be read, then its text part by part.

    If it changes between parts, the text ends with a note saying so rather than run on with another message.
    """
    element = sessions.read_message(connection, key, index, order)
    yield element
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        for part in element.parts:
            yield decoder.decode(part)
        yield decoder.decode(b"", final=True)
    except sessions.MessageChanged as error:
        result["incomplete"] = str(error)
        yield f"\n\n[Memory Admin: {error}]\n"


@require_http_methods(["GET", "POST"])
@requires("accounts.redact_session", "session.redact")
def message_redact(request, key, index):
    """GET: the message to redact, to confirm (its role, start, size); POST: redact it whole, if it is still
    the one the page showed (its SHA-1)."""
    form_class = RawMessageForm if request.method == "GET" else MessageRedactionForm
    form = form_class({**(request.GET if request.method == "GET" else request.POST).dict(), "index": index})
    if not form.is_valid():
        return HttpResponseBadRequest(f"That link is damaged: {form.problem()}. Open the message from its session.")
    order = form.cleaned_data["order"] or sessions.NEWEST_FIRST
    number = index + 1
    if request.method == "GET":
        connection = current_connection(request)
        try:
            with audit.audited_read(
                request, "session.read", connection=connection, session_key=key, details={"message": number}
            ):
                identity = redaction.element_identity(connection, key, index, order)
        except SessionNotFound as error:
            return render_not_found(request, str(error))
        context = {"connection": connection, "key": key, "index": index, "order": order, "identity": identity}
        return render(request, "dashboard/message_redact.html", context)
    connection = connection_for_write(request)
    sha1 = form.cleaned_data["sha1"]
    details = {"message": number, "order": order, "sha1_before": sha1}
    try:
        with audit.audited(
            request, "session.redact", connection=connection, session_key=key, details=details
        ) as result:
            holds.refuse_if_held(connection.slug, key)
            done = redaction.redact_message(connection, key, index, order, sha1)
            result.update(outcome=done.outcome, size_before=done.size_before)
            if done.outcome == redaction.CHANGED_MEANWHILE:
                # Raised inside the audit: the event says the redaction failed, and why.
                raise sessions.MessageChanged(
                    f"Nothing was redacted: message #{number} changed after it was shown (the chat app rewrote "
                    "or trimmed the session). Look at it again."
                )
            result.update(sha1_after=done.sha1_after, size_after=done.size_after)
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    except sessions.MessageChanged as error:
        messages.error(request, str(error))
        return redirect(reverse("message_redact", args=[key, index]) + "?" + urlencode({"order": order}))
    messages.success(request, f"Message #{number} was redacted, and the session's summary deleted.")
    return redirect(reverse("session_detail", args=[key]) + f"#m{index}")


# Export formats by file extension: the content type of each download.
EXPORT_TYPES = {"json": "application/json", "md": "text/markdown; charset=utf-8"}


@require_GET
@requires("accounts.view_session", "session.export")
def session_export(request, key, fmt):
    """The whole session as a download, oldest message first, streamed as it is read.

    JSON is exactly what is stored: an array of the elements as strings (not
    parsed, so malformed ones survive as they are). Markdown is for reading,
    and no stored text in it is markup (see markdown_export).
    """
    if fmt not in EXPORT_TYPES:
        raise Http404("No such export format.")
    connection = current_connection(request)
    chunks = audit.AuditedDownload(
        request,
        "session.export",
        lambda result: _export_chunks(result, request, connection, key, fmt),
        connection=connection,
        session_key=key,
        details={"format": fmt},
    )
    try:
        session = next(chunks)  # the first window: a session that is not there is a page, not a broken download
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    filename = f"transcript-{slugify(session.display_name)[:60].strip('-') or 'session'}.{fmt}"
    response = StreamingHttpResponse(chunks, content_type=EXPORT_TYPES[fmt])
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def _export_chunks(result, request, connection, key, fmt):
    """The session as it begins to be read, then the file in pieces, window by window.

    `result` gets the number of messages written (the audit event's details).
    """
    session = sessions.read_whole_session(connection, key)
    yield session
    if fmt == "json":
        written = yield from json_strings(session.windows)
    else:
        written = yield from markdown_export.transcript(
            session,
            connection=connection,
            permalink=permalink(request, connection, key),
            exported_at=timezone.now(),
            username=request.user.get_username(),
        )
    result["messages"] = written
    if written < session.message_count:
        result["incomplete"] = f"{written} of {session.message_count}: the session was cleared or expired meanwhile"
