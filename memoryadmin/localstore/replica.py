"""A replication link that lags: the local store's replica is as far behind as asked.

Replication over loopback takes well under a millisecond, so a replica fed
directly is never seen behind, and read-your-writes could not fail in a test.
The replica connects to this relay instead of the primary; what the replica
sends goes on at once, what the primary sends is held back `delay` seconds.
"""

import logging
import queue
import socket
import threading
import time
from contextlib import suppress

log = logging.getLogger(__name__)


class DelayedLink:
    def __init__(self, primary_address, delay):
        self.primary_address = primary_address
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets = []

    def start(self):
        threading.Thread(target=self._accept, name="localstore-replica-link", daemon=True).start()
        return self

    def close(self):
        self.listener.close()
        for sock in self._sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self):
        while True:
            try:
                replica, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                primary = socket.create_connection(self.primary_address)
            except OSError as error:
                log.warning("replica link: the primary is not reachable: %s", error)
                replica.close()
                continue
            for sock in (replica, primary):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [replica, primary]
            held = queue.SimpleQueue()
            for target, args in (
                (self._forward, (replica, primary)),
                (self._hold, (primary, held)),
                (self._release, (held, replica)),
            ):
                threading.Thread(target=target, args=args, daemon=True).start()

    @staticmethod
    def _forward(source, target):
        with suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)

    def _hold(self, source, held):
        with suppress(OSError):
            while data := source.recv(65536):
                held.put((time.monotonic() + self.delay, data))
        held.put((0, b""))

    @staticmethod
    def _release(held, target):
        with suppress(OSError):
            while True:
                due, data = held.get()
                if not data:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                target.sendall(data)
        with suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)
