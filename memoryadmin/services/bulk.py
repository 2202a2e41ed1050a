"""Bulk actions on many sessions: freeze the selection, dry run, confirm, run in batches.

What is confirmed is what runs: every job works on a frozen list of keys
(BulkJobKey rows) made before confirmation: the explicit selection, the
results of a content search, or, for a pattern, every key a complete SCAN
found during the dry run. Keys written later are never touched. Each key is
checked (still a list) in the same atomic script that acts on it. And it
runs on the store it was counted on: the job records the connection's URL
and a fingerprint of its token, and refuses to be confirmed, and pauses at
a run or resume, when the connection points elsewhere now.

A run goes through the frozen keys in batches of at most BATCH_SIZE, one
store call each, and saves its progress after every batch, so a killed
worker's job resumes at the last saved batch. The script that acts on a
batch also keeps its replies in the store (one key per job, overwritten by
each batch), atomically with the action: a batch sent again, after a kill or
a timed-out reply, is not applied twice but answered with the replies of its
first run, so every count stays exact; and a batch's counts are added only
where the job stands (its next position), so never twice. The job row holds
the counters; memory stays flat however many keys there are.
"""

import itertools
import logging
import math
import time
from functools import partial

from django.db import connection as database
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from memoryadmin.bulk.models import BulkJob, BulkJobKey, SearchJob
from memoryadmin.fields import escape

from . import audit, background, content_search, holds, redaction, scripts
from .connections import ConnectionChoice, StoreChanged, binding_change, find_connection, store_binding
from .content_search import Matcher
from .jobs import Claim, ClaimLost, end_unless_taken, unexpected
from .read_ahead import read_ahead
from .sessions import GONE, NOT_A_LIST, SCAN_COUNT, scan_all
from .summaries import summary_key
from .summary_jobs import new_batch, queue_summaries
from .upstash import CommandCount, StoreError, get_writer, last_sync_token

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
# Pauses between the attempts of a batch the store did not take; then the job pauses.
RETRY_PAUSES = (0.5, 2.0, 5.0)
# Where a job's last batch keeps its replies, and for how long (a paused job may be resumed days later).
RECEIPT_PREFIX = "memoryadmin:bulk-result:"
RECEIPT_TTL = 7 * 86400
ONLY_ON_ITS_STORE = "The job goes on only once the connection points at that store again (or cancel it)."

# KEYS: session, summary, session, summary, ..., and last, for a run (not a count), the job's receipt.
# ARGV: mode (see LIST_COMMANDS), seconds, and for a run the batch's first position, receipt TTL,
# and a flag per session, "1" for one on legal hold (left alone, not even looked at).
# Reply: 1 (ran), then one reply per session: -2 gone, -3 not a list, -4 on hold, -5 unchanged: the mode's
# condition does not hold (all left alone), else its length before the action. A run's replies are kept in
# the receipt as "<first position>:<reply>,...": the same batch sent again gets them back, after REPLAYED
# instead of 1, and changes nothing.
REPLAYED = 0
ON_HOLD = -4
UNCHANGED = -5
# Conditional modes (retention policies): a TTL only on a session without one (EXPIRE NX), or one cut to
# the given TTL only when it is longer (EXPIRE XX LT: a session without a TTL is left alone); each counted
# by a mode that answers for the same condition, so a dry run freezes only the sessions a run would change.
COUNT_NO_TTL, COUNT_TTL_OVER, EXPIRE_NO_TTL, EXPIRE_TTL_OVER = "count_nx", "count_lt", "expire_nx", "expire_lt"
# What BATCH_SCRIPT runs for a session that is still a list, after its TYPE: LLEN, then the mode's action
# (a conditional mode: its condition first, then LLEN and the action on the session or its summary).
LIST_COMMANDS = {
    "count": 1,
    "clear": 2,
    "expire": 3,
    "persist": 3,
    COUNT_NO_TTL: 2,
    COUNT_TTL_OVER: 2,
    EXPIRE_NO_TTL: 3,
    EXPIRE_TTL_OVER: 3,
}
# ... and for a list whose condition does not hold: the condition alone (a TTL, PTTL or conditional EXPIRE).
UNCHANGED_COMMANDS = {COUNT_NO_TTL: 1, COUNT_TTL_OVER: 1, EXPIRE_NO_TTL: 1, EXPIRE_TTL_OVER: 1}


