"""Summarizers: a session's messages -> a short summary for the operator.

Pure functions of the messages: no store access here (the caller saves the
result as the summary hash, see DESIGN.md "Summaries"). Two providers:

- "extractive" (default): offline, deterministic, standard library only. It
  scores the conversation's sentences and presents what the user asked for,
  the key facts and the outcome.
- "openai": any OpenAI-compatible chat-completions endpoint (OpenAI, Azure
  OpenAI's v1 API, Ollama, vLLM, LM Studio). A transcript longer than
  max_input_chars is summarized in chunks whose summaries are then merged.

Messages come in chronological order (oldest first), as the transcript shows
them. System prompts are skipped, and so are messages without text
(unreadable elements, tool calls without content). A session left with
nothing to summarize is a SummarizerError like every other failure, so that
no empty summary is ever saved; its message is shown to the operator verbatim.
"""

import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice

import httpx

from memoryadmin.services.messages import Message

EXTRACTIVE = "extractive"
OPENAI = "openai"

SYSTEM_PROMPT = "You summarize conversations between users and an AI assistant for the support operators who review them."

DEFAULT_PROMPT = (
    "Summarize this conversation between a user (human) and an AI assistant (ai) for a support operator, "
    "in 3 to 5 plain sentences: what the user asked for, the key facts (order numbers, amounts, dates, "
    "names, e-mail addresses) and the outcome, or what is still open. Answer with the summary only.\n\n"
    "{transcript}"
)

MERGE_PROMPT = (
    "These are summaries of consecutive parts of one conversation between a user and an AI assistant, "
    "in order. Merge them into one summary for a support operator, in 3 to 5 plain sentences: what the "
    "user asked for, the key facts and the final outcome, or what is still open. Answer with the summary "
    "only.\n\n"
    "{summaries}"
)


@dataclass
class SummarizerConfig:
    provider: str = EXTRACTIVE  # "extractive" | "openai"
    base_url: str = ""  # e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1 (Ollama)
    model: str = ""
    api_key: str = field(default="", repr=False)  # kept out of reprs, logs and tracebacks; empty: no Authorization
    max_input_chars: int = 12000  # transcript characters per request; longer transcripts are chunked
    timeout: float = 30.0  # seconds, per request
    prompt_template: str = DEFAULT_PROMPT  # {transcript} is replaced by the transcript (or one chunk of it)
    merge_prompt_template: str = MERGE_PROMPT  # {summaries} is replaced by the chunks' summaries
    # A cost guard: a transcript needing more chunks fails before any request rather than run up a bill.
    max_chunks: int = 50


@dataclass
class SummaryResult:
    text: str
    method: str  # "extractive" or the model name
    message_count: int  # how many messages it covers: len(messages)
    duration_ms: int


class SummarizerError(Exception):
    """A summary could not be made; the message says what happened and what to do, for the operator."""


def summarize(messages: list[Message], config: SummarizerConfig) -> SummaryResult:
    started = time.monotonic()
    if config.provider == EXTRACTIVE:
        text, method = _extractive_summary(messages), EXTRACTIVE
    elif config.provider == OPENAI:
        text, method = _model_summary(messages, config), config.model
    else:
        raise SummarizerError(
            f'Unknown summarizer provider "{config.provider}": choose "extractive" or "openai" in the summarizer settings.'
        )
    duration_ms = round((time.monotonic() - started) * 1000)
    return SummaryResult(text=text, method=method, message_count=len(messages), duration_ms=duration_ms)


def _conversation(messages):
    """(role, text) of every message worth summarizing, or a SummarizerError when there is none."""
    conversation = [(message.role, message.text.strip()) for message in messages if message.role != "system"]
    conversation = [(role, text) for role, text in conversation if text]
    if not conversation:
        raise SummarizerError(
            "Nothing to summarize: this session has no messages with text "
            "(system prompts and unreadable messages are skipped)."
        )
    return conversation


# --- extractive ---------------------------------------------------------------

# However long the session, only this many messages are scored: the first and
# the last ones (the request and the resolution live there) and evenly spaced
# ones between, so 5,000+ messages cost no more than 200. Each message is cut
# to MAX_MESSAGE_CHARS for the same reason (pasted logs can be megabytes).
HEAD_MESSAGES = 50
MIDDLE_MESSAGES = 100
TAIL_MESSAGES = 50
MAX_MESSAGE_CHARS = 5000

