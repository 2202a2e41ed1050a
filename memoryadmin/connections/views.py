from copy import copy

from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from memoryadmin.accounts.decorators import requires
from memoryadmin.audit.models import AuditEvent
from memoryadmin.services import audit
from memoryadmin.services import connections as connection_service
from memoryadmin.services.connections import ConnectionCheck

from .forms import ConnectionForm
from .models import Connection


@requires("connections.view_connection", "connection.view")
def connection_list(request):
    context = {
        "saved": Connection.objects.all(),
        "environment": connection_service.environment_connection()
        if connection_service.environment_is_configured()
        else None,
    }
    return render(request, "connections/connection_list.html", context)


def _save(request, form, action):
    """Save the connection (one default at a time), audited with the names of the fields changed (never values)."""
    with transaction.atomic():
        if form.cleaned_data["is_default"]:
            Connection.objects.exclude(pk=form.instance.pk).update(is_default=False)
        saved = form.save()
        audit.record(request, action, connection=saved, details={"changed": sorted(form.changed_data)})
    return saved


@requires("connections.add_connection", "connection.create")
@require_http_methods(["GET", "POST"])
def connection_create(request):
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        saved = _save(request, form, "connection.create")
        messages.success(request, f"Connection “{saved.name}” added.")
        return redirect("connection_list")
    return render(request, "connections/connection_form.html", {"form": form})


@requires("connections.change_connection", "connection.edit")
@require_http_methods(["GET", "POST"])
def connection_edit(request, pk):
    saved = get_object_or_404(Connection, pk=pk)
    form = ConnectionForm(request.POST or None, instance=saved)
    if request.method == "POST" and form.is_valid():
        _save(request, form, "connection.edit")
        messages.success(request, f"Connection “{saved.name}” saved.")
        return redirect("connection_list")
    return render(request, "connections/connection_form.html", {"form": form, "saved": saved})


@requires("connections.delete_connection", "connection.delete")
@require_http_methods(["GET", "POST"])
def connection_delete(request, pk):
    saved = get_object_or_404(Connection, pk=pk)
    if request.method == "POST":
        with transaction.atomic():
            audit.record(request, "connection.delete", connection=saved, details={"url": saved.url})
            saved.delete()
        messages.success(request, f"Connection “{saved.name}” deleted. Its data in Upstash is untouched.")
        return redirect("connection_list")
    return render(request, "connections/connection_confirm_delete.html", {"saved": saved})


@requires("connections.change_connection", "connection.test")
@require_POST
def connection_test(request):
    """Check the settings in the form (saved or not) through the real client; the result shows inline.

    Every test is audited: where it went and how it ended, never the token.
    """
    saved, check, status = _check_form(request.POST)
    audit.record(
        request,
        "connection.test",
        connection=saved,
        outcome=AuditEvent.OK if check.ok else AuditEvent.FAILED,
        error="" if check.ok else check.message,
        details={"host": connection_service.url_host(request.POST.get("url", ""))},
    )
    return render(request, "connections/connection_form.html#test-result", {"check": check}, status=status)


def _check_form(data):
    """(the saved connection named or None, the check, the HTTP status) for the test form's data.

    A form that cannot be tested answers 422, which htmx shows in place of the result.
    """
    pk = data.get("pk", "")
    try:
        saved = Connection.objects.get(pk=int(pk)) if pk else None
    except (ValueError, Connection.DoesNotExist):
        return None, ConnectionCheck(False, "This connection no longer exists: reload the page."), 422
    # A copy: validating writes the form's values onto the instance; the audit names the connection as saved.
    form = ConnectionForm(data, instance=copy(saved))
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(e)}" for field, e in form.errors.items())
        return saved, ConnectionCheck(False, f"Fix the form first ({errors})."), 422
    candidate = form.save(commit=False)  # the form's settings, not saved
    return saved, connection_service.check_connection(candidate.to_store_connection()), 200


@require_POST
def connection_switch(request):
    slug = request.POST.get("connection", "")
    if connection_service.choose_connection(request, slug):
        messages.success(request, "Switched connection.")
    else:
        messages.error(request, "That connection no longer exists.")
    # A session page belongs to the store it came from: from the header's switcher, go to the list
    # instead. A `next` is explicit (the banner of a page opened from a link): it may be a session page.
    back = request.POST.get("next")
    if not back:
        referer = request.META.get("HTTP_REFERER", "")
        back = referer if "/sessions/" not in referer else ""
    if back and url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        return redirect(back)
    return redirect("session_list")
