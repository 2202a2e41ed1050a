"""Read-your-writes on a Global database: reads served by a lagging replica still show the operator's own writes.

The local store's replica mode (`--replica-lag-ms`) serves a read from a replica that lags behind the
primary, unless the request carries a sync token newer than what the replica has applied. The app's
client keeps the last token each reply carried and sends it, as Upstash's SDKs do.
"""

import pytest

from memoryadmin.bulk.models import BulkJob
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.localstore.store import LocalStore
from memoryadmin.services import bulk, content_search, upstash
from memoryadmin.services.upstash import StoreConnection, get_client

from .conftest import DUMMY_TASKS, SHOWN_ENV, TEST_TOKEN
from .factories import langchain, write_langchain_session
from .test_erasure import EMAIL, confirm_request, counted_clear
from .waiting import wait_for

pytestmark = pytest.mark.django_db

LAG_MS = 3000  # far longer than a clear and the next page take, or a purge and its verification


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


def test_an_erasures_verification_run_by_another_worker_reads_after_the_purge(web, replicated, settings, operator):
    """The verification search may run in a worker whose client never saw the purge: it must send the purge's token."""
    settings.TASKS = DUMMY_TASKS  # each task runs when this test says
    writer = get_client(StoreConnection(name="seed", slug="seed", url=replicated.url, token=TEST_TOKEN))
    writer.call("LPUSH", "lc:jane", langchain("human", f"my email is {EMAIL}"))
    replica_reader = StoreConnection(name="fresh", slug="fresh", url=replicated.url, token=TEST_TOKEN)
    wait_for(lambda: get_client(replica_reader).call("EXISTS", "lc:jane") == 1, what="the replica")
    environment = StoreConnection(name="default (environment)", url=replicated.url, token=TEST_TOKEN)
    job = counted_clear(web, environment, operator, reference="DPO-9")
    assert bulk.confirm_job(job, confirm_request(operator), str(job.total)) is None
    bulk.run_job(job.pk)
    job = BulkJob.objects.get(pk=job.pk)
    assert job.status == BulkJob.DONE and get_client(environment).call("EXISTS", "lc:jane") == 0
    upstash._clients.clear()  # as in another worker process: its client has no sync token yet
    content_search.run_search(job.verification_id)
    bulk.record_verification(job.verification_id)
    job.refresh_from_db()
    assert job.verified_at and job.remaining == 0
    # The counter-proof: the replica still had it, so only the purge's token kept the verification off it.
    upstash._clients.clear()
    assert get_client(replica_reader).call("EXISTS", "lc:jane") == 1