MAX_SENTENCES = 5
MAX_REQUEST_SENTENCES = 2
MIN_CONTENT_WORDS = 2  # below this a sentence is small talk ("Thanks!", "Hi there")
MIN_REQUEST_WORDS = 3  # a human message with fewer content words is not the request ("Hello")
MAX_SHOWN_CHARS = 250
MAX_TOOL_FACTS = 12
NEAR_DUPLICATE = 0.6  # share of words two sentences have in common above which only one is shown

FACT_BOOST = 2.0
CUE_BOOST = 1.5
FIRST_REQUEST_BOOST = 1.5
LAST_REPLY_BOOST = 1.3
QUESTION_PENALTY = 0.5  # a question is not a fact ("Could you share your order number?")

WORD = re.compile(r"\w+(?:[-'’./@]\w+)*")  # keeps NW-10442, 49.99, dev@acme.io, don't in one piece
FACT = re.compile(r"\d|\w@\w|[$€£¥₹]")  # numbers, IDs, amounts, e-mail addresses
CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.DOTALL)
LIST_MARKER = re.compile(r"^\s*(?:[-*+•>]|#+|\d+[.)])\s+")
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])")

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any anything are as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each else few for from further get got had hadn't has hasn't have haven't having he her here hers
    herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its itself just let let's me
    more most much my myself no nor not now of off on once only or other our ours ourselves out over own same
    she should shouldn't so some something such than that that's the their theirs them themselves then there
    there's these they they're this those through to too under until up very was wasn't we we'd we'll we're
    we've were weren't what what's when where which while who whom why will with won't would wouldn't you
    you'd you'll you're you've your yours yourself yourselves
    hi hello hey thanks thank please ok okay sure yes yeah great glad happy sorry welcome help assist
    today day let know see look like want need one
    """.split()
)
REQUEST_CUES = frozenset("want need like can could would please how why where when what help problem issue error".split())
OUTCOME_CUES = frozenset(
    """
    issued refunded resolved fixed sent cancelled canceled scheduled created updated changed confirmed processed
    approved escalated replaced reset booked done completed credited shipped closed arranged will
    """.split()
)


@dataclass
class _Sentence:
    text: str
    role: str
    message: int  # index of its message in the scored sample: chronological order
    words: list[str]  # content words, stopwords removed, lowercased
    cues: frozenset[str]  # all its lowercased words, stopwords included, to look cue words up
    has_fact: bool


def _extractive_summary(messages):
    sentences = [
        _sentence(text, role, index)
        for index, (role, text) in enumerate(_sample(_conversation(messages)))
        for text in _sentence_texts(_readable(role, text[:MAX_MESSAGE_CHARS]))
    ]
    sentences = [sentence for sentence in sentences if sentence.text]
    weights = _word_weights(sentences)
    request = _request_sentences(sentences, weights)
    outcome = _outcome_sentence(sentences, weights)
    chosen = request + ([outcome] if outcome else [])
    facts = _fact_sentences(sentences, weights, chosen, MAX_SENTENCES - len(chosen))
    lines = []
    if request:
        lines.append("User asked: " + _shown(request))
    if facts:
        lines.append("Key facts: " + _shown(facts))
    lines.append("Outcome: " + (_shown([outcome]) if outcome else "No reply from the assistant yet."))
    return "\n".join(lines)


def _sample(conversation):
    if len(conversation) <= HEAD_MESSAGES + MIDDLE_MESSAGES + TAIL_MESSAGES:
        return conversation
    middle = conversation[HEAD_MESSAGES:-TAIL_MESSAGES]
    step = len(middle) / MIDDLE_MESSAGES
    spaced = [middle[int(i * step)] for i in range(MIDDLE_MESSAGES)]
    return conversation[:HEAD_MESSAGES] + spaced + conversation[-TAIL_MESSAGES:]


def _readable(role, text):
    """A tool's JSON result becomes "key: value" pairs, so its facts can be picked without the JSON noise."""
    if role not in ("tool", "function") or text[:1] not in "{[":
        return text  # tools also answer in prose
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return ""  # cut off or broken JSON holds no readable fact
    pairs = islice(_json_leaves(value, ""), MAX_TOOL_FACTS)
    return ", ".join(f"{key.replace('_', ' ')}: {leaf}" if key else str(leaf) for key, leaf in pairs) + "."


def _json_leaves(value, key):
    """(key, value) of every non-empty scalar in a JSON value, the innermost key naming it."""
    if isinstance(value, dict):
        for child_key, child in value.items():
            yield from _json_leaves(child, str(child_key))
    elif isinstance(value, list):
        for child in value:
            yield from _json_leaves(child, key)
    elif value is not None and value != "":
        yield key, value


