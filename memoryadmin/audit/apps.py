from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "memoryadmin.audit"
    verbose_name = "Audit log"
