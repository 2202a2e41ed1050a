import logging

from django.shortcuts import render

from memoryadmin.services.connections import ConnectionChanged, NoConnectionConfigured
from memoryadmin.services.holds import SessionOnHold
from memoryadmin.services.secrets import SecretUnreadable
from memoryadmin.services.upstash import StoreError

log = logging.getLogger(__name__)


class StoreErrorMiddleware:
    """A store that is down, slow or refusing us gives the operator a clear page, not a traceback.

    So does a write refused because its page showed another connection, or because the
    session is on legal hold (409).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, StoreError):
            # Each kind says whether trying again can help and whether the connection may be at fault.
            title, status = exception.title, exception.http_status
            retry, check_connection = exception.retry, exception.check_connection
        elif isinstance(exception, NoConnectionConfigured):
            title, status, retry, check_connection = "No store configured", 503, True, True
        elif isinstance(exception, SecretUnreadable):
            title, status, retry, check_connection = "The connection's token cannot be decrypted", 503, True, True
        elif isinstance(exception, ConnectionChanged):
            return _problem(request, "Nothing was changed", exception, status=409, retry=False, check_connection=False)
        elif isinstance(exception, SessionOnHold):
            return _problem(request, "On legal hold", exception, status=409, retry=False, check_connection=False)
        else:
            return None
        log.warning("store error on %s: %s", request.path, exception)
        return _problem(request, title, exception, status=status, retry=retry, check_connection=check_connection)


def _problem(request, title, exception, status, retry, check_connection):
    context = {
        "title": title,
        "message": str(exception),
        "retry": retry,
        "check_connection": check_connection,
        "request_id": getattr(request, "request_id", ""),
    }
    template = "dashboard/problem.html#alert" if getattr(request, "htmx", False) else "dashboard/problem.html"
    return render(request, template, context, status=status)
