from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from memoryadmin.services import sessions
from memoryadmin.services.connections import current_connection
from memoryadmin.services.sessions import SessionNotFound

from .forms import SessionSearchForm, TranscriptWindowForm, ttl_form_for
from .templatetags.memoryadmin_tags import duration


def render_not_found(request, message):
    """404 for a session that is gone or is no session; htmx shows it in the alert area."""
    template = "dashboard/problem.html#alert" if request.htmx else "dashboard/problem.html"
    context = {"title": "Session not found", "message": message}
    return render(request, template, context, status=404)


def not_found(request, exception):
    return render_not_found(request, "There is no such page. Session links are opaque: copy them from the list.")


@require_GET
def session_list(request):
    form = SessionSearchForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("That search link is damaged (cursor or offset out of range). Start a new search.")
    connection = current_connection(request)
    pattern = form.cleaned_data["q"] or connection.key_pattern
    page = sessions.scan_sessions(
        connection, pattern, cursor=form.cleaned_data["cursor"] or "0", skip=form.cleaned_data["skip"] or 0
    )
    context = {"connection": connection, "page": page, "q": form.cleaned_data["q"]}
    # "Scan more" asks for the next rows only; they are appended to the table.
    more = request.htmx and form.cleaned_data["cursor"]
    template = "dashboard/session_list.html#more-rows" if more else "dashboard/session_list.html"
    return render(request, template, context)


@require_GET
def session_detail(request, key):
    form = TranscriptWindowForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("That transcript link is damaged. Open the session from the list.")
    connection = current_connection(request)
    before, order = form.cleaned_data["before"], form.cleaned_data["order"] or None
    try:
        transcript = sessions.get_transcript(
            connection, key, before=before, order=order, window=settings.MEMORYADMIN_TRANSCRIPT_WINDOW
        )
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    context = {"connection": connection, "transcript": transcript, "ttl": transcript.ttl, "ttl_form": ttl_form_for(connection), "key": key}
    # "Earlier messages" asks for the window before the first one shown.
    template = "dashboard/session_detail.html#earlier" if request.htmx and before is not None else "dashboard/session_detail.html"
    return render(request, template, context)


def _ttl_changed(request, key, change, connection):
    """After a TTL write: the TTL fragment for htmx, else back to the session."""
    if request.htmx:
        context = {"ttl": change.after, "key": key, "ttl_form": ttl_form_for(connection), "connection": connection, "saved": True}
        return render(request, "dashboard/session_detail.html#ttl", context)
    return redirect("session_detail", key)


@require_POST
def session_set_ttl(request, key):
    connection = current_connection(request)
    form = ttl_form_for(connection, request.POST)
    if not form.is_valid():
        context = {"ttl": None, "key": key, "ttl_form": form, "connection": connection}
        if request.htmx:
            return render(request, "dashboard/session_detail.html#ttl", context, status=422)
        messages.error(request, " ".join(form.non_field_errors()) or "Choose a TTL from the list.")
        return redirect("session_detail", key)
    try:
        change = sessions.set_ttl(connection, key, form.cleaned_data["seconds"])
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    if not request.htmx:
        messages.success(request, f"The session now expires in {duration(form.cleaned_data['seconds'])}.")
    return _ttl_changed(request, key, change, connection)


@require_POST
def session_persist(request, key):
    connection = current_connection(request)
    try:
        change = sessions.persist_session(connection, key)
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    if not request.htmx:
        messages.success(request, "The session no longer expires.")
    return _ttl_changed(request, key, change, connection)


@require_http_methods(["GET", "POST"])
def session_clear(request, key):
    """GET: the confirmation page (for browsers without JS); POST: clear."""
    connection = current_connection(request)
    if request.method == "GET":
        return render(request, "dashboard/session_clear.html", {"connection": connection, "key": key})
    try:
        removed = sessions.clear_session(connection, key)
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    name = sessions.display_name(connection, key)
    messages.success(request, f"Cleared session “{name}”: {removed} messages and its summary were deleted.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("session_list"))
    return redirect("session_list")


@require_GET
def message_raw(request, key, index):
    """The whole stored element, as text, for messages too long to show inline."""
    form = TranscriptWindowForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("That link is damaged. Open the message from its session.")
    connection = current_connection(request)
    order = form.cleaned_data["order"] or sessions.NEWEST_FIRST
    try:
        element = sessions.read_message(connection, key, index, order)
    except SessionNotFound as error:
        return render_not_found(request, str(error))
    return HttpResponse(element.decode("utf-8", errors="replace"), content_type="text/plain; charset=utf-8")
