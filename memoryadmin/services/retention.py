"""Retention policies: rules the worker applies by itself to a connection's sessions, on a schedule.

A policy is one rule on the sessions matching a pattern: a TTL for those without one, a cap on
longer TTLs, or clearing them. Every run is a bulk job (services/bulk.py): a dry run freezes the
keys a complete SCAN finds that the rule would change, then batches act on them, each key checked
in the same atomic script (a TTL rule's condition included: EXPIRE NX, EXPIRE XX LT), sessions on
legal hold skipped, a report, audit events bulk.*. A preview is such a job's dry run alone.

A policy is enabled only after a preview made since its last edit, and an edit of what it does
turns it off. A run is confirmed by the policy: its confirmer is whoever enabled it.

Exactly once: whoever runs a due policy (a worker's loop, on any instance, or `manage.py retention
run`) first claims the run with one conditional UPDATE that moves its next_run_at on from the value
it read; only the one whose UPDATE changed the row creates the job, in the same transaction.
"""

import time
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from memoryadmin.bulk.models import BulkJob
from memoryadmin.retention.models import RetentionPolicy

from . import audit, bulk
from .connections import ConnectionChoice, find_connection

# What each rule runs as: the bulk action and the condition a session must meet to be changed.
RULE_JOBS = {
    RetentionPolicy.TTL_IF_NONE: (BulkJob.EXPIRE, BulkJob.NO_TTL),
    RetentionPolicy.CAP_TTL: (BulkJob.EXPIRE, BulkJob.TTL_OVER),
    RetentionPolicy.CLEAR: (BulkJob.CLEAR, BulkJob.ALWAYS),
}
# What an edit may change without a new preview: the rest changes what a run does.
WHAT_IT_DOES = ("rule", "pattern", "ttl_seconds")
SCHEDULE_FIELDS = ("schedule", "daily_at", "every_hours")
FIELDS = ("name", *WHAT_IT_DOES, *SCHEDULE_FIELDS)
WAIT_POLL = 0.5  # seconds between looks at a job the command waits for


class PolicyRefused(Exception):
    """A change of a policy that was refused (audited): nothing was changed."""


def filed_under(policy):
    return ConnectionChoice(policy.connection_slug, policy.connection_name, False)


def rule_details(policy):
    """What an audit event says of a policy: its rule as the Admin wrote it, nothing read from the store."""
    return {
        "policy": policy.pk,
        "name": policy.name,
        "rule": policy.rule,
        "pattern": policy.pattern,
        "ttl_seconds": policy.ttl_seconds,
        "schedule": policy.schedule,
        "daily_at": policy.daily_at.isoformat() if policy.daily_at else None,
        "every_hours": policy.every_hours,
    }


def confirmation_words(connection_name, pattern):
    """What an Admin may type to confirm a clearing rule: the connection's name, or the pattern."""
    return {connection_name, pattern}


def needs_confirmation(policy, data):
    """A clearing rule is confirmed by typing when it is created, and again when it starts clearing other sessions."""
    if data["rule"] != RetentionPolicy.CLEAR:
        return False
    return policy is None or policy.rule != RetentionPolicy.CLEAR or policy.pattern != data["pattern"]


def confirmation_problem(connection_name, pattern, typed):
    """None when what was typed confirms a clearing rule, else what to type."""
    if typed.strip() in confirmation_words(connection_name, pattern):
        return None
    return f"A clearing rule deletes sessions for good: type the connection name “{connection_name}” or the pattern to confirm."


def _typed(connection_name, pattern, typed):
    # What was typed is kept only when it is one of the words asked for: anything else may be pasted text.
    return typed if typed.strip() in confirmation_words(connection_name, pattern) else "(other)"


# --- schedule ---------------------------------------------------------------------------------------


def next_run_after(policy, now, due=None):
    """When the policy runs next, after `now`: the next `daily_at` (UTC), or N hours after the run due at `due`.

    Runs missed while no worker ran are not made up: the next one is always after `now`.
    """
    if policy.schedule == RetentionPolicy.DAILY:
        today = datetime.combine(now.astimezone(UTC).date(), policy.daily_at, tzinfo=UTC)
        return today if today > now else today + timedelta(days=1)
    step = timedelta(hours=policy.every_hours)
    following = (due or now) + step
    return following if following > now else now + step


