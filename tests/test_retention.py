"""Retention policies: a run changes exactly what its preview said, each rule's condition is checked as it acts,
held sessions are left alone, a due run starts once however many workers, every change of a policy is audited."""

import io
from datetime import UTC, datetime, timedelta
from datetime import time as clock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory, override_settings
from django.utils import timezone

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, BulkJobKey
from memoryadmin.holds.models import LegalHold
from memoryadmin.retention.models import RetentionPolicy
from memoryadmin.services import bulk, retention

from .conftest import DATABASE_TASKS, DUMMY_TASKS, SHOWN_ENV, user_with_role
from .factories import write_langchain_session
from .test_bill import text_of
from .test_jobs import wait_for, wait_for_recovery_rounds, workers  # noqa: F401 - `workers` is a fixture

pytestmark = pytest.mark.django_db

DAY = 86400
WEEK = 7 * DAY
NO_TTL = [f"chat:none:{i}" for i in range(5)]
LONG = [f"chat:long:{i}" for i in range(4)]  # 90 days: longer than a week
SHORT = [f"chat:short:{i}" for i in range(3)]  # an hour
HELD = "chat:none:held"
OTHER = "other:none"  # a session the pattern does not match
SUMMARIZED = [NO_TTL[0], LONG[0], SHORT[0], HELD]


def seed(store):
    """Sessions with and without TTLs, summaries with their sessions' TTLs, keys that are not sessions."""
    for key in [*NO_TTL, *LONG, *SHORT, HELD, OTHER]:
        write_langchain_session(store, key, ["hello", "hi", "bye"])
    for key in SUMMARIZED:
        store.call("HSET", f"memoryadmin:summary:{key}", "text", "hello", "message_count", "3")
    for keys, ttl in ((LONG, 90 * DAY), (SHORT, 3600)):
        for key in keys:
            store.call("EXPIRE", key, ttl)
            if key in SUMMARIZED:
                store.call("EXPIRE", f"memoryadmin:summary:{key}", ttl)
    store.call("SET", "chat:cache", "a string, not a session")
    store.call("HSET", "chat:hash", "field", "not a session")


def snapshot(store):
    """Every key of the store, with its type and TTL (rounded to the minute: the test takes seconds)."""
    keys = [key.decode() for key in store.call("KEYS", "*")]  # the client's replies are bytes
    return {key: (store.call("TYPE", key), _minutes(store.call("TTL", key))) for key in keys}


def _minutes(ttl):
    return ttl if ttl < 0 else round(ttl / 60)


@pytest.fixture
def admin_user(django_user_model):
    return user_with_role(django_user_model, "ada-admin", "Admin")


@pytest.fixture
def admin_client(client, admin_user, connection):
    client.force_login(admin_user)
    return client


def create(admin_client, **form):
    data = {"name": "bound", "pattern": "chat:*", "schedule": "daily", "daily_at": "03:00", **SHOWN_ENV, **form}
    response = admin_client.post("/retention/new/", data)
    assert response.status_code == 302, text_of(response)[:1000]
    return RetentionPolicy.objects.latest("id")


def hold(key, user):
    return LegalHold.objects.create(
        connection_slug="env", connection_name="default (environment)", pattern=key, reason="case 7", created_by=user
    )


RULES = {
    # rule: (form fields, the sessions its run changes)
    "ttl_if_none": ({"rule": "ttl_if_none", "ttl_seconds": WEEK}, NO_TTL),
    "cap_ttl": ({"rule": "cap_ttl", "ttl_seconds": WEEK}, LONG),
    "clear": ({"rule": "clear", "confirm": "chat:*"}, [*NO_TTL, *LONG, *SHORT]),
}


