from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from memoryadmin.accounts.decorators import requires
from memoryadmin.dashboard.downloads import streaming_csv
from memoryadmin.dashboard.forms import ttl_form_for
from memoryadmin.services import audit, bulk, content_search, erasure
from memoryadmin.services.connections import StoreChanged, current_connection
from memoryadmin.services.content_search import QueryError

from .forms import BulkActionForm, ConfirmForm, SearchActionForm, SearchForm
from .models import BulkJob, SearchJob

BULK = "accounts.run_bulk_job"


def _errors(*forms):
    return " ".join(error for form in forms for errors in form.errors.values() for error in errors)


@require_GET
@requires(BULK, "bulk.view")
def job_list(request):
    jobs = Paginator(BulkJob.objects.select_related("requested_by", "confirmed_by"), 25).get_page(
        request.GET.get("page")
    )
    searches = SearchJob.objects.select_related("requested_by")[:10]
    return render(request, "bulk/job_list.html", {"jobs": jobs, "searches": searches})


@require_POST
@requires(BULK, "bulk.dry_run")
def job_create(request):
    """From the sessions list: start the dry run of an action on a selection."""
    connection = current_connection(request)
    form = BulkActionForm(request.POST, request.POST.getlist("k"))
    ttl_form = ttl_form_for(connection, request.POST)
    if not form.is_valid() or (form.cleaned_data["action"] == BulkJob.EXPIRE and not ttl_form.is_valid()):
        messages.error(request, _errors(form, ttl_form) or "That bulk action is not valid.")
        return redirect("session_list")
    data = form.cleaned_data
    job = bulk.create_job(
        connection,
        request.user,
        data["action"],
        ttl_seconds=ttl_form.cleaned_data["seconds"] if data["action"] == BulkJob.EXPIRE else None,
        keys=data.get("keys"),
        pattern=(data["q"] or connection.key_pattern) if data["scope"] == "pattern" else "",
    )
    return redirect("bulk_job", job.pk)


@require_GET
@requires(BULK, "bulk.view")
def job_detail(request, pk):
    """The job's page: dry run, confirmation, progress and report, polled while the job works."""
    job = get_object_or_404(
        BulkJob.objects.select_related("requested_by", "confirmed_by", "summary_batch", "verification"), pk=pk
    )
    context = {
        "job": job,
        "progress": bulk.progress(job),
        "sample": job.keys.order_by("position")[:20],
        "confirm_form": ConfirmForm(),
        "typed_required": job.action in bulk.TYPED_CONFIRMATION,
    }
    template = "bulk/job.html#status" if request.htmx else "bulk/job.html"
    return render(request, template, context)


@require_POST
@requires(BULK, "bulk.confirm")
def job_confirm(request, pk):
    job = get_object_or_404(BulkJob, pk=pk)
    form = ConfirmForm(request.POST)
    problem = bulk.confirm_job(job, request, form.cleaned_data["typed"] if form.is_valid() else "")
    if problem:
        messages.error(request, problem)
    return redirect("bulk_job", job.pk)


@require_POST
@requires(BULK, "bulk.cancel")
def job_discard(request, pk):
    job = get_object_or_404(BulkJob, pk=pk)
    bulk.discard_job(job)
    messages.success(request, "Nothing was changed: the job was dropped.")
    return redirect("session_list")


@require_POST
@requires(BULK, "bulk.cancel")
def job_cancel(request, pk):
    job = get_object_or_404(BulkJob, pk=pk)
    bulk.request_cancel(job)
    messages.success(request, "The job stops after its current batch.")
    return redirect("bulk_job", job.pk)


@require_POST
@requires(BULK, "bulk.resume")
def job_resume(request, pk):
    job = get_object_or_404(BulkJob, pk=pk)
    return _back_to_job(request, job, bulk.resume_job(job, request), "Resumed from the last saved batch.")


def _back_to_job(request, job, problem, done):
    """The job's page again, with the problem that stopped an action, or what it did."""
    if problem:
        messages.error(request, problem)
    else:
        messages.success(request, done)
    return redirect("bulk_job", job.pk)


@require_GET
@requires(BULK, "bulk.view")
def job_report(request, pk):
    job = get_object_or_404(BulkJob, pk=pk)
    return streaming_csv(bulk.report_rows(job), f"bulk-job-{job.pk}-{job.action}.csv")


