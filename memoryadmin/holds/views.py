from django.contrib import messages
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from memoryadmin.accounts.decorators import requires
from memoryadmin.services import audit, holds
from memoryadmin.services.connections import connection_for_write, current_connection

from .forms import HoldForm, LiftForm
from .models import LegalHold


@require_GET
@requires("accounts.clear_session", "hold.view")
def hold_list(request):
    """The current connection's holds, for Operators and Admins: they see why a session is skipped."""
    connection = current_connection(request)
    audit.record(request, "hold.view", connection=connection)
    context = {"connection": connection, "holds": holds.holds_to_list(connection.slug)}
    return render(request, "holds/hold_list.html", context)


@require_http_methods(["GET", "POST"])
@requires("accounts.manage_legal_hold", "hold.create")
def hold_create(request):
    """GET: the form (`?session=` a session's URL token: that key, filled in); POST: place the hold."""
    if request.method == "GET":
        form = HoldForm(initial={"session": request.GET.get("session", "")})
        if form.session_link_damaged:
            return HttpResponseBadRequest("That link is damaged: open the session again.")
        return render(request, "holds/hold_form.html", {"connection": current_connection(request), "form": form})
    connection = connection_for_write(request)
    form = HoldForm(request.POST)
    if not form.is_valid():
        return render(request, "holds/hold_form.html", {"connection": connection, "form": form}, status=422)
    hold = holds.place_hold(request, connection, form.cleaned_data["pattern"], form.cleaned_data["reason"])
    messages.success(request, f"Legal hold #{hold.pk} placed: clearing, redacting and expiring are refused.")
    if form.session_key is not None:
        return redirect("session_detail", form.session_key)
    return redirect("hold_list")


@require_http_methods(["GET", "POST"])
@requires("accounts.manage_legal_hold", "hold.lift")
def hold_lift(request, pk):
    """GET: the confirmation page, asking why; POST: lift the hold."""
    connection = current_connection(request) if request.method == "GET" else connection_for_write(request)
    hold = get_object_or_404(LegalHold, pk=pk, connection_slug=connection.slug)
    if not hold.is_active:
        messages.info(request, f"Legal hold #{hold.pk} was already lifted.")
        return redirect("hold_list")
    form = LiftForm(request.POST if request.method == "POST" else None)
    if not form.is_valid():
        status = 422 if form.is_bound else 200
        return render(
            request, "holds/hold_lift.html", {"connection": connection, "hold": hold, "form": form}, status=status
        )
    try:
        holds.lift_hold(request, hold, form.cleaned_data["reason"])
    except ValueError as error:  # lifted by someone else since the page was shown
        messages.error(request, str(error))
        return redirect("hold_list")
    messages.success(request, f"Legal hold #{hold.pk} lifted.")
    return redirect("hold_list")
