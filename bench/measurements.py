"""The measurements: one function each, registered in MEASUREMENTS, run in that order.

A measurement is `function(bench) -> list[Row]`; `bench` (harness.Bench) holds
the options, the store (latency, round-trip count), the app (a logged-in
client, more for load), the references' upstash-redis client and the
keyspace. To add one, write the function and decorate it with
`@measurement("name")`; its rows join the table, JSON and Markdown.
"""

import html
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from memoryadmin.dashboard.converters import encode_key

from . import references
from .harness import CSRF_FIELD, percentile, scan_more_link, session_links, timed
from .keyspace import (
    BIG_MESSAGE_SESSION,
    BIG_SESSION,
    DENSE_PATTERN,
    IMAGE_SESSION,
    LONG_SESSION,
    MEDIA_PATTERN,
    NEEDLE,
    REALISTIC_PATTERN,
    SPARSE_PATTERN,
    seed_job_sessions,
    seed_realistic,
)
from .report import Goal, Row

MEASUREMENTS = []


def measurement(name):
    def register(function):
        MEASUREMENTS.append((name, function))
        return function

    return register


# --- sampling ---------------------------------------------------------------


@dataclass
class Samples:
    ms: list = field(default_factory=list)
    trips: list = field(default_factory=list)
    bytes: int | None = None  # of the last run; None for a reference
    cpu_ms: list = field(default_factory=list)  # the app's, per round (see `sample`); the app's page only

    @property
    def p50(self):
        return percentile(self.ms, 50)

    @property
    def p95(self):
        return percentile(self.ms, 95)

    @property
    def cpu_p50(self):
        return percentile(self.cpu_ms, 50)


def sample(store, actions, runs, warm_up=True, app_cpu=None):
    """Samples of each action: `runs` rounds, the actions taking turns (after a warm-up round).

    Taking turns, so that all see the same machine: two shared cores drift.
    An action returns the bytes sent to the browser, or None for a reference.
    The store must be otherwise idle: its round-trip count covers every client.

    `app_cpu`, the app's CPU clock (seconds), if given: the app's CPU of each round goes to the first
    action's samples, which must be the only one the app serves. Per round rather than around the
    request, since a worker ends a request (closes it, logs it) after the client has its answer.
    """
    if warm_up:
        for action in actions:
            action()
    results = [Samples() for _ in actions]
    for _ in range(runs):
        cpu_before = app_cpu() if app_cpu else None
        for samples, action in zip(results, actions):
            before = store.served()
            samples.bytes, ms = timed(action)
            samples.trips.append(store.served() - before)
            samples.ms.append(ms)
        if app_cpu:
            results[0].cpu_ms.append((app_cpu() - cpu_before) * 1000)
    return results


def app_page(client, path):
    """A page of the app, as `sample` wants it: it must be a 200; its size in bytes."""

    def get():
        response = client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered HTTP {response.status_code}: {response.text[:300]}")
        return len(response.content)

    return get


def reference(read):
    """A reference as `sample` wants it: what it read is not for a browser."""

    def run():
        read()

    return run


def compare(bench, path, floor, naive):
    """The app's page beside the floor and the naive way, all on the store as it is now."""
    app, floor = sample(
        bench.store,
        [app_page(bench.client, path), reference(floor)],
        bench.options.runs,
        app_cpu=bench.app.page_cpu_seconds,
    )
    # No warm-up for the naive way (seconds a run at 20 ms): its client is the floor's, already warm.
    (naive,) = sample(bench.store, [reference(naive)], bench.options.naive_runs, warm_up=False)
    cells = {
        "app p50 ms": app.p50,
        "app p95 ms": app.p95,
        "floor p50 ms": floor.p50,
        "app ÷ floor": ratio(app.p50, floor.p50),
        "app CPU ms": app.cpu_p50,
        "naive p50 ms": naive.p50,
        "naive ÷ app": ratio(naive.p50, app.p50),
        "round trips app/floor/naive": "/".join(str(max(s.trips)) for s in (app, floor, naive)),
        "bytes to browser": app.bytes,
    }
    raw = {"path": path, "app": vars(app), "floor": vars(floor), "naive": vars(naive)}
    return app, floor, naive, cells, raw


