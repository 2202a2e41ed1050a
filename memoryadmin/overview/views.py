from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from memoryadmin.accounts.decorators import requires
from memoryadmin.dashboard.forms import NO_TTL
from memoryadmin.services import audit, overview
from memoryadmin.services.connections import ConnectionChanged, connection_for_write, current_connection

from .charts import bar_chart, percent, size
from .models import OverviewRun

VIEW = "accounts.view_session"  # Viewers and up: a measurement only reads the store


@require_GET
@requires(VIEW, "overview.view")
def overview_page(request):
    """The connection's last run, and the trend of its runs."""
    connection = current_connection(request)
    return _page(request, connection, overview.latest_run(connection.slug))


@require_GET
@requires(VIEW, "overview.view")
def run_detail(request, pk):
    """One run: polled while it runs (the partial), the whole page otherwise."""
    run = get_object_or_404(OverviewRun.objects.select_related("requested_by"), pk=pk)
    return _page(request, current_connection(request), run)


def _page(request, connection, run):
    context = {"connection": connection, "run": run, **_charts(run)}
    if request.htmx:  # a poll of the run's progress: the page was audited when it was opened
        return render(request, "overview/overview.html#run", context)
    audit.record(request, "overview.view", connection=connection, details={"run": run.pk if run else None})
    return render(request, "overview/overview.html", context)


@require_POST
@requires(VIEW, "overview.run")
def measure(request):
    try:
        connection = connection_for_write(request)
    except ConnectionChanged as change:
        messages.error(request, str(change))
        return redirect("overview")
    run = overview.start_run(connection, request.user)
    return redirect("overview_run", run.pk)


@require_POST
@requires(VIEW, "overview.run")
def run_cancel(request, pk):
    run = get_object_or_404(OverviewRun, pk=pk)
    overview.request_cancel(run)
    messages.success(request, "The measurement stops after its current step.")
    return redirect("overview_run", run.pk)


def _charts(run):
    """What the page draws of a run (its figures once it has ended, the trend of its connection's runs)."""
    if run is None:
        return {}
    context = {"progress": overview.progress(run), "trend": _trend(run.connection_slug)}
    measures = run.measures
    if run.is_active or not measures.get("keys") and run.status == OverviewRun.FAILED:
        return context
    no_ttl = reverse("session_list") + "?" + urlencode({"ttl": NO_TTL})
    ttl_labels = {overview.TTL_NO: "no TTL"}
    sessions_of = f"?{urlencode({'connection': run.connection_slug})}"
    biggest = [
        {**row, "url": reverse("session_detail", args=[row["key"]]) + sessions_of} for row in measures["biggest"]
    ]
    others = {"summaries (ours)": measures["summary_hashes"], **measures["other_types"]}
    context.update(
        measures=measures,
        no_ttl_url=no_ttl,
        no_ttl_share=overview.no_ttl_share(measures),
        biggest=biggest,
        charts=[
            bar_chart("Sessions by writer", sorted(measures["writers"].items(), key=lambda item: -item[1])),
            bar_chart(
                "Sessions by TTL",
                [(ttl_labels.get(label, label), count) for label, count in measures["ttl"].items()],
            ),
            bar_chart("Sessions by messages", measures["lengths"].items()),
            bar_chart("Summaries", measures["summaries"].items()),
            bar_chart("Keys that are not sessions, by type", sorted(others.items(), key=lambda item: -item[1]), "keys"),
            bar_chart(
                f"The {len(biggest)} biggest sessions",
                [(row["key"], row["bytes"]) for row in biggest],
                "bytes",
                size,
            ),
        ],
    )
    return context


def _trend(slug):
    runs = overview.trend(slug)
    if len(runs) < 2:
        return []
    labels = [timezone.localtime(run.finished_at or run.created_at).strftime("%Y-%m-%d %H:%M") for run, *_ in runs]
    return [
        bar_chart("Sessions", [(label, sessions) for label, (_, sessions, _, _) in zip(labels, runs)]),
        bar_chart("Bytes", [(label, size_) for label, (_, _, size_, _) in zip(labels, runs)], "bytes", size),
        bar_chart("Share without a TTL", [(label, share) for label, (*_, share) in zip(labels, runs)], "%", percent),
    ]
