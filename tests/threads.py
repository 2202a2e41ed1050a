"""Calls run in threads at once, with every thread's outcome collected (an assertion in a bare thread is lost)."""

from concurrent.futures import ThreadPoolExecutor, wait


def run_together(*calls, timeout=120):
    """Each call (a function of no arguments) in a thread of its own, all at once; their results, in order.

    An exception in a thread is raised here; a thread still running after `timeout` s (generous: a
    loaded machine) fails the test instead of hanging it.
    """
    pool = ThreadPoolExecutor(max_workers=len(calls))
    futures = [pool.submit(call) for call in calls]
    _, running = wait(futures, timeout=timeout)
    pool.shutdown(wait=False, cancel_futures=True)
    assert not running, f"{len(running)} of {len(calls)} threads still running after {timeout} s"
    return [future.result() for future in futures]


def once_all_are_ready(ready, call):
    """`call()` once every thread sharing the barrier `ready` has got there: for calls meant to overlap."""
    ready.wait()
    return call()
