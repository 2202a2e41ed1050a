from django.apps import AppConfig


class OverviewConfig(AppConfig):
    name = "memoryadmin.overview"
    verbose_name = "Store overview"
