from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from memoryadmin.accounts.decorators import requires
from memoryadmin.dashboard.downloads import streaming_csv
from memoryadmin.dashboard.forms import ttl_form_for
from memoryadmin.services import bulk, content_search
from memoryadmin.services.connections import StoreChanged, current_connection
from memoryadmin.services.content_search import QueryError

from .forms import BulkActionForm, ConfirmForm, SearchForm
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
    job = get_object_or_404(BulkJob.objects.select_related("requested_by", "confirmed_by", "summary_batch"), pk=pk)
    context = {
        "job": job,
        "progress": bulk.progress(job),
        "sample": job.keys.order_by("position")[:20],
        "confirm_form": ConfirmForm(),
        "typed_required": job.action == BulkJob.CLEAR,
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
    problem = bulk.resume_job(job, request)
    if problem:
        messages.error(request, problem)
    else:
        messages.success(request, "Resumed from the last saved batch.")
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
    context = {"job": job, "hits": hits, "actions": BulkJob.ACTIONS}
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
    """ "Select these for purge": the search's results become a bulk job's frozen selection."""
    search = get_object_or_404(SearchJob, pk=pk)
    action = request.POST.get("action", BulkJob.CLEAR)
    if search.is_active or action not in dict(BulkJob.ACTIONS) or action == BulkJob.EXPIRE:
        messages.error(request, "Wait for the search to finish, then choose clear, remove TTL or re-summarize.")
        return redirect("search_job", pk)
    if search.erased_at:
        messages.error(request, "This search's results were erased: search again.")
        return redirect("search_job", pk)
    connection = current_connection(request)
    if connection.slug != search.connection_slug:
        messages.error(request, f"Switch to the connection “{search.connection_name}” first: the search ran there.")
        return redirect("search_job", pk)
    try:
        job = bulk.create_job(connection, request.user, action, search=search)
    except StoreChanged as change:
        messages.error(request, str(change))
        return redirect("search_job", pk)
    return redirect("bulk_job", job.pk)