def _sentence_texts(text):
    """Sentences of a message: code blocks dropped, each line split further at sentence ends."""
    for line in CODE_BLOCK.sub("\n", text).splitlines():
        line = LIST_MARKER.sub("", line).replace("**", "")
        yield from (sentence.strip() for sentence in SENTENCE_END.split(line))


def _sentence(text, role, message):
    lowered = WORD.findall(text.lower())
    words = [word for word in lowered if word not in STOPWORDS and len(word) > 1]
    return _Sentence(text, role, message, words, frozenset(lowered), bool(FACT.search(text)))


def _word_weights(sentences):
    """TF-IDF over the conversation: words it keeps coming back to, discounted when in almost every sentence."""
    frequency = Counter(word for sentence in sentences for word in sentence.words)
    sentence_frequency = Counter(word for sentence in sentences for word in dict.fromkeys(sentence.words))
    total = len(sentences)
    return {
        word: (1 + math.log(count)) * math.log(1 + total / sentence_frequency[word])
        for word, count in frequency.items()
    }


def _score(sentence, weights, cues=frozenset()):
    # Distinct words in order of appearance (not a set): the float sum, and so any tie, is the same every run.
    distinct = list(dict.fromkeys(sentence.words))
    if not distinct:
        return 0.0
    score = sum(weights[word] for word in distinct) / math.sqrt(len(distinct))
    if sentence.has_fact:
        score *= FACT_BOOST
    if cues & sentence.cues:
        score *= CUE_BOOST
    return score


def _substantive(sentence):
    return len(sentence.words) >= MIN_CONTENT_WORDS


def _best(scored, count):
    """The `count` best (score, sentence) pairs, ties going to the earlier sentence, back in chronological order."""
    ranked = sorted(enumerate(scored), key=lambda item: (-item[1][0], item[0]))[:count]
    return [sentence for _, (_, sentence) in sorted(ranked)]


def _request_sentences(sentences, weights):
    """What the user asked for: the best sentences of the first two substantive human messages, the first preferred."""
    human = [sentence for sentence in sentences if sentence.role == "human"]
    words_per_message = Counter()
    for sentence in human:
        words_per_message[sentence.message] += len(sentence.words)
    requests = [message for message, words in words_per_message.items() if words >= MIN_REQUEST_WORDS][:2]
    if not requests:  # small talk only: the first thing the user said is still what they asked
        return human[:1]
    scored = [
        (_score(sentence, weights, REQUEST_CUES) * (FIRST_REQUEST_BOOST if sentence.message == requests[0] else 1), sentence)
        for sentence in human
        if sentence.message in requests and _substantive(sentence)
    ]
    return _best(scored, MAX_REQUEST_SENTENCES)


def _outcome_sentence(sentences, weights):
    """How it ended: the best sentence of the assistant's last two messages, the very last preferred."""
    replies = list(dict.fromkeys(sentence.message for sentence in sentences if sentence.role == "ai"))[-2:]
    if not replies:
        return None
    scored = [
        (_score(sentence, weights, OUTCOME_CUES) * (LAST_REPLY_BOOST if sentence.message == replies[-1] else 1), sentence)
        for sentence in sentences
        if sentence.message in replies
    ]
    return _best(scored, 1)[0]


def _fact_sentences(sentences, weights, chosen, count):
    """The best remaining sentences, any speaker, numbers and IDs preferred; no near-repeats of what is shown."""
    scored = [
        (_score(sentence, weights) * (QUESTION_PENALTY if sentence.text.endswith("?") else 1), sentence)
        for sentence in sentences
        if _substantive(sentence) and sentence not in chosen
    ]
    facts = []
    for sentence in _best(scored, len(scored)):
        if len(facts) < count and not any(_near_duplicate(sentence, other) for other in chosen + facts):
            facts.append(sentence)
    return facts


def _near_duplicate(first, second):
    a, b = set(first.words), set(second.words)
    return len(a & b) > NEAR_DUPLICATE * min(len(a), len(b))


def _shown(sentences):
    return " ".join(_shown_sentence(sentence.text) for sentence in sentences)


def _shown_sentence(text):
    text = " ".join(text.split())
    if len(text) > MAX_SHOWN_CHARS:
        text = text[:MAX_SHOWN_CHARS].rsplit(" ", 1)[0] + "…"
    return text if not text[-1].isalnum() else text + "."
