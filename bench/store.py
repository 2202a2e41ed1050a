"""The local store in a process of its own, steered over stdin/stdout (`python -m bench.store`).

Upstash is another machine: running the store in the bench's own process would
make its gateway threads compete with the load generator for one GIL. The
parent steers it with one-line commands, each answered with one line:

    latency <ms>   set the latency the gateway adds to every request -> ok
    served         round trips served so far (the gateway's count)  -> <n>
    usage          what the store did so far, and its largest request
                   and reply since the last `usage` (see `usage`)    -> <JSON>
    quit           stop the store                                   -> bye
"""

import argparse
import json
import os
import sys

import valkey

from memoryadmin.localstore.store import LocalStore

# Commands in Valkey's counts that no client sent: the connections' set-up, the gateway's own
# (COMMAND at start, ROLE with a replica, MULTI/EXEC around a /multi-exec, which is one request of
# its commands), and the INFO that reads the counts.
NOT_BILLED = {"auth", "hello", "client", "command", "config", "role", "multi", "exec", "info"}


def commands_run(direct):
    """Commands Valkey has run, as Upstash bills them: each command of a pipeline, EVAL and each
    call inside the script (INFO commandstats counts both). `direct`: a valkey-py client past the gateway.
    """
    stats = direct.info("commandstats")
    return sum(
        counts["calls"]
        for name, counts in stats.items()
        if name.removeprefix("cmdstat_").split("|")[0] not in NOT_BILLED
    )


def usage(store, direct):
    """Round trips, commands and bytes so far; the largest request and reply since the last call.

    Once no request is being answered: one that a client gave up on still runs, and counts where it started.
    """
    store.gateway.wait_idle()
    return {
        **store.gateway.traffic(reset_largest=True),
        "commands": commands_run(direct),
        "limit": store.gateway.max_request_bytes,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    # Our replies get stdout to themselves; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    store = LocalStore(port=0, token=args.token).start()  # Upstash's limits on, as by default
    direct = valkey.Valkey(**store.valkey_connection)
    try:
        replies.write(json.dumps({"url": store.url}) + "\n")
        for line in sys.stdin:
            command, *rest = line.split()
            if command == "latency":
                store.gateway.latency_ms = float(rest[0])
                replies.write("ok\n")
            elif command == "served":
                replies.write(f"{store.gateway.requests_served}\n")
            elif command == "usage":
                replies.write(json.dumps(usage(store, direct)) + "\n")
            elif command == "quit":
                replies.write("bye\n")
                break
            else:
                replies.write(f"error unknown command {command}\n")
    finally:
        direct.close()
        store.stop()


if __name__ == "__main__":
    main()
