"""The overview of a store: what its sessions are, how long they live, how big they are.

A run reads the whole keyspace, a SCAN step at a time (no TYPE filter: keys
that are no sessions are counted too, by type), and for each step ONE script
call that answers, per key, its TYPE and, for a list (a session): LLEN, TTL,
its summary's `message_count`, the bytes of its elements and the first
START_BYTES of the elements at both ends (the writer's format). The bytes are
summed inside Lua (`#element` over LRANGE chunks), so the reply carries
numbers and two short starts per session whatever the session's size.

Bounded like every read: the keys of a call fit a request (reply_budget), the
reply stops before its budget, and a call reads at most WORK_ELEMENTS
elements; a step whose keys need more goes on in further calls from where the
last one stopped (a long session may span calls). Upstash has no MEMORY USAGE
(its command list has none), so bytes are the elements' own lengths: what the
chat apps stored and what the store's request limit counts, without the
store's per-key overhead.

A run is a job (services/jobs.py): claimed once, its heartbeat beaten, its
cursor and counters saved together after every step (so a run resumed after
its worker died goes on from its last saved step, counting nothing twice),
cancellable between steps, billed. Runs are kept: the page draws the trend of
a connection's last runs.
"""

import heapq
import json
import logging
from functools import partial

from django.utils import timezone

from memoryadmin.overview.models import OverviewRun

from . import audit, background, scripts
from .connections import ConnectionChoice, StoreChanged, binding_change, find_connection, store_binding
from .jobs import Claim, end_unless_taken, unexpected
from .messages import UNKNOWN, parse_element
from .sessions import COST_FUNCTION, SCAN_COUNT, TTL_NONE, decode_keys, reply_budget, writer_label
from .summaries import summary_key, summary_state
from .upstash import StoreError, get_client

log = logging.getLogger(__name__)

START_BYTES = 256  # of the element at each end of a session: enough for the writer's format
LRANGE_STEP = 100  # elements per LRANGE inside the script
WORK_ELEMENTS = 20_000  # elements a call reads at most before it replies: no call holds the store long
BIGGEST = 20

# (label, the largest value it holds): a value goes in the first bucket whose bound it does not pass.
HOUR, DAY = 3600, 86400
TTL_BUCKETS = [("< 1 h", HOUR - 1), ("< 1 d", DAY - 1), ("< 7 d", 7 * DAY - 1), ("< 30 d", 30 * DAY - 1)]
TTL_LONGER, TTL_NO = "longer", "none"
LENGTH_BUCKETS = [("1", 1), ("2-5", 5), ("6-20", 20), ("21-100", 100), ("101-1000", 1000)]
LENGTH_MORE = ">1000"
SUMMARY_STATES = ["none", "fresh", "stale"]


def empty_measures():
    return {
        "keys": 0,
        "sessions": 0,
        "bytes": 0,
        "messages": 0,
        "writers": {},
        "ttl": {label: 0 for label in [TTL_NO, *(label for label, _ in TTL_BUCKETS), TTL_LONGER]},
        "lengths": {label: 0 for label in [*(label for label, _ in LENGTH_BUCKETS), LENGTH_MORE]},
        "summaries": dict.fromkeys(SUMMARY_STATES, 0),
        "summary_hashes": 0,
        "other_types": {},
        "biggest": [],  # [{key, bytes, messages, writer, ttl}], the BIGGEST largest by bytes
    }


def bucket(value, buckets, beyond):
    return next((label for label, most in buckets if value <= most), beyond)


def ttl_bucket(ttl):
    return TTL_NO if ttl == TTL_NONE else bucket(ttl, TTL_BUCKETS, TTL_LONGER)


def no_ttl_share(measures):
    """The percentage of sessions without a TTL (0 for a store without sessions)."""
    sessions = measures.get("sessions", 0)
    return 100 * measures["ttl"][TTL_NO] / sessions if sessions else 0.0


