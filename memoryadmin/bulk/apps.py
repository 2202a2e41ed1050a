from django.apps import AppConfig


class BulkConfig(AppConfig):
    name = "memoryadmin.bulk"
    verbose_name = "Bulk jobs and content search"
