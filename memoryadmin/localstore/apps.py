from django.apps import AppConfig


class LocalstoreConfig(AppConfig):
    name = "memoryadmin.localstore"
    verbose_name = "Local Upstash-compatible store"
