"""Gunicorn settings for production: `gunicorn memoryadmin.wsgi` (run from this folder).

Read from the environment (or `.env`), like the app's settings. Command-line
options (e.g. `--bind 127.0.0.1:8000`) override these.
"""

import math
import os
from pathlib import Path

import environ

env = environ.Env()
environ.Env.read_env(Path(__file__).resolve().parent / ".env")

# All interfaces: the app is meant to sit behind a TLS-terminating proxy or a
# platform router that connects to $PORT.
bind = [f"0.0.0.0:{env.int('PORT', default=8000)}"]

# Gunicorn's rule of thumb (2 x cores + 1), capped: every worker holds its own
# store clients and database connections.
workers = env.int("WEB_CONCURRENCY", default=min(2 * (os.cpu_count() or 1) + 1, 8))
# Threads per worker (gthread): requests mostly wait on the store over HTTP.
threads = env.int("GUNICORN_THREADS", default=4)
# A worker takes no more connections than it has threads: otherwise it accepts
# requests it cannot start, and when a slow store holds its threads they wait
# in its queue (twice the store timeout, in the bench) while other workers
# could answer. Measured with `make bench`: load 50.7 -> 65.9 requests/s, and
# every request answered within the timeout + 1 s while the store is slow.
worker_connections = env.int("GUNICORN_WORKER_CONNECTIONS", default=threads)

# A page makes at most two store round trips, each abandoned after
# MEMORYADMIN_STORE_TIMEOUT seconds, so a request that outlives this is stuck.
timeout = env.int("GUNICORN_TIMEOUT", default=math.ceil(2 * env.float("MEMORYADMIN_STORE_TIMEOUT", default=5.0)) + 5)
graceful_timeout = timeout
keepalive = 5

# Access log to stdout, errors to stderr, for the platform's log collector.
accesslog = "-"
errorlog = "-"
loglevel = env.str("GUNICORN_LOG_LEVEL", default="info")

# No control socket: its default path is shared by every instance on the host
# (and needs a writable home); we do not use gunicornc.
control_socket_disable = True

# Heartbeat files in memory rather than on a possibly slow container disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
