"""Login throttling hooks for django-axes: the client's address and the lockout page."""

from datetime import timedelta

from django.conf import settings
from django.shortcuts import render
from django.utils import timezone


def client_ip(request):
    """The address of the client, counting only the proxies we trust.

    Each trusted proxy appends the address it received the request from to
    X-Forwarded-For, so with N proxies in front the client is the N-th entry
    from the right; entries further left were written by the client and can be
    anything (trusting them would let an attacker pick a fresh address for
    every login attempt). With no proxy configured the header is ignored.
    """
    count = settings.MEMORYADMIN_PROXY_COUNT
    remote = request.META.get("REMOTE_ADDR", "")
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < count:
        # Fewer hops than proxies: the request did not come through all of them.
        return remote
    return forwarded[-count]


def lockout_response(request, original_response=None, credentials=None):
    """The lockout page, with the time the lock ends (AXES_LOCKOUT_CALLABLE)."""
    cooloff = timedelta(minutes=settings.MEMORYADMIN_LOGIN_COOLOFF_MINUTES)
    # The cool-off runs from the last recorded failure (attempts during the
    # lockout do not extend it: AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT).
    last_failure = _last_failure(request, credentials) or timezone.now()
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": settings.MEMORYADMIN_LOGIN_COOLOFF_MINUTES,
        "retry_at": _next_minute(last_failure + cooloff),
    }
    # 429 Too Many Requests, as axes itself answers.
    return render(request, "registration/locked_out.html", context, status=429)


def _next_minute(moment):
    """Rounded up, so the time shown (to the minute) is never before the lock ends."""
    whole = moment.replace(second=0, microsecond=0)
    return whole if whole == moment else whole + timedelta(minutes=1)


def _last_failure(request, credentials):
    from axes.helpers import get_client_username
    from axes.models import AccessAttempt

    attempt = (
        AccessAttempt.objects.filter(
            username=get_client_username(request, credentials),
            ip_address=getattr(request, "axes_ip_address", None) or client_ip(request),
        )
        .order_by("-attempt_time")
        .first()
    )
    return attempt.attempt_time if attempt else None
