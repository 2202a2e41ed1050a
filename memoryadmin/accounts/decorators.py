from functools import wraps

from django.contrib.auth.models import Group
from django.shortcuts import render

from memoryadmin.audit.models import AuditEvent
from memoryadmin.services import audit
from memoryadmin.services.connections import NoConnectionConfigured, current_connection
from memoryadmin.services.secrets import SecretUnreadable


def roles_with(permission):
    app_label, codename = permission.split(".", 1)
    groups = Group.objects.filter(permissions__content_type__app_label=app_label, permissions__codename=codename)
    return list(groups.order_by("name").values_list("name", flat=True))


def requires(permission, action, connection_of=current_connection):
    """Let the view run only for users with the permission; refuse others with a 403 that is audited.

    The refusal names the connection the request was for: `connection_of(request)`
    (views that follow links pass viewed_connection).
    """

    def decorator(view):
        @wraps(view)
        def guarded(request, *args, **kwargs):
            if request.user.has_perm(permission):
                return view(request, *args, **kwargs)
            try:
                connection = connection_of(request)
            except (NoConnectionConfigured, SecretUnreadable):
                connection = None
            audit.record(
                request,
                action,
                connection=connection,
                session_key=kwargs.get("key", ""),
                outcome=AuditEvent.DENIED,
                details={"permission": permission, "method": request.method, "path": request.path},
            )
            roles = roles_with(permission)
            needed = " or ".join(roles) if roles else f"the permission “{permission}”"
            context = {
                "title": "Not allowed",
                "message": f"This needs the {needed} role; you are signed in as {request.user.get_username()}. "
                "Ask an admin if you need it.",
            }
            template = "dashboard/problem.html#alert" if request.htmx else "dashboard/problem.html"
            return render(request, template, context, status=403)

        return guarded

    return decorator
