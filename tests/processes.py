"""The environment of a process a test starts (a `worker`, gunicorn): the test run's own database and store."""

import os
from pathlib import Path
from urllib.parse import quote

from django.db import connection

from .conftest import TEST_TOKEN


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
