from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "memoryadmin.connections"
    verbose_name = "Connections"

    def ready(self):
        from . import checks  # noqa: F401 - registers the system checks
