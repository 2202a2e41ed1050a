"""Lua scripts, sent by their digest once the store has them.

A client sends a script's body (EVAL) the first time it runs it, which also
puts it in the store's script cache; after that, only its SHA1 digest
(EVALSHA): a request of a few bytes instead of the body. A store that lost its
cache (restarted, SCRIPT FLUSH, failed over) answers NOSCRIPT, and the body is
sent again. Scripts that only read run as EVAL_RO / EVALSHA_RO, so the store
refuses any write they would try.
"""

import hashlib
import threading
import weakref

from .upstash import StoreCommandError


class Script:
    def __init__(self, body, read_only=False):
        self.body = body
        self.digest = hashlib.sha1(body.encode()).hexdigest()
        self.read_only = read_only

    def __call__(self, keys, *args):
        """This script run on these keys and arguments: a command for `run` or `pipeline`."""
        return ScriptRun(self, list(keys), list(args))


class ScriptRun:
    def __init__(self, script, keys, args):
        self.script, self.keys, self.args = script, keys, args

    def command(self, by_digest):
        script = self.script
        name = ("EVALSHA" if by_digest else "EVAL") + ("_RO" if script.read_only else "")
        return [name, script.digest if by_digest else script.body, len(self.keys), *self.keys, *self.args]


# The digests each client has had the store run (so the store has them), per client: a client is
# rebuilt when its connection changes, and may then reach another store.
_known = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def _digests(client):
    with _known_lock:
        return _known.setdefault(client, set())


def run(client, script_run):
    """The reply of one script run."""
    return pipeline(client, [script_run])[0]


def pipeline(client, commands):
    """Replies of commands (lists) and script runs, in one round trip (two if the store lost a script).

    For reads, and for a write script alone: when the store lacks a script, a pipeline's other
    commands have run, and are run again with it.
    """
    if not commands:
        return []
    known = _digests(client)

    def as_sent(trusting):
        sent, bodies = [], set()
        for command in commands:
            if not isinstance(command, ScriptRun):
                sent.append(command)
                continue
            digest = command.script.digest
            # A body goes once per request; the commands after it run it by its digest.
            by_digest = (trusting and digest in known) or digest in bodies
            bodies.add(digest)
            sent.append(command.command(by_digest))
        return sent, bodies

    sent, used = as_sent(trusting=True)
    try:
        replies = client.pipeline(sent) if len(sent) > 1 else [client.call(*sent[0])]
    except StoreCommandError as error:
        if "no matching script" not in str(error).lower():
            raise
        sent, used = as_sent(trusting=False)
        replies = client.pipeline(sent) if len(sent) > 1 else [client.call(*sent[0])]
    known.update(used)
    return replies
