"""Every reply a store (or a proxy before it) can give is an answer the operator can act on, never a crash.

Real Upstash refuses with replies the local store never gives, so a throwaway
server gives them here; the app's own client reads them over real HTTP.
"""

import functools
import threading

import pytest

from memoryadmin.bulk.models import SearchJob
from memoryadmin.services.upstash import (
    StoreAuthError,
    StoreClient,
    StoreCommandError,
    StoreError,
    StoreLimitError,
    StorePermissionError,
    StorePlanLimitError,
    StoreReplyError,
    StoreUnavailable,
    page_text,
    refusal,
)

from .fake_store import FakeStore, Reply, b64, pong_after
from .threads import once_all_are_ready, run_together

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


# What the operator reads, whole (a word changed in one of these is a change to review, not noise).
TOO_BIG = (
    "This request, or its reply, was over the store's size limit (10 MB on Free and Pay-as-you-go). "
    "The app keeps every read under the connection's request limit setting (10 MB unless raised): if "
    "this store's limit is lower, lower the setting. What still works: other pages and sessions, and clearing a "
    "session or changing its TTL, which do not read its messages."
)
TRY_LATER = "try again later or raise the plan in the Upstash console."
HOST = "eu1-able-bird-12345.upstash.io"
ANSWERED = f"The store at {HOST} answered HTTP"


def unreadable_text(host, why):
    return (
        f"The reply of the store at {host} could not be read: {why}. A proxy between the app and the store, "
        "or a URL that is not an Upstash REST URL, may be at fault: try again, and if it keeps happening, "
        "check this connection's URL."
    )


def no_permission(text):
    return (
        f"The store refused this connection's token a command: “{text}”. A read-only token may not write: "
        "check that the REST token field holds the database's full token and the read-only token field "
        "its read-only one."
    )


def rejected(token, answered):
    return f"The store rejected the {token}. Check the token of this connection. {ANSWERED} {answered}"


def unavailable(answered):
    return (
        f"{ANSWERED} {answered} Try again in a moment; if it keeps happening, check the store's status in the "
        "Upstash console."
    )


NOPERM_RUN = "NOPERM this user has no permissions to run the 'del' command or its subcommand"
REFUSALS = [
    # (status, text, from the store?, the category, what the operator reads)
    (400, REQUEST_SIZE, True, StoreLimitError, f"{TOO_BIG} {ANSWERED} 400: “{REQUEST_SIZE}”."),
    (413, "", False, StoreLimitError, f"{TOO_BIG} {ANSWERED} 413."),
    (413, CONCURRENT, True, StoreLimitError, f"{TOO_BIG} {ANSWERED} 413: “{CONCURRENT}”."),
    (
        400,
        REQUESTS_LIMIT,
        True,
        StorePlanLimitError,
        f"The store's plan allows no more requests for now (its request limit): {TRY_LATER} "
        f"{ANSWERED} 400: “{REQUESTS_LIMIT}”.",
    ),
    (
        400,
        DAILY_LIMIT,
        True,
        StorePlanLimitError,
        f"The store's plan allows no more requests today (its daily request limit): {TRY_LATER} "
        f"{ANSWERED} 400: “{DAILY_LIMIT}”.",
    ),
    (
        401,
        CONCURRENT,
        True,
        StorePlanLimitError,
        "Too many connections to the store at once (its plan's limit): try again in a moment; if it keeps "
        f"happening, raise the plan. {ANSWERED} 401: “{CONCURRENT}”.",
    ),
    (
        400,
        CAPACITY,
        True,
        StorePlanLimitError,
        "The store is full (its plan's data size limit). Reading and clearing sessions still work; other writes "
        "(TTL changes, summaries) are refused until data is removed or the plan is raised. "
        f"{ANSWERED} 400: “{CAPACITY}”.",
    ),
    (
        429,
        "Too Many Requests",
        False,
        StorePlanLimitError,
        "The store, or a proxy in front of it, is limiting requests: try again later or raise the plan. "
        f"{ANSWERED} 429: “Too Many Requests”.",
    ),
    (400, NOPERM_RUN, True, StorePermissionError, no_permission(NOPERM_RUN)),
    (401, NOPERM_RUN, True, StorePermissionError, no_permission(NOPERM_RUN)),
    # Valkey's own words, without the code, as the local store passes them on.
    (
        200,
        "this user has no permissions to run the 'set' command",
        True,
        StorePermissionError,
        no_permission("this user has no permissions to run the 'set' command"),
    ),
    (
        400,
        "NOPERM No permissions to access a key",
        True,
        StorePermissionError,
        no_permission("NOPERM No permissions to access a key"),
    ),
    (401, "Unauthorized", True, StoreAuthError, rejected("REST token", "401: “Unauthorized”.")),
    (401, "", False, StoreAuthError, rejected("REST token", "401.")),
    (400, WRONGPASS, True, StoreAuthError, rejected("REST token", f"400: “{WRONGPASS}”.")),
    (503, NOAUTH, True, StoreAuthError, rejected("REST token", f"503: “{NOAUTH}”.")),
    (500, "", False, StoreUnavailable, unavailable("500.")),
    (503, "ERR service is restarting", True, StoreUnavailable, unavailable("503: “ERR service is restarting”.")),
    (404, "404 page not found", False, StoreUnavailable, unavailable("404: “404 page not found”.")),
    (405, "Method Not Allowed", True, StoreUnavailable, unavailable("405: “Method Not Allowed”.")),
    (400, UNKNOWN, True, StoreCommandError, f"The store refused a command: {UNKNOWN}"),
    (499, "", True, StoreCommandError, "The store refused a command: "),
    (
        499,
        "Client Closed Request",
        False,
        StoreReplyError,
        unreadable_text(HOST, "HTTP 499 with “Client Closed Request” instead of a store's reply"),
    ),
    (400, "", False, StoreReplyError, unreadable_text(HOST, "an empty HTTP 400 reply instead of a store's reply")),
]