@pytest.mark.parametrize("rule", RULES)
def test_a_run_changes_exactly_what_its_preview_said_key_by_key(admin_client, admin_user, store, rule):
    seed(store)
    hold(HELD, admin_user)
    form, changed = RULES[rule]
    policy = create(admin_client, **form)
    admin_client.post(f"/retention/{policy.pk}/preview/", SHOWN_ENV)
    preview = retention.latest_preview(policy)
    assert preview.status == BulkJob.PREVIEWED
    assert (preview.confirmed_by, preview.confirmed_at) == (None, None)  # a preview confirms nothing
    previewed = {row.key: row.outcome for row in preview.keys.all()}
    # The preview counts only what the rule would change: the held session is named, and left alone.
    on_hold = [HELD] if rule != "cap_ttl" else []
    assert previewed == {**dict.fromkeys(changed, ""), **dict.fromkeys(on_hold, "on hold")}
    page = text_of(admin_client.get(f"/retention/{policy.pk}/"))
    assert f"{len(changed) + len(on_hold)} session" in page
    assert ("1 on legal hold" in page) == bool(on_hold) and (HELD in page) == bool(on_hold)
    response = admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": preview.pk, **SHOWN_ENV})
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.enabled and policy.enabled_by == admin_user and policy.next_run_at > timezone.now()

    before = snapshot(store)
    RetentionPolicy.objects.filter(pk=policy.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))
    [job] = retention.run_due_policies()
    job.refresh_from_db()
    after = snapshot(store)

    assert job.status == BulkJob.DONE and job.policy == policy and job.confirmed_by == admin_user
    assert job.confirmed_at is not None and job.confirmed_at <= job.started_at  # confirmed as the policy made it
    assert {row.key: row.outcome for row in job.keys.all()} == {
        **dict.fromkeys(changed, "done"),
        **dict.fromkeys(on_hold, "on hold"),
    }
    assert job.done == len(changed) and job.held == len(on_hold)
    # The estimate shown with the preview is what the run cost, less what a held session did not cost.
    per_session = 1 + bulk.LIST_COMMANDS[bulk.run_mode(job.action, job.condition)]
    assert job.estimated_commands == preview.estimated_commands
    assert job.run_commands == job.estimated_commands - per_session * len(on_hold)
    summaries = {f"memoryadmin:summary:{key}" for key in changed if key in SUMMARIZED}
    for key in set(before) | set(after):
        if rule == "clear" and (key in changed or key in summaries):
            assert key not in after, key  # cleared, its summary with it
        elif key in changed or key in summaries:
            assert after[key] == (before[key][0], WEEK // 60), key  # the summary follows its session
        else:
            assert after[key] == before[key], key
    event = AuditEvent.objects.get(action="retention.run")
    assert event.job == f"bulk:{job.pk}" and event.user == admin_user and event.details["rule"] == rule


@pytest.mark.parametrize(
    ("mode", "ttl", "acts"),
    [
        ("expire_nx", -1, True),  # no TTL: given one
        ("expire_nx", 3600, False),  # has one: left alone
        ("expire_lt", 90 * DAY, True),  # longer: cut
        ("expire_lt", 3600, False),  # shorter: left alone
        ("expire_lt", -1, False),  # none: the cap leaves it to a "no TTL" rule
    ],
)
def test_each_rules_condition_is_checked_as_it_acts_on_the_session_and_its_summary(connection, store, mode, ttl, acts):
    write_langchain_session(store, "s", ["a", "b"])
    store.call("HSET", "memoryadmin:summary:s", "text", "x")
    if ttl > 0:
        store.call("EXPIRE", "s", ttl)
        store.call("EXPIRE", "memoryadmin:summary:s", ttl)
    replies = bulk.apply_to_batch(connection, ["s"], mode, WEEK, receipt=("memoryadmin:bulk-result:t", 0))
    assert replies == ([2] if acts else [bulk.UNCHANGED])
    expected = WEEK if acts else ttl
    assert store.call("TTL", "s") == pytest.approx(expected, abs=1)
    assert store.call("TTL", "memoryadmin:summary:s") == pytest.approx(expected, abs=1)
    # Its dry run answers for the same condition.
    count = {"expire_nx": bulk.COUNT_NO_TTL, "expire_lt": bulk.COUNT_TTL_OVER}[mode]
    store.call("EXPIRE", "s", ttl) if ttl > 0 else store.call("PERSIST", "s")
    assert bulk.apply_to_batch(connection, ["s"], count, WEEK) == ([2] if acts else [bulk.UNCHANGED])


def test_a_session_that_no_longer_meets_the_condition_at_the_run_is_left_unchanged_and_reported(
    connection, store, admin_user, settings
):
    """Between the dry run and the run, a writer gave one session a TTL: the run leaves it, and says so."""
    settings.TASKS = DUMMY_TASKS  # each step run here, by hand
    seed(store)
    policy = enabled_policy(admin_user, rule=RetentionPolicy.TTL_IF_NONE, ttl_seconds=WEEK)
    job = retention.claim_run(policy)
    bulk.count_job(job.pk)
    job.refresh_from_db()
    assert job.status == BulkJob.QUEUED and job.total == len(NO_TTL) + 1  # the held-to-be one is not held yet
    store.call("EXPIRE", NO_TTL[0], 60)  # the writer's own timeout, meanwhile
    bulk.run_job(job.pk)
    job.refresh_from_db()
    outcomes = dict(job.keys.values_list("key", "outcome"))
    assert outcomes[NO_TTL[0]] == BulkJobKey.UNCHANGED and job.skipped == 1 and job.done == len(NO_TTL)
    assert store.call("TTL", NO_TTL[0]) <= 60 and store.call("TTL", f"memoryadmin:summary:{NO_TTL[0]}") == -1
    assert [NO_TTL[0], "unchanged"] in [[row[1], row[3]] for row in bulk.report_rows(job)]


def enabled_policy(user, **fields):
    fields = {"rule": RetentionPolicy.TTL_IF_NONE, "ttl_seconds": WEEK, **fields}
    return RetentionPolicy.objects.create(
        connection_slug="env",
        connection_name="default (environment)",
        name="bound",
        pattern="chat:*",
        schedule=RetentionPolicy.EVERY_HOURS,
        every_hours=6,
        enabled=True,
        enabled_by=user,
        enabled_at=timezone.now(),
        next_run_at=timezone.now() - timedelta(minutes=1),
        changed_at=timezone.now(),
        **fields,
    )


def test_a_due_run_is_claimed_once_from_the_same_reading(connection, store, admin_user, settings):
    settings.TASKS = DUMMY_TASKS
    seed(store)
    policy = enabled_policy(admin_user)
    due = policy.next_run_at
    seen_by_a, seen_by_b = RetentionPolicy.objects.get(pk=policy.pk), RetentionPolicy.objects.get(pk=policy.pk)
    assert retention.claim_run(seen_by_a) is not None
    assert retention.claim_run(seen_by_b) is None  # read the same due time: its UPDATE changed nothing
    policy.refresh_from_db()
    assert policy.next_run_at == due + timedelta(hours=6) or policy.next_run_at > timezone.now()
    assert BulkJob.objects.filter(policy=policy).count() == 1 and retention.run_due_policies() == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_run_a_due_policy_once(connection, store, admin_user, local_store, workers):  # noqa: F811
    seed(store)
    policy = enabled_policy(admin_user)
    first, second = workers(), workers()
    wait_for(lambda: BulkJob.objects.filter(policy=policy, status=BulkJob.DONE).exists(), what="the policy's run")
    for worker in (first, second):  # both workers' loops look again: the policy is not due any more
        wait_for_recovery_rounds(worker, 2)
    assert BulkJob.objects.filter(policy=policy).count() == 1
    assert AuditEvent.objects.filter(action="retention.run").count() == 1
    assert AuditEvent.objects.filter(action="bulk.finish").count() == 1
    assert all(store.call("TTL", key) > 0 for key in NO_TTL) and store.call("TTL", HELD) > 0
    assert first.poll() is None and second.poll() is None


def test_schedules():
    daily = RetentionPolicy(schedule=RetentionPolicy.DAILY, daily_at=clock(3, 0))
    at = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    assert retention.next_run_after(daily, at) == datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    assert retention.next_run_after(daily, at.replace(hour=3)) == datetime(2026, 5, 2, 3, 0, tzinfo=UTC)
    hourly = RetentionPolicy(schedule=RetentionPolicy.EVERY_HOURS, every_hours=6)
    # From the run that was due (no drift), but never a run in the past (missed runs are not made up).
    assert retention.next_run_after(hourly, at, due=at - timedelta(minutes=1)) == at + timedelta(hours=6, minutes=-1)
    assert retention.next_run_after(hourly, at, due=at - timedelta(days=2)) == at + timedelta(hours=6)
    assert retention.next_run_after(hourly, at, due=at - timedelta(hours=6)) == at + timedelta(hours=6)  # not `at`


def test_a_daily_time_is_in_utc_whatever_the_servers_time_zone():
    daily = RetentionPolicy(schedule=RetentionPolicy.DAILY, daily_at=clock(20, 0))
    at = datetime(2026, 5, 1, 13, 0, tzinfo=UTC)  # already 2 May, 01:00, in Auckland
    with override_settings(TIME_ZONE="Pacific/Auckland"):
        assert retention.next_run_after(daily, at) == datetime(2026, 5, 1, 20, 0, tzinfo=UTC)


def test_create_edit_enable_and_disable_are_audited_with_the_rule(admin_client, admin_user, store):
    write_langchain_session(store, "chat:1", ["hi"])
    policy = create(admin_client, rule="ttl_if_none", ttl_seconds=WEEK)
    assert not policy.enabled and policy.created_by == admin_user
    created = AuditEvent.objects.get(action="retention.create")
    assert (
        created.outcome == "ok" and created.details["rule"] == "ttl_if_none" and created.details["policy"] == policy.pk
    )

    # Enabling needs a preview made since the last edit, and the one the page showed.
    response = admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": "1", **SHOWN_ENV})
    policy.refresh_from_db()
    assert response.status_code == 302 and not policy.enabled
    assert AuditEvent.objects.get(action="retention.enable").outcome == "failed"
    admin_client.post(f"/retention/{policy.pk}/preview/", SHOWN_ENV)
    preview = retention.latest_preview(policy)
    assert AuditEvent.objects.get(action="retention.preview").job == f"bulk:{preview.pk}"
    admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": preview.pk, **SHOWN_ENV})
    policy.refresh_from_db()
    assert policy.enabled and AuditEvent.objects.filter(action="retention.enable", outcome="ok").count() == 1

    # A new schedule keeps it on; a new TTL turns it off until previewed again.
    edit = {"name": "bound", "rule": "ttl_if_none", "pattern": "chat:*", "ttl_seconds": WEEK, **SHOWN_ENV}
    admin_client.post(f"/retention/{policy.pk}/edit/", {**edit, "schedule": "hours", "every_hours": "12"})
    policy.refresh_from_db()
    assert policy.enabled and policy.every_hours == 12 and policy.daily_at is None
    admin_client.post(
        f"/retention/{policy.pk}/edit/", {**edit, "ttl_seconds": DAY, "schedule": "hours", "every_hours": "12"}
    )
    policy.refresh_from_db()
    assert not policy.enabled and policy.next_run_at is None and policy.ttl_seconds == DAY
    edits = AuditEvent.objects.filter(action="retention.edit").order_by("id")
    assert [event.details["changed"] for event in edits] == [["schedule", "daily_at", "every_hours"], ["ttl_seconds"]]
    assert edits[1].details["disabled"] is True
    response = admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": preview.pk, **SHOWN_ENV})
    policy.refresh_from_db()
    assert not policy.enabled  # that preview was of the policy before the edit

    admin_client.post(f"/retention/{policy.pk}/preview/", SHOWN_ENV)
    admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": retention.latest_preview(policy).pk, **SHOWN_ENV})
    assert admin_client.get(f"/retention/{policy.pk}/disable/").status_code == 200
    policy.refresh_from_db()
    assert policy.enabled  # the confirmation page changes nothing
    admin_client.post(f"/retention/{policy.pk}/disable/", SHOWN_ENV)
    policy.refresh_from_db()
    assert not policy.enabled and policy.next_run_at is None
    assert AuditEvent.objects.get(action="retention.disable").details["policy"] == policy.pk
    # The list and the policy's page are audited reads.
    admin_client.get("/retention/")
    assert AuditEvent.objects.filter(action="retention.view").exists()


def test_a_clearing_rule_is_refused_without_the_typed_confirmation(admin_client, store):
    data = {"name": "purge", "rule": "clear", "pattern": "chat:*", "schedule": "daily", "daily_at": "03:00"}
    for typed in ("", "yes", "chat:"):
        response = admin_client.post("/retention/new/", {**data, "confirm": typed, **SHOWN_ENV})
        assert response.status_code == 422 and "type the connection name" in text_of(response)
    assert not RetentionPolicy.objects.exists()
    refused = AuditEvent.objects.filter(action="retention.create", outcome="failed")
    assert refused.count() == 3 and {event.details["typed"] for event in refused} == {"(other)"}
    admin_client.post("/retention/new/", {**data, "confirm": "default (environment)", **SHOWN_ENV})
    policy = RetentionPolicy.objects.get()
    # Turning a TTL rule into a clearing one, or a clearing one onto other sessions, asks again.
    edit = {**data, "pattern": "*", **SHOWN_ENV}
    assert admin_client.post(f"/retention/{policy.pk}/edit/", edit).status_code == 422
    assert admin_client.post(f"/retention/{policy.pk}/edit/", {**edit, "confirm": "*"}).status_code == 302
    policy.refresh_from_db()
    assert policy.pattern == "*"


def test_the_form_needs_a_ttl_and_a_schedule_that_fit_the_rule(admin_client, connection):
    page = admin_client.get("/retention/new/")
    assert 'value="*"' in page.content.decode()  # the connection's key pattern by default
    bad = {"name": "x", "rule": "cap_ttl", "pattern": "chat:*", "schedule": "hours", **SHOWN_ENV}
    response = admin_client.post("/retention/new/", bad)
    text = text_of(response)
    assert response.status_code == 422 and "Give the TTL" in text and "how many hours" in text
    response = admin_client.post("/retention/new/", {**bad, "ttl_seconds": 11 * 365 * DAY, "every_hours": "2"})
    assert response.status_code == 422 and not RetentionPolicy.objects.exists()


def test_a_preview_under_way_is_polled_and_cannot_be_enabled_yet(admin_client, store, settings):
    settings.TASKS = DUMMY_TASKS  # the dry run waits for a worker
    policy = create(admin_client, rule="ttl_if_none", ttl_seconds=WEEK)
    admin_client.post(f"/retention/{policy.pk}/preview/", SHOWN_ENV)
    preview = retention.latest_preview(policy)
    page = admin_client.get(f"/retention/{policy.pk}/").content.decode()
    assert "Dry run: a complete SCAN" in page and "Enable" not in page
    fragment = admin_client.get(f"/retention/{policy.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert fragment.strip().startswith('<section id="preview"') and 'hx-trigger="every 1s"' in fragment
    admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": preview.pk, **SHOWN_ENV})
    policy.refresh_from_db()
    assert not policy.enabled
    assert AuditEvent.objects.filter(action="retention.view").count() == 1  # the poll is not another view


def test_a_policys_page_links_its_last_runs_to_their_bulk_jobs(admin_client, admin_user, store):
    seed(store)
    policy = enabled_policy(admin_user)
    [job] = retention.run_due_policies()
    page = admin_client.get(f"/retention/{policy.pk}/").content.decode()
    assert f'href="/bulk/{job.pk}/"' in page
    assert f"a run of retention policy #{policy.pk}, confirmed by the policy" in text_of(
        admin_client.get(f"/bulk/{job.pk}/")
    )
    listed = admin_client.get("/retention/").content.decode()
    assert f'href="/retention/{policy.pk}/"' in listed and "every 6 hours" in listed


def test_the_commands_dry_run_changes_nothing_and_says_what_each_policy_would(connection, store, admin_user):
    seed(store)
    hold(HELD, admin_user)
    policy = enabled_policy(admin_user)
    before, due = snapshot(store), policy.next_run_at
    out = io.StringIO()
    call_command("retention", "run", "--dry-run", stdout=out)
    assert snapshot(store) == before
    policy.refresh_from_db()
    assert policy.next_run_at == due and not BulkJob.objects.filter(policy=policy, is_preview=False).exists()
    text = out.getvalue()
    assert f"would change {len(NO_TTL)} session(s)" in text and "1 on legal hold" in text
    assert repr(NO_TTL[0]) in text and f"on hold: {HELD!r}" in text


def test_the_command_runs_due_policies_and_fails_loudly(connection, store, admin_user, settings):
    settings.TASKS = DATABASE_TASKS  # queued for a worker there is none of: the command does the work itself
    seed(store)
    policy = enabled_policy(admin_user)
    out = io.StringIO()
    call_command("retention", "run", stdout=out)
    job = BulkJob.objects.get(policy=policy, is_preview=False)
    assert job.status == BulkJob.DONE and f"bulk job {job.pk} done: {len(NO_TTL) + 1} changed" in out.getvalue()
    assert all(store.call("TTL", key) > 0 for key in NO_TTL)
    out = io.StringIO()
    call_command("retention", "run", stdout=out)
    assert "No policy is due" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("retention", "run", "--policy", "999", stdout=io.StringIO())
    RetentionPolicy.objects.filter(pk=policy.pk).update(enabled=False)
    with pytest.raises(CommandError):
        call_command("retention", "run", "--policy", str(policy.pk), stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    call_command("retention", "list", stdout=out)
    assert f"#{policy.pk} 'bound'" in out.getvalue() and "disabled" in out.getvalue()


def test_an_edit_and_a_disable_are_audited_as_who_did_them_where_and_what_they_typed(
    admin_client, admin_user, store, django_user_model
):
    data = {"name": "purge", "rule": "clear", "pattern": "chat:*", "schedule": "daily", "daily_at": "03:00"}
    admin_client.post("/retention/new/", {**data, "confirm": "default (environment)", **SHOWN_ENV})
    policy = RetentionPolicy.objects.get()
    assert AuditEvent.objects.get(action="retention.create").details["typed"] == "default (environment)"
    editor = user_with_role(django_user_model, "eve-admin", "Admin")
    admin_client.force_login(editor)

    # A clearing rule renamed, on the same sessions: nothing to type again.
    response = admin_client.post(f"/retention/{policy.pk}/edit/", {**data, "name": "purge chats", **SHOWN_ENV})
    assert response.status_code == 302
    # Onto other sessions: typed again, and what was typed is on record when it is one of the words asked for.
    refused = admin_client.post(f"/retention/{policy.pk}/edit/", {**data, "pattern": "*", "confirm": "ok", **SHOWN_ENV})
    assert refused.status_code == 422
    assert "A clearing rule deletes sessions for good: type the connection name" in text_of(refused)
    for pattern, typed in (("*", "default (environment)"), ("chat:*", "chat:*")):
        response = admin_client.post(
            f"/retention/{policy.pk}/edit/", {**data, "pattern": pattern, "confirm": typed, **SHOWN_ENV}
        )
        assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.pattern == "chat:*" and policy.changed_by == editor
    assert not policy.enabled and policy.next_run_at is None  # never enabled: an edit schedules nothing
    edits = list(AuditEvent.objects.filter(action="retention.edit").order_by("id"))
    assert edits[0].details["now"] == {
        "policy": policy.pk,
        "name": "purge chats",
        "rule": "clear",
        "pattern": "chat:*",
        "ttl_seconds": None,
        "schedule": "daily",
        "daily_at": "03:00:00",
        "every_hours": None,
    }
    assert [(event.outcome, event.details.get("typed")) for event in edits] == [
        ("ok", None),
        ("failed", "(other)"),
        ("ok", "default (environment)"),
        ("ok", "chat:*"),
    ]
    assert {(event.user, event.connection_slug) for event in edits} == {(editor, "env")}

    admin_client.force_login(admin_user)
    admin_client.post(f"/retention/{policy.pk}/disable/", SHOWN_ENV)
    disabled = AuditEvent.objects.get(action="retention.disable")
    assert (disabled.user, disabled.connection_slug, disabled.outcome) == (admin_user, "env", "ok")
    policy.refresh_from_db()
    assert not policy.enabled and policy.changed_by == admin_user


def test_the_command_says_why_it_does_not_run_a_disabled_policy(connection, admin_user):
    policy = enabled_policy(admin_user)
    RetentionPolicy.objects.filter(pk=policy.pk).update(enabled=False)
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("retention", "run", "--policy", str(policy.pk), stdout=io.StringIO(), stderr=err)
    assert f"Policy #{policy.pk} is disabled: preview and enable it first." in err.getvalue()


def test_a_new_schedule_of_an_enabled_policy_moves_its_next_run(admin_client, admin_user):
    policy = enabled_policy(admin_user)  # every 6 hours, due a minute ago
    edit = {"name": "bound", "rule": "ttl_if_none", "pattern": "chat:*", "ttl_seconds": WEEK, **SHOWN_ENV}
    before = timezone.now()
    admin_client.post(f"/retention/{policy.pk}/edit/", {**edit, "schedule": "hours", "every_hours": "12"})
    policy.refresh_from_db()
    assert policy.enabled and before + timedelta(hours=12) <= policy.next_run_at <= timezone.now() + timedelta(hours=12)
    # A disabled policy has no next run, whatever its new schedule.
    admin_client.post(f"/retention/{policy.pk}/disable/", SHOWN_ENV)
    admin_client.post(f"/retention/{policy.pk}/edit/", {**edit, "schedule": "daily", "daily_at": "04:00"})
    policy.refresh_from_db()
    assert not policy.enabled and policy.daily_at == clock(4, 0) and policy.next_run_at is None


def test_enabling_is_refused_with_the_reason_when_the_policy_is_on_or_changed_meanwhile(
    admin_client, admin_user, store, django_user_model
):
    policy = create(admin_client, rule="ttl_if_none", ttl_seconds=WEEK)
    # Another disabled policy changed at the same moment: enabling one leaves it alone.
    twin = RetentionPolicy.objects.create(
        connection_slug="env", connection_name="default (environment)", name="twin", pattern="x:*",
        rule=RetentionPolicy.TTL_IF_NONE, ttl_seconds=DAY, schedule=RetentionPolicy.EVERY_HOURS, every_hours=1,
        changed_at=policy.changed_at,
    )  # fmt: skip
    admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": "1", **SHOWN_ENV})
    admin_client.post(f"/retention/{policy.pk}/preview/", SHOWN_ENV)
    preview = retention.latest_preview(policy)
    assert preview.requested_by == admin_user
    assert AuditEvent.objects.get(action="retention.preview").user == admin_user
    stale = RetentionPolicy.objects.get(pk=policy.pk)  # read before the enabling below
    before = timezone.now()
    admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": preview.pk, **SHOWN_ENV})
    policy.refresh_from_db()
    assert policy.enabled and before <= policy.enabled_at <= timezone.now() and policy.enabled_by == admin_user
    twin.refresh_from_db()
    assert not twin.enabled and twin.next_run_at is None

    admin_client.post(f"/retention/{policy.pk}/enable/", {"preview": preview.pk, **SHOWN_ENV})
    # Enabled meanwhile by someone else, from a page read before: refused, the first enabling stands.
    other = user_with_role(django_user_model, "eve-admin", "Admin")
    request = RequestFactory().post("/")
    request.user = other
    assert retention.enable_policy(request, stale, preview.pk) == "The policy changed meanwhile: preview it again."
    policy.refresh_from_db()
    assert policy.enabled_by == admin_user
    # Edited meanwhile (and so disabled): the preview read with it is of the policy before the edit.
    RetentionPolicy.objects.filter(pk=policy.pk).update(enabled=False, ttl_seconds=DAY, changed_at=timezone.now())
    assert retention.enable_policy(request, stale, preview.pk) == "The policy changed meanwhile: preview it again."
    policy.refresh_from_db()
    assert not policy.enabled

    events = AuditEvent.objects.filter(action="retention.enable").order_by("id")
    assert [(event.outcome, event.error) for event in events] == [
        ("failed", "Preview the policy as it is now, then enable it from that preview."),
        ("ok", ""),
        ("failed", "This policy is enabled already."),
        ("failed", "The policy changed meanwhile: preview it again."),
        ("failed", "The policy changed meanwhile: preview it again."),
    ]
    # Each names who, where, and the preview it was asked from (none before the first preview).
    assert [(event.user, event.connection_slug, event.job, event.details["preview"]) for event in events] == [
        (admin_user, "env", "", None),
        *[(user, "env", f"bulk:{preview.pk}", preview.pk) for user in (admin_user, admin_user, other, other)],
    ]
    assert events[1].details["rule"] == "ttl_if_none" and events[1].details["ttl_seconds"] == WEEK


def test_a_policys_last_runs_are_its_own_newest_ten_runs_not_its_previews(connection, admin_user, settings):
    settings.TASKS = DUMMY_TASKS  # the runs are created, none is run
    policy, other = enabled_policy(admin_user), enabled_policy(admin_user)
    preview = retention.preview_policy(None, policy, user=admin_user)  # as the command does it, for someone
    assert preview.requested_by == admin_user
    event = AuditEvent.objects.get(action="retention.preview")
    assert (event.outcome, event.user, event.connection_slug, event.job) == ("ok", admin_user, "env", preview.audit_job)
    assert event.details == retention.rule_details(policy)
    runs = []
    for _ in range(11):
        RetentionPolicy.objects.filter(pk__in=[policy.pk, other.pk]).update(next_run_at=timezone.now())
        jobs = retention.run_due_policies()  # both due at the same moment: each runs
        assert sorted(job.policy_id for job in jobs) == [policy.pk, other.pk]
        runs += [job for job in jobs if job.policy_id == policy.pk]
    newest_ten = [job.pk for job in reversed(runs[1:])]
    assert [job.pk for job in retention.last_runs(policy)] == newest_ten
    assert retention.latest_preview(policy) == preview  # not a run made since
    again = retention.preview_policy(None, policy)
    retention.preview_policy(None, other)
    assert [job.pk for job in retention.last_runs(policy)] == newest_ten  # a preview is no run
    assert retention.latest_preview(policy) == again  # not another policy's


def test_the_command_waits_for_the_end_of_a_run_a_worker_has_taken(connection, admin_user, settings, monkeypatch):
    settings.TASKS = DUMMY_TASKS
    job = retention.claim_run(enabled_policy(admin_user))
    BulkJob.objects.filter(pk=job.pk).update(status=BulkJob.RUNNING)  # a worker took it
    waits = []

    def the_worker_ends_it_meanwhile(seconds):
        waits.append(seconds)
        BulkJob.objects.filter(pk=job.pk).update(status=BulkJob.DONE)

    monkeypatch.setattr(retention.time, "sleep", the_worker_ends_it_meanwhile)
    assert retention.see_through(job).status == BulkJob.DONE and waits == [retention.WAIT_POLL]


def test_a_run_is_due_every_n_hours_from_the_last_due_time_and_not_once_disabled(connection, admin_user, settings):
    settings.TASKS = DUMMY_TASKS
    policy = enabled_policy(admin_user)  # every 6 hours, due a minute ago
    due = policy.next_run_at
    job = retention.claim_run(policy)
    policy.refresh_from_db()
    assert policy.next_run_at == due + timedelta(hours=6)  # no drift by the time it took to start
    event = AuditEvent.objects.get(action="retention.run")
    assert (event.outcome, event.user, event.connection_slug, event.job) == ("ok", admin_user, "env", f"bulk:{job.pk}")
    assert event.details == {**retention.rule_details(policy), "bulk_job": job.pk}
    RetentionPolicy.objects.filter(pk=policy.pk).update(next_run_at=due)
    seen_due = RetentionPolicy.objects.get(pk=policy.pk)
    RetentionPolicy.objects.filter(pk=policy.pk).update(enabled=False)  # disabled after it was read as due
    assert retention.claim_run(seen_due) is None
    assert BulkJob.objects.filter(policy=policy).count() == 1


def test_a_policy_whose_connection_is_gone_neither_runs_nor_previews_and_says_so(connection, admin_user):
    policy = enabled_policy(admin_user)
    RetentionPolicy.objects.filter(pk=policy.pk).update(connection_slug="gone", connection_name="Gone")
    policy.refresh_from_db()
    assert retention.run_due_policies() == []
    request = RequestFactory().post("/")
    request.user = admin_user
    for previewed in ({"request": request}, {"request": None, "user": admin_user}):  # the page's, the command's
        with pytest.raises(retention.PolicyRefused, match="^The policy's connection no longer exists.$"):
            retention.preview_policy(policy=policy, **previewed)
    assert not BulkJob.objects.exists()
    events = AuditEvent.objects.filter(action__in=["retention.run", "retention.preview"]).order_by("id")
    assert [
        (event.action, event.outcome, event.error, event.user, event.connection_slug, event.connection_name)
        for event in events
    ] == [
        (action, "failed", "The policy's connection no longer exists.", admin_user, "gone", "Gone")
        for action in ("retention.run", "retention.preview", "retention.preview")
    ]
    assert [event.details for event in events] == [retention.rule_details(policy)] * 3
    assert events[0].details["pattern"] == "chat:*" and events[0].details["every_hours"] == 6


def test_a_creation_is_audited_with_the_rule_as_written_and_what_was_typed(admin_client, admin_user, store):
    clearing = {"name": "purge", "rule": "clear", "pattern": "chat:*", "schedule": "daily", "daily_at": "03:00"}
    admin_client.post("/retention/new/", {**clearing, "confirm": "chat:*", **SHOWN_ENV})
    create(admin_client, name="cap", rule="cap_ttl", ttl_seconds=WEEK, schedule="hours", every_hours="6")
    events = AuditEvent.objects.filter(action="retention.create").order_by("id")
    assert [(event.outcome, event.user, event.connection_slug) for event in events] == [("ok", admin_user, "env")] * 2
    policies = RetentionPolicy.objects.order_by("id")
    assert {(policy.created_by, policy.changed_by) for policy in policies} == {(admin_user, admin_user)}
    assert [event.details for event in events] == [
        {
            **clearing,
            "ttl_seconds": None,
            "daily_at": "03:00:00",
            "every_hours": None,
            "typed": "chat:*",
            "policy": policies[0].pk,
        },
        {
            "policy": policies[1].pk,
            "name": "cap",
            "rule": "cap_ttl",
            "pattern": "chat:*",
            "ttl_seconds": WEEK,
            "schedule": "hours",
            "daily_at": None,
            "every_hours": 6,
        },
    ]
