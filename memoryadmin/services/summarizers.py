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

SYSTEM_PROMPT = (
    "You summarize conversations between users and an AI assistant for the support operators who review them."
)

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


NOTHING_TO_SUMMARIZE = (
    "Nothing to summarize: this session has no messages with readable text "
    "(system prompts, tool-call JSON and unreadable messages are skipped)."
)


def summarize(messages: list[Message], config: SummarizerConfig) -> SummaryResult:
    started = time.monotonic()
    if config.provider == EXTRACTIVE:
        text, method = _extractive_summary(messages), EXTRACTIVE
    elif config.provider == OPENAI:
        text, method = _model_summary(messages, config), config.model
    else:
        raise SummarizerError(
            f'Unknown summarizer provider "{config.provider}": '
            'choose "extractive" or "openai" in the summarizer settings.'
        )
    duration_ms = round((time.monotonic() - started) * 1000)
    return SummaryResult(text=text, method=method, message_count=len(messages), duration_ms=duration_ms)


def _conversation(messages):
    """(role, text) of every message worth summarizing, or a SummarizerError when there is none."""
    conversation = [(message.role, message.text.strip()) for message in messages if message.role != "system"]
    conversation = [(role, text) for role, text in conversation if text]
    if not conversation:
        raise SummarizerError(NOTHING_TO_SUMMARIZE)
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
# Content words it takes to be more than small talk ("Thanks!", "Have a nice weekend"): a few, or fewer
# when they hold a number, an ID or a cue word ("Refund issued.", "SUB-2231 is cancelled.").
MIN_WORDS = 3
MIN_WORDS_WITH_FACT = 2
MAX_SHOWN_CHARS = 250
MAX_TOOL_FACTS = 12
NEAR_DUPLICATE = 0.6  # share of words two sentences have in common above which only one is shown

FACT_BOOST = 2.0
CUE_BOOST = 1.5
FIRST_REQUEST_BOOST = 1.5
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
    today day let know see look like want need one hear
    """.split()
)
REQUEST_CUES = frozenset(
    "want need like can could would please how why where when what help problem issue error".split()
)
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
    if not sentences:  # e.g. only code blocks or broken tool JSON
        raise SummarizerError(NOTHING_TO_SUMMARIZE)
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
    if role not in ("tool", "function") or not text.startswith(("{", "[")):
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


def _ranked(scored):
    """(position, sentence) of (score, sentence) pairs, best first; ties go to the earlier sentence."""
    ranked = sorted(enumerate(scored), key=lambda item: (-item[1][0], item[0]))
    return [(position, sentence) for position, (_, sentence) in ranked]


def _chronological(ranked):
    return [sentence for _, sentence in sorted(ranked, key=lambda item: item[0])]


def _request_sentences(sentences, weights):
    """What the user asked for: from the first two substantive human messages (the first preferred), the best
    sentence and, when another one is an explicit ask, that one too."""
    messages = _substantive_messages(sentences, "human", REQUEST_CUES)[:2]
    if not messages:  # small talk only: the first thing the user said is still what they asked
        return [sentence for sentence in sentences if sentence.role == "human"][:1]

    def request_score(sentence):
        boost = FIRST_REQUEST_BOOST if sentence.message == messages[0] else 1
        return _score(sentence, weights, REQUEST_CUES) * boost

    ranked = _ranked([(request_score(s), s) for s in sentences if s.message in messages and s.words])
    # The best sentence is often the problem ("My kettle arrived cracked");
    # the ask may be another one ("A refund please").
    ask = next((item for item in ranked[1:] if _asks(item[1])), None)
    return _chronological(ranked[:1] + ([ask] if ask else []))


def _asks(sentence):
    return sentence.text.endswith("?") or bool(REQUEST_CUES & sentence.cues)


def _outcome_sentence(sentences, weights):
    """How it ended: the best sentence of the assistant's last substantive message (not "Anything else?")."""
    replies = _substantive_messages(sentences, "ai", OUTCOME_CUES) or [s.message for s in sentences if s.role == "ai"]
    if not replies:
        return None
    return _ranked([(_score(s, weights, OUTCOME_CUES), s) for s in sentences if s.message == replies[-1]])[0][1]