# The app's CPU per page (issue 17): what bounds requests per second on two cores, whatever the store's latency.
LIST_PAGE_CPU_MS = 4
TRANSCRIPT_PAGE_CPU_MS = 5
NO_STORE_PAGE_CPU_MS = 2


def cpu_goal(app, limit_ms):
    return Goal(f"CPU ≤ {limit_ms} ms", app.cpu_p50 <= limit_ms)


def ratio(a, b):
    return a / b if a is not None and b else None


def at_latencies(bench):
    """Each latency of the options in turn, set on the store."""
    for latency in bench.options.latencies:
        bench.store.set_latency(latency)
        yield latency
    bench.store.set_latency(0)


# --- pages --------------------------------------------------------------------


@measurement("session list")
def session_list(bench):
    """A list page of 50 rows, dense and sparse, as the keyspace grows."""
    rows = []
    for size in bench.options.sizes:
        bench.keyspace.grow(size)
        for latency in at_latencies(bench):
            for kind, pattern in (("dense", DENSE_PATTERN), ("sparse 1:100", SPARSE_PATTERN)):
                app, floor, naive, cells, raw = compare(
                    bench,
                    f"/?q={pattern}",
                    floor=lambda pattern=pattern: references.list_page_floor(bench.redis, pattern),
                    naive=lambda pattern=pattern: references.list_page_naive(bench.redis, pattern),
                )
                if kind == "dense":
                    goals = [
                        Goal("≤ 2 round trips", max(app.trips) <= 2),
                        Goal("≤ 1.5× floor", app.p50 <= 1.5 * floor.p50),
                    ]
                    if latency == 0:
                        goals.append(cpu_goal(app, LIST_PAGE_CPU_MS))
                else:
                    goals = [Goal("≤ 3× floor", app.p50 <= 3 * floor.p50)]
                if latency >= 20:
                    goals.append(Goal("≥ 10× faster than naive", naive.p50 >= 10 * app.p50))
                raw.update(kind=kind, size=size)
                rows.append(Row("session list", f"{kind}, {size:,} sessions", latency, cells, goals, raw))
    add_flatness_goals(rows, bench.options.sizes)
    return rows


def add_flatness_goals(rows, sizes):
    """Flat as the keyspace grows: the largest keyspace's time within 1.5× the smallest's."""
    if len(sizes) < 2:
        return
    smallest = {(row.raw["kind"], row.latency_ms): row for row in rows if row.raw["size"] == min(sizes)}
    for row in rows:
        if row.raw["size"] == max(sizes):
            base = smallest[row.raw["kind"], row.latency_ms].cells["app p50 ms"]
            growth = row.cells["app p50 ms"] / base
            row.goals.append(Goal(f"flat: {growth:.2f}× the {min(sizes):,}-session time (≤ 1.5×)", growth <= 1.5))


@measurement("transcript")
def transcript(bench):
    """The first transcript page of a 10,000-message session and of one holding a 1 MB message."""
    options = bench.options
    bench.keyspace.write_long_session(options.transcript_messages)
    bench.keyspace.write_big_session(options.big_message_bytes)
    cases = (
        (f"{options.transcript_messages:,} messages", LONG_SESSION),
        (f"one {options.big_message_bytes / 1e6:g} MB message", BIG_SESSION),
    )
    rows = []
    for latency in at_latencies(bench):
        for case, key in cases:
            app, floor, _, cells, raw = compare(
                bench,
                f"/sessions/{encode_key(key)}/",
                floor=lambda key=key: references.transcript_floor(bench.redis, key),
                naive=lambda key=key: references.transcript_naive(bench.redis, key),
            )
            goals = [Goal("1 round trip", max(app.trips) == 1)]
            if key == LONG_SESSION:  # a page of 50 messages
                goals.append(Goal("≤ 2× floor", app.p50 <= 2 * floor.p50))
            if latency == 0:
                goals.append(Goal("p95 < 150 ms", app.p95 < 150))
                if key == LONG_SESSION:
                    goals.append(cpu_goal(app, TRANSCRIPT_PAGE_CPU_MS))
            rows.append(Row("transcript", case, latency, cells, goals, raw))
    return rows


