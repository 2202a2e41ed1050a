"""The bench's moving parts: the store, the app under gunicorn, logged-in clients, statistics."""

import contextlib
import html
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import valkey
from cryptography.fernet import Fernet

from .store import usage as store_usage

ROOT = Path(__file__).resolve().parent.parent
OPERATOR = "bench-admin"


class StoreProcess:
    """The local store in a child process (bench/store.py), with its latency and round-trip count at hand."""

    def __init__(self, token, log_path):
        self.token = token
        self._lock = threading.Lock()
        self._log = open(log_path, "w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.store", f"--token={token}"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        first = self._process.stdout.readline()
        if not first:
            raise RuntimeError(f"The local store did not start; see {log_path}")
        self.url = json.loads(first)["url"]

    def _ask(self, line):
        with self._lock:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
            return self._process.stdout.readline().strip()

    def served(self):
        """Round trips the gateway has served so far."""
        return int(self._ask("served"))

    def set_latency(self, ms):
        self._ask(f"latency {ms}")

    def usage(self):
        """Round trips, commands and bytes so far; the largest request and reply since the last call."""
        return json.loads(self._ask("usage"))

    def cpu_seconds(self):
        return tree_cpu_seconds(self._process.pid)

    def close(self):
        try:
            self._ask("quit")
            self._process.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self._process.kill()  # gone already (Ctrl-C reaches it too) or stuck
        self._log.close()


class InProcessStore:
    """The same interface over a LocalStore running in this process (the test suite's)."""

    def __init__(self, local_store):
        self._store = local_store
        self.url, self.token = local_store.url, local_store.token
        self._direct = valkey.Valkey(**local_store.valkey_connection)  # connects when first used

    def served(self):
        return self._store.gateway.requests_served

    def set_latency(self, ms):
        self._store.gateway.latency_ms = ms

    def usage(self):
        return store_usage(self._store, self._direct)

    def cpu_seconds(self):
        return None  # shares this process with the test


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def production_env(store, workdir, store_timeout):
    """The app's environment as in production, over plain http, with a throwaway database."""
    return {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "MEMORYADMIN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "MEMORYADMIN_STATIC_MANIFEST": "0",
        # Plain http on 127.0.0.1: cookies marked Secure would never come back.
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "DATABASE_URL": f"sqlite:///{Path(workdir) / 'db.sqlite3'}",
        "UPSTASH_REDIS_REST_URL": store.url,
        "UPSTASH_REDIS_REST_TOKEN": store.token,
        "MEMORYADMIN_STORE_TIMEOUT": str(store_timeout),
        # Jobs go through the database queue to a worker, as in production (the test suite's
        # environment would otherwise lend its immediate backend).
        "MEMORYADMIN_TASK_BACKEND": "django_tasks_db.backend.DatabaseBackend",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


class AppServer:
    """Memory Admin as in production: `gunicorn memoryadmin.wsgi` with gunicorn.conf.py and its
    default workers, DEBUG off, a throwaway SQLite database, the store as the environment's connection.
    """

    def __init__(self, store, workdir, store_timeout):
        self.workdir = Path(workdir)
        self.password = secrets.token_urlsafe(18)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **production_env(store, self.workdir, store_timeout), "BENCH_PASSWORD": self.password}
        self._manage("migrate", "--noinput")
        self._manage("create_operator", OPERATOR, "--role", "admin", "--password-from-env", "BENCH_PASSWORD")
        self._log = open(self.workdir / "gunicorn.log", "w")
        # Only the bind is overridden: 127.0.0.1 rather than every interface.
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "memoryadmin.wsgi",
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        self.wait_idle()

    def _manage(self, *args):
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")

    def _wait_ready(self, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.workdir / 'gunicorn.log'}")
            try:
                if httpx.get(f"{self.base_url}/login/", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {seconds} s")

    def wait_idle(self, seconds=30):
        """Until the workers have booted: one answers as soon as it is up, while the others still import."""
        deadline = time.monotonic() + seconds
        used = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            used, before = self.cpu_seconds(), used
            if used - before < 0.05:
                return

    @property
    def workers(self):
        """Worker processes gunicorn runs (from gunicorn.conf.py's defaults)."""
        output = subprocess.run(["pgrep", "-P", str(self._process.pid)], capture_output=True, text=True).stdout
        return len(output.split())

    def client(self, timeout=30.0):
        return login(self.base_url, OPERATOR, self.password, timeout)

    def cpu_seconds(self):
        return tree_cpu_seconds(self._process.pid)

    def page_cpu_seconds(self):
        """CPU seconds used so far by gunicorn and its workers, to the nanosecond: for the CPU of a page."""
        return threads_cpu_seconds(tree_pids(self._process.pid))

    def close(self):
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._log.close()


CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def login(base_url, username, password, timeout=30.0):
    """An httpx client logged in through the login form, as a browser would be."""
    client = httpx.Client(base_url=base_url, timeout=timeout)
    page = client.get("/login/")
    token = CSRF_FIELD.search(page.text).group(1)
    answer = client.post("/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": token})
    if answer.status_code != 302:
        raise RuntimeError(f"Login as {username} failed (HTTP {answer.status_code})")
    return client


SESSION_LINK = re.compile(r'href="(/sessions/[A-Za-z0-9_-]+/)"')
SCAN_MORE = re.compile(r'<tr class="scan-more">.*?hx-get="([^"]+)"', re.S)


def session_links(page_html):
    return sorted(set(SESSION_LINK.findall(page_html)))


def scan_more_link(page_html):
    """The "Scan more" URL of a session list page, or None at the end of the keyspace."""
    found = SCAN_MORE.search(page_html)
    return html.unescape(found.group(1)) if found else None


def tree_pids(root):
    """A process and its descendants (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # ppid
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    tree, changed = {root}, True
    while changed:
        grown = tree | {pid for pid, parent in parents.items() if parent in tree}
        changed, tree = grown != tree, grown
    return tree


def tree_cpu_seconds(root):
    """CPU seconds (user + system) a process and its descendants have used so far, in clock ticks (10 ms):
    every thread's, ended ones included."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            # Fields after the name: state, ppid, ...; utime, stime, cutime, cstime are the 14th-17th of the line.
            ticks += sum(int(value) for value in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return ticks / os.sysconf("SC_CLK_TCK")


def threads_cpu_seconds(pids):
    """CPU seconds the live threads of these processes have used so far, to the nanosecond (the scheduler's
    /proc/<pid>/task/<tid>/schedstat): a page's few milliseconds are below the clock tick of /proc/<pid>/stat.
    Threads that have ended are not counted: gunicorn's threads live as long as their worker."""
    used = 0
    for pid in pids:
        for schedstat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                used += int(schedstat.read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return used / 1e9


def percentile(values, q):
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def timed(action):
    """(result, milliseconds) of one call."""
    started = time.perf_counter()
    result = action()
    return result, (time.perf_counter() - started) * 1000


class Worker:
    """`manage.py worker` (the background jobs) beside the app, with the app's environment."""

    def __init__(self, app, seconds=60):
        self._path = app.workdir / "worker.log"
        self._path.write_text("")
        self._log = open(self._path, "a")
        self._process = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--interval", "0.1"],
            cwd=ROOT,
            env=app.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        # Measure the jobs, not the worker's start-up: wait until it polls the queue.
        deadline = time.monotonic() + seconds
        while "Starting worker" not in self._path.read_text():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"The job worker did not start; see {self._path}")
            time.sleep(0.1)

    def peak_rss_mb(self):
        """The worker's peak resident memory so far (the kernel's high-water mark)."""
        status = Path(f"/proc/{self._process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def close(self):
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()


class Bench:
    """What a measurement works with (see measurements.py)."""

    def __init__(self, options, store, app, redis, keyspace):
        self.options = options
        self.store = store  # .served(), .set_latency(ms)
        self.app = app
        self.redis = redis  # the references' upstash-redis client
        self.keyspace = keyspace
        self.realistic = None  # the realistic corpus (keyspace.RealisticCorpus) while it is in the store
        self.client = app.client()  # one logged-in operator, for page timings
        self.anonymous = httpx.Client(base_url=app.base_url, timeout=30.0)
        self._operators = []

    def operators(self):
        """`options.operators` logged-in clients for load, made once: each login costs a password hash."""
        if not self._operators:
            with ThreadPoolExecutor(4) as pool:
                self._operators = list(pool.map(lambda _: self.app.client(), range(self.options.operators)))
        return self._operators

    @contextlib.contextmanager
    def worker(self):
        """A job worker for the length of a measurement."""
        worker = Worker(self.app)
        try:
            yield worker
        finally:
            worker.close()

    def cpu_seconds(self):
        """CPU seconds used so far by the app (gunicorn and its workers), the store, and this process."""
        own = os.times()
        return {"app": self.app.cpu_seconds(), "store": self.store.cpu_seconds(), "bench": own.user + own.system}

    def close(self):
        for client in [self.client, self.anonymous, *self._operators]:
            client.close()