# --- create, edit, enable, disable ------------------------------------------------------------------


def create_policy(request, connection, data, typed=""):
    """A new policy of the connection, disabled until previewed and enabled (audited retention.create)."""
    details = {**data, "daily_at": data["daily_at"].isoformat() if data.get("daily_at") else None}
    if needs_confirmation(None, data):
        details["typed"] = _typed(connection.name, data["pattern"], typed)
    with audit.audited(request, "retention.create", connection=connection, details=details) as result:
        if needs_confirmation(None, data) and (
            problem := confirmation_problem(connection.name, data["pattern"], typed)
        ):
            raise PolicyRefused(problem)
        policy = RetentionPolicy.objects.create(
            connection_slug=connection.slug,
            connection_name=connection.name,
            created_by=request.user,
            changed_by=request.user,
            changed_at=timezone.now(),
            **{field: data.get(field) for field in FIELDS},
        )
        result["policy"] = policy.pk
    return policy


def edit_policy(request, policy, data, typed=""):
    """Change a policy (audited retention.edit). A change of what it does turns it off until previewed again."""
    changed = [field for field in FIELDS if getattr(policy, field) != data.get(field)]
    does_otherwise = any(field in WHAT_IT_DOES for field in changed)
    details = {**rule_details(policy), "changed": changed}
    confirm = needs_confirmation(policy, data)
    if confirm:
        details["typed"] = _typed(policy.connection_name, data["pattern"], typed)
    with audit.audited(request, "retention.edit", connection=filed_under(policy), details=details) as result:
        if confirm and (problem := confirmation_problem(policy.connection_name, data["pattern"], typed)):
            raise PolicyRefused(problem)
        for field in FIELDS:
            setattr(policy, field, data.get(field))
        policy.changed_by = request.user
        if does_otherwise:
            policy.changed_at = timezone.now()
            result["disabled"] = policy.enabled
            policy.enabled, policy.next_run_at = False, None
        elif policy.enabled and any(field in SCHEDULE_FIELDS for field in changed):
            policy.next_run_at = next_run_after(policy, timezone.now())
        policy.save()
        result["now"] = rule_details(policy)
    return policy


def latest_preview(policy):
    return BulkJob.objects.filter(policy=policy, is_preview=True).order_by("-created_at", "-id").first()


def preview_is_current(policy, preview):
    """A finished preview of what the policy does now (made since its last edit)."""
    return (
        preview is not None
        and preview.policy_id == policy.pk
        and preview.is_preview
        and preview.status == BulkJob.PREVIEWED
        and preview.created_at >= policy.changed_at
    )


def preview_policy(request, policy, user=None):
    """Start a dry run of the policy's next run (audited retention.preview): a bulk job that never runs.

    `request` None (the command): the event names no one, or `user`.
    """
    connection = find_connection(policy.connection_slug)
    if connection is None:
        problem = "The policy's connection no longer exists."
        audit.record(
            request,
            "retention.preview",
            connection=filed_under(policy),
            outcome="failed",
            error=problem,
            details=rule_details(policy),
            user=user,
        )
        raise PolicyRefused(problem)
    job = _job(connection, policy, getattr(request, "user", None) or user, is_preview=True)
    audit.record(
        request,
        "retention.preview",
        connection=filed_under(policy),
        job=job.audit_job,
        details=rule_details(policy),
        user=user,
    )
    return job


def _job(connection, policy, user, is_preview):
    action, condition = RULE_JOBS[policy.rule]
    return bulk.create_job(
        connection,
        user,
        action,
        ttl_seconds=policy.ttl_seconds if action == BulkJob.EXPIRE else None,
        pattern=policy.pattern,
        condition=condition,
        policy=policy,
        is_preview=is_preview,
    )


