"""Processes a test starts (a `worker`, gunicorn) on the test run's own database and store."""

import http.client
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.db import connection

from .conftest import TEST_TOKEN

BASE_DIR = Path(__file__).resolve().parent.parent


def database_url():
    """DATABASE_URL of the database this test run works on (SQLite or PostgreSQL)."""
    database = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(database['NAME']).resolve()}"
    # libpq's form for a server on a Unix socket: the socket's directory as the host parameter.
    host = f"?host={database['HOST']}" if database["HOST"].startswith("/") else ""
    address = "" if host else f"{database['HOST']}:{database['PORT'] or 5432}"
    user = quote(database["USER"], safe="") + (
        f":{quote(database['PASSWORD'], safe='')}" if database["PASSWORD"] else ""
    )
    return f"postgres://{user}@{address}/{database['NAME']}{host}"


def process_env(**extra):
    """os.environ less the test run's choice of database, which would override the process's DATABASE_URL."""
    env = {key: value for key, value in os.environ.items() if key != "MEMORYADMIN_TEST_DATABASE"}
    env.update(extra)
    return env


def app_env(local_store, **extra):
    """os.environ for the app, on this run's database and local store, with jobs on the database queue."""
    return process_env(
        DATABASE_URL=database_url(),
        MEMORYADMIN_TASK_BACKEND="django_tasks_db.backend.DatabaseBackend",
        UPSTASH_REDIS_REST_URL=local_store.url,
        UPSTASH_REDIS_REST_TOKEN=TEST_TOKEN,
        **extra,
    )


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process, timeout=5):
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serve_app(env, log_path):
    """The app served by gunicorn as gunicorn.conf.py configures it, on 127.0.0.1; yields its port."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    with open(log_path, "w") as log:
        process = subprocess.Popen([*command, "memoryadmin.wsgi"], cwd=BASE_DIR, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, Path(log_path).read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield port
    finally:
        stop(process)


def request(port, method, path, cookies, body=None):
    """One request on its own connection; cookies the response sets are added to `cookies`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        for cookie in response.msg.get_all("Set-Cookie") or []:
            name, value = cookie.split(";", 1)[0].split("=", 1)
            cookies[name] = value
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()
