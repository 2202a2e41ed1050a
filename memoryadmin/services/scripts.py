"""Lua scripts: every script the app runs on a store goes through here.

By digest once the store has it: a client sends a script's body (EVAL) the
first time it runs it, which also puts it in the store's script cache, and
after that only its SHA1 digest (EVALSHA): a few bytes instead of the body. A
store that lost its cache (restarted, SCRIPT FLUSH, failed over) answers
NOSCRIPT, and the body is sent again.

With the right token: a script that writes runs with the connection's full
token (`write`). One that only reads (`read`, `read_pipeline`) runs as
EVAL_RO / EVALSHA_RO, which the store refuses any write, with the read-only
token when the connection has one; if the store refuses that token scripts
(an ACL of +@read alone does, and Upstash does not document what its read-only
token allows), they run read-only with the full token, still unable to write.
The refusal is remembered, so it costs one request.
"""

import functools
import hashlib
import logging
import threading
import weakref
from dataclasses import dataclass

from .upstash import StoreCommandError, StorePermissionError, connection_clients, get_writer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """A script run on keys with arguments, among the commands of a `read_pipeline`."""

    script: str
    keys: list
    args: tuple = ()


def write(connection, script, keys, *args):
    """The reply of a script that writes, run with the full token."""
    return _send(get_writer(connection), [Run(script, keys, args)], read_only=False, pipeline=False)[0]


def read(connection, script, keys, *args):
    """The reply of a script that only reads."""
    return _read(connection, [Run(script, keys, args)], pipeline=False)[0]


def read_pipeline(connection, commands):
    """The replies of read commands and script runs (`Run`) in one pipeline (two if the store lost a script).

    When the store lacks a script, the other commands have run, and run again with it: reads only.
    """
    return _read(connection, commands, pipeline=True) if commands else []


def _read(connection, commands, pipeline):
    clients = connection_clients(connection)
    if clients.reader_runs_scripts and clients.reader is not clients.writer:
        try:
            return _send(clients.reader, commands, read_only=True, pipeline=pipeline)
        except StorePermissionError:
            clients.reader_runs_scripts = False
            log.info("%s: its read-only token may not run scripts; EVAL_RO goes with the full token", connection.name)
    return _send(clients.writer, commands, read_only=True, pipeline=pipeline)


@functools.cache
def _digest(script):
    return hashlib.sha1(script.encode()).hexdigest()


# The digests of the scripts each client has had the store run, so the store has them. Per client:
# a client is rebuilt when its connection changes, and may then reach another store.
_known = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def _send(client, commands, read_only, pipeline):
    with _known_lock:
        known = _known.setdefault(client, set())
    suffix = "_RO" if read_only else ""

    def as_sent(trusting):
        """The commands as sent, and the digests of their scripts: by digest if the store has the script."""
        sent, digests = [], set()
        for command in commands:
            if not isinstance(command, Run):
                sent.append(command)
                continue
            digest = _digest(command.script)
            # A body goes once per request: the commands after it run it by its digest.
            if (trusting and digest in known) or digest in digests:
                sent.append([f"EVALSHA{suffix}", digest, len(command.keys), *command.keys, *command.args])
            else:
                sent.append([f"EVAL{suffix}", command.script, len(command.keys), *command.keys, *command.args])
            digests.add(digest)
        return sent, digests

    for trusting in (True, False):
        sent, digests = as_sent(trusting)
        try:
            replies = client.pipeline(sent) if pipeline else [client.call(*sent[0])]
        except StoreCommandError as error:
            # The store lost a script (Upstash: "NOSCRIPT No matching script"): send it whole.
            if trusting and "no matching script" in str(error).lower():
                continue
            raise
        known.update(digests)
        return replies
