"""Content search: which sessions mention this text (an e-mail address, a name...)?

Upstash lists have no index, so the search reads every session in scope: a
SCAN step at a time, its sessions' elements in replies sized in bytes (the
store refuses a reply over its request limit), by a script that reads
session after session until a reply's budget. Each
element is matched as stored (the raw JSON, case-insensitively) and, where
that cannot be decisive, as decoded text: JSON writers in Python escape
non-ASCII (`é` is stored as `\\u00e9`), so a query with non-ASCII letters
is also tried on the decoded message text. Only elements that may match are
parsed, which is what makes the search fast.

A regular expression runs on RE2, which matches in time linear in the text
(no backtracking, so no pattern can hang a worker) and compiles within a
memory cap: patterns it would need more memory for, and repetition counts
above 1000 (nested ones multiply), are refused with a form error, in the web
request and in the worker alike. A search as a whole has a time budget
(MEMORYADMIN_SEARCH_BUDGET_SECONDS); when it runs out the search stops,
keeping the hits found so far.

The query and the snippets are personal data. A search keeps its query as a
keyed hash (of the query as it is matched) and a masked form for the record;
the query itself only encrypted, and only until the search's data is erased:
by erase_search once a purge made of it is done, or by erase_expired_searches
MEMORYADMIN_SEARCH_RESULTS_DAYS after it ended (the worker sweeps). Nothing
it stores or logs on failure quotes the query or a message.
"""

import json
import logging
import math
import re
import time
from datetime import timedelta
from functools import partial

import re2
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from memoryadmin.bulk.models import BulkJob, SearchHit, SearchJob

from . import audit, background, scripts, secrets, signing
from .connections import ConnectionChoice, StoreChanged, binding_change, find_connection, store_binding
from .jobs import Claim, end_unless_taken
from .messages import detect_order, parse_element
from .read_ahead import read_ahead
from .sessions import (
    COST_FUNCTION,
    NEWEST_FIRST,
    SCAN_COUNT,
    MessageChanged,
    SessionNotFound,
    decode_keys,
    read_element,
    reply_budget,
)
from .upstash import CommandCount, StoreError, get_client, reading_after

log = logging.getLogger(__name__)

MAX_QUERY_LENGTH = 500
# RE2's own default: enough for any pattern an operator types; refused above it. Compiling
# the largest pattern it allows peaks at ~60 MB and takes ~0.2 s (measured).
REGEX_MAX_MEMORY = 8 << 20
SNIPPET_CONTEXT = 80  # characters either side of the match
ROLES = ["human", "ai", "system", "tool"]
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class QueryError(ValueError):
    """The query cannot be searched for; the message says why."""


class OutOfTime(Exception):
    """The search's time budget ran out."""


def compile_pattern(query):
    """The query as a case-insensitive RE2 pattern, or QueryError saying why it is refused."""
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = REGEX_MAX_MEMORY
    options.log_errors = False  # refusals are the operator's to read, not the log's
    try:
        return re2.compile(query, options)
    except re2.error as error:
        reason = error.args[0] if error.args else "unknown error"
    finally:
        # re2.compile keeps its last 128 patterns alive (~6 MB each near the limit, measured): with
        # the cache emptied, a pattern's memory is freed when its search is over.
        re2.purge()
    reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    if reason.startswith("invalid repetition size"):
        raise QueryError(
            f"That regular expression repeats too much ({reason.split(': ', 1)[-1]}): a count may be at most 1000, "
            "and counts nested inside each other multiply, so (a{100}){20} is refused too."
        )
    if reason.startswith("pattern too large"):
        raise QueryError(
            f"That regular expression is too large to search with (over {REGEX_MAX_MEMORY >> 20} MB compiled): "
            "use smaller repetition counts."
        )
    if re.fullmatch(r"invalid perl operator: .*|invalid escape sequence: \\[0-9k].*", reason):
        reason += "; lookahead, lookbehind and backreferences are not supported"
    raise QueryError(f"That regular expression is not valid: {reason}.")