def _batch_commands(reply, keys, args):
    """The redis.call()s of one BATCH_SCRIPT run, from its reply.

    A batch answered from its receipt: the receipt's GET. Else a TYPE per session not on hold,
    LIST_COMMANDS[mode] more for each list acted on, UNCHANGED_COMMANDS[mode] for each left unchanged,
    and for a run (an odd number of keys: the receipt is last) the receipt's GET and SET.
    """
    ran, *replies = reply
    if ran == REPLAYED:
        return 1
    mode = args[0]
    receipt = 2 if len(keys) % 2 else 0
    looked_at = sum(length != ON_HOLD for length in replies)
    unchanged = UNCHANGED_COMMANDS.get(mode, 0) * sum(length == UNCHANGED for length in replies)
    return receipt + looked_at + LIST_COMMANDS[mode] * sum(length >= 0 for length in replies) + unchanged


BATCH_SCRIPT = scripts.Script(
    """
local mode, seconds, batch, ttl, held = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] or ''
local receipt = (#KEYS % 2 == 1) and KEYS[#KEYS] or nil
local replies = {1}
-- A conditional mode acts on (or counts) a list only when its condition holds; the EXPIREs test and act at once.
local conditions = {
  count_nx = function(key) return redis.call('TTL', key) == -1 end,
  count_lt = function(key) return redis.call('PTTL', key) > tonumber(seconds) * 1000 end,
  expire_nx = function(key) return redis.call('EXPIRE', key, seconds, 'NX') == 1 end,
  expire_lt = function(key) return redis.call('EXPIRE', key, seconds, 'XX', 'LT') == 1 end,
}
if receipt then
  local saved, tag = redis.call('GET', receipt), batch .. ':'
  if saved and string.sub(saved, 1, #tag) == tag then
    replies = {0}
    for reply in string.gmatch(string.sub(saved, #tag + 1), '-?%d+') do
      replies[#replies + 1] = tonumber(reply)
    end
    return replies
  end
end
for i = 1, #KEYS - 1, 2 do
  local kind = string.sub(held, (i + 1) / 2, (i + 1) / 2) == '1' and 'held' or redis.call('TYPE', KEYS[i]).ok
  if kind == 'held' then
    replies[#replies + 1] = -4
  elseif kind == 'none' then
    replies[#replies + 1] = -2
  elseif kind ~= 'list' then
    replies[#replies + 1] = -3
  elseif conditions[mode] and not conditions[mode](KEYS[i]) then
    replies[#replies + 1] = -5
  else
    replies[#replies + 1] = redis.call('LLEN', KEYS[i])
    if mode == 'clear' then
      redis.call('UNLINK', KEYS[i], KEYS[i + 1])
    elseif mode == 'expire' then
      redis.call('EXPIRE', KEYS[i], seconds)
      redis.call('EXPIRE', KEYS[i + 1], seconds)
    elseif mode == 'expire_nx' or mode == 'expire_lt' then
      redis.call('EXPIRE', KEYS[i + 1], seconds)  -- the session's was set by its condition: its summary follows
    elseif mode == 'persist' then
      redis.call('PERSIST', KEYS[i])
      redis.call('PERSIST', KEYS[i + 1])
    end
  end
end
if receipt then
  redis.call('SET', receipt, batch .. ':' .. table.concat(replies, ',', 2), 'EX', ttl)
end
return replies
""",
    _batch_commands,
)


def apply_to_batch(connection, keys, mode, seconds=0, receipt=None, held=()):
    """Check and act on up to BATCH_SIZE sessions in one atomic call; one reply per key.

    receipt: (key, batch's first position) for a run, whose replies are kept there.
    held: keys on legal hold, answered ON_HOLD and left alone (a run only).
    """
    if not keys:
        return []
    names = [name for key in keys for name in (key, summary_key(connection, key))]
    extra = []
    if receipt:
        names.append(receipt[0])
        extra = [receipt[1], RECEIPT_TTL, "".join("1" if key in held else "0" for key in keys)]
    if mode in COUNT_MODES.values():  # the dry run: it only reads
        reply = scripts.read(connection, BATCH_SCRIPT, names, mode, seconds)
    else:
        reply = scripts.write(connection, BATCH_SCRIPT, names, mode, seconds, *extra)
    return reply[1:]


def run_cost(action, frozen, condition=BulkJob.ALWAYS):
    """The most a run on `frozen` keys costs: CommandCount(commands, round trips).

    Exact when every key is still a list (and still meets the job's condition) and no batch is sent
    twice (a retry, a resumed job): per batch one EVAL, the receipt's GET and SET, a TYPE per key and
    LIST_COMMANDS per list; then one DEL of the receipt. A key that is no longer a list costs
    LIST_COMMANDS less; one whose condition no longer holds, LIST_COMMANDS less UNCHANGED_COMMANDS.
    Re-summarizing sends nothing itself: each summary job it queues bills its own reads and write.
    A redaction has no estimate (None): it reads each session whole, however long it is.
    """
    if action == BulkJob.SUMMARIZE:
        return CommandCount(0, 0)
    if action == BulkJob.REDACT:
        return None
    batches = math.ceil(frozen / BATCH_SIZE)
    per_key = 1 + LIST_COMMANDS[run_mode(action, condition)]
    return CommandCount(commands=3 * batches + per_key * frozen + 1, round_trips=batches + 1)


