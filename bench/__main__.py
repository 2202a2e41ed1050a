"""`python -m bench` (`make bench`): seed a local store, measure the app through gunicorn, report.

Prints the tables and writes them to <out>/latest.md and <out>/latest.json; a run of only some
measurements (--only) to <out>/partial.md and partial.json, so it never replaces the whole run's.
"""

import argparse
import contextlib
import os
import platform
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from . import references
from .harness import ROOT, AppServer, Bench, StoreProcess
from .keyspace import Keyspace
from .measurements import MEASUREMENTS
from .report import as_json, markdown, missed

GUNICORN_ENV = ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT", "GUNICORN_CMD_ARGS")


def int_list(text):
    return [int(float(item)) for item in text.split(",") if item]


def float_list(text):
    return [float(item) for item in text.split(",") if item]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    names = [name for name, _ in MEASUREMENTS]
    parser.add_argument(
        "--sizes", type=int_list, default=[10_000, 100_000], help="keyspaces in sessions (default 10000,100000)"
    )
    parser.add_argument("--million", action="store_true", help="also measure a keyspace of 1,000,000 sessions")
    parser.add_argument("--latencies", type=float_list, default=[0, 20], help="store latencies in ms (default 0,20)")
    parser.add_argument(
        "--runs", type=int, default=20, help="timed runs per page for the app and the floor, alternating (default 20)"
    )
    parser.add_argument(
        "--naive-runs", type=int, default=3, help="timed runs of the naive way (default 3; ~5 s each at 20 ms)"
    )
    parser.add_argument(
        "--transcript-messages", type=int, default=10_000, help="length of the long session (default 10000)"
    )
    parser.add_argument(
        "--big-message-bytes", type=int, default=1_000_000, help="size of the big message (default 1000000)"
    )
    parser.add_argument("--operators", type=int, default=20, help="concurrent operators under load (default 20)")
    parser.add_argument("--load-seconds", type=float, default=60, help="length of each load run (default 60)")
    parser.add_argument(
        "--slow-seconds", type=float, default=10, help="how long the store is slow in the slow-store run (default 10)"
    )
    parser.add_argument(
        "--purge-sizes",
        type=int_list,
        default=[10_000, 100_000],
        help="sessions purged by the bulk purge measurement, growing (default 10000,100000)",
    )
    parser.add_argument(
        "--search-sessions", type=int, default=20_000, help="sessions of 20 messages searched (default 20000)"
    )
    parser.add_argument(
        "--realistic-sessions",
        type=int,
        default=2_000,
        help="sessions of 40 messages of ~1.5 KB in the realistic corpus, besides its image session and its "
        "5 MB message (default 2000)",
    )
    parser.add_argument(
        "--realistic-runs", type=int, default=5, help="timed runs of each page over the realistic corpus (default 5)"
    )
    parser.add_argument(
        "--store-timeout",
        type=float,
        default=5,
        help="the app's MEMORYADMIN_STORE_TIMEOUT (default 5, the app's default)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=names,
        metavar="NAMES",
        help="comma-separated measurements: " + ", ".join(names),
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="where latest.* (partial.* with --only) go"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the database and the logs here (default: a temporary folder)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    options = parser.parse_args(argv)
    # The keyspace only grows: smallest first.
    options.sizes = sorted({*options.sizes, *([1_000_000] if options.million else [])})
    unknown = set(options.only) - set(names)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    return options


def describe(options, app):
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    return {
        "command": "python -m bench " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "make bench",
        # How busy the machine was before the bench added its own load.
        "load_average_at_start": os.getloadavg()[0],
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + (" (with local changes)" if dirty else ""),
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "workers": app.workers,
        "threads": app.env.get("GUNICORN_THREADS", 4),
        "store_timeout": options.store_timeout,
        "runs": options.runs,
        "naive_runs": options.naive_runs,
        "options": {key: str(value) if isinstance(value, Path) else value for key, value in vars(options).items()},
        # Gunicorn settings taken from the environment rather than gunicorn.conf.py's defaults.
        "gunicorn_env": {name: os.environ[name] for name in GUNICORN_ENV if name in os.environ},
    }


def show_logs(workdir, lines=40):
    for log in ("gunicorn.log", "store.log"):
        path = workdir / log
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            print(f"--- last lines of {log} ---", *tail, sep="\n", file=sys.stderr)


def main(argv=None):
    options = parse_args(argv)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        workdir = options.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="memoryadmin-bench-")))
        workdir.mkdir(parents=True, exist_ok=True)
        store = StoreProcess(secrets.token_urlsafe(24), workdir / "store.log")
        stack.callback(store.close)
        redis = references.client(store)
        keyspace = Keyspace(redis)
        app = AppServer(store, workdir, options.store_timeout)
        stack.callback(app.close)
        bench = Bench(options, store, app, redis, keyspace)
        stack.callback(bench.close)
        about = describe(options, app)
        rows = []
        try:
            for name, measure in MEASUREMENTS:
                if name in options.only:
                    print(f"[{time.monotonic() - started:5.0f} s] {name} ...", file=sys.stderr, flush=True)
                    rows += measure(bench)
        except Exception:
            show_logs(workdir)  # the temporary folder goes with the exception
            raise
    about["seconds"] = round(time.monotonic() - started)
    text = markdown(rows, about)
    print(text)
    options.out.mkdir(parents=True, exist_ok=True)
    stem = "latest" if {name for name, _ in MEASUREMENTS} <= set(options.only) else "partial"
    (options.out / f"{stem}.md").write_text(text)
    (options.out / f"{stem}.json").write_text(as_json(rows, about))
    print(f"Written to {options.out}/{stem}.md and {stem}.json in {about['seconds']} s.", file=sys.stderr)
    return 1 if options.strict and missed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