@pytest.mark.parametrize(("status", "text", "from_store", "category", "message"), REFUSALS)
def test_each_refusal_is_its_category_with_the_whole_message(status, text, from_store, category, message):
    """By the store's words first (in any case), then by the HTTP status; the message is compared whole."""
    error = refusal(status, text, HOST, from_store)
    assert type(error) is category
    assert str(error) == message


def test_an_auth_refusal_names_the_token_that_was_sent():
    error = refusal(400, WRONGPASS, HOST, token_name="read-only token")
    assert str(error) == rejected("read-only token", f"400: “{WRONGPASS}”.")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (PROXY_PAGE, "502 Bad Gateway"),
        (b"<html><head><title>\n  Sign in\n</title></head><body><p>Guest network</p></body></html>", "Sign in"),
        (b"<p>Please sign in</p><p>to the <b>guest</b>network</p>", "Please sign in to the guest network"),
        (b"Bad gateway: \xff\xfe upstream", "Bad gateway: \ufffd\ufffd upstream"),  # not UTF-8
        (b"a" * 200, "a" * 200),
        (b"a" * 201, "a" * 199 + "…"),
        (b"<p>" + b"a " * 300 + b"</p>", "a " * 99 + "a…"),
        (b" " * 4000 + b"<title>Too late</title>", ""),  # only the first 4,000 bytes are read
    ],
)
def test_a_page_is_shown_as_its_title_or_its_words_up_to_200_characters(content, words):
    assert page_text(content) == words


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


@pytest.mark.parametrize(
    ("endpoint", "reply", "status", "text", "from_store"),
    [
        ("/", Reply(401, b"Unauthorized", "text/plain"), 401, "Unauthorized", False),
        (
            "/pipeline",
            Reply(401, b"<html><title>401 Unauthorized</title></html>", "text/html"),
            401,
            "401 Unauthorized",
            False,
        ),
        ("/", Reply(401, {"message": "Unauthorized"}), 401, '{"message": "Unauthorized"}', False),
        ("/pipeline", Reply(403, {"message": "Forbidden"}), 403, '{"message": "Forbidden"}', False),
        ("/pipeline", Reply(401, {"error": "Unauthorized"}), 401, "Unauthorized", True),
        ("/", Reply(400, {"error": WRONGPASS}), 400, WRONGPASS, True),
        ("/", Reply(400, {"error": UNKNOWN}), 400, UNKNOWN, True),
        ("/pipeline", Reply(200, [{"result": 1}, {"error": WRONGPASS}]), 200, WRONGPASS, True),
        ("/multi-exec", Reply(200, [{"result": 1}, {"error": DAILY_LIMIT}]), 200, DAILY_LIMIT, True),
        ("/pipeline", Reply(200, [{"result": 1}, {"error": UNKNOWN}]), 200, UNKNOWN, True),
    ],
)
def test_a_refusal_is_told_with_its_status_the_stores_words_and_the_token_sent(
    fake, endpoint, reply, status, text, from_store
):
    """What `refusal` makes of the status and the words (a page's, or the store's own error), whole; here the
    connection's read-only token was sent."""
    fake.replies[endpoint] = reply
    client = StoreClient(fake.url, "token", timeout=2, retries=0, token_name="read-only token")
    with pytest.raises(Exception) as caught:
        send(client, endpoint)
    client.close()
    expected = refusal(status, text, f"127.0.0.1:{fake.server_address[1]}", from_store, "read-only token")
    assert (type(caught.value), str(caught.value)) == (type(expected), str(expected))


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


NOT_A_RESULT = "a result that is not what the store sends"


