"""What each page is compared with: bare scripts on the real upstash-redis client.

- floor: exactly the store reads the page needs, the smart way (SCAN steps
  plus one pipeline; a transcript window in one transaction). No parsing, no
  HTML: nothing the app could do is faster.
- naive: the same reads the obvious way: one request per command (N+1) for
  the list; for a transcript, the whole list read at once, as the chat
  libraries' own readers do, plus TTL and summary.
"""

from upstash_redis import Redis

from .keyspace import SUMMARY_NAMESPACE

SCAN_COUNT = 1000  # as the app: Upstash caps COUNT near 1,000


def client(store):
    # rest_retries=0: a reference that silently retried would hide a failure.
    return Redis(url=store.url, token=store.token, rest_retries=0, allow_telemetry=False)


def scan_page(redis, pattern, page_size=50, budget=10_000):
    """The keys of the first page: SCAN steps until the page is full or the budget is spent."""
    keys, cursor, examined = set(), 0, 0
    while len(keys) < page_size and examined < budget:
        cursor, found = redis.scan(cursor, match=pattern, count=SCAN_COUNT, type="list")
        keys.update(found)
        examined += SCAN_COUNT
        if int(cursor) == 0:
            break
    return sorted(keys)[:page_size]


def row_reads(key):
    """Each row's reads, as the app does them: length, TTL, summary coverage, the elements at both ends."""
    return [
        ("llen", key),
        ("ttl", key),
        ("hget", SUMMARY_NAMESPACE + key, "message_count"),
        ("lindex", key, 0),
        ("lindex", key, -1),
    ]


def list_page_floor(redis, pattern):
    pipeline = redis.pipeline()
    for key in scan_page(redis, pattern):
        for name, *args in row_reads(key):
            getattr(pipeline, name)(*args)
    return pipeline.exec()


def list_page_naive(redis, pattern):
    return [getattr(redis, name)(*args) for key in scan_page(redis, pattern) for name, *args in row_reads(key)]


def transcript_floor(redis, key, window=50):
    transaction = redis.multi()
    transaction.llen(key)
    transaction.ttl(key)
    transaction.hgetall(SUMMARY_NAMESPACE + key)
    transaction.lrange(key, 0, window - 1)
    return transaction.exec()


def transcript_naive(redis, key, window=50):
    return redis.lrange(key, 0, -1)[:window], redis.ttl(key), redis.hgetall(SUMMARY_NAMESPACE + key)