@measurement("fixed cost")
def fixed_cost(bench):
    """What any page costs whatever the store does: the framework's share of the times above."""
    rows = []
    signed_in_page = f"/sessions/{encode_key(LONG_SESSION)}/clear/"  # the confirmation: the store is not read
    cases = (
        ("login page, no store", "/login/", bench.anonymous),
        ("signed in, no store (clear confirmation)", signed_in_page, bench.client),
        ("list, exact key not found", "/?q=no-such-session", bench.client),
    )
    for latency in at_latencies(bench):
        for case, path, client in cases:
            (app,) = sample(
                bench.store, [app_page(client, path)], bench.options.runs, app_cpu=bench.app.page_cpu_seconds
            )
            cells = {
                "app p50 ms": app.p50,
                "app p95 ms": app.p95,
                "app CPU ms": app.cpu_p50,
                "round trips": max(app.trips),
                "bytes to browser": app.bytes,
            }
            goals = [cpu_goal(app, NO_STORE_PAGE_CPU_MS)] if path == signed_in_page and latency == 0 else []
            rows.append(Row("fixed cost", case, latency, cells, goals, {"path": path, "app": vars(app)}))
    return rows


# --- load -------------------------------------------------------------------


@dataclass
class Hit:
    page: str
    started: float  # seconds since the load began
    seconds: float
    status: int | str  # HTTP status, or the exception's name


def browse(client, began, deadline, hits, rng):
    """One operator, until the deadline: the list, "scan more", a transcript from the list; again."""

    def get(page, path, **headers):
        started = time.monotonic()
        try:
            response = client.get(path, headers=headers)
            status = response.status_code
        except httpx.HTTPError as error:
            response, status = None, type(error).__name__
        hits.append(Hit(page, started - began, time.monotonic() - started, status))
        return response.text if status == 200 else None

    while time.monotonic() < deadline:
        listing = get("list", "/")
        if listing is None:
            continue
        more = scan_more_link(listing)
        if more and time.monotonic() < deadline:
            get("scan more", more, **{"HX-Request": "true"})
        links = session_links(listing)
        if links and time.monotonic() < deadline:
            get("transcript", rng.choice(links))


def run_load(bench, seconds, latency_changes=()):
    """Every operator browses for `seconds`; `latency_changes` are (second, latency ms) to set on the way.

    Returns the hits, the seconds it took, the second at which each change took effect and the
    CPU seconds the app, the store and the load generator (this process) used meanwhile.
    """
    bench.keyspace.grow(max(bench.options.sizes))  # no-op after "session list"; measurements may run alone
    clients = bench.operators()
    hits, changed_at = [], []
    cpu_before = bench.cpu_seconds()
    began = time.monotonic()
    with ThreadPoolExecutor(len(clients)) as pool:
        browsing = [
            pool.submit(browse, client, began, began + seconds, hits, random.Random(number))
            for number, client in enumerate(clients)
        ]
        for at, latency in latency_changes:
            time.sleep(max(0.0, began + at - time.monotonic()))
            bench.store.set_latency(latency)
            changed_at.append(time.monotonic() - began)
        for operator in browsing:
            operator.result()
    elapsed = time.monotonic() - began
    cpu = {part: used - cpu_before[part] for part, used in bench.cpu_seconds().items() if used is not None}
    return hits, elapsed, changed_at, cpu


def latency_stats(hits):
    times = [hit.seconds * 1000 for hit in hits]
    return {"p50 ms": percentile(times, 50), "p95 ms": percentile(times, 95), "p99 ms": percentile(times, 99)}


@measurement("load")
def load(bench):
    """`operators` logged-in operators browsing at once, no think time, for `load_seconds`."""
    rows = []
    for latency in at_latencies(bench):
        hits, elapsed, _, cpu = run_load(bench, bench.options.load_seconds)
        errors = [hit for hit in hits if hit.status != 200]
        cells = {
            "operators": bench.options.operators,
            "requests": len(hits),
            "req/s": len(hits) / elapsed,
            **latency_stats(hits),
            "errors": len(errors),
            # Two cores are shared by all three: what each costs per request shows who saturates them.
            "CPU ms/request app/store/load": "/".join(f"{cpu[part] * 1000 / max(len(hits), 1):.0f}" for part in cpu),
            "cores busy": sum(cpu.values()) / elapsed,
        }
        by_page = {
            page: latency_stats([hit for hit in hits if hit.page == page])
            for page in ("list", "scan more", "transcript")
        }
        raw = {"seconds": elapsed, "cpu_seconds": cpu, "by_page": by_page, "errors": [vars(hit) for hit in errors[:20]]}
        rows.append(
            Row(
                "load",
                f"{bench.options.operators} operators, {elapsed:.0f} s",
                latency,
                cells,
                [
                    Goal("no errors", not errors),
                    Goal("≥ 150 req/s", cells["req/s"] >= 150),
                    Goal("p95 ≤ 200 ms", cells["p95 ms"] <= 200),
                ],
                raw,
            )
        )
    return rows


