from django.apps import AppConfig


class HoldsConfig(AppConfig):
    name = "memoryadmin.holds"
    verbose_name = "Legal holds"
