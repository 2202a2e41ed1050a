"""Where a page spends its time: `python -m bench.profile [--size N] [--latency-ms N] PAGE`.

PAGE is `list` (the dense session list), `sparse`, `long` or `big` (the two
transcripts), or a path. The app runs in this process (Django's test client,
every middleware, the production settings of the bench) against a seeded
store in its own process, under pyinstrument (requirements-bench.txt).

`floor` instead prints the CPU per request of pages that do nothing
(bench/floor_urls.py) beside the login page and the clear confirmation: what
every request pays before its view does any work.
"""

import argparse
import os
import secrets
import sys
import tempfile
import time

from . import references
from .harness import OPERATOR, StoreProcess, percentile, production_env, timed
from .keyspace import BIG_SESSION, DENSE_PATTERN, LONG_SESSION, SPARSE_PATTERN, Keyspace


def page_path(page):
    from memoryadmin.dashboard.converters import encode_key

    return {
        "list": f"/?q={DENSE_PATTERN}",
        "sparse": f"/?q={SPARSE_PATTERN}",
        "long": f"/sessions/{encode_key(LONG_SESSION)}/",
        "big": f"/sessions/{encode_key(BIG_SESSION)}/",
    }.get(page, page)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("page")
    parser.add_argument("--size", type=int, default=100_000, help="sessions in the keyspace (default 100000)")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--all", action="store_true", help="show library frames too")
    parser.add_argument("--html", help="write pyinstrument's HTML report here too")
    options = parser.parse_args(argv)
    from pyinstrument import Profiler

    with tempfile.TemporaryDirectory(prefix="memoryadmin-profile-") as workdir:
        store = StoreProcess(secrets.token_urlsafe(24), os.path.join(workdir, "store.log"))
        try:
            keyspace = Keyspace(references.client(store))
            keyspace.grow(options.size)
            keyspace.write_long_session(10_000)
            keyspace.write_big_session(1_000_000)
            store.set_latency(options.latency_ms)
            os.environ.update(production_env(store, workdir, 5))
            os.environ.update(DJANGO_SETTINGS_MODULE="memoryadmin.settings", LOG_LEVEL="WARNING")
            client = django_client()
            if options.page == "floor":
                return print_floor(client, options.runs)
            path = page_path(options.page)
            first = client.get(path)
            if first.status_code != 200:
                raise SystemExit(f"GET {path} answered HTTP {first.status_code}")
            profiler = Profiler(interval=0.0005)
            with profiler:
                times = [timed(lambda: client.get(path))[1] for _ in range(options.runs)]
            print(
                f"{path}: p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms over {options.runs} runs"
            )
            print(profiler.output_text(unicode=True, color=sys.stdout.isatty(), show_all=options.all))
            if options.html:
                with open(options.html, "w") as out:
                    out.write(profiler.output_html())
        finally:
            store.close()


def print_floor(client, runs):
    """CPU per request (this process, no profiler) of the floor pages, best of five rounds of `runs`."""
    from django.conf import settings
    from django.test import Client
    from django.urls import clear_url_caches

    from memoryadmin.dashboard.converters import encode_key

    settings.ROOT_URLCONF = "bench.floor_urls"
    clear_url_caches()
    anonymous = Client(HTTP_HOST="127.0.0.1")
    cases = [
        ("anonymous, empty view", anonymous, "/floor/anonymous/"),
        ("anonymous, login page", anonymous, "/login/"),
        ("signed in, empty view", client, "/floor/signed-in/"),
        ("signed in, empty view + a permission check", client, "/floor/permission/"),
        ("signed in, base.html + a permission check", client, "/floor/base/"),
        ("signed in, clear confirmation (the bench's page)", client, f"/sessions/{encode_key(LONG_SESSION)}/clear/"),
    ]
    print("| page (in-process, no store) | CPU ms per request |\n|---|---|")
    for name, user, path in cases:
        if (status := user.get(path).status_code) != 200:
            raise SystemExit(f"GET {path} answered HTTP {status}")
        rounds = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(runs):
                user.get(path)
            rounds.append((time.process_time() - started) * 1000 / runs)
        print(f"| {name} | {min(rounds):.2f} |")


def django_client():
    """Django set up in this process, migrated, with a logged-in admin made as the bench makes its own
    (the Admin role, not a superuser: permission checks query the database)."""
    import django
    from django.core.management import call_command

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    call_command("migrate", verbosity=0)
    os.environ["BENCH_PASSWORD"] = secrets.token_urlsafe(18)
    call_command("create_operator", OPERATOR, "--role", "admin", "--password-from-env", "BENCH_PASSWORD", verbosity=0)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=OPERATOR))
    return client


if __name__ == "__main__":
    main()