@measurement("slow store")
def slow_store(bench):
    """The same load, with the store slower than the timeout in the middle: 503s in time, then recovery."""
    timeout, slow = bench.options.store_timeout, bench.options.slow_seconds
    limit = timeout + 1
    rows = []
    for latency in at_latencies(bench):
        # Normal, then slow (twice the timeout per request) for `slow` seconds, then normal long
        # enough for requests caught in the slow phase to end and new ones to show recovery.
        hits, _, (slow_from, slow_to), _ = run_load(
            bench, 3 * slow + limit, [(slow, timeout * 2000), (2 * slow, latency)]
        )
        bad = [hit for hit in hits if hit.status not in (200, 503) or hit.seconds > limit]
        after = [hit for hit in hits if hit.started >= slow_to]
        failed_after = [hit for hit in after if hit.status != 200]
        first_ok = min((hit.started + hit.seconds for hit in after if hit.status == 200), default=None)
        cells = {
            "requests": len(hits),
            "503 pages": sum(hit.status == 503 for hit in hits),
            "slowest answer s": max(hit.seconds for hit in hits),
            "limit s": limit,
            "errors": len(bad),
            "recovered after s": None if first_ok is None else first_ok - slow_to,
            "failed after recovery": len(failed_after),
        }
        goals = [
            Goal(f"every request answered (200 or 503) within {limit:g} s", not bad),
            Goal("recovers by itself", first_ok is not None and not failed_after),
        ]
        raw = {
            "slow_from": slow_from,
            "slow_to": slow_to,
            "bad": [vars(hit) for hit in bad[:20]],
            "failed_after": [vars(hit) for hit in failed_after[:20]],
        }
        case = f"{bench.options.operators} operators, store slow {slow_from:.0f}–{slow_to:.0f} s"
        rows.append(Row("slow store", case, latency, cells, goals, raw))
    return rows


# --- background jobs: bulk purge and content search ---------------------------

JOB_DONE = re.compile(r"Status: <strong>(done|failed|cancelled|paused after an error|not confirmed)</strong>")
JOB_AWAITING = re.compile(r"Status: <strong>awaiting confirmation</strong>")


def post_form(client, path, page, data):
    """A POST as the page's form makes it (with its CSRF token); the redirect's target."""
    token = CSRF_FIELD.search(page).group(1)
    answer = client.post(path, data={**data, "csrfmiddlewaretoken": token})
    if answer.status_code != 302:
        raise RuntimeError(f"POST {path} answered HTTP {answer.status_code}: {answer.text[:300]}")
    return answer.headers["location"]