# --- the script -----------------------------------------------------------------------------
# KEYS: key, its summary key, key, its summary key... ARGV: the pair to start from (from 1), the element
# of it to start from (0: the key from its start; more: a session read on), the reply's byte budget, the
# elements to read at most, the bytes of each end's element to reply. Reply: {the pair to go on from
# (#pairs + 1 when all are done), the element to go on from, then one record per pair read}:
#   a key read from its start: {type} for anything but a list; for a list {'list', LLEN, TTL, the summary's
#   message_count, bytes read, LRANGEs, start of element 0, its size, start of the last element read, its size}
#   a session read on: {'more', bytes read, LRANGEs, start of the last element read, its size}
# (a start and size are false when the call read no element of it).
RECORD_BYTES = 200  # a record's reply without its two starts, generously

STEP_SCRIPT = scripts.Script(
    COST_FUNCTION
    + f"local step = {LRANGE_STEP}\n"
    + f"local record_bytes = {RECORD_BYTES}\n"
    + """
local pair, position = tonumber(ARGV[1]), tonumber(ARGV[2])
local budget, work, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- What a record may take of the reply at most: its numbers, and two starts of `cap` bytes.
local reserve = record_bytes + 2 * cost(string.rep(' ', cap))
local reply, bytes, read = {0, 0}, 0, 0
while pair <= #KEYS / 2 do
  if #reply > 2 and bytes + reserve > budget then break end
  local key = KEYS[2 * pair - 1]
  local record, size_at
  if position > 0 then
    record, size_at = {'more', 0, 0, false, false}, 2
  else
    local kind = redis.call('TYPE', key).ok
    if kind == 'list' then
      record = {'list', redis.call('LLEN', key), redis.call('TTL', key),
                redis.call('HGET', KEYS[2 * pair], 'message_count'), 0, 0, false, false, false, false}
      size_at = 5
    else
      record = {kind}
    end
  end
  reply[#reply + 1] = record
  bytes = bytes + reserve
  if size_at then
    local chunk
    repeat
      chunk = redis.call('LRANGE', key, position, position + step - 1)
      record[size_at + 1] = record[size_at + 1] + 1
      for n = 1, #chunk do record[size_at] = record[size_at] + #chunk[n] end
      if #chunk > 0 then
        if position == 0 then record[7], record[8] = string.sub(chunk[1], 1, cap), #chunk[1] end
        record[#record - 1], record[#record] = string.sub(chunk[#chunk], 1, cap), #chunk[#chunk]
      end
      read = read + #chunk
      position = position + step
    until #chunk < step or read >= work
    if #chunk == step then
      -- Read on in the next call, from the next element: the work bound is reached.
      reply[1], reply[2] = pair, position
      return reply
    end
  end
  pair, position = pair + 1, 0
end
reply[1], reply[2] = pair, 0
return reply
""",
    lambda reply, keys, args: _step_commands(reply),
)


def _step_commands(reply):
    """Per record: a TYPE for a key read from its start, LLEN, TTL and HGET more for a list; its LRANGEs."""
    commands = 0
    for record in reply[2:]:
        kind = record[0]
        if kind == b"list":
            commands += 4 + record[5]
        elif kind == b"more":
            commands += record[2]
        else:
            commands += 1
    return commands


# --- measuring ------------------------------------------------------------------------------


class Session:
    """A session being measured: what its records said so far (a long one spans calls)."""

    def __init__(self, key, record):
        _, self.length, self.ttl, covered, self.bytes, _, first, first_size, last, last_size = record
        self.key, self.covered = key, covered
        self.first = parse_element(first, first_size) if first is not None else None
        self.last = (last, last_size)

    def read_on(self, record):
        _, read, _, last, last_size = record
        self.bytes += read
        if last is not None:
            self.last = (last, last_size)

    def writer(self):
        ends = [self.first, parse_element(*self.last) if self.last[0] is not None else None]
        known = next((message for message in ends if message is not None and message.format != UNKNOWN), None)
        return writer_label(self.key, known)


def _call_groups(connection, pairs):
    """The key pairs of a step in groups whose request stays within the connection's budget."""
    budget = reply_budget(connection)
    group, size = [], 0
    for pair in pairs:
        pair_size = sum(len(json.dumps(name)) + 4 for name in pair)
        if group and size + pair_size > budget:
            yield group
            group, size = [], 0
        group.append(pair)
        size += pair_size
    if group:
        yield group


