from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from memoryadmin.accounts.decorators import requires
from memoryadmin.dashboard.downloads import streaming_csv
from memoryadmin.services import audit

from .forms import AuditFilterForm

PAGE_SIZE = 50


@require_GET
@requires("audit.view_auditevent", "audit.view")
def audit_log(request):
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return render(request, "audit/audit_log.html", {"form": form, "page": None}, status=400)
    events = audit.search_events(**form.cleaned_data).select_related("user")
    page = Paginator(events, PAGE_SIZE).get_page(form.cleaned_data["page"])
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/audit_log.html", {"form": form, "page": page, "query": query.urlencode()})


@require_GET
@requires("audit.view_auditevent", "audit.export")
def audit_export(request):
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("The filters are not valid: " + form.errors.as_text())
    filters = {name: value for name, value in form.cleaned_data.items() if value and name != "page"}
    audit.record(request, "audit.export", details={"filters": {k: str(v) for k, v in filters.items()}})
    rows = audit.csv_rows(audit.search_events(**form.cleaned_data))
    return streaming_csv(rows, f"audit-{timezone.now():%Y%m%d-%H%M%S}.csv")
