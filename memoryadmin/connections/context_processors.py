from memoryadmin.services.connections import (
    NoConnectionConfigured,
    connection_choices,
    current_connection,
)
from memoryadmin.services.secrets import SecretUnreadable


def connections(request):
    """The current connection and the switcher's choices, for the header of every page."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    try:
        connection = current_connection(request)
    except (NoConnectionConfigured, SecretUnreadable):
        connection = None
    return {"current_connection": connection, "connection_choices": connection_choices(request)}