def measure_keys(connection, keys, measures):
    """Add what the keys of one SCAN step are to `measures` (one script call, more only when bounds say so)."""
    namespace = connection.summary_namespace
    sessions = []
    for group in _call_groups(connection, [(key, summary_key(connection, key)) for key in keys]):
        names = [name for pair in group for name in pair]
        pair, position = 1, 0
        while pair <= len(group):
            reply = scripts.read(
                connection, STEP_SCRIPT, names, pair, position, reply_budget(connection), WORK_ELEMENTS, START_BYTES
            )
            # One record per pair, from the one the call started at; a session read on comes first.
            for key, record in zip((key for key, _ in group[pair - 1 :]), reply[2:]):
                kind = record[0].decode("utf-8", "replace")
                if kind == "more":
                    sessions[-1].read_on(record)
                elif kind == "list":
                    sessions.append(Session(key, record))
                elif kind == "none":
                    pass  # expired or deleted since SCAN listed it
                elif kind == "hash" and namespace and key.startswith(namespace):
                    measures["summary_hashes"] += 1
                else:
                    measures["other_types"][kind] = measures["other_types"].get(kind, 0) + 1
            pair, position = reply[0], reply[1]
    for session in sessions:
        _count_session(measures, session)
    measures["biggest"] = heapq.nlargest(
        BIGGEST, measures["biggest"], key=lambda row: (row["bytes"], row["messages"], row["key"])
    )


def _count_session(measures, session):
    writer = session.writer()
    measures["sessions"] += 1
    measures["bytes"] += session.bytes
    measures["messages"] += session.length
    measures["writers"][writer] = measures["writers"].get(writer, 0) + 1
    measures["ttl"][ttl_bucket(session.ttl)] += 1
    measures["lengths"][bucket(session.length, LENGTH_BUCKETS, LENGTH_MORE)] += 1
    measures["summaries"][summary_state(session.covered, session.length)] += 1
    measures["biggest"].append(
        {"key": session.key, "bytes": session.bytes, "messages": session.length, "writer": writer, "ttl": session.ttl}
    )


def scan_steps(connection, cursor):
    """(keys, the cursor after them) for each SCAN step from `cursor`, over every key of the store."""
    client = get_client(connection)
    while True:
        raw_cursor, raw_keys = client.call("SCAN", cursor, "COUNT", SCAN_COUNT)
        cursor = raw_cursor.decode()
        yield raw_keys, cursor
        if cursor == "0":
            return


# --- runs -----------------------------------------------------------------------------------


def count_keys(connection):
    """The keys in the store (DBSIZE: one command), or None when the store cannot say now."""
    try:
        return get_client(connection).call("DBSIZE")
    except StoreError as error:
        log.info("%s: no key count for the overview's progress (%s)", connection.name, error)
        return None


def create_run(connection, user):
    """A run, queued for no one yet, with the store's key count now (the progress bar's end)."""
    return OverviewRun.objects.create(
        connection_slug=connection.slug,
        connection_name=connection.name,
        requested_by=user,
        keys_in_store=count_keys(connection),
        measures=empty_measures(),
    )


def start_run(connection, user):
    """Queue a measurement of the connection's store; the one already queued or running if there is one."""
    active = OverviewRun.objects.filter(connection_slug=connection.slug, status__in=OverviewRun.ACTIVE).first()
    if active:
        return active
    run = create_run(connection, user)
    background.enqueue(background.RUN_OVERVIEW, run.pk)
    return run


def measure_now(connection, user=None):
    """Measure the store here and now (the `overview` command): a run like the page's, saved too."""
    run = create_run(connection, user)
    run_overview(run.pk)
    run.refresh_from_db()
    return run


def request_cancel(run):
    OverviewRun.objects.filter(pk=run.pk, status__in=OverviewRun.ACTIVE).update(cancel_requested=True)
    if OverviewRun.objects.filter(pk=run.pk, status=OverviewRun.QUEUED, worker="").update(
        status=OverviewRun.CANCELLED, finished_at=timezone.now()
    ):
        _audit(OverviewRun.objects.select_related("requested_by").get(pk=run.pk), OverviewRun.CANCELLED, "")


