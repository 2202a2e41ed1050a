"""Every reply a store (or a proxy before it) can give is an answer the operator can act on, never a crash.

Real Upstash refuses with replies the local store never gives, so a throwaway
server gives them here; the app's own client reads them over real HTTP.
"""

import pytest

from memoryadmin.bulk.models import SearchJob
from memoryadmin.services.upstash import (
    StoreAuthError,
    StoreClient,
    StoreCommandError,
    StoreLimitError,
    StorePlanLimitError,
    StoreReplyError,
    StoreUnavailable,
)

from .fake_store import FakeStore, Reply, b64

# The texts Upstash answers with (its troubleshooting pages).
REQUEST_SIZE = (
    "ERR max request size exceeded. Limit: 10485760 bytes, Actual: 10486123 bytes. "
    "See https://upstash.com/docs/redis/troubleshooting/max_request_size_exceeded for details"
)
REQUESTS_LIMIT = "ERR max requests limit exceeded. Limit: 500000, Usage: 500000."
DAILY_LIMIT = "ERR max daily request limit exceeded"
CONCURRENT = "ERR max concurrent connections exceeded"
CAPACITY = "ERR DB capacity quota exceeded"
WRONGPASS = "WRONGPASS invalid or missing auth token"
NOAUTH = "NOAUTH Authentication required."
UNKNOWN = "ERR unknown command 'FOO'"

PROXY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
TOO_LARGE_PAGE = b"<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body></html>"

CATEGORIES = [
    (REQUEST_SIZE, StoreLimitError),
    (REQUESTS_LIMIT, StorePlanLimitError),
    (DAILY_LIMIT, StorePlanLimitError),
    (CONCURRENT, StorePlanLimitError),
    (CAPACITY, StorePlanLimitError),
    (WRONGPASS, StoreAuthError),
    (NOAUTH, StoreAuthError),
    (UNKNOWN, StoreCommandError),
]


@pytest.fixture
def fake():
    with FakeStore() as server:
        yield server


@pytest.fixture
def store_client(fake):
    client = StoreClient(fake.url, "token", timeout=2, retries=2)
    yield client
    client.close()


def send(client, endpoint):
    """The same two reads, as one command or as a pipeline / transaction."""
    if endpoint == "/":
        return client.call("LRANGE", "chat", 0, -1)
    return client.pipeline([["LLEN", "chat"], ["LRANGE", "chat", 0, -1]], transaction=endpoint == "/multi-exec")


@pytest.mark.parametrize("endpoint", ["/", "/pipeline", "/multi-exec"])
@pytest.mark.parametrize(("text", "category"), CATEGORIES)
def test_a_refusal_as_a_whole_keeps_the_stores_text_in_its_category(fake, store_client, endpoint, text, category):
    """A pipeline refused as a whole is HTTP 400 with ONE top-level error, not a list (upstash-redis 1.8 crashed)."""
    fake.replies[endpoint] = Reply(400, {"error": text})
    with pytest.raises(category) as caught:
        send(store_client, endpoint)
    assert type(caught.value) is category
    assert text in str(caught.value)


@pytest.mark.parametrize(("text", "category"), CATEGORIES)
def test_one_refused_command_in_a_pipeline_has_the_same_category(fake, store_client, text, category):
    fake.replies["/pipeline"] = Reply(200, [{"result": 1}, {"error": text}])
    with pytest.raises(category, match=text.split(".")[0]):
        send(store_client, "/pipeline")


def test_what_each_category_tells_the_operator(fake, store_client):
    messages = {}
    for text in (REQUEST_SIZE, REQUESTS_LIMIT, CONCURRENT, CAPACITY, WRONGPASS):
        fake.replies["/pipeline"] = Reply(400, {"error": text})
        with pytest.raises(Exception) as caught:
            send(store_client, "/pipeline")
        messages[text] = str(caught.value)
    assert "over the store's size limit (10 MB on Free and Pay-as-you-go)" in messages[REQUEST_SIZE]
    assert "What still works" in messages[REQUEST_SIZE]
    assert "try again later or raise the plan" in messages[REQUESTS_LIMIT]
    assert "try again in a moment" in messages[CONCURRENT]
    assert "Reading and clearing sessions still work" in messages[CAPACITY]
    assert "Check the token of this connection" in messages[WRONGPASS]


