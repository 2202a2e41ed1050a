from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "memoryadmin.dashboard"
    verbose_name = "Sessions"