def wait_for(client, path, pattern, seconds=600, every=0.2):
    """Poll a job page (as its htmx polling does) until the pattern shows; (page, seconds waited)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        page = client.get(path).text
        if pattern.search(page):
            return page, time.monotonic() - started
        time.sleep(every)
    raise RuntimeError(f"{path} did not reach {pattern.pattern} within {seconds} s")


def number_after(label, page):
    return int(re.search(rf"<dt>{label}</dt><dd>([\d,]+)", page).group(1).replace(",", ""))


def keys_left(redis, pattern):
    """Keys that match the pattern, in a complete SCAN (one step sees only part of a large keyspace)."""
    cursor, left = 0, 0
    while True:
        cursor, keys = redis.scan(cursor, match=pattern, count=1000)
        left += len(keys)
        if int(cursor) == 0:
            return left


@measurement("bulk purge")
def bulk_purge(bench):
    """Purge every session of a pattern through the app: dry run, typed confirmation, the worker's batches.

    Peak memory of the worker, at two sizes: flat means it does not grow with the keys.
    """
    rows = []
    for latency in at_latencies(bench):
        for size in bench.options.purge_sizes:
            prefix = f"purge-{int(latency)}-{size}:"
            bench.store.set_latency(0)
            seed_job_sessions(bench.redis, prefix, size)
            bench.store.set_latency(latency)
            with bench.worker() as worker:
                before = bench.store.served()
                listing = bench.client.get("/").text
                job = post_form(
                    bench.client, "/bulk/new/", listing, {"action": "clear", "scope": "pattern", "q": prefix + "*"}
                )
                page, dry_run = wait_for(bench.client, job, JOB_AWAITING)
                started = time.monotonic()
                post_form(bench.client, job + "confirm/", page, {"typed": str(size)})
                page, _ = wait_for(bench.client, job, JOB_DONE)
                purge = time.monotonic() - started
                peak_mb = worker.peak_rss_mb()
            done = number_after("Done", page)
            left = keys_left(bench.redis, prefix + "*")
            cells = {
                "sessions": size,
                "dry run s": dry_run,
                "purge s": purge,
                "sessions/s": size / purge if purge else None,
                "done": done,
                "left in store": left,
                "round trips": bench.store.served() - before,
                "worker peak RSS MB": peak_mb,
            }
            goals = [Goal("all purged", done == size and left == 0)]
            if size >= 100_000 and latency == 0:  # the goal; 20 ms is reported beside it
                goals += [Goal("purge ≤ 5 s", purge <= 5), Goal("dry run ≤ 3 s", dry_run <= 3)]
            rows.append(Row("bulk purge", f"{size:,} sessions", latency, cells, goals))
        sizes = [row for row in rows if row.latency_ms == latency]
        if len(sizes) > 1:
            small, large = sizes[0].cells["worker peak RSS MB"], sizes[-1].cells["worker peak RSS MB"]
            sizes[-1].goals.append(
                Goal(f"memory flat: peak RSS {large / small:.2f}× the smaller purge's (≤ 1.25×)", large <= 1.25 * small)
            )
    return rows


@measurement("content search")
def content_search(bench):
    """Search every session of a pattern for an e-mail address, through the app and its worker."""
    rows = []
    size = bench.options.search_sessions
    prefix = "search-bench:"
    bench.store.set_latency(0)
    expected = seed_job_sessions(bench.redis, prefix, size)
    for latency in at_latencies(bench):
        bench.store.set_latency(latency)
        with bench.worker():
            before = bench.store.served()
            form = bench.client.get("/bulk/search/").text
            started = time.monotonic()
            job = post_form(
                bench.client, "/bulk/search/", form, {"query": NEEDLE, "key_pattern": prefix + "*", "role": ""}
            )
            page, _ = wait_for(bench.client, job, JOB_DONE, every=0.1)
            elapsed = time.monotonic() - started
        matched = int(re.search(r"<strong>([\d,]+) sessions? match</strong>", page).group(1).replace(",", ""))
        cells = {
            "sessions": size,
            "messages": size * 20,
            "seconds": elapsed,
            "sessions/s": size / elapsed,
            "matches": matched,
            "round trips": bench.store.served() - before,
        }
        goals = [Goal("every match found", matched == expected)]
        if latency == 0:  # the goal is for the local store; 20 ms is reported beside it
            goals.append(Goal("≥ 8,000 sessions/s", size / elapsed >= 8000))
        rows.append(Row("content search", f"{size:,} sessions of 20 messages", latency, cells, goals))
    return rows


# --- the realistic corpus, under Upstash's limits ----------------------------------


class Meter:
    """What the store did from now until `read()`: round trips, commands (as Upstash bills them), bytes.

    The store must be otherwise idle, and only one meter read at a time: the largest request
    and reply are the store's since its last `usage()`.
    """

    def __init__(self, store):
        self._store = store
        self._start = store.usage()

    def read(self):
        end = self._store.usage()
        trips = end["served"] - self._start["served"]
        moved = end["request_bytes"] + end["reply_bytes"] - self._start["request_bytes"] - self._start["reply_bytes"]
        return {
            "round trips": trips,
            "commands": end["commands"] - self._start["commands"],
            "mean bytes/round trip": moved / trips if trips else None,
            "largest request": end["largest_request"],
            "largest reply": end["largest_reply"],
            "limit": end["limit"],
        }


def limit_goal(usage):
    """Every request and reply within the store's request size limit (Upstash's 10 MB)."""
    largest = max(usage["largest request"], usage["largest reply"])
    limit = usage["limit"]
    return Goal(f"requests and replies ≤ {limit / 2**20:g} MiB (largest {largest / 1e6:.2f} MB)", largest <= limit)


def error_goal(error, length=160):
    """✓ no errors, or ✗ with the error's beginning (the row's JSON has all of it)."""
    if error is None:
        return Goal("no errors", True)
    short = error if len(error) <= length else error[:length].rsplit(" ", 1)[0] + " …"
    return Goal(f"no errors: {short}", False)


PROBLEM = re.compile(r'<div class="alert alert-error problem"[^>]*>\s*<p>(.*?)</p>', re.S)
JOB_ERROR = re.compile(r'<p class="alert alert-error">(.*?)</p>|<p class="muted">(Not confirmed:.*?)</p>', re.S)
JOB_DECIDED = re.compile(
    r"Status: <strong>(awaiting confirmation|done|failed|cancelled|paused after an error|not confirmed)</strong>"
)
REALISTIC_JOB_SECONDS = 300  # a job that runs longer has stalled: its row says so


def page_text(html_fragment):
    return html.unescape(re.sub(r"<[^>]+>", "", html_fragment)).strip()


def page_error(response):
    """None for a page that answered; else what went wrong, as the operator reads it."""
    if response.status_code == 200:
        return None
    found = PROBLEM.search(response.text)
    return f"HTTP {response.status_code}" + (f": {page_text(found.group(1))}" if found else "")


def job_error(page):
    found = JOB_ERROR.search(page)
    return page_text(found.group(1) or found.group(2)) if found else None


def realistic_corpus(bench):
    """The corpus, seeded (at no latency) unless it is there: the purge takes it away."""
    if bench.realistic is None:
        bench.store.set_latency(0)
        bench.realistic = seed_realistic(bench.redis, bench.options.realistic_sessions)
    return bench.realistic


@measurement("realistic pages")
def realistic_pages(bench):
    """List and transcript pages over the realistic corpus, with Upstash's 10 MB request limit on."""
    corpus = realistic_corpus(bench)
    cases = (
        (f"list, {corpus.sessions - 2:,} sessions of 40 messages", f"/?q={REALISTIC_PATTERN}"),
        ("list, the two media sessions", f"/?q={MEDIA_PATTERN}"),
        ("transcript, 60 messages with a 300 KB image each", f"/sessions/{encode_key(IMAGE_SESSION)}/"),
        ("transcript, newest message 5 MB", f"/sessions/{encode_key(BIG_MESSAGE_SESSION)}/"),
    )
    rows = []
    for latency in at_latencies(bench):
        for case, path in cases:
            times, error = [], None
            for run in range(bench.options.realistic_runs + 1):  # the first one warms up
                meter = Meter(bench.store)
                response, ms = timed(lambda path=path: bench.client.get(path))
                usage = meter.read()
                error = error or page_error(response)
                if run:
                    times.append(ms)
            cells = {
                "p50 ms": percentile(times, 50),
                "p95 ms": percentile(times, 95),
                "round trips": usage["round trips"],
                "commands": usage["commands"],
                "largest request": usage["largest request"],
                "largest reply": usage["largest reply"],
                "bytes to browser": len(response.content),
            }
            rows.append(
                Row(
                    "realistic pages",
                    case,
                    latency,
                    cells,
                    [error_goal(error), limit_goal(usage)],
                    {"path": path, "error": error},
                )
            )
    return rows


