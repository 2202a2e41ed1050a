import contextvars
import logging
import re
import uuid

from django.conf import settings

# The id of the request being served, for log lines and audit events alike.
current_request_id = contextvars.ContextVar("request_id", default="-")

# 8 to 40 characters (the audit field's length): a UUID, a hex id, a proxy's own format.
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{8,40}")


class RequestIdMiddleware:
    """Give every request an id, echoed in the response.

    The X-Request-ID header is taken only when MEMORYADMIN_TRUST_REQUEST_ID says a proxy in front
    sets it (and only if well-formed): otherwise any client could write what it likes into the audit log.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-ID", "") if settings.MEMORYADMIN_TRUST_REQUEST_ID else ""
        request.request_id = given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex
        token = current_request_id.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request.request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record):
        record.request_id = current_request_id.get()
        return True
