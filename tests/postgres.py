"""A throwaway PostgreSQL server for a test run on PostgreSQL (MEMORYADMIN_TEST_DATABASE=postgres).

Like the local store: made for the run in a temporary directory, removed after it. It listens on a Unix
socket only (no port to collide with another run), trusts local connections, and skips fsync (nothing
in it is worth keeping). PostgreSQL refuses to run as root, so under root (CI, containers) it runs as
the `postgres` user the Debian package creates, else as `nobody`.

pytest-postgresql was considered and left out: it runs the server as the current user (root in CI,
which PostgreSQL refuses; an option for another user was declined, its issues #341 and #455), and it
starts the server on a port of its choosing from a fixture, while pytest-django has read the database
settings before any fixture runs (here they name a socket directory fixed in advance).
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

SUPERUSER = "memoryadmin"


def bin_dir():
    """Where initdb and postgres are: on the PATH, else Debian's /usr/lib/postgresql/<newest version>/bin."""
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    installed = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    versions = sorted(installed, key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()])
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: `make system-deps` installs it (Debian package postgresql)")
    return versions[-1].parent


def server_user():
    """Who runs the server: this process's user, unless root (refused by PostgreSQL)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, with neither a `postgres` nor a `nobody` user to run PostgreSQL as")


class ThrowawayPostgres:
    """`with ThrowawayPostgres(socket_dir):` a running server whose socket is in socket_dir (made here)."""

    def __init__(self, socket_dir):
        self.socket_dir = Path(socket_dir)
        self.workdir = Path(tempfile.mkdtemp(prefix="memoryadmin-postgres-"))
        self.process = None

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self):
        user = server_user()
        data = self.workdir / "data"
        self.socket_dir.mkdir(mode=0o700)
        as_user = {}
        if user:
            data.mkdir(mode=0o700)
            for path in (self.workdir, data, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": self.workdir}
        binaries = bin_dir()
        initdb = [binaries / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"]
        done = subprocess.run([*initdb, "--no-sync"], capture_output=True, text=True, **as_user)
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": self.socket_dir,
            # Nothing here outlives the run: no waiting for the disk.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        self.log = self.workdir / "postgres.log"
        # Stopped with the test run even when the run is killed (setpriv is in Debian's util-linux).
        with_parent = ["setpriv", "--pdeathsig", "INT"] if shutil.which("setpriv") else []
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [*with_parent, binaries / "postgres", "-D", data, *options], stdout=log, stderr=log, **as_user
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(host=self.socket_dir, dbname="postgres", user=SUPERUSER).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def __exit__(self, *exc_info):
        if self.process:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: clients are disconnected
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
