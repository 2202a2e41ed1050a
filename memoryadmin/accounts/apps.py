from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "memoryadmin.accounts"
    verbose_name = "People and roles"