@dataclass
class Stage:
    """One stage of a job through its page: from the POST that starts it until the page shows it decided."""

    job: str  # the job page's path
    page: str
    error: str | None
    seconds: float
    usage: dict


def job_stage(bench, path, page, data, decided):
    """Post the form of `page` to `path`; the stage ends when `decided` shows on the job page it leads to."""
    meter, started = Meter(bench.store), time.monotonic()
    job = post_form(bench.client, path, page, data)
    try:
        page, _ = wait_for(bench.client, job, decided, seconds=REALISTIC_JOB_SECONDS, every=0.1)
        error = job_error(page)
    except RuntimeError:
        page, error = bench.client.get(job).text, f"not finished after {REALISTIC_JOB_SECONDS} s"
    return Stage(job, page, error, time.monotonic() - started, meter.read())


def counted(label, page):
    """The number before `label` on a search page (`1,234 sessions`)."""
    return int(re.search(rf"([\d,]+) {label}", page).group(1).replace(",", ""))


def stage_cells(stage, sessions, messages, result):
    """The columns every job stage shares; `sessions`, `messages`: what it covered."""
    usage = stage.usage
    return {
        "seconds": stage.seconds,
        "sessions/s": sessions / stage.seconds,
        "messages/s": messages / stage.seconds,
        "round trips": usage["round trips"],
        "commands/session": usage["commands"] / sessions if sessions else None,
        "mean bytes/round trip": usage["mean bytes/round trip"],
        "largest request": usage["largest request"],
        "largest reply": usage["largest reply"],
        "result": result,
    }