def _substantive_messages(sentences, role, cues):
    """One speaker's messages, in order, that are more than small talk, in all or in one of their sentences."""
    words, saying = Counter(), set()
    for sentence in sentences:
        if sentence.role == role:
            words[sentence.message] += len(sentence.words)
            if _says_something(sentence, cues):
                saying.add(sentence.message)
    return [message for message, count in words.items() if count >= MIN_WORDS or message in saying]


def _says_something(sentence, cues=frozenset()):
    pointed = sentence.has_fact or bool(cues & sentence.cues)
    return len(sentence.words) >= (MIN_WORDS_WITH_FACT if pointed else MIN_WORDS)


def _fact_sentences(sentences, weights, chosen, count):
    """The best remaining sentences, any speaker, numbers and IDs preferred; no near-repeats of what is shown."""

    def fact_score(sentence):
        return _score(sentence, weights) * (QUESTION_PENALTY if sentence.text.endswith("?") else 1)

    scored = [(fact_score(s), s) for s in sentences if _says_something(s) and s not in chosen]
    facts, shown = [], list(chosen)
    for position, sentence in _ranked(scored):
        if len(facts) < count and not any(_near_duplicate(sentence, other) for other in shown):
            facts.append((position, sentence))
            shown.append(sentence)
    return _chronological(facts)


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


# --- OpenAI-compatible chat completions ---------------------------------------

# Reasoning models served through Ollama and vLLM (DeepSeek-R1, Qwen3) may put their thinking in the answer.
THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)
MAX_SERVER_MESSAGE_CHARS = 300


def _model_summary(messages, config):
    _check_model_settings(config)
    url = _completions_url(config.base_url)
    lines = [f"{role}: {text}" for role, text in _conversation(messages)]
    chunks = _packed(lines, config.max_input_chars, "\n")
    if len(chunks) > config.max_chunks:
        raise SummarizerError(
            f"This session is too long for the model summarizer: it would take {len(chunks)} requests of "
            f"{config.max_input_chars} characters, more than the limit of {config.max_chunks}. "
            "Use the extractive summarizer, or raise the limits in the summarizer settings."
        )
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    with httpx.Client(timeout=config.timeout, headers=headers) as client:

        def complete(template, placeholder, text):
            return _completion(client, url, config, template.replace(placeholder, text))

        if len(chunks) == 1:
            return complete(config.prompt_template, "{transcript}", chunks[0])
        # Map: summarize each chunk; reduce: merge the summaries, in rounds while they are too long for one request.
        parts = [f"(Part {n} of {len(chunks)} of a longer conversation.)\n{chunk}" for n, chunk in enumerate(chunks, 1)]
        summaries = [complete(config.prompt_template, "{transcript}", part) for part in parts]
        while len(summaries) > 1:
            groups = _packed(summaries, config.max_input_chars, "\n\n")
            if len(groups) == len(summaries):
                raise SummarizerError(
                    f"The model's summaries of the parts are too long to merge within {config.max_input_chars} "
                    "characters per request: raise the maximum input in the summarizer settings."
                )
            summaries = [complete(config.merge_prompt_template, "{summaries}", group) for group in groups]
        return summaries[0]


def _check_model_settings(config):
    if not config.base_url.strip() or not config.model.strip():
        raise SummarizerError(
            "The OpenAI-compatible summarizer needs a base URL and a model name: set both in the summarizer settings."
        )
    if "{transcript}" not in config.prompt_template:
        raise SummarizerError(
            "The summary prompt has no {transcript} placeholder, so the model would never see the conversation: "
            "add {transcript} to the prompt in the summarizer settings."
        )
    if config.max_input_chars < 1 or config.max_chunks < 1:
        raise SummarizerError(
            "The maximum input per request and the maximum number of requests must be positive: "
            "fix them in the summarizer settings."
        )