@pytest.mark.parametrize(
    ("reply", "category", "shown"),
    [
        (Reply(413, TOO_LARGE_PAGE, "text/html"), StoreLimitError, "413 Request Entity Too Large"),
        (Reply(413, b""), StoreLimitError, "HTTP 413"),
        (Reply(429, b"Too Many Requests", "text/plain"), StorePlanLimitError, "Too Many Requests"),
        (Reply(429, {"error": REQUESTS_LIMIT}), StorePlanLimitError, REQUESTS_LIMIT),
        (Reply(502, PROXY_PAGE, "text/html"), StoreUnavailable, "502 Bad Gateway"),
        (Reply(503, {"error": "ERR service is restarting"}), StoreUnavailable, "ERR service is restarting"),
        (Reply(500, b""), StoreUnavailable, "HTTP 500"),
        (Reply(401, {"error": "Unauthorized"}), StoreAuthError, "rejected the REST token"),
        (Reply(404, b"404 page not found", "text/plain"), StoreUnavailable, "404 page not found"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/", "/pipeline"])
def test_http_failures_are_categorised_with_what_the_server_said(fake, store_client, endpoint, reply, category, shown):
    fake.replies[endpoint] = reply
    with pytest.raises(category) as caught:
        send(store_client, endpoint)
    assert type(caught.value) is category
    assert shown in str(caught.value)
    assert "<" not in str(caught.value)  # an HTML page is shown as its words


@pytest.mark.parametrize(
    ("endpoint", "reply"),
    [
        ("/", Reply(200, b"<html><body>Please sign in to the guest network</body></html>", "text/html")),
        ("/", Reply(200, b'{"result": "UE9O')),  # cut off by something in between
        ("/", Reply(200, {"result": b64("PONG")}, cut_after=5)),  # shorter than its Content-Length
        ("/", Reply(200, {"value": 1})),  # neither result nor error
        ("/", Reply(200, [{"result": 1}])),
        ("/", Reply(200, {"result": "abc"})),  # not base64
        ("/", Reply(200, {"result": {"nested": "object"}})),
        ("/", Reply(200, {"result": [1, {"nested": "object"}]})),
        ("/pipeline", Reply(200, [{"result": 1}])),  # one reply for two commands
        ("/pipeline", Reply(200, [{"result": 1}, {"result": 2}, {"result": 3}])),
        ("/pipeline", Reply(200, [1, 2])),
        ("/pipeline", Reply(200, {"result": [1, 2]})),
        ("/pipeline", Reply(200, [{"result": 1}, {"value": 2}])),
        ("/pipeline", Reply(200, b"null")),
        ("/multi-exec", Reply(200, b"")),
    ],
)
def test_a_reply_that_cannot_be_read_is_a_reply_error(fake, store_client, endpoint, reply):
    fake.replies[endpoint] = reply
    with pytest.raises(StoreReplyError, match="could not be read"):
        send(store_client, endpoint)


def test_a_reply_cut_off_is_not_sent_again(fake, store_client):
    """The store answered, so the command may have run: sending it again could run it twice."""
    fake.replies["/"] = Reply(200, {"result": 1}, cut_after=3)
    with pytest.raises(StoreReplyError, match="cut off"):
        store_client.call("RPUSH", "chat", "hello")
    assert len(fake.seen) == 1


def test_an_error_reply_is_an_answer_for_the_breaker(fake, store_client):
    fake.replies["/"] = Reply(400, {"error": CONCURRENT})
    with pytest.raises(StorePlanLimitError):
        store_client.call("PING")
    fake.replies["/"] = Reply(502, PROXY_PAGE, "text/html")
    with pytest.raises(StoreUnavailable):
        store_client.call("PING")
    fake.replies["/"] = Reply(200, {"result": b64("PONG")})
    assert store_client.call("PING") == b"PONG"  # no "did not answer a moment ago"


@pytest.mark.django_db
def test_a_search_job_whose_pipeline_is_refused_fails_with_the_stores_text(web, fake, settings):
    """A background job records the refusal as its failure instead of crashing."""
    settings.UPSTASH_REDIS_REST_URL = fake.url
    fake.replies["/pipeline"] = Reply(400, {"error": REQUEST_SIZE})
    response = web.post("/bulk/search/", {"key_pattern": "", "role": "", "query": "jane"})
    assert response.status_code == 302
    job = SearchJob.objects.get()
    assert job.status == SearchJob.FAILED
    assert "ERR max request size exceeded" in job.error and "10 MB" in job.error
