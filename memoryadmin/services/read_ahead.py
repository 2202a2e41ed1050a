"""Reading the store ahead: the next round trip runs in a thread while this one's answer is used.

A job's SCAN steps (a content search, a bulk job's dry run) each wait on the store and then
work on what came back (matching messages, saving frozen keys): overlapping the two saves the
shorter of them on every step.
"""

import contextvars
import queue
import threading


def read_ahead(items):
    """The items of a generator, the next one made in a thread while this one is used.

    The store's round trip and its work for the next SCAN step then overlap
    the work on this one. Stopping early (a cancelled job) stops the thread.
    """
    ready, stop = queue.Queue(maxsize=1), threading.Event()

    def hand_over(entry):
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce():
        try:
            for item in items:
                hand_over(("item", item))
                if stop.is_set():
                    return
            hand_over(("end", None))
        except BaseException as error:  # handed to the consumer, who raises it
            hand_over(("error", error))

    # In a copy of this thread's context: its store commands count in this one's open counts (the job's bill).
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(produce,), name="read-ahead", daemon=True).start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