# An escaped printable ASCII character (casefolded). Python's json and JSON.stringify never write one;
# other writers do (Gson's \u0027, Go's \u003c, PHP's \/), and it hides a plain query from the raw text.
_ASCII_ESCAPE = re.compile(r"\\(?:u00[2-7][0-9a-f]|/)")


class Matcher:
    """Finds the query in an element's raw text or decoded message text."""

    def __init__(self, query, is_regex=False):
        if not query or len(query) > MAX_QUERY_LENGTH:
            raise QueryError(f"Give a search text of 1 to {MAX_QUERY_LENGTH} characters.")
        self.is_regex = is_regex
        if is_regex:
            self.pattern = compile_pattern(query)
            if self.pattern.search("") is not None:
                raise QueryError("That regular expression matches empty text, so it would match every message.")
        else:
            self.needle = query.casefold()
            # How the query looks inside JSON written with ensure_ascii (Python's default):
            # non-ASCII letters, quotes and backslashes are escaped there.
            self.escaped = json.dumps(query)[1:-1].casefold()
            self.needs_decoding = self.escaped != self.needle

    def find(self, text):
        """(start, end) of the first match in text, or None: the first of those redaction would replace."""
        return next(self._spans(text), None)

    def sub(self, text, replacement):
        """The text with every match replaced by `replacement` (redaction)."""
        pieces, position = [], 0
        for start, end in self._spans(text):
            pieces += [text[position:start], replacement]
            position = end
        return "".join(pieces) + text[position:] if pieces else text

    def _spans(self, text):
        """(start, end) of every match in text, in order, none overlapping."""
        if self.is_regex:
            # RE2 reads UTF-8. A lone surrogate (a JSON "\\ud800") cannot be encoded, so it becomes "?":
            # one character for one byte, which keeps the offsets below right.
            data = text.encode("utf-8", errors="replace")
            characters, at = 0, 0
            for match in self.pattern.finditer(data):
                start, end = match.span()
                if start == end:
                    # Empty text at one position ("jane|\b" at a word's edge; a pattern that matches empty
                    # text as a whole is refused): no match, or nearly every message would be a hit.
                    continue
                characters += len(data[at:start].decode())
                length = len(data[start:end].decode())
                yield characters, characters + length
                characters, at = characters + length, end
            return
        folded = text.casefold()
        # Where each character of the folded text came from: casefold turns some into several ("ß" -> "ss").
        origin = range(len(text)) if len(folded) == len(text) else _folded_origins(text)
        start = folded.find(self.needle)
        while start >= 0:
            end = start + len(self.needle)
            yield origin[start], origin[end - 1] + 1
            start = folded.find(self.needle, end)

    def may_match_raw(self, raw_text):
        """A cheap test on the stored text; False means the element cannot match."""
        if self.is_regex:
            return True
        folded = raw_text.casefold()
        # Any JSON escape starts with a backslash: only then can decoding reveal a match.
        return self.needle in folded or (
            "\\" in raw_text and (self.needs_decoding or _ASCII_ESCAPE.search(folded) is not None)
        )


def _folded_origins(text):
    """For each character of text.casefold(), the index of the character of `text` it came from."""
    return [index for index, character in enumerate(text) for _ in character.casefold()]


def match_element(matcher, element, role):
    """(message, snippet source text, span) when the element matches the query (and role), else None."""
    raw_text = element.decode("utf-8", errors="replace")
    if not matcher.may_match_raw(raw_text):
        return None
    message = parse_element(element)
    if role and message.role != role:
        return None
    searchable = "\n".join(filter(None, [message.text, *(call.arguments for call in message.tool_calls)]))
    span = matcher.find(searchable) if searchable else None
    if span:
        return message, searchable, span
    span = matcher.find(raw_text)
    return (message, raw_text, span) if span else None


