"""The bench's store contents: a keyspace that grows, and two special sessions.

Seeding is not what is measured, so it takes the fastest way: a Lua script
writes 10,000 sessions per call inside the server.
"""

import json

# Every writer of DESIGN.md's table is present: LangChain Python (LPUSH, newest
# first) and LlamaIndex (RPUSH, oldest first); 1 session in 100 is a "vip-" one
# (the sparse pattern), a third have a TTL, 1 in 10 a summary (half of them
# stale), so the keyspace also holds hashes that SCAN must skip.
SEED_SCRIPT = """
local first, last, namespace = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i = first, last - 1 do
  local llama = i % 5 == 4
  local key = (llama and 'llamaindex:' or 'message_store:') .. ((i % 100 == 0) and 'vip-' or 'chat-') .. i
  local count = 2 + (i % 5) * 2
  for m = 0, count - 1 do
    local human = m % 2 == 0
    local text
    if human then
      text = 'Hi, this is customer ' .. i .. '. My order #' .. i .. '-' .. m ..
        ' has not arrived and the tracking page shows no update since Monday. Can you check?'
    else
      text = 'Thanks for reaching out! Order #' .. i .. '-' .. m ..
        ' left our warehouse on Tuesday and should arrive within two business days. Anything else?'
    end
    if llama then
      redis.call('RPUSH', key, '{"role":"' .. (human and 'user' or 'assistant') .. '","content":"' .. text ..
        '","additional_kwargs":{}}')
    else
      local kind = human and 'human' or 'ai'
      redis.call('LPUSH', key, '{"type":"' .. kind .. '","data":{"content":"' .. text ..
        '","additional_kwargs":{},"response_metadata":{},"type":"' .. kind .. '","name":null,"id":null,"example":false}}')
    end
  end
  if i % 3 == 0 then redis.call('EXPIRE', key, 86400 * (1 + i % 30)) end
  if i % 10 == 1 then
    redis.call('HSET', namespace .. key, 'text', 'The customer asked about order #' .. i .. '.',
      'method', 'extractive', 'message_count', count - ((i % 20 == 1) and 2 or 0),
      'generated_at', '2026-11-20T10:00:00Z', 'duration_ms', 12)
  end
end
return last - first
"""
SEED_BATCH = 10_000
SUMMARY_NAMESPACE = "memoryadmin:summary:"  # the app's default

DENSE_PATTERN = "*"  # what an operator sees first (the default pattern)
SPARSE_PATTERN = "*:vip-*"  # matches 1 session in 100

LONG_SESSION = "message_store:bench-long"
BIG_SESSION = "message_store:bench-big"


class Keyspace:
    """The sessions in the store; `grow` adds sessions up to a size (sizes only grow)."""

    def __init__(self, redis):
        self.redis = redis
        self.sessions = 0
        redis.flushdb()

    def grow(self, size):
        for first in range(self.sessions, size, SEED_BATCH):
            last = min(first + SEED_BATCH, size)
            self.redis.eval(SEED_SCRIPT, keys=[], args=[str(first), str(last), SUMMARY_NAMESPACE])
        self.sessions = max(self.sessions, size)

    def write_long_session(self, messages):
        """LONG_SESSION: `messages` ordinary messages, LangChain's way."""
        self._write(
            LONG_SESSION, [f"Message {i} of a very long conversation about order #{i}." for i in range(messages)]
        )

    def write_big_session(self, big_bytes):
        """BIG_SESSION: 20 messages, one of them (in the middle, not a list preview) `big_bytes` long."""
        texts = [f"Message {i}, a short one." for i in range(20)]
        texts[10] = "A pasted log file: " + "x" * big_bytes
        self._write(BIG_SESSION, texts)

    def _write(self, key, texts):
        """Chronological texts, alternating human/ai, LPUSHed as LangChain Python does (newest first)."""
        elements = [
            json.dumps({"type": kind, "data": {"content": text, "additional_kwargs": {}, "type": kind}})
            for kind, text in ((("human", "ai")[i % 2], text) for i, text in enumerate(texts))
        ]
        self.redis.delete(key)
        for start in range(0, len(elements), 1000):
            self.redis.lpush(key, *elements[start : start + 1000])


# Sessions of their own for the bulk measurements, so purging them leaves the
# keyspace of the page measurements alone: ~20 LangChain messages each (the
# search goal's size), and one in `needle_every` mentions NEEDLE.
JOB_SEED_SCRIPT = """
local prefix, first, last, needle_every, needle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
for i = first, last - 1 do
  local key = prefix .. i
  for m = 0, 19 do
    local kind = (m % 2 == 0) and 'human' or 'ai'
    local text = 'Message ' .. m .. ' about order #' .. i .. ': the parcel is late, please check the tracking.'
    if m == 7 and i % needle_every == 0 then text = text .. ' Write to ' .. needle .. ' please.' end
    redis.call('LPUSH', key, '{"type":"' .. kind .. '","data":{"content":"' .. text .. '","additional_kwargs":{}}}')
  end
end
return last - first
"""
NEEDLE = "jane.doe@example.com"


def seed_job_sessions(redis, prefix, count, needle_every=1000):
    """`count` sessions `<prefix><i>` for purge and search; returns how many mention NEEDLE."""
    for first in range(0, count, SEED_BATCH):
        last = min(first + SEED_BATCH, count)
        redis.eval(JOB_SEED_SCRIPT, keys=[], args=[prefix, str(first), str(last), str(needle_every), NEEDLE])
    return len(range(0, count, needle_every))
