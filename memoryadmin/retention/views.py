from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from memoryadmin.accounts.decorators import requires
from memoryadmin.bulk.models import BulkJobKey
from memoryadmin.services import audit, retention
from memoryadmin.services.connections import connection_for_write, current_connection

from .forms import PolicyForm, PreviewChoice
from .models import RetentionPolicy

MANAGE = "accounts.manage_retention"
SAMPLE = 20  # keys of a preview shown, and as many on hold


def _policy(request, pk, connection):
    return get_object_or_404(RetentionPolicy, pk=pk, connection_slug=connection.slug)


@require_GET
@requires(MANAGE, "retention.view")
def policy_list(request):
    connection = current_connection(request)
    audit.record(request, "retention.view", connection=connection)
    context = {"connection": connection, "policies": retention.policies_of(connection.slug)}
    return render(request, "retention/policy_list.html", context)


@require_http_methods(["GET", "POST"])
@requires(MANAGE, "retention.create")
def policy_create(request):
    """GET: the form (the pattern: the connection's key pattern); POST: create the policy, disabled."""
    if request.method == "GET":
        connection = current_connection(request)
        form = PolicyForm(initial={"pattern": connection.key_pattern, "schedule": RetentionPolicy.DAILY})
        return render(request, "retention/policy_form.html", {"connection": connection, "form": form})
    connection = connection_for_write(request)
    form = PolicyForm(request.POST)
    if form.is_valid():
        try:
            policy = retention.create_policy(request, connection, form.policy_data, form.cleaned_data["confirm"])
        except retention.PolicyRefused as error:
            form.add_error("confirm", str(error))
        else:
            messages.success(request, "Policy saved, disabled: preview it, then enable it from the preview.")
            return redirect("retention_policy", policy.pk)
    return render(request, "retention/policy_form.html", {"connection": connection, "form": form}, status=422)


@require_http_methods(["GET", "POST"])
@requires(MANAGE, "retention.edit")
def policy_edit(request, pk):
    """GET: the form; POST: save. A change of what the policy does turns it off until previewed again."""
    connection = current_connection(request) if request.method == "GET" else connection_for_write(request)
    policy = _policy(request, pk, connection)
    form = PolicyForm(request.POST) if request.method == "POST" else PolicyForm.for_policy(policy)
    context = {"connection": connection, "form": form, "policy": policy}
    if request.method == "GET":
        return render(request, "retention/policy_form.html", context)
    if form.is_valid():
        was_enabled = policy.enabled
        try:
            retention.edit_policy(request, policy, form.policy_data, form.cleaned_data["confirm"])
        except retention.PolicyRefused as error:
            form.add_error("confirm", str(error))
        else:
            turned_off = was_enabled and not policy.enabled
            messages.success(
                request,
                "Policy saved" + (": it is off until you preview it and enable it again." if turned_off else "."),
            )
            return redirect("retention_policy", policy.pk)
    return render(request, "retention/policy_form.html", context, status=422)


@require_GET
@requires(MANAGE, "retention.view")
def policy_detail(request, pk):
    """The policy, its latest preview (polled while it counts) with Enable, and its last runs."""
    connection = current_connection(request)
    policy = _policy(request, pk, connection)
    if not request.htmx:
        audit.record(request, "retention.view", connection=connection, details={"policy": policy.pk})
    preview = retention.latest_preview(policy)
    context = {
        "connection": connection,
        "policy": policy,
        "preview": preview,
        "preview_is_current": retention.preview_is_current(policy, preview),
        "sample": preview.keys.exclude(outcome=BulkJobKey.HELD)[:SAMPLE] if preview else [],
        "held": preview.keys.filter(outcome=BulkJobKey.HELD)[:SAMPLE] if preview else [],
        "runs": retention.last_runs(policy),
    }
    template = "retention/policy_detail.html#preview" if request.htmx else "retention/policy_detail.html"
    return render(request, template, context)


@require_POST
@requires(MANAGE, "retention.preview")
def policy_preview(request, pk):
    policy = _policy(request, pk, connection_for_write(request))
    try:
        retention.preview_policy(request, policy)
    except retention.PolicyRefused as error:
        messages.error(request, str(error))
    return redirect("retention_policy", policy.pk)


@require_POST
@requires(MANAGE, "retention.enable")
def policy_enable(request, pk):
    policy = _policy(request, pk, connection_for_write(request))
    choice = PreviewChoice(request.POST)
    problem = retention.enable_policy(request, policy, choice.cleaned_data["preview"] if choice.is_valid() else None)
    if problem:
        messages.error(request, problem)
    else:
        messages.success(request, "Policy enabled: the worker runs it on its schedule.")
    return redirect("retention_policy", policy.pk)


@require_http_methods(["GET", "POST"])
@requires(MANAGE, "retention.disable")
def policy_disable(request, pk):
    """GET: the confirmation page; POST: disable the policy."""
    connection = current_connection(request) if request.method == "GET" else connection_for_write(request)
    policy = _policy(request, pk, connection)
    if request.method == "GET":
        return render(request, "retention/policy_disable.html", {"connection": connection, "policy": policy})
    retention.disable_policy(request, policy)
    messages.success(request, "Policy disabled: it runs no more (a run under way goes on to its end).")
    return redirect("retention_policy", policy.pk)
