from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from memoryadmin.accounts.decorators import requires
from memoryadmin.services import audit, summary_jobs
from memoryadmin.services.connections import connection_for_write, current_connection, find_connection
from memoryadmin.services.summaries import read_summary

from .forms import SummarizerSettingsForm
from .models import SummarizerSettings, SummaryBatch, SummaryJob


def summary_panel_context(connection, key, summary, session_length):
    """What the summary panel shows: the stored summary and the latest job for the session."""
    job = SummaryJob.objects.filter(connection_slug=connection.slug, session_key=key).first()
    return {
        "connection": connection,
        "key": key,
        "summary": summary,
        "session_length": session_length,
        "stale": bool(summary and summary.is_stale(session_length)),
        "job": job,
    }


@require_POST
@requires("accounts.summarize_session", "session.summarize")
def session_summarize(request, key):
    connection = connection_for_write(request)
    job, created = summary_jobs.request_summary(connection, key, request.user)
    audit.record(
        request,
        "session.summarize",
        connection=connection,
        session_key=key,
        details={"queued": created, "status": job.status},
        job=f"summary:{job.pk}",
    )
    if not request.htmx:
        messages.success(
            request,
            "Re-summarization queued." if created else "A re-summarization of this session is already under way.",
        )
        return redirect("session_detail", key)
    return _render_panel(request, connection, job)


@require_GET
@requires("accounts.view_session", "session.read")
def summary_job(request, pk):
    """The summary panel of a job's session, polled by htmx until the job has ended.

    It shows the session's summary, so it is a session read: audited under the job's connection.
    """
    job = get_object_or_404(SummaryJob, pk=pk)
    connection = find_connection(job.connection_slug)
    if connection is None:
        raise Http404("The connection of this job was deleted.")
    with audit.audited_read(
        request, "session.read", connection=connection, session_key=job.session_key, details={"summary_job": job.pk}
    ):
        return _render_panel(request, connection, job)


def _render_panel(request, connection, job):
    summary, length = read_summary(connection, job.session_key)
    context = summary_panel_context(connection, job.session_key, summary, length)
    return render(request, "summaries/panel.html", context)


@require_POST
@requires("accounts.summarize_session", "session.summarize")
def batch_create(request):
    """From the sessions list: every session matching the filter whose summary is missing or stale.

    (Re-summarizing selected rows is a bulk action: it has a dry run and a confirmation.)
    """
    connection = current_connection(request)
    pattern = request.POST.get("q") or connection.key_pattern
    batch = summary_jobs.request_stale_batch(connection, pattern, request.user)
    audit.record(
        request, "session.summarize", connection=connection, details={"batch": batch.pk, "scope": batch.description}
    )
    return redirect("summary_batch", batch.pk)


@require_GET
@requires("accounts.view_session", "session.read")
def batch_detail(request, pk):
    batch = get_object_or_404(SummaryBatch, pk=pk)
    context = {"batch": batch, "progress": summary_jobs.batch_progress(batch)}
    template = "summaries/batch.html#progress" if request.htmx else "summaries/batch.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
@requires("summaries.change_summarizersettings", "settings.summarizer")
def summarizer_settings(request):
    current = SummarizerSettings.load()
    form = SummarizerSettingsForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        form.save()
        audit.record(request, "settings.summarizer", details={"changed": sorted(form.changed_data)})
        messages.success(request, "Summarizer settings saved.")
        return redirect("summarizer_settings")
    return render(request, "summaries/settings.html", {"form": form})