def receipt_key(job):
    return f"{RECEIPT_PREFIX}{job.uuid}"


def filed_under(job):
    """The connection a job's audit events name: the job's own, even if deleted or renamed since."""
    return ConnectionChoice(job.connection_slug, job.connection_name, job.connection_is_production)


# --- creating and confirming -------------------------------------------------


def create_job(
    connection,
    user,
    action,
    *,
    ttl_seconds=None,
    keys=None,
    pattern="",
    search=None,
    redaction="",
    reference="",
    condition=BulkJob.ALWAYS,
    policy=None,
    is_preview=False,
):
    """A job in its dry run, bound to the connection's store; explicit keys (or a search's hits) are frozen.

    A search's hits are sessions of the store it ran on: StoreChanged (audited) when the
    connection points elsewhere now. A redaction works on a search's hits only (it redacts what the
    search matches); `redaction` says what it replaces, `reference` is the request it answers.
    A retention policy's job (services/retention.py) names its `policy`: its preview ends with the dry
    run; a run is confirmed by the policy (`user`, who enabled it) and goes on by itself. `condition`:
    which sessions a TTL is set on (BulkJob.CONDITIONS).
    """
    if action == BulkJob.REDACT and (search is None or redaction not in dict(BulkJob.REDACTIONS)):
        raise ValueError("A redaction redacts a content search's results: give the search and what to redact.")
    if search and (change := binding_change(connection, search, "since the search ran")):
        problem = f"{change} Run the search again to purge on the store it points at now."
        audit.record(
            None,
            "bulk.dry_run",
            user=user,
            connection=connection,
            outcome="failed",
            error=problem,
            details={"action": action, "search": search.pk},
        )
        raise StoreChanged(problem)
    selection = BulkJob.SEARCH if search else BulkJob.PATTERN if pattern else BulkJob.KEYS
    with transaction.atomic():
        job = BulkJob.objects.create(
            **store_binding(connection),
            connection_slug=connection.slug,
            connection_name=connection.name,
            connection_is_production=connection.is_production,
            action=action,
            ttl_seconds=ttl_seconds,
            redaction=redaction if action == BulkJob.REDACT else "",
            reference=reference,
            selection=selection,
            pattern=pattern,
            search=search,
            requested_by=user,
            condition=condition,
            policy=policy,
            is_preview=is_preview,
            confirmed_by=user if policy and not is_preview else None,
            confirmed_at=timezone.now() if policy and not is_preview else None,
        )
        if search:
            hits = search.hits.order_by("id").values_list("session_key", "matches").iterator()
            _freeze(job, hits)
        elif keys is not None:
            _freeze(job, ((key, None) for key in keys))
    background.enqueue(background.COUNT_BULK_JOB, job.pk)
    return job


def _freeze(job, keys):
    """Freeze (key, messages) pairs: a search's hits come with their matching messages (what a redaction counts)."""
    rows = ((position, key, messages, BulkJobKey.PENDING) for position, (key, messages) in enumerate(keys))
    for batch in iter(lambda: list(itertools.islice(rows, BATCH_SIZE)), []):
        _insert_keys(job, batch)


# The columns of a frozen key; each row gives position, key, messages and outcome.
_KEY_COLUMNS = ("job", "position", "key", "messages", "outcome", "redacted", "element_hashes")


