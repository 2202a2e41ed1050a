"""Shared fixtures: one real local store (Valkey + REST gateway) per test session."""

import dataclasses
import os

import pytest
from django.conf import settings as django_settings

from memoryadmin.localstore.gateway import MAX_KEY_BYTES, MAX_REQUEST_BYTES
from memoryadmin.localstore.store import LocalStore
from memoryadmin.services.upstash import StoreConnection, get_client

TEST_TOKEN = "test-token-0123456789"
# What a write form carries on a page of the environment's connection (the operator's by default).
SHOWN_ENV = {"connection": "env"}
# Task backends for tests that queue jobs without running them (dummy) or for a real worker (database);
# both with the search queue, which memoryadmin.tasks names at import.
DUMMY_TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend", "QUEUES": ["default", "search"]}}
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.backend.DatabaseBackend", "QUEUES": ["default", "search"]}}


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """On a run on PostgreSQL, its throwaway server: up before the test database is made, down after it is dropped."""
    if os.environ.get("MEMORYADMIN_TEST_DATABASE") != "postgres":
        _database_of_this_process()
        yield
        return
    from .postgres import ThrowawayPostgres

    with ThrowawayPostgres(django_settings.DATABASES["default"]["HOST"]):
        yield


def _database_of_this_process():
    """The SQLite test database named for this process, also in one forked after the settings were read.

    mutmut runs each mutant's tests in a process forked from its own: without this, they would all
    share (and destroy) the database named for that first process.
    """
    template = os.environ.get("MEMORYADMIN_TEST_DATABASE", "")
    if "{pid}" in template:
        test_settings = django_settings.DATABASES["default"]["TEST"]
        test_settings["NAME"] = str(django_settings.BASE_DIR / template.format(pid=os.getpid()))


@pytest.fixture(scope="session")
def local_store():
    # Upstash's limits, as on a Free or Pay-as-you-go database and in `make run`: what passes here passes there.
    limits = {"max_request_bytes": MAX_REQUEST_BYTES, "max_key_bytes": MAX_KEY_BYTES}
    with LocalStore(port=0, token=TEST_TOKEN, **limits) as store:
        yield store


@pytest.fixture
def connection(local_store, settings):
    """A connection to the local store, emptied for this test; the app's settings point at it."""
    settings.UPSTASH_REDIS_REST_URL = local_store.url
    settings.UPSTASH_REDIS_REST_TOKEN = TEST_TOKEN
    local_store.gateway.latency_ms = 0
    local_store.gateway.wait_idle()  # a slow request of an earlier test must not land in this one
    conn = StoreConnection(name="default (environment)", url=local_store.url, token=TEST_TOKEN)
    get_client(conn).call("FLUSHDB")
    return conn


@pytest.fixture
def client_for(connection):
    """The app's client for a connection (the same object the views use)."""
    return lambda conn=connection: get_client(conn)


@pytest.fixture
def store(client_for):
    return client_for()


def replace_connection(connection, **changes):
    return dataclasses.replace(connection, **changes)


def user_with_role(django_user_model, username, role):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username, password="correct horse battery staple")
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def operator(django_user_model):
    return user_with_role(django_user_model, "olga", "Operator")


@pytest.fixture
def viewer(django_user_model):
    return user_with_role(django_user_model, "victor", "Viewer")


@pytest.fixture
def web(client, operator, connection):
    """A logged-in browser-less client whose app talks to the emptied local store."""
    client.force_login(operator)
    return client


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The default PBKDF2 costs ~0.3 s per user made; tests make many.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def other_store():
    """A second, independent local store: another Upstash database."""
    with LocalStore(port=0, token="other-token-abcdef") as store:
        yield store


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("ada", password="correct horse battery staple")


@pytest.fixture
def admin_web(client, admin, connection):
    client.force_login(admin)
    return client


@pytest.fixture
def second(other_store, connection):
    """A saved connection to the other store (emptied), next to the environment's."""
    from memoryadmin.connections.models import Connection

    saved = Connection(name="staging bot", url=other_store.url, key_pattern="*")
    saved.token = other_store.token
    saved.save()
    get_client(saved.to_store_connection()).call("FLUSHDB")
    return saved
