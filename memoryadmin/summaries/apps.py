from django.apps import AppConfig


class SummariesConfig(AppConfig):
    name = "memoryadmin.summaries"
    verbose_name = "Summaries"
