"""The local store in a process of its own, steered over stdin/stdout (`python -m bench.store`).

Upstash is another machine: running the store in the bench's own process would
make its gateway threads compete with the load generator for one GIL. The
parent steers it with one-line commands, each answered with one line:

    latency <ms>   set the latency the gateway adds to every request -> ok
    served         round trips served so far (the gateway's count)  -> <n>
    quit           stop the store                                   -> bye
"""

import argparse
import json
import os
import sys

from memoryadmin.localstore.store import LocalStore


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    # Our replies get stdout to themselves; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    store = LocalStore(port=0, token=args.token).start()
    try:
        replies.write(json.dumps({"url": store.url}) + "\n")
        for line in sys.stdin:
            command, *rest = line.split()
            if command == "latency":
                store.gateway.latency_ms = float(rest[0])
                replies.write("ok\n")
            elif command == "served":
                replies.write(f"{store.gateway.requests_served}\n")
            elif command == "quit":
                replies.write("bye\n")
                break
            else:
                replies.write(f"error unknown command {command}\n")
    finally:
        store.stop()


if __name__ == "__main__":
    main()