def _insert_keys(job, rows):
    """Save frozen keys, (position, key, messages, outcome) each, by one executemany.

    bulk_create spent four fifths of a dry run's CPU making model objects and their SQL, value by value
    (a dry run of 100,000 sessions took 7 s). The key is escaped as its field does (StoreTextField: NUL);
    the values that are the same for every row are prepared by their fields, once.
    """
    fields = [BulkJobKey._meta.get_field(name) for name in _KEY_COLUMNS]
    quote = database.ops.quote_name
    redacted, hashes = fields[5].get_db_prep_save(None, database), fields[6].get_db_prep_save([], database)
    sql = (
        f"INSERT INTO {quote(BulkJobKey._meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    with database.cursor() as cursor:
        cursor.executemany(
            sql,
            [
                (job.pk, position, escape(key), messages, outcome, redacted, hashes)
                for position, key, messages, outcome in rows
            ],
        )


# What the operator types to confirm a job that destroys: a clear, or a redaction.
TYPED_CONFIRMATION = (BulkJob.CLEAR, BulkJob.REDACT)


def confirmation_words(job):
    """What the operator may type to confirm a clear: the count, or the connection's name."""
    return {str(job.total), job.connection_name}


def confirm_job(job, request, typed=""):
    """Queue a job awaiting confirmation (audited); returns an error message, or None when queued."""
    problem, words = None, confirmation_words(job)
    if job.status != BulkJob.AWAITING:
        problem = "This job is not awaiting confirmation any more."
    elif job.action in TYPED_CONFIRMATION and typed.strip() not in words:
        problem = (
            f"Type {job.total} (the number of sessions) or the connection name “{job.connection_name}” to confirm."
        )
    elif change := binding_change(find_connection(job.connection_slug), job, "since the dry run"):
        problem = f"{change} Not confirmed: start a new dry run to act on the store it points at now."
    elif not BulkJob.objects.filter(pk=job.pk, status=BulkJob.AWAITING).update(
        status=BulkJob.QUEUED, confirmed_by=request.user, confirmed_at=timezone.now()
    ):
        problem = "This job is not awaiting confirmation any more."
    audit.record(
        request,
        "bulk.confirm",
        connection=filed_under(job),
        job=job.audit_job,
        outcome="failed" if problem else "ok",
        error=problem or "",
        # What was typed only when it is one of the words asked for: anything else may be pasted text.
        details={"action": job.action, "sessions": job.total, "typed": typed if typed.strip() in words else "(other)"},
    )
    if problem is None:
        background.enqueue(background.RUN_BULK_JOB, job.pk)
    return problem


def discard_job(job):
    """Drop a job that was not confirmed (its dry run stays on record)."""
    BulkJob.objects.filter(pk=job.pk, status=BulkJob.AWAITING).update(
        status=BulkJob.DISCARDED, finished_at=timezone.now()
    )


def request_cancel(job):
    """A running job stops after its current batch; a queued one does not start."""
    if BulkJob.objects.filter(pk=job.pk, status__in=[BulkJob.QUEUED, BulkJob.PAUSED]).update(
        status=BulkJob.CANCELLED, finished_at=timezone.now()
    ):
        return
    BulkJob.objects.filter(pk=job.pk, status__in=[BulkJob.RUNNING, BulkJob.COUNTING]).update(cancel_requested=True)


RESUMABLE = (BulkJob.PAUSED, BulkJob.FAILED)


def resume_job(job, request):
    """Queue a paused (or failed) job again, from its last saved batch, if its connection still points at its store.

    Audited as bulk.resume; returns an error message, or None when queued.
    """
    problem = None
    if job.status not in RESUMABLE:
        problem = "This job is not paused."
    elif change := binding_change(find_connection(job.connection_slug), job, "since the dry run"):
        problem = f"{change} {ONLY_ON_ITS_STORE}"
        BulkJob.objects.filter(pk=job.pk, status=job.status).update(error=problem)
    elif not BulkJob.objects.filter(pk=job.pk, status=job.status).update(
        status=BulkJob.QUEUED, error="", failed=0, attempts=0
    ):
        problem = "This job is not paused."
    audit.record(
        request,
        "bulk.resume",
        connection=filed_under(job),
        job=job.audit_job,
        outcome="failed" if problem else "ok",
        error=problem or "",
        details={"action": job.action, "resumed_at": job.next_position, "sessions": job.total},
    )
    if problem is None:
        background.enqueue(background.RUN_BULK_JOB, job.pk)
    return problem


# --- the worker side ---------------------------------------------------------


def _job(job_id):
    return BulkJob.objects.select_related("requested_by", "confirmed_by").get(pk=job_id)


def _cancelled(job_id):
    return BulkJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def count_job(job_id):
    """The dry run: freeze a pattern's keys (complete SCAN) and count what the selection covers."""
    # Not taken twice, nor from a worker running it.
    claim = Claim.take(BulkJob, job_id, BulkJob.COUNTING, bill="dry_run")
    if claim is None:
        return
    with claim:
        job = _job(job_id)
        connection = find_connection(job.connection_slug)
        try:
            if change := binding_change(connection, job, "since the dry run began"):
                raise StoreChanged(change)
            if job.selection == BulkJob.PATTERN:
                _freeze_pattern(job, connection, claim)
            else:
                _count_frozen(job, connection, claim)
        except (StoreError, StoreChanged) as error:
            _drop_dry_run(job, claim.release, str(error))
            return
        except Exception as error:
            _drop_dry_run(job, claim.release, unexpected(error))
            raise
        if _cancelled(job_id):
            claim.release(status=BulkJob.DISCARDED, finished_at=timezone.now())
            return
        estimate = run_cost(job.action, BulkJobKey.objects.filter(job=job).count(), job.condition)
        # A run counts its attempts afresh.
        if not claim.release(
            status=_after_dry_run(job),
            attempts=0,
            estimated_commands=estimate.commands if estimate else None,
            estimated_round_trips=estimate.round_trips if estimate else None,
        ):
            return
    job.refresh_from_db()
    audit.record(
        None,
        "bulk.dry_run",
        user=job.requested_by,
        connection=filed_under(job),
        job=job.audit_job,
        details={
            "sessions": job.total,
            "messages": job.total_messages,
            "on_hold": job.held,
            "action": job.action,
            "dry_run_commands": job.dry_run_commands,
            "dry_run_round_trips": job.dry_run_round_trips,
            "estimated_commands": job.estimated_commands,
            "estimated_round_trips": job.estimated_round_trips,
        },
    )
    if job.status == BulkJob.QUEUED:
        background.enqueue(background.RUN_BULK_JOB, job.pk)


def _after_dry_run(job):
    """A preview ends with its dry run; a policy's run was confirmed by the policy; any other job awaits its operator."""
    if job.is_preview:
        return BulkJob.PREVIEWED
    if job.policy_id:
        return BulkJob.QUEUED
    return BulkJob.AWAITING


def _drop_dry_run(job, end, error):
    """A failed dry run: nothing was changed, the job cannot be confirmed (end: how to save that)."""
    if end(status=BulkJob.DISCARDED, error=f"The dry run failed: {error}", finished_at=timezone.now()):
        audit.record(
            None,
            "bulk.dry_run",
            user=job.requested_by,
            connection=filed_under(job),
            outcome="failed",
            error=error,
            job=job.audit_job,
        )
        return True
    return False


def _counted_steps(job, connection):
    """Each SCAN step's keys and their lengths (negative: not a session the job would change); reads only."""
    mode = count_mode(job.condition)
    for keys, _ in scan_all(connection, job.pattern):
        yield keys, apply_to_batch(connection, keys, mode, job.ttl_seconds or 0)


def _freeze_pattern(job, connection, claim):
    # A resumed dry run starts the SCAN again: it only reads.
    BulkJobKey.objects.filter(job=job).delete()
    position = examined = messages = held = 0
    # The next step is read from the store while this one's keys are saved.
    for keys, lengths in read_ahead(_counted_steps(job, connection)):
        examined += SCAN_COUNT
        # Only the sessions the job would change: lists, and for a conditional TTL those that meet it.
        found = [(key, length) for key, length in zip(keys, lengths) if length >= 0]
        on_hold = holds.held_keys(job.connection_slug, [key for key, _ in found])
        with transaction.atomic():  # the keys are saved only while this worker holds the job
            claim.save()
            _insert_keys(
                job,
                [
                    (position + i, key, length, BulkJobKey.HELD if key in on_hold else BulkJobKey.PENDING)
                    for i, (key, length) in enumerate(found)
                ],
            )
            position += len(found)
            messages += sum(length for _, length in found)
            held += len(on_hold)
            claim.save(examined_keys=examined, total=position, total_messages=messages, held=held)
        if _cancelled(job.pk):
            return


def _count_frozen(job, connection, claim):
    """Count the frozen sessions (each still a list?) and mark those on legal hold.

    A redaction's count is the search's: its matching messages, not the sessions' lengths.
    """
    total = messages = examined = held = 0
    for rows in _batches(job):
        keys = [row.key for row in rows]
        lengths = apply_to_batch(connection, keys, "count")
        on_hold = holds.held_keys(job.connection_slug, keys)
        for row, length in zip(rows, lengths):
            if job.action != BulkJob.REDACT:
                row.messages = max(length, 0)
            elif length < 0:
                row.messages = 0
            row.outcome = BulkJobKey.HELD if row.key in on_hold else BulkJobKey.PENDING
        examined += len(rows)
        total += sum(length >= 0 for length in lengths)
        messages += sum(row.messages for row, length in zip(rows, lengths) if length >= 0)
        held += sum(row.key in on_hold for row, length in zip(rows, lengths) if length >= 0)
        with transaction.atomic():  # saved only while this worker holds the job
            claim.save(examined_keys=examined, total=total, total_messages=messages, held=held)
            BulkJobKey.objects.bulk_update(rows, ["messages", "outcome"])


def _batches(job, start=0, size=BATCH_SIZE):
    """The frozen keys from a position on, `size` rows at a time (never all in memory)."""
    while True:
        rows = list(BulkJobKey.objects.filter(job=job, position__gte=start).order_by("position")[:size])
        if not rows:
            return
        yield rows
        start = rows[-1].position + 1


def run_job(job_id):
    """Act on the frozen keys in batches, saving progress after each; resumable."""
    claim = Claim.take(BulkJob, job_id, BulkJob.QUEUED, BulkJob.RUNNING, bill="run")
    if claim is None:
        return
    with claim:
        job = _job(job_id)
        try:
            _run(job, claim)
        except Exception as error:
            _stop(job, claim.release, BulkJob.FAILED, unexpected(error), finished_at=timezone.now())
            raise


MODES = {BulkJob.CLEAR: "clear", BulkJob.EXPIRE: "expire", BulkJob.PERSIST: "persist"}
CONDITIONAL_MODES = {BulkJob.NO_TTL: EXPIRE_NO_TTL, BulkJob.TTL_OVER: EXPIRE_TTL_OVER}
COUNT_MODES = {BulkJob.ALWAYS: "count", BulkJob.NO_TTL: COUNT_NO_TTL, BulkJob.TTL_OVER: COUNT_TTL_OVER}


def run_mode(action, condition=BulkJob.ALWAYS):
    """BATCH_SCRIPT's mode for a job's action (a condition applies to a TTL only)."""
    return CONDITIONAL_MODES[condition] if action == BulkJob.EXPIRE and condition else MODES[action]


def count_mode(condition):
    """The dry run's mode: a conditional TTL counts only the sessions that meet its condition."""
    return COUNT_MODES[condition]


def _run(job, claim):
    connection = find_connection(job.connection_slug)
    if change := binding_change(connection, job, "since the dry run"):
        return _stop(job, claim.release, BulkJob.PAUSED, f"{change} {ONLY_ON_ITS_STORE}")
    matcher = None
    if job.action == BulkJob.REDACT:
        query = content_search.search_query(job.search) if job.search else None
        if query is None:
            problem = "The search's query has been erased (its results expired): search again to redact."
            return _stop(job, claim.release, BulkJob.FAILED, problem, finished_at=timezone.now())
        matcher = Matcher(query, job.search.is_regex)
    # Started once: a resumed job (audited as bulk.resume) does not start again. The run counts the
    # sessions on hold afresh: a hold may have been placed or lifted since the dry run.
    if claim.mine().filter(started_at__isnull=True).update(started_at=timezone.now(), held=0):
        audit.record(
            None,
            "bulk.start",
            user=job.confirmed_by,
            connection=filed_under(job),
            job=job.audit_job,
            details={"action": job.action, "sessions": job.total},
        )
    if job.action == BulkJob.SUMMARIZE and job.summary_batch is None:
        job.summary_batch = _summary_batch(job, connection, claim)
    status, action = BulkJob.DONE, "bulk.finish"
    batch_size = REDACT_BATCH if matcher else BATCH_SIZE
    for rows in _batches(job, job.next_position, batch_size):
        if _cancelled(job.pk):
            status, action = BulkJob.CANCELLED, "bulk.cancel"
            break
        claim.check()  # still this worker's job: else nothing more is sent
        try:
            counts = _act_on(job, connection, rows, matcher)
        except StoreError as error:
            return _stop(job, claim.release, BulkJob.PAUSED, str(error), failed=len(rows))
        _save_batch(job, claim, rows, **counts)
    if job.action in MODES:
        _drop_receipt(job, connection)
    _finish(job, claim, status, action)
    if status == BulkJob.DONE and job.is_erasure:
        start_verification(job, connection)


# Sessions a redaction saves its progress after: it reads each one whole.
REDACT_BATCH = 20


def _act_on(job, connection, rows, matcher):
    """Do the job's action on a batch of its frozen keys, setting each row's outcome; returns counts to add.

    Sessions on legal hold (now: a hold placed since the dry run counts) are left alone.
    """
    keys = [row.key for row in rows]
    on_hold = holds.held_keys(job.connection_slug, keys)
    if job.action == BulkJob.SUMMARIZE:
        # One summary job per key (the summaries' own queue and limits); queued is done, for this job.
        queue_summaries(connection, job.summary_batch, [key for key in keys if key not in on_hold], job.confirmed_by)
        for row in rows:
            row.outcome = BulkJobKey.HELD if row.key in on_hold else BulkJobKey.DONE
        return {}
    if job.action == BulkJob.REDACT:
        return _redact(job, connection, rows, matcher, on_hold)
    receipt = (receipt_key(job), rows[0].position)
    mode = run_mode(job.action, job.condition)
    replies = _with_retries(apply_to_batch, connection, keys, mode, job.ttl_seconds or 0, receipt=receipt, held=on_hold)
    for row, reply in zip(rows, replies):
        row.outcome = OUTCOMES.get(reply, BulkJobKey.DONE)
    # The sessions' lengths before the clear; a set TTL removes nothing.
    return {"messages_removed": sum(reply for reply in replies if reply > 0) if job.action == BulkJob.CLEAR else 0}


REDACTION_OUTCOMES = {
    redaction.REDACTED: BulkJobKey.DONE,
    redaction.NOTHING_MATCHED: BulkJobKey.NO_MATCH,
    redaction.SESSION_GONE: BulkJobKey.GONE,
    redaction.SESSION_NOT_A_LIST: BulkJobKey.NOT_A_LIST,
}


def _redact(job, connection, rows, matcher, on_hold):
    """Redact what the search matches in each session of a batch (the hashes of what changed are kept)."""
    redacted = 0
    for row in rows:
        if row.key in on_hold:
            row.outcome = BulkJobKey.HELD
            continue
        result = _with_retries(
            redaction.redact_session,
            connection,
            row.key,
            matcher,
            job.search.role or None,
            whole=job.redaction == BulkJob.WHOLE_MESSAGES,
        )
        # A message that kept changing under each attempt was not redacted: the session failed.
        row.outcome = BulkJobKey.CHANGED if result.changed else REDACTION_OUTCOMES[result.outcome]
        row.redacted = result.redacted
        row.element_hashes = [list(pair) for pair in zip(result.sha1_before, result.sha1_after)]
        redacted += result.redacted
    return {"messages_redacted": redacted}


def _summary_batch(job, connection, claim):
    """The one re-summarization of a bulk job, however often the job is resumed."""
    with transaction.atomic():
        batch = new_batch(connection, job.confirmed_by, f"Bulk job {job.pk}: {job.total} session(s)")
        claim.save(summary_batch=batch)
    return batch


def _drop_receipt(job, connection):
    """Every batch's replies are saved: the receipt in the store can go (else it expires)."""
    try:
        get_writer(connection).call("DEL", receipt_key(job))
    except StoreError as error:
        log.info("bulk job %s: its receipt stays until it expires (%s)", job.pk, error)


def _with_retries(call, *args, **kwargs):
    for pause in (*RETRY_PAUSES, None):
        try:
            return call(*args, **kwargs)
        except StoreError as error:
            if pause is None:
                raise
            log.warning("bulk batch failed (%s); retrying in %s s", error, pause)
            time.sleep(pause)


OUTCOMES = {
    GONE: BulkJobKey.GONE,
    NOT_A_LIST: BulkJobKey.NOT_A_LIST,
    ON_HOLD: BulkJobKey.HELD,
    UNCHANGED: BulkJobKey.UNCHANGED,
}


def _save_batch(job, claim, rows, **counts):
    """Save a batch's outcomes (set on its rows) and add `counts` to the job's counters.

    ClaimLost when this worker no longer holds the job.
    """
    by_outcome = {}
    for row in rows:
        by_outcome.setdefault(row.outcome, []).append(row.position)

    def sessions(*outcomes):
        return sum(len(by_outcome.get(outcome, [])) for outcome in outcomes)

    with transaction.atomic():
        # Counted only where this worker's job stands, so a batch is never counted twice
        # (not even by a worker that was given up for dead and taken over).
        counted = (
            claim.mine()
            .filter(next_position=rows[0].position)
            .update(
                next_position=rows[-1].position + 1,
                done=F("done") + sessions(BulkJobKey.DONE),
                skipped=F("skipped") + sessions(*BulkJobKey.SKIPPED),
                held=F("held") + sessions(BulkJobKey.HELD),
                failed=F("failed") + sessions(BulkJobKey.CHANGED),
                heartbeat_at=timezone.now(),
                **{name: F(name) + value for name, value in counts.items()},
                **claim.unbilled(),
            )
        )
        if not counted:
            raise ClaimLost
        if job.action == BulkJob.REDACT:
            BulkJobKey.objects.bulk_update(rows, ["outcome", "redacted", "element_hashes"])
        else:
            for outcome, positions in by_outcome.items():
                BulkJobKey.objects.filter(job=job, position__in=positions).update(outcome=outcome)


def _stop(job, end, status, error, **changes):
    """Pause or fail a run (end: how to save that, if this worker still may); audited as bulk.fail."""
    if not end(status=status, error=error, **changes):
        return False
    audit.record(
        None,
        "bulk.fail",
        user=job.confirmed_by,
        connection=filed_under(job),
        outcome="failed",
        error=error,
        job=job.audit_job,
        details=_counts(job),
    )
    return True


def give_up(job, error):
    """End a job whose worker stopped too often (for the recovery); True when ended."""
    end = partial(end_unless_taken, job)
    if job.status == BulkJob.COUNTING:
        return _drop_dry_run(_job(job.pk), end, error)
    return _stop(_job(job.pk), end, BulkJob.FAILED, error, finished_at=timezone.now())


def _finish(job, claim, status, action):
    if claim.release(status=status, finished_at=timezone.now()):
        audit.record(
            None, action, user=job.confirmed_by, connection=filed_under(job), job=job.audit_job, details=_counts(job)
        )


def _counts(job):
    job.refresh_from_db()
    return {
        "action": job.action,
        "sessions": job.total,
        "done": job.done,
        "skipped": job.skipped,
        "failed": job.failed,
        "messages_removed": job.messages_removed,
        "messages_redacted": job.messages_redacted,
        "on_hold": job.held,
        "estimated_commands": job.estimated_commands,
        "run_commands": job.run_commands,
        "run_round_trips": job.run_round_trips,
    }


def progress(job):
    """Counters for the progress page: examined, done, skipped, failed, rate, time left."""
    processed = job.done + job.skipped
    elapsed = ((job.finished_at or timezone.now()) - job.started_at).total_seconds() if job.started_at else 0
    rate = processed / elapsed if elapsed > 0 and job.status != BulkJob.COUNTING else 0
    remaining = max(job.total - processed, 0)
    return {
        "processed": processed,
        "percent": int(100 * processed / job.total) if job.total else 100,
        "rate": rate,
        "seconds_left": int(remaining / rate) if rate and job.status == BulkJob.RUNNING else None,
        "elapsed": elapsed,
    }


def report_rows(job):
    """The report's rows: every frozen key and what the job did to it (for CSV, streamed)."""
    yield ["position", "session_key", "messages_at_dry_run", "outcome", "messages_redacted"]
    for row in BulkJobKey.objects.filter(job=job).order_by("position").iterator(chunk_size=2000):
        messages, redacted = ("" if value is None else value for value in (row.messages, row.redacted))
        yield [row.position, row.key, messages, row.outcome or "pending", redacted]


# --- verifying an erasure ----------------------------------------------------


def start_verification(job, connection):
    """Search again, as the erasure's search did, after the job's last write (read-your-writes on replicas)."""
    search = content_search.repeat_search(job.search, job.confirmed_by, after=last_sync_token(connection))
    BulkJob.objects.filter(pk=job.pk).update(verification=search, remaining=None, remaining_keys=[], verified_at=None)
    content_search.queue_search(search)


def record_verification(search_id):
    """A verification search ended: record what remains on its job (audited), then erase the searches' text.

    Only a verification that read everything counts; one that failed leaves the job unverified, and
    the query is kept (until the results expire) so it can be verified again.
    """
    job = BulkJob.objects.filter(verification_id=search_id).select_related("verification", "search").first()
    if job is None:
        return
    search = job.verification
    verified = search.status == SearchJob.DONE
    remaining_keys = list(search.hits.order_by("id").values_list("session_key", flat=True)) if verified else []
    if verified and not BulkJob.objects.filter(pk=job.pk, verified_at__isnull=True).update(
        remaining=len(remaining_keys), remaining_keys=remaining_keys, verified_at=timezone.now()
    ):
        return  # recorded already (a task run twice)
    audit.record(
        None,
        "bulk.verify",
        user=job.confirmed_by,
        connection=filed_under(job),
        job=job.audit_job,
        outcome="ok" if verified else "failed",
        error="" if verified else search.error or f"The verification search ended {search.status}.",
        details={"search": search.pk, "remaining": search.matched_sessions, "sessions_read": search.sessions_read},
    )
    if verified:
        # The erasure is done and proven: the app keeps no copy of what it erased.
        content_search.erase_search(job.search, "erasure done")
        content_search.erase_search(search, "erasure verified")


def verify_again(job):
    """Run the verification again (after one that failed); an error message, or None when started."""
    if (
        not job.is_erasure
        or job.status != BulkJob.DONE
        or job.verified_at
        or (job.verification and job.verification.is_active)
    ):
        return "This job has nothing to verify now."
    if content_search.search_query(job.search) is None:
        return "The search's query has been erased (its results expired): search again to verify."
    connection = find_connection(job.connection_slug)
    if change := binding_change(connection, job, "since the dry run"):
        return f"{change} {ONLY_ON_ITS_STORE}"
    start_verification(job, connection)
    return None