def run_overview(run_id):
    """The task: measure the run's store, saving counters and cursor after every SCAN step."""
    claim = Claim.take(OverviewRun, run_id, OverviewRun.QUEUED, OverviewRun.RUNNING)
    if claim is None:
        return
    with claim:
        run = OverviewRun.objects.select_related("requested_by").get(pk=run_id)
        claim.mine().filter(started_at__isnull=True).update(started_at=timezone.now())
        connection = find_connection(run.connection_slug)
        status, error, failure = OverviewRun.DONE, "", None
        try:
            if connection is None:
                raise StoreError("The connection of this overview was deleted.")
            # Bound to the store it starts on; resumed, only on that one.
            bound = claim.mine().filter(store_url="").update(**store_binding(connection))
            if not bound and (change := binding_change(connection, run, "since the overview started")):
                raise StoreChanged(change)
            if _measure(run, connection, claim):
                status = OverviewRun.CANCELLED
        except (StoreError, StoreChanged) as problem:
            status, error = OverviewRun.FAILED, str(problem)
        except Exception as problem:  # the run ends, whatever happened
            status, error, failure = OverviewRun.FAILED, unexpected(problem), problem
        _end(run, claim.release, status, error)
        if failure:
            raise failure  # for the task's record and the worker's log; the run shows the error


def _measure(run, connection, claim):
    """Measure from the run's saved cursor on; True when it stopped because it was asked to."""
    if run.cursor == "0" and run.examined_keys:
        return False  # the last step was saved, but not the end: nothing left to read
    measures = run.measures or empty_measures()
    for raw_keys, cursor in scan_steps(connection, run.cursor):
        keys, unaddressable = decode_keys(raw_keys)
        measure_keys(connection, keys, measures)
        measures["keys"] += len(raw_keys)
        measures["unaddressable"] = measures.get("unaddressable", 0) + unaddressable
        # The counters and the cursor after their step, saved together (only while this worker holds the
        # run: else ClaimLost, and nothing of the step is saved).
        claim.save(cursor=cursor, examined_keys=measures["keys"], measures=measures)
        if OverviewRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
            return cursor != "0"
    return False


def _end(run, end, status, error):
    """Save how a run ended (end: how, if this worker still may) and audit it; True when saved."""
    if not end(status=status, error=error, finished_at=timezone.now()):
        return False
    run.refresh_from_db()
    _audit(run, status, error)
    return True


def _audit(run, status, error):
    measures = run.measures or {}
    audit.record(
        None,
        "overview.run",
        user=run.requested_by,
        connection=ConnectionChoice(run.connection_slug, run.connection_name, False),
        outcome="failed" if status == OverviewRun.FAILED else "ok",
        error=error,
        job=run.audit_job,
        # Counts only: never a key or a message.
        details={
            "run": run.pk,
            "status": status,
            "keys": measures.get("keys", 0),
            "sessions": measures.get("sessions", 0),
            "bytes": measures.get("bytes", 0),
            "sessions_without_ttl": measures.get("ttl", {}).get(TTL_NO, 0),
            "keys_in_store": run.keys_in_store,
            "store_commands": run.store_commands,
            "store_round_trips": run.store_round_trips,
        },
    )


def give_up(job, error):
    """End a run whose worker stopped too often (for the recovery); True when ended."""
    run = OverviewRun.objects.select_related("requested_by").get(pk=job.pk)
    return _end(run, partial(end_unless_taken, job), OverviewRun.FAILED, error)


# --- what the page shows --------------------------------------------------------------------


def latest_run(connection_slug):
    return OverviewRun.objects.filter(connection_slug=connection_slug).select_related("requested_by").first()


def trend(connection_slug, runs=12):
    """The connection's last finished runs, oldest first: (run, sessions, bytes, share without TTL)."""
    done = OverviewRun.objects.filter(connection_slug=connection_slug, status=OverviewRun.DONE)[:runs]
    return [
        (run, run.measures["sessions"], run.measures["bytes"], no_ttl_share(run.measures)) for run in reversed(done)
    ]


def progress(run):
    """Percent of the store's keys (at the start) examined so far; None when the store gave no count."""
    if run.status == OverviewRun.DONE:
        return 100
    if not run.keys_in_store:
        return None
    return min(99, 100 * run.examined_keys // run.keys_in_store)