def enable_policy(request, policy, preview_id):
    """Enable the policy from its preview (audited retention.enable); an error message, or None when enabled.

    `preview_id`: the preview the Admin saw; it must be the policy's latest, finished, made since its last edit.
    """
    preview = latest_preview(policy)
    problem = None
    if policy.enabled:
        problem = "This policy is enabled already."
    elif preview is None or str(preview.pk) != str(preview_id) or not preview_is_current(policy, preview):
        problem = "Preview the policy as it is now, then enable it from that preview."
    else:
        now = timezone.now()
        enabled = RetentionPolicy.objects.filter(pk=policy.pk, enabled=False, changed_at=policy.changed_at).update(
            enabled=True, enabled_by=request.user, enabled_at=now, next_run_at=next_run_after(policy, now)
        )
        if not enabled:
            problem = "The policy changed meanwhile: preview it again."
    audit.record(
        request,
        "retention.enable",
        connection=filed_under(policy),
        outcome="failed" if problem else "ok",
        error=problem or "",
        job=preview.audit_job if preview else "",
        details={**rule_details(policy), "preview": preview.pk if preview else None},
    )
    return problem


def disable_policy(request, policy):
    """Disable the policy (audited retention.disable): it runs no more; a run under way goes on to its end."""
    with audit.audited(request, "retention.disable", connection=filed_under(policy), details=rule_details(policy)):
        RetentionPolicy.objects.filter(pk=policy.pk).update(enabled=False, next_run_at=None, changed_by=request.user)


def policies_of(connection_slug):
    return RetentionPolicy.objects.filter(connection_slug=connection_slug).select_related("enabled_by", "changed_by")


def last_runs(policy, count=10):
    return BulkJob.objects.filter(policy=policy, is_preview=False).order_by("-created_at", "-id")[:count]


# --- runs -------------------------------------------------------------------------------------------


def due_policies(now=None):
    return RetentionPolicy.objects.filter(enabled=True, next_run_at__lte=now or timezone.now()).order_by("next_run_at")


def claim_run(policy, now=None):
    """Start the policy's run if this caller is the one that claims it; the run's bulk job, or None.

    The claim is one conditional UPDATE: the next run time moves on only from the value read here,
    so of several workers (or instances) that read the same due policy, one claims it. The job is
    created and queued in the same transaction: a claimed run always has its job.
    """
    now = now or timezone.now()
    with transaction.atomic():
        claimed = RetentionPolicy.objects.filter(pk=policy.pk, enabled=True, next_run_at=policy.next_run_at).update(
            next_run_at=next_run_after(policy, now, due=policy.next_run_at)
        )
        if not claimed:
            return None
        connection = find_connection(policy.connection_slug)
        if connection is None:
            audit.record(
                None,
                "retention.run",
                user=policy.enabled_by,
                connection=filed_under(policy),
                outcome="failed",
                error="The policy's connection no longer exists.",
                details=rule_details(policy),
            )
            return None
        job = _job(connection, policy, policy.enabled_by, is_preview=False)
        audit.record(
            None,
            "retention.run",
            user=policy.enabled_by,
            connection=filed_under(policy),
            job=job.audit_job,
            details={**rule_details(policy), "bulk_job": job.pk},
        )
    return job


def run_due_policies(now=None):
    """Claim and start the run of every due policy (the worker's loop calls it); the jobs this caller started."""
    return [job for policy in due_policies(now) if (job := claim_run(policy, now)) is not None]


def run_policy(policy):
    """Start a run of an enabled policy now, due or not (it counts as its scheduled run); the job, or None."""
    policy.refresh_from_db()
    if not policy.enabled:
        raise PolicyRefused(f"Policy #{policy.pk} is disabled: preview and enable it first.")
    return claim_run(policy)


def see_through(job):
    """Do a job's dry run and run here, unless a worker has taken them, and wait for its end (the command)."""
    bulk.count_job(job.pk)
    job.refresh_from_db()
    if job.status == BulkJob.QUEUED:
        bulk.run_job(job.pk)
    job.refresh_from_db()
    while job.status in BulkJob.ACTIVE:  # a worker has it: its end is ours to report
        time.sleep(WAIT_POLL)
        job.refresh_from_db()
    return job
