"""The bench's store contents: a keyspace that grows, two special sessions, sessions for the
bulk jobs, and a realistic corpus at the sizes that meet Upstash's 10 MB request limit.

Seeding is not what is measured, so it takes the fastest way: Lua scripts
write the sessions inside the server (10,000 small ones, or 100 realistic ones, per call).
"""

import json
from dataclasses import dataclass

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


# The realistic corpus (issue 13): what LangChain Python stores for a support agent with tools, at
# the sizes that meet Upstash's 10 MB request limit. Each session holds 40 messages of ~1.5 KB in
# message_to_dict's shape, 10 turns of: the customer, the model calling a tool, the tool's JSON
# answer, the model's reply. KEYS are the sessions to write; one in `needle_every` (by the index
# ARGV[1] counts from) mentions the needle. FILLER is plain text (no quote or backslash).
REALISTIC_SEED_SCRIPT = """
local first, needle_every, needle, filler = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local function text(n) return string.sub(filler, 1, n) end
local function human(content)
  return '{"type":"human","data":{"content":"' .. content ..
    '","additional_kwargs":{},"response_metadata":{},"type":"human","name":null,"id":null,"example":false}}'
end
local function ai(content, run, order)
  local calls, extra, finish = '[]', '{"refusal":null}', 'stop'
  if order then
    calls = '[{"name":"lookup_order","args":{"order_id":"' .. order .. '"},"id":"call_' .. run ..
      '","type":"tool_call"}]'
    extra = '{"tool_calls":[{"id":"call_' .. run .. '","function":{"arguments":"{\\\\"order_id\\\\":\\\\"' ..
      order .. '\\\\"}","name":"lookup_order"},"type":"function"}],"refusal":null}'
    finish = 'tool_calls'
  end
  return '{"type":"ai","data":{"content":"' .. content .. '","additional_kwargs":' .. extra ..
    ',"response_metadata":{"token_usage":{"completion_tokens":87,"prompt_tokens":2315,"total_tokens":2402,' ..
    '"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens_details":{"cached_tokens":1920}},' ..
    '"model_name":"gpt-4o-2024-08-06","system_fingerprint":"fp_7f6be3efb0","finish_reason":"' .. finish ..
    '","logprobs":null},"type":"ai","name":null,"id":"run-' .. run .. '","example":false,"tool_calls":' .. calls ..
    ',"invalid_tool_calls":[],"usage_metadata":{"input_tokens":2315,"output_tokens":87,"total_tokens":2402}}}'
end
local function tool(order, run)
  local events = {}
  for e = 1, 6 do
    events[e] = '{\\\\"at\\\\": \\\\"2026-11-0' .. e .. 'T08:1' .. e .. ':00Z\\\\", \\\\"where\\\\": \\\\"Depot ' .. e ..
      '\\\\", \\\\"what\\\\": \\\\"' .. text(100) .. '\\\\"}'
  end
  return '{"type":"tool","data":{"content":"{\\\\"order_id\\\\": \\\\"' .. order ..
    '\\\\", \\\\"status\\\\": \\\\"in transit\\\\", \\\\"carrier\\\\": \\\\"DHL\\\\", \\\\"events\\\\": [' ..
    table.concat(events, ', ') .. ']}","additional_kwargs":{},"response_metadata":{},"type":"tool",' ..
    '"name":"lookup_order","id":null,"tool_call_id":"call_' .. run .. '","artifact":null,"status":"success"}}'
end
local written = 0
local function push(key, element)
  redis.call('LPUSH', key, element)
  written = written + #element
end
for k, key in ipairs(KEYS) do
  local i = first + k - 1
  for turn = 0, 9 do
    local run, order = i .. '-' .. turn, 'A' .. (100000 + i) .. '-' .. turn
    local ask = 'Customer ' .. i .. ' about order ' .. order .. ': ' .. text(1330)
    if turn == 3 and i % needle_every == 0 then ask = ask .. ' Write to ' .. needle .. ' please.' end
    push(key, human(ask))
    push(key, ai('Let me look that order up. ' .. text(580), run, order))
    push(key, tool(order, run))
    push(key, ai('Order ' .. order .. ' is with DHL. ' .. text(1180), run))
  end
end
return written
"""
# What multimodal chats store: every message a text part and a base64 image part (ARGV: count,
# image bytes, needle; the needle is in the text of message 5).
IMAGE_SEED_SCRIPT = """
local count, size, needle = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local pixels = string.rep(alphabet, math.ceil(size / #alphabet))
local written = 0
for m = 0, count - 1 do
  local image = string.sub('iVBORw0KGgoAAAANSUhEUgAA' .. m .. pixels, 1, size)
  local caption = 'Photo ' .. m .. ' of the damaged parcel' .. (m == 5 and (', from ' .. needle) or '')
  local element = '{"type":"human","data":{"content":[{"type":"text","text":"' .. caption ..
    '"},{"type":"image_url","image_url":{"url":"data:image/png;base64,' .. image ..
    '"}}],"additional_kwargs":{},"response_metadata":{},"type":"human","name":null,"id":null,"example":false}}'
  redis.call('LPUSH', KEYS[1], element)
  written = written + #element
end
return written
"""
# A pasted log as the newest message of a session, the needle at its very end (ARGV: bytes, needle).
BIG_MESSAGE_SCRIPT = """
local size, needle = tonumber(ARGV[1]), ARGV[2]
local line = '2026-11-20T10:00:00Z INFO worker-3 request handled in 12 ms; nothing to report here. '
local log = string.sub(string.rep(line, math.ceil(size / #line)), 1, size - #needle - 1)
local element = '{"type":"human","data":{"content":"A pasted log: ' .. log .. ' ' .. needle ..
  '","additional_kwargs":{},"response_metadata":{},"type":"human","name":null,"id":null,"example":false}}'
redis.call('LPUSH', KEYS[1], element)
return #element
"""
REALISTIC_FILLER = (
    "I have been waiting for this parcel for over a week now and the tracking page has not changed since it left "
    "the depot. My neighbour received hers from the same shop in two days. I need it before the weekend because it "
    "is a birthday present, so please tell me honestly whether it will arrive in time or whether I should ask for "
    "a refund and buy something locally instead. I also noticed that the delivery address on the confirmation "
    "e-mail is missing the flat number, which might be why the courier could not deliver it on Thursday. "
) * 4
REALISTIC_PREFIX = "message_store:rl-"
REALISTIC_PATTERN = REALISTIC_PREFIX + "*"
MEDIA_PATTERN = REALISTIC_PREFIX + "media-*"
IMAGE_SESSION = REALISTIC_PREFIX + "media-images"
BIG_MESSAGE_SESSION = REALISTIC_PREFIX + "media-log"
REALISTIC_BATCH = 100  # sessions per script call: ~6 MB written, well under a second


