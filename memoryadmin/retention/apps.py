from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "memoryadmin.retention"
    verbose_name = "Retention policies"