def match_session(matcher, elements, role, deadline=math.inf):
    """(matches, first matching chronological index, order, snippet, span) for one session's elements.

    Raises OutOfTime once time.monotonic() passes the deadline: a session can be long.
    """
    found = []
    for index, element in enumerate(elements):
        if time.monotonic() > deadline:
            raise OutOfTime
        if match := match_element(matcher, element, role):
            found.append((index, match))
    if not found:
        return None
    order = detect_order([message for _, (message, _, _) in found]) or detect_order([parse_element(elements[0])])
    order = order or NEWEST_FIRST
    # The first match in time is the last one in a newest-first list.
    list_index, (_, text, (start, end)) = found[-1] if order == NEWEST_FIRST else found[0]
    chronological = len(elements) - 1 - list_index if order == NEWEST_FIRST else list_index
    left = max(0, start - SNIPPET_CONTEXT)
    # A lone surrogate (a JSON "\\ud800") cannot be saved: it becomes U+FFFD, one character for one.
    snippet = LONE_SURROGATE.sub("\ufffd", text[left : end + SNIPPET_CONTEXT])
    return len(found), chronological, order, snippet, (start - left, end - left)


# Sessions of a SCAN step, read whole one after the other until a reply's byte budget. KEYS: the sessions
# still to read. ARGV: the element of the first one to start from, the budget. An element over the budget
# is not read: {its size, its index from the tail} stands in its place (it is read in parts). A key that
# is no list (any more) reads as empty. Reply: {sessions finished, the element of the next one to go on
# from, then per session read: how many of its elements follow, the elements}. Read in steps of STEP_READ.
STEP_READ = 100


def _step_commands(reply, keys, args):
    """Per session it read (the one it stopped in too), an LRANGE per STEP_READ elements it took, and one more:
    the short one that ended it, or the one holding the element it stopped at; an LLEN per element too big.
    """
    _, _, *records = reply
    commands, position = 0, 0
    while position < len(records):
        count = records[position]
        elements = records[position + 1 : position + 1 + count]
        commands += count // STEP_READ + 1 + sum(type(element) is list for element in elements)
        position += 1 + count
    return commands


STEP_SCRIPT = scripts.Script(
    COST_FUNCTION
    + f"local step = {STEP_READ}\n"
    + """
local from, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
local reply, bytes = {0, 0}, 0
for k = 1, #KEYS do
  local counted = #reply + 1
  reply[counted] = 0
  local position = from
  repeat
    local chunk = redis.pcall('LRANGE', KEYS[k], position, position + step - 1)
    if chunk.err then chunk = {} end
    for n = 1, #chunk do
      local element, size = chunk[n], cost(chunk[n])
      local big = size > budget
      if big then size = cost('') end
      if bytes > 0 and bytes + size > budget then
        reply[1], reply[2] = k - 1, position + n - 1
        return reply
      end
      -- Only for an element it takes: the bill counts an LLEN per placeholder in the reply.
      if big then element = {#element, position + n - 1 - redis.call('LLEN', KEYS[k])} end
      bytes = bytes + size
      reply[#reply + 1] = element
      reply[counted] = reply[counted] + 1
    end
    position = position + step
  until #chunk < step
  from = 0
end
reply[1] = #KEYS
return reply
""",
    _step_commands,
)


