"""The store's bill, per page: the commands and round trips each request cost (Upstash bills per command).

StoreBillMiddleware counts what a request sends to any store (services/upstash.py, count_commands)
and answers it in the `X-Store-Commands` and `X-Store-Round-Trips` headers; the `store_bill` context
processor hands the live count to the templates, whose footer shows it. A view does its store work
before it renders, so the footer shows the request's whole count. A streamed response (an export,
a CSV report) reads on while its body is sent: its headers count the work done before, and its
total is logged (debug) once the body is sent. Background jobs keep their own bill (services/jobs.py).
"""

import logging

from memoryadmin.services.upstash import count_commands

log = logging.getLogger(__name__)


class StoreBillMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with count_commands() as counted:
            request.store_bill = counted
            response = self.get_response(request)
        response["X-Store-Commands"] = counted.commands
        response["X-Store-Round-Trips"] = counted.round_trips
        if response.streaming:
            response.streaming_content = _counted(response.streaming_content, request, counted.copy())
        else:
            _log(request, counted, "")
        return response


_END = object()


def _counted(chunks, request, counted):
    """The chunks of a streamed body, each made inside a count of its own, added to the request's."""
    chunks = iter(chunks)
    try:
        while True:
            # Opened and closed around each chunk: a generator must not hold a context variable across yields.
            with count_commands() as chunk:
                data = next(chunks, _END)
            counted.commands += chunk.commands
            counted.round_trips += chunk.round_trips
            if data is _END:
                return
            yield data
    finally:
        _log(request, counted, " (streamed)")


def _log(request, counted, how):
    log.debug(
        "%s %s%s: store %s commands in %s round trips",
        request.method,
        request.path,
        how,
        counted.commands,
        counted.round_trips,
    )


def store_bill(request):
    """The request's store count so far, for the page footer (signed-in users only)."""
    counted = getattr(request, "store_bill", None)
    if counted is None or not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"store_bill": counted}