@require_http_methods(["GET", "POST"])
@requires(BULK, "search.run")
def search_new(request):
    connection = current_connection(request)
    form = SearchForm(request.POST or None, initial={"key_pattern": connection.key_pattern})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = content_search.start_search(
                connection, request.user, data["query"], data["is_regex"], data["key_pattern"], data["role"]
            )
        except QueryError as error:
            form.add_error("query", str(error))
        else:
            return redirect("search_job", job.pk)
    recent = SearchJob.objects.filter(connection_slug=connection.slug).select_related("requested_by")[:10]
    keys_in_store = content_search.count_keys(connection)
    context = {
        "form": form,
        "recent": recent,
        "connection": connection,
        "budget_seconds": settings.MEMORYADMIN_SEARCH_BUDGET_SECONDS,
        "keys_in_store": keys_in_store,
        "estimate": content_search.estimated_cost(keys_in_store) if keys_in_store is not None else None,
        "scan_count": content_search.SCAN_COUNT,
        "step_read": content_search.STEP_READ,
    }
    return render(request, "bulk/search.html", context)


@require_GET
@requires(BULK, "search.run")
def search_detail(request, pk):
    job = get_object_or_404(SearchJob.objects.select_related("requested_by"), pk=pk)
    hits = Paginator(job.hits.all(), 100).get_page(request.GET.get("page"))
    context = {"job": job, "hits": hits, "action_choices": SearchActionForm.CHOICES}
    template = "bulk/search_job.html#results" if request.htmx else "bulk/search_job.html"
    return render(request, template, context)


@require_POST
@requires(BULK, "search.run")
def search_cancel(request, pk):
    SearchJob.objects.filter(pk=pk, status__in=SearchJob.ACTIVE).update(cancel_requested=True)
    SearchJob.objects.filter(pk=pk, status=SearchJob.QUEUED).update(status=SearchJob.CANCELLED)
    return redirect("search_job", pk)


@require_POST
@requires(BULK, "bulk.dry_run")
def search_to_bulk(request, pk):
    """ "Select these for…": the search's results become a bulk job's frozen selection (an erasure, or not)."""
    search = get_object_or_404(SearchJob, pk=pk)
    if search.erased_at:
        messages.error(request, "This search's results were erased: search again.")
        return redirect("search_job", pk)
    form = SearchActionForm(request.POST)
    if search.is_active or not form.is_valid():
        messages.error(request, _errors(form) or "Wait for the search to finish, then choose what to do.")
        return redirect("search_job", pk)
    data = form.cleaned_data
    if data["action"] == BulkJob.REDACT and not request.user.has_perm("accounts.redact_session"):
        messages.error(request, "Redacting needs the permission to redact messages.")
        return redirect("search_job", pk)
    connection = current_connection(request)
    if connection.slug != search.connection_slug:
        messages.error(request, f"Switch to the connection “{search.connection_name}” first: the search ran there.")
        return redirect("search_job", pk)
    try:
        job = bulk.create_job(
            connection,
            request.user,
            data["action"],
            search=search,
            redaction=data["redaction"],
            reference=data["reference"].strip(),
        )
    except StoreChanged as change:
        messages.error(request, str(change))
        return redirect("search_job", pk)
    return redirect("bulk_job", job.pk)


@require_POST
@requires(BULK, "bulk.verify")
def job_verify(request, pk):
    """Verify an erasure again, after a verification that could not finish."""
    job = get_object_or_404(BulkJob.objects.select_related("verification"), pk=pk)
    return _back_to_job(request, job, bulk.verify_again(job), "Searching again to verify the erasure.")


@require_GET
@requires(BULK, "erasure.certificate")
def job_certificate(request, pk, fmt="html"):
    """The erasure certificate: a printable page, or the signed JSON file to file and check later."""
    job = get_object_or_404(
        BulkJob.objects.select_related("requested_by", "confirmed_by", "search", "verification"), pk=pk
    )
    try:
        with audit.audited(
            request, "erasure.certificate", connection=bulk.filed_under(job), details={"job": job.pk, "format": fmt}
        ) as result:
            if fmt == "json":
                response = HttpResponse(erasure.certificate_file(job), content_type="application/json")
                response["Content-Disposition"] = content_disposition_header(True, f"erasure-certificate-{job.pk}.json")
            else:
                response = render(request, "bulk/certificate.html", {"job": job, **erasure.signed_certificate(job)})
            result["sessions"] = job.total
    except erasure.NotCertifiable as reason:
        messages.error(request, str(reason))
        return redirect("bulk_job", job.pk)
    return response