def scan_steps(connection, pattern, cursor):
    """(keys, their first read, the cursor after their step) for each SCAN step from `cursor`.

    One round trip per step: its pipeline reads the previous step's sessions, as many as one
    reply may carry (all of them, for most steps), and scans the next step.
    """
    keys, last = None, False
    while True:
        commands = [scripts.Run(STEP_SCRIPT, keys, (0, reply_budget(connection)))] if keys else []
        if not last:
            commands.append(["SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, "TYPE", "list"])
        replies = scripts.read_pipeline(connection, commands)
        if keys is not None:
            yield keys, replies[0] if keys else None, cursor
        if last:
            return
        raw_cursor, raw_keys = replies[-1]
        keys, cursor = decode_keys(raw_keys)[0], raw_cursor.decode()
        last = cursor == "0"


def read_sessions(connection, keys, first, deadline=math.inf):
    """(key, every element in list order) for each session of a step, given the step's first read.

    What the first read could not carry is read on from where it stopped, a reply's budget at a time,
    the next reply made while this one is matched; an element too big for any reply is read in parts.
    Each session is handed over as soon as it is complete, so a few replies and one session are held
    at once. Raises OutOfTime once time.monotonic() passes the deadline: long sessions take many reads.
    """
    if not keys:
        return
    replies = _step_replies(connection, keys, first, deadline)
    if first[0] < len(keys):
        replies = read_ahead(replies)
    elements = []  # of the session being read, which a reply may leave unfinished
    for done, (finished, _, *records) in replies:
        position, session = 0, done
        while position < len(records):
            count = records[position]
            elements += records[position + 1 : position + 1 + count]
            position += 1 + count
            if session < done + finished:
                yield keys[session], _whole(connection, keys[session], elements)
                elements, session = [], session + 1


def _step_replies(connection, keys, first, deadline):
    """(sessions finished before it, reply) for each read of a step: the first, then on from where each stopped."""
    done, reply = 0, first
    while True:
        yield done, reply
        done += reply[0]
        if done == len(keys):
            return
        if time.monotonic() > deadline:
            raise OutOfTime
        reply = scripts.read(connection, STEP_SCRIPT, keys[done:], reply[1], reply_budget(connection))


def _whole(connection, key, elements):
    """A session's elements, those too big for a reply read in parts ({size, index from the tail} stands for them).

    One that is gone by then (the session cleared or trimmed) is left out.
    """
    whole = []
    for index, element in enumerate(elements):
        if type(element) is list:
            element = _read_big(connection, key, element[0], (index, element[1]))
        if element is not None:
            whole.append(element)
    return whole


def _read_big(connection, key, size, indexes):
    """An element too big for a reply, read in parts: by its index from the head, else from the tail.

    The chat app may push meanwhile, which moves the indexes counted from the end it pushes at: from the
    head for LPUSH writers, the tail for RPUSH ones. So the element is the one of its size at either index.
    """
    changed = False
    for index in indexes:
        try:
            element = read_element(connection, key, index)
            if element.size == size:
                return b"".join(element.parts)
        except SessionNotFound:
            continue
        except MessageChanged:
            pass
        changed = True
    if changed:
        raise MessageChanged(
            f"A message of session {key!r} changed while the search read it: the chat app trimmed or rewrote "
            "the session meanwhile. Search again."
        )
    return None


def estimated_cost(keys_in_store):
    """About the most a search of a store holding `keys_in_store` keys costs: CommandCount(commands, round trips).

    As scan_steps and read_sessions read (change it with them): a SCAN step per SCAN_COUNT keys, each in
    one pipeline with one STEP_SCRIPT run on the step before's sessions (an LRANGE each), and a last
    pipeline. The most: every key is a session in scope; a narrower pattern reads fewer. Not counted: an
    LRANGE per STEP_READ further messages of a longer session; a step whose sessions hold more than a
    reply may carry, one more round trip (a run and an LRANGE) per further reply; a message too big for
    a reply, its parts. SCAN's step count is about, not exactly, keys / SCAN_COUNT.
    """
    steps = keys_in_store // SCAN_COUNT + 1
    return CommandCount(commands=2 * steps + keys_in_store, round_trips=steps + 1)


def count_keys(connection):
    """The keys in the store (DBSIZE: one command), or None when the store cannot say now."""
    try:
        return get_client(connection).call("DBSIZE")
    except StoreError as error:
        log.info("%s: no key count for a search estimate (%s)", connection.name, error)
        return None


# --- the query, kept as little as it may be -----------------------------------

QUERY_HASH_PURPOSE = "search-query"
MASKED_MAX_LENGTH = 200  # SearchJob.query_masked
EMAIL_WORD = re.compile(r"(.)[^@]*@(.+)", re.DOTALL)
# Bulk jobs in these states still work from their search (its hits, its query): its data stays.
DEPENDING_STATUSES = (BulkJob.COUNTING, BulkJob.AWAITING, BulkJob.QUEUED, BulkJob.RUNNING, BulkJob.PAUSED)
QUERY_ERASED = "This search's query was erased, so it cannot run."
QUERY_REFUSED = "The search text was refused when the search ran: search again to see why."


def query_hash(query, is_regex):
    """The keyed hash of a query as the search matches it: casefolded for plain text, as typed for a regex."""
    return signing.keyed_hash(QUERY_HASH_PURPOSE, query if is_regex else query.casefold())


def masked_query(query, is_regex):
    """What the record shows of a query: no more than the first letter of each word (j***@example.com)."""
    if is_regex:
        return f"regular expression, {len(query)} character{'s' if len(query) != 1 else ''}"
    words = []
    for word in query.split():
        email = EMAIL_WORD.fullmatch(word)
        words.append(f"{email[1]}***@{email[2]}" if email else f"{word[0]}***")
    masked = " ".join(words) or "(blank)"
    return masked if len(masked) <= MASKED_MAX_LENGTH else masked[: MASKED_MAX_LENGTH - 1] + "…"


def search_query(search):
    """The search's query, or None once its data is erased."""
    return secrets.decrypt(search.query_encrypted) if search.query_encrypted else None


def erase_search(search, reason):
    """Erase a search's personal data: its hits' snippets (their keys and counts stay) and its query.

    Called once what was made of the search (a purge, a redaction) is done and verified. Idempotent:
    a search with nothing left to erase is left as it is, and not audited again. Returns the hits erased.
    """
    with transaction.atomic():
        erased = SearchHit.objects.filter(job=search).exclude(snippet="").update(snippet="", match_start=0, match_end=0)
        cleared = SearchJob.objects.filter(pk=search.pk).exclude(query_encrypted="").update(query_encrypted="")
        if not (erased or cleared):
            return 0
        SearchJob.objects.filter(pk=search.pk, erased_at__isnull=True).update(
            erased_at=timezone.now(), erase_reason=reason
        )
        _audit_erasure(search, reason, erased)
    search.refresh_from_db()
    return erased


def erase_expired_searches(now=None):
    """Delete the hits and the query of searches that ended over MEMORYADMIN_SEARCH_RESULTS_DAYS ago.

    Not of a search a bulk job still works from (its dry run, confirmation, run, or pause). Each one is
    audited (search.erase, reason "expired"); returns how many searches were erased.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.MEMORYADMIN_SEARCH_RESULTS_DAYS)
    expired = (
        SearchJob.objects.exclude(status__in=SearchJob.ACTIVE)
        .alias(ended_at=Coalesce("finished_at", "created_at"))
        .filter(ended_at__lt=cutoff)
        .filter(Q(hits__isnull=False) | ~Q(query_encrypted=""))
        .exclude(bulkjob__status__in=DEPENDING_STATUSES)
        .distinct()
    )
    count = 0
    for search in expired.select_related("requested_by"):
        with transaction.atomic():
            hits = SearchHit.objects.filter(job=search).delete()[0]
            SearchJob.objects.filter(pk=search.pk).update(query_encrypted="")
            SearchJob.objects.filter(pk=search.pk, erased_at__isnull=True).update(erased_at=now, erase_reason="expired")
            _audit_erasure(search, "expired", hits)
        count += 1
    return count


def _audit_erasure(search, reason, hits):
    audit.record(
        None,
        "search.erase",
        connection=_filed_under(search),
        job=f"search:{search.pk}",
        details={"search": search.pk, "reason": reason, "hits_erased": hits, "query_hash": search.query_hash},
    )


def _filed_under(search):
    """The connection the search's events name: its own, even if deleted or renamed since."""
    return ConnectionChoice(search.connection_slug, search.connection_name, False)


def start_search(connection, user, query, is_regex, key_pattern, role):
    """A queued search, with its estimated cost from the keys in the store now (if it can say).

    QueryError (nothing queued) when the query cannot be searched for.
    """
    Matcher(query, is_regex)  # refuse a bad pattern now, in the request, not in the worker
    keys_in_store = count_keys(connection)
    estimate = {}
    if keys_in_store is not None:
        cost = estimated_cost(keys_in_store)
        estimate = {"estimated_commands": cost.commands, "estimated_round_trips": cost.round_trips}
    job = SearchJob.objects.create(
        connection_slug=connection.slug,
        connection_name=connection.name,
        query_hash=query_hash(query, is_regex),
        query_hash_key_id=signing.current_key_id(),
        query_masked=masked_query(query, is_regex),
        query_encrypted=secrets.encrypt(query),
        is_regex=is_regex,
        key_pattern=key_pattern or connection.key_pattern,
        role=role,
        requested_by=user,
        keys_in_store=keys_in_store,
        **estimate,
    )
    background.enqueue(background.RUN_SEARCH, job.pk)
    return job


def repeat_search(search, user, after=""):
    """The same search again, over the same scope (an erasure's verification): made, then queued by
    `queue_search` once its job names it (the search tells that job when it ends).

    `after`: the sync token of the erasure's last write, which its reads carry (read-your-writes).
    """
    return SearchJob.objects.create(
        connection_slug=search.connection_slug,
        connection_name=search.connection_name,
        query_hash=search.query_hash,
        query_hash_key_id=search.query_hash_key_id,
        query_masked=search.query_masked,
        query_encrypted=search.query_encrypted,
        is_regex=search.is_regex,
        key_pattern=search.key_pattern,
        role=search.role,
        requested_by=user,
        read_after=after,
    )


def queue_search(job):
    background.enqueue(background.RUN_SEARCH, job.pk)


def run_search(job_id):
    """Search the job's sessions, saving hits and progress after every SCAN step."""
    claim = Claim.take(SearchJob, job_id, SearchJob.QUEUED, SearchJob.RUNNING)
    if claim is None:
        return
    with claim:
        _run(SearchJob.objects.select_related("requested_by").get(pk=job_id), claim)


def _run(job, claim):
    claim.mine().filter(started_at__isnull=True).update(started_at=timezone.now())
    connection = find_connection(job.connection_slug)
    status, error, failure = SearchJob.DONE, "", None
    budget = settings.MEMORYADMIN_SEARCH_BUDGET_SECONDS
    try:
        if connection is None:
            raise StoreError("The connection of this search was deleted.")
        # Bound to the store it starts on (its hits may become a purge there); resumed, only on that one.
        bound = claim.mine().filter(store_url="").update(**store_binding(connection))
        if not bound and (change := binding_change(connection, job, "since the search started")):
            raise StoreChanged(change)
        query = search_query(job)
        if query is None:
            raise StoreError(QUERY_ERASED)
        matcher = Matcher(query, job.is_regex)
        with reading_after(job.read_after):
            _search(job, connection, matcher, claim, deadline=time.monotonic() + budget)
        if SearchJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
            status = SearchJob.CANCELLED
    except (StoreError, StoreChanged) as problem:
        status, error = SearchJob.FAILED, str(problem)
    except QueryError:  # its reason may quote the pattern: the form shows it, the record does not
        status, error = SearchJob.FAILED, QUERY_REFUSED
    except OutOfTime:
        status = SearchJob.FAILED
        error = (
            f"Stopped: too slow. The search used its {budget:g} s budget (MEMORYADMIN_SEARCH_BUDGET_SECONDS); "
            "the sessions found until then are listed. Narrow the key pattern or the text and search again."
        )
    except Exception as problem:  # the search ends, whatever happened
        status, error, failure = SearchJob.FAILED, unquoted(problem), problem
    _end(job, claim.release, status, error, connection)
    if failure:
        # For the task's record and the worker's log: where it happened, not what it said.
        raise SearchFailed(error).with_traceback(failure.__traceback__) from None


class SearchFailed(Exception):
    """An unexpected error of a search, told without its message."""


def unquoted(error):
    """What a search records of an unexpected error: its kind only, as its message may quote the text searched."""
    return (
        f"Unexpected error: {type(error).__name__} (its message is not kept, as it may quote the search text or "
        "a message; the worker's log has where it happened)."
    )


def _end(job, end, status, error, connection=None):
    """Save how a search ended (end: how, if this worker still may) and audit it; True when saved."""
    if not end(status=status, error=error, finished_at=timezone.now()):
        return False
    job.refresh_from_db()
    audit.record(
        None,
        "search.run",
        user=job.requested_by,
        connection=connection,
        outcome="failed" if status == SearchJob.FAILED else "ok",
        error=error,
        job=f"search:{job.pk}",
        details={
            "status": status,
            "sessions_read": job.sessions_read,
            "matched_sessions": job.matched_sessions,
            "keys_in_store": job.keys_in_store,
            "estimated_commands": job.estimated_commands,
            "store_commands": job.store_commands,
            "store_round_trips": job.store_round_trips,
        },
    )
    if job.verified_jobs.exists():
        background.enqueue(background.RECORD_VERIFICATION, job.pk)
    return True


def give_up(job, error):
    """End a search whose worker stopped too often (for the recovery); True when ended."""
    search = SearchJob.objects.select_related("requested_by").get(pk=job.pk)
    return _end(
        search, partial(end_unless_taken, job), SearchJob.FAILED, error, find_connection(search.connection_slug)
    )


def _search(job, connection, matcher, claim, deadline):
    # From the saved cursor: a resumed search goes on where it was.
    for keys, first, cursor in read_ahead(scan_steps(connection, job.key_pattern, job.cursor)):
        if time.monotonic() > deadline:  # also where SCAN steps find no sessions at all
            raise OutOfTime
        hits, sessions, messages, out_of_time = _match_step(job, connection, keys, first, matcher, deadline)
        # Hits of a step and the cursor after it are saved together: a resumed search neither
        # repeats nor skips a step's hits. A step cut short by the budget keeps its hits so far
        # (the search ends there, so its cursor does not move on).
        # Only while this worker holds the search: else ClaimLost, and nothing of the step is saved.
        with transaction.atomic():
            claim.save()
            SearchHit.objects.filter(job=job, session_key__in=[hit.session_key for hit in hits]).delete()
            SearchHit.objects.bulk_create(hits)
            claim.save(
                cursor=job.cursor if out_of_time else cursor,
                examined_keys=job.examined_keys + (0 if out_of_time else SCAN_COUNT),
                sessions_read=job.sessions_read + sessions,
                messages_read=job.messages_read + messages,
                matched_sessions=SearchHit.objects.filter(job=job).count(),
            )
        job.refresh_from_db()
        if out_of_time:
            raise OutOfTime
        if job.cancel_requested:
            return


def _match_step(job, connection, keys, first, matcher, deadline):
    """(hits, sessions read, messages read, whether the budget ran out) for one SCAN step."""
    hits, sessions, messages = [], 0, 0
    try:
        for key, elements in read_sessions(connection, keys, first, deadline):
            found = match_session(matcher, elements, job.role, deadline)
            sessions += 1
            messages += len(elements)
            if found:
                matches, first_match, order, snippet, (start, end) = found
                hits.append(
                    SearchHit(
                        job=job,
                        session_key=key,
                        matches=matches,
                        first_match=first_match,
                        order=order,
                        snippet=snippet,
                        match_start=start,
                        match_end=end,
                    )
                )
    except OutOfTime:
        return hits, sessions, messages, True
    return hits, sessions, messages, False