@pytest.mark.parametrize(
    ("endpoint", "reply", "why"),
    [
        (
            "/",
            Reply(200, b"<html><body>Please sign in to the guest network</body></html>", "text/html"),
            "HTTP 200 with “Please sign in to the guest network” instead of a store's reply",
        ),
        # Cut off by something in between.
        ("/", Reply(200, b'{"result": "UE9O'), 'HTTP 200 with “{"result": "UE9O” instead of a store\'s reply'),
        (
            "/",
            Reply(200, {"result": b64("PONG")}, cut_after=5),  # shorter than its Content-Length
            "it was cut off (peer closed connection without sending complete message body "
            "(received 5 bytes, expected 22)); its commands may have run",
        ),
        ("/", Reply(200, {"value": 1}), "a reply without a result"),  # neither result nor error
        ("/", Reply(200, [{"result": 1}]), "a reply without a result"),
        ("/", Reply(200, {"result": "abc"}), f"{NOT_A_RESULT} (Incorrect padding)"),  # not base64
        ("/", Reply(200, {"result": {"nested": "object"}}), f"{NOT_A_RESULT} (a JSON object in a result)"),
        ("/", Reply(200, {"result": [1, {"nested": "object"}]}), f"{NOT_A_RESULT} (a JSON object in a result)"),
        ("/pipeline", Reply(200, [{"result": 1}]), "1 replies for 2 commands"),
        ("/pipeline", Reply(200, [{"result": 1}, {"result": 2}, {"result": 3}]), "3 replies for 2 commands"),
        ("/pipeline", Reply(200, [{"result": 1}, {"value": 2}, {"value": 3}]), "3 replies for 2 commands"),
        ("/pipeline", Reply(200, [1, 2]), "a reply without a result among a pipeline's replies"),
        ("/pipeline", Reply(200, {"result": [1, 2]}), "no list of replies for 2 commands"),
        ("/pipeline", Reply(200, [{"result": 1}, {"value": 2}]), "a reply without a result among a pipeline's replies"),
        ("/pipeline", Reply(200, b"null"), "no list of replies for 2 commands"),
        ("/pipeline", Reply(200, [{"result": 1}, {"result": "abc"}]), f"{NOT_A_RESULT} (Incorrect padding)"),
        (
            "/multi-exec",
            Reply(200, [{"result": 1}, {"result": {"a": 1}}]),
            f"{NOT_A_RESULT} (a JSON object in a result)",
        ),
        ("/multi-exec", Reply(200, b""), "an empty HTTP 200 reply instead of a store's reply"),
    ],
)
def test_a_reply_that_cannot_be_read_is_a_reply_error_that_says_why(fake, store_client, endpoint, reply, why):
    fake.replies[endpoint] = reply
    with pytest.raises(StoreReplyError) as caught:
        send(store_client, endpoint)
    assert str(caught.value) == unreadable_text(f"127.0.0.1:{fake.server_address[1]}", why)


def test_a_reply_cut_off_is_not_sent_again(fake, store_client):
    """The store answered, so the command may have run: sending it again could run it twice."""
    fake.replies["/"] = Reply(200, {"result": 1}, cut_after=3)
    with pytest.raises(StoreReplyError, match="cut off"):
        store_client.call("RPUSH", "chat", "hello")
    assert len(fake.seen) == 1


@pytest.mark.parametrize("reply", [Reply(400, {"error": CONCURRENT}), Reply(502, PROXY_PAGE, "text/html")])
def test_an_error_reply_is_an_answer_for_the_breaker(fake, store_client, reply):
    """A refusal or a proxy's page is an answer, not silence: the requests after it all go, at once."""
    fake.replies["/"] = reply
    with pytest.raises(StoreError):
        store_client.call("PING")
    fake.replies["/"] = pong_after(0.5)
    ping = functools.partial(once_all_are_ready, threading.Barrier(2), functools.partial(store_client.call, "PING"))
    assert run_together(ping, ping) == [b"PONG", b"PONG"]  # no "did not answer ... a moment ago"


@pytest.mark.django_db
def test_a_search_job_whose_pipeline_is_refused_fails_with_the_stores_text(web, fake, settings):
    """A background job records the refusal as its failure instead of crashing."""
    settings.UPSTASH_REDIS_REST_URL = fake.url
    fake.replies["/pipeline"] = Reply(400, {"error": REQUEST_SIZE})
    fake.replies["/"] = Reply(200, {"result": 7})  # DBSIZE, for the search's estimate
    response = web.post("/bulk/search/", {"key_pattern": "", "role": "", "query": "jane"})
    assert response.status_code == 302
    job = SearchJob.objects.get()
    assert job.status == SearchJob.FAILED
    assert "ERR max request size exceeded" in job.error and "10 MB" in job.error
