from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from memoryadmin.accounts.decorators import requires
from memoryadmin.services import audit
from memoryadmin.services import connections as connection_service

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


@requires("connections.change_connection", "connection.edit")
@require_POST
def connection_test(request):
    """Check the settings in the form (saved or not) through the real client; the result shows inline."""
    saved = Connection.objects.filter(pk=request.POST.get("pk") or None).first()
    form = ConnectionForm(request.POST, instance=saved)
    if form.is_valid():
        candidate = form.save(commit=False)  # the form's settings, not saved
        check = connection_service.check_connection(candidate.to_store_connection())
    else:
        errors = "; ".join(f"{field}: {' '.join(e)}" for field, e in form.errors.items())
        check = connection_service.ConnectionCheck(False, f"Fix the form first ({errors}).")
    return render(request, "connections/connection_form.html#test-result", {"check": check})


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
