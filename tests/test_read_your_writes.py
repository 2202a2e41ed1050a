"""Read-your-writes on a Global database: reads served by a lagging replica still show the operator's own writes.

The local store's replica mode (`--replica-lag-ms`) serves a read from a replica that lags behind the
primary, unless the request carries a sync token newer than what the replica has applied. The app's
client keeps the last token each reply carried and sends it, as Upstash's SDKs do.
"""

import pytest

from memoryadmin.dashboard.converters import encode_key
from memoryadmin.localstore.store import LocalStore
from memoryadmin.services.upstash import StoreConnection, get_client

from .conftest import SHOWN_ENV, TEST_TOKEN
from .factories import write_langchain_session
from .waiting import wait_for

pytestmark = pytest.mark.django_db

LAG_MS = 1500  # far longer than a clear and the next page take


@pytest.fixture(scope="module")
def replicated_store():
    with LocalStore(port=0, token=TEST_TOKEN, replica_lag_ms=LAG_MS) as store:
        yield store


@pytest.fixture
def replicated(replicated_store, settings):
    """The app's environment connection points at the replicated store; a session there, seen by the replica."""
    settings.UPSTASH_REDIS_REST_URL = replicated_store.url
    settings.UPSTASH_REDIS_REST_TOKEN = TEST_TOKEN
    writer = get_client(StoreConnection(name="seed", slug="seed", url=replicated_store.url, token=TEST_TOKEN))
    writer.call("FLUSHDB")
    write_langchain_session(writer, "cleared-session", ["hello", "hi"])
    # The replica has it too: a read without a sync token (the replica answers) sees it.
    replica_reader = StoreConnection(
        name="replica reader", slug="replica-reader", url=replicated_store.url, token=TEST_TOKEN
    )
    wait_for(lambda: get_client(replica_reader).call("LLEN", "cleared-session") == 2, what="the replica")
    return replicated_store


def test_a_cleared_session_is_not_listed_again_by_a_lagging_replica(web, replicated):
    row_link = f'href="/sessions/{encode_key("cleared-session")}/"'
    assert row_link in web.get("/").content.decode()
    response = web.post(f"/sessions/{encode_key('cleared-session')}/clear/", SHOWN_ENV)
    assert response.status_code == 302
    assert row_link not in web.get("/").content.decode()  # at once: well inside the replica's lag


def test_without_the_sync_token_the_replica_would_still_show_it(replicated):
    """The counter-proof: a client that never saw the clear's token reads the stale replica."""
    writer = get_client(StoreConnection(name="seed", slug="seed", url=replicated.url, token=TEST_TOKEN))
    writer.call("DEL", "cleared-session")
    stranger = get_client(StoreConnection(name="other", slug="other", url=replicated.url, token=TEST_TOKEN))
    assert stranger.call("EXISTS", "cleared-session") == 1