def _completions_url(base_url):
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise SummarizerError(
            f'The summarizer base URL "{base_url}" is not an http(s) URL: set one such as '
            "https://api.openai.com/v1 or http://127.0.0.1:11434/v1 in the summarizer settings."
        )
    # Joined on the path so that a query string (Azure's ?api-version=...) stays where it belongs.
    return url.copy_with(path=url.path.rstrip("/") + "/chat/completions")


def _packed(pieces, limit, separator):
    """Pieces joined into as few texts of at most `limit` characters as keep their order; a longer piece is cut."""
    texts, current = [], ""
    for piece in pieces:
        for start in range(0, len(piece), limit):
            cut = piece[start : start + limit]
            if current and len(current) + len(separator) + len(cut) <= limit:
                current += separator + cut
            else:
                if current:
                    texts.append(current)
                current = cut
    return texts + [current] if current else texts


def _completion(client, url, config, prompt):
    """One chat-completions request -> the completion's text; every failure as a SummarizerError."""
    body = {
        "model": config.model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
        "temperature": 0.2,
    }
    where = f"The summarizer at {config.base_url}"
    try:
        response = client.post(url, json=body)
    except httpx.TimeoutException:
        raise SummarizerError(
            f"{where} did not answer within {config.timeout:g} seconds. Try again, choose a faster model, "
            "or raise the timeout in the summarizer settings."
        ) from None
    except httpx.ConnectError as error:
        raise SummarizerError(
            f"Could not connect to the summarizer at {config.base_url} ({_redacted(str(error), config)}). "
            "Check the base URL in the summarizer settings and that the model server is running."
        ) from None
    except httpx.HTTPError as error:
        raise SummarizerError(
            f"The request to the summarizer at {config.base_url} failed ({type(error).__name__}: "
            f"{_redacted(str(error), config)}). Try again; if it keeps failing, check the base URL."
        ) from None
    if not response.is_success:
        raise SummarizerError(_http_error(response, config, where))
    return _completion_text(response, config, where)


def _http_error(response, config, where):
    status = response.status_code
    said = _server_message(response, config)
    code = f"HTTP {status}{': ' + said if said else ''}"
    if status in (401, 403):
        return f"{where} rejected the API key ({code}). Check the API key in the summarizer settings."
    if status == 404:
        return (
            f'{where} answered Not Found ({code}): the base URL or the model name "{config.model}" is wrong. '
            "OpenAI-compatible base URLs usually end in /v1."
        )
    if status == 429:
        return f"{where} is rate limiting requests ({code}). Wait a minute and try again, or check the account's quota."
    if status >= 500:
        return f"{where} had a server error ({code}). Try again later; if it keeps failing, check the model server."
    return f"{where} refused the request ({code}). Check the model name and the summarizer settings."


def _server_message(response, config):
    """The error text the server sent, if any: OpenAI {"error": {"message"}}, Ollama {"error": "..."}, {"detail"}."""
    try:
        data = response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    candidates = [error.get("message") if isinstance(error, dict) else error, data.get("message"), data.get("detail")]
    message = next((candidate for candidate in candidates if isinstance(candidate, str) and candidate.strip()), "")
    return _redacted(" ".join(message.split())[:MAX_SERVER_MESSAGE_CHARS], config)


def _redacted(text, config):
    # Servers echo a rejected key back ("Incorrect API key provided: sk-..."); it must not reach the page.
    return text.replace(config.api_key, "••••") if config.api_key else text


def _completion_text(response, config, where):
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise SummarizerError(
            f"{where} answered with something that is not a chat completion. Check that the base URL points at "
            "an OpenAI-compatible API (it usually ends in /v1)."
        )
    first = data["choices"][0] if data["choices"] and isinstance(data["choices"][0], dict) else {}
    message = first.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    text = THINKING.sub("", content).strip() if isinstance(content, str) else ""
    if not text:
        reason = first.get("finish_reason")
        raise SummarizerError(
            f'The model "{config.model}" returned an empty summary{f" (finish reason: {reason})" if reason else ""}. '
            "Try again, or choose another model in the summarizer settings."
        )
    return text
