"""Waiting on a condition by polling it, with a deadline generous enough for a loaded 2-core machine."""

import time


def wait_for(condition, seconds=60, what="the condition"):
    """Until `condition()` is true; fails the test after `seconds` (a bound, not the expected time)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)