@dataclass
class RealisticCorpus:
    """What `seed_realistic` wrote, for the measurements to check against."""

    sessions: int  # every session of REALISTIC_PATTERN, the two media ones included
    messages: int
    bytes: int  # of the elements
    matches: int  # sessions that mention NEEDLE


def seed_realistic(
    redis, sessions, image_messages=60, image_bytes=300_000, big_message_bytes=5_000_000, needle_every=100
):
    """`sessions` sessions of 40 messages, the image session and the 5 MB message's session (REALISTIC_PATTERN)."""
    written = 0
    for first in range(0, sessions, REALISTIC_BATCH):
        keys = [f"{REALISTIC_PREFIX}{i}" for i in range(first, min(first + REALISTIC_BATCH, sessions))]
        args = [str(first), str(needle_every), NEEDLE, REALISTIC_FILLER]
        written += redis.eval(REALISTIC_SEED_SCRIPT, keys=keys, args=args)
    args = [str(image_messages), str(image_bytes), NEEDLE]
    written += redis.eval(IMAGE_SEED_SCRIPT, keys=[IMAGE_SESSION], args=args)
    # 39 ordinary messages (numbered so that none has the needle), then the log, the newest.
    written += redis.eval(REALISTIC_SEED_SCRIPT, keys=[BIG_MESSAGE_SESSION], args=["1", "2", NEEDLE, REALISTIC_FILLER])
    written -= len(redis.rpop(BIG_MESSAGE_SESSION).encode())
    written += redis.eval(BIG_MESSAGE_SCRIPT, keys=[BIG_MESSAGE_SESSION], args=[str(big_message_bytes), NEEDLE])
    return RealisticCorpus(
        sessions=sessions + 2,
        messages=sessions * 40 + image_messages + 40,
        bytes=written,
        matches=len(range(0, sessions, needle_every)) + 2,
    )