def stage_row(latency, case, stage, cells, *goals):
    goals = [error_goal(stage.error), limit_goal(stage.usage), *goals]
    return Row("realistic jobs", case, latency, cells, goals, {"usage": stage.usage, "error": stage.error})


@measurement("realistic jobs")
def realistic_jobs(bench):
    """Content search of the whole realistic corpus for an e-mail address, then its purge (dry run, typed
    confirmation, run), through the app and one worker; the corpus is seeded again for each latency.
    """
    rows = []
    with bench.worker():
        for latency in at_latencies(bench):
            corpus = realistic_corpus(bench)
            bench.store.set_latency(latency)
            rows += search_and_purge(bench, latency, corpus)
            bench.realistic = None  # purged (or meant to be): seeded again when next needed
    return rows


def search_and_purge(bench, latency, corpus):
    """The rows of one content search and purge of the corpus: search, dry run, run."""
    form = bench.client.get("/bulk/search/").text
    fields = {"query": NEEDLE, "key_pattern": REALISTIC_PATTERN, "role": ""}
    search = job_stage(bench, "/bulk/search/", form, fields, JOB_DONE)
    sessions, messages = counted(r"sessions? \(", search.page), counted(r"messages\) read", search.page)
    matched = counted(r"sessions? match</strong>", search.page)
    case = f"content search, {corpus.sessions:,} sessions, {corpus.messages:,} messages, {corpus.bytes / 1e6:.0f} MB"
    cells = stage_cells(search, sessions, messages, f"{matched:,} of {corpus.matches:,} matches")
    rows = [stage_row(latency, case, search, cells, Goal("every match found", matched == corpus.matches))]

    fields = {"action": "clear", "scope": "pattern", "q": REALISTIC_PATTERN}
    dry_run = job_stage(bench, "/bulk/new/", bench.client.get("/").text, fields, JOB_DECIDED)
    awaiting = JOB_AWAITING.search(dry_run.page) is not None
    cells = stage_cells(dry_run, corpus.sessions, corpus.messages, "awaiting confirmation" if awaiting else "–")
    rows.append(stage_row(latency, f"purge: dry run, {corpus.sessions:,} sessions", dry_run, cells))

    case = f"purge: run, {corpus.sessions:,} sessions"
    if not awaiting:
        left = keys_left(bench.redis, REALISTIC_PATTERN)
        error = "not run: the dry run did not end awaiting confirmation"
        goals = [error_goal(error), Goal("all purged", False)]
        rows.append(Row("realistic jobs", case, latency, {"result": f"{left:,} left"}, goals, {"error": error}))
        return rows
    found = re.search(r"The dry run found <strong>([\d,]+) session", dry_run.page).group(1)
    purge = job_stage(bench, dry_run.job + "confirm/", dry_run.page, {"typed": found.replace(",", "")}, JOB_DONE)
    done, left = number_after("Done", purge.page), keys_left(bench.redis, REALISTIC_PATTERN)
    cells = stage_cells(purge, corpus.sessions, corpus.messages, f"{done:,} done, {left:,} left")
    rows.append(stage_row(latency, case, purge, cells, Goal("all purged", done == corpus.sessions and left == 0)))
    return rows
