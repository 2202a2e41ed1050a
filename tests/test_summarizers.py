"""Summarizers: the extractive summary's content, and the OpenAI-compatible client against a real local server."""

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from memoryadmin.services.messages import parse_element
from memoryadmin.services.summarizers import SummarizerConfig, SummarizerError, summarize

from .factories import langchain, llamaindex

SYSTEM_PROMPT_TEXT = "You are Northwind's support assistant. Never reveal the internal discount code STAFF-90."


def refund_conversation():
    """LangChain Python elements, chronological: a cracked kettle, a tool lookup, a refund."""
    order = {"order_id": "NW-10442", "status": "delivered", "delivered_at": "2024-03-02", "total": "49.99 EUR"}
    elements = [
        langchain("system", SYSTEM_PROMPT_TEXT),
        langchain("human", "Hi! My order NW-10442 arrived yesterday but the glass kettle is cracked."),
        langchain(
            "ai",
            "I'm sorry to hear that. Let me look up order NW-10442.",
            tool_calls=[{"name": "lookup_order", "args": {"order_id": "NW-10442"}, "id": "call_1"}],
        ),
        langchain("tool", json.dumps(order), tool_call_id="call_1", name="lookup_order"),
        langchain("ai", "I found it: the glass kettle was delivered on 2 March and cost €49.99. Refund or new one?"),
        langchain("human", "A refund please, to the original card."),
        langchain("ai", "Done: refund issued for €49.99 to your Visa ending 4242. It shows within 5 business days."),
        langchain("human", "Thanks!"),
        langchain("ai", "You're welcome! Is there anything else I can help with?"),
    ]
    return [parse_element(element) for element in elements]


def webhook_conversation():
    """Newer LlamaIndex elements (content in blocks): a developer's failing webhooks, with a code block."""

    def blocks(role, text):
        return json.dumps({"role": role, "blocks": [{"block_type": "text", "text": text}], "additional_kwargs": {}})

    elements = [
        blocks("user", "Hello"),
        blocks("assistant", "Hi! How can I help you today?"),
        blocks("user", "Our webhook endpoint started failing with 401 errors on Monday. The account is dev@acme.io."),
        blocks(
            "assistant",
            "I checked dev@acme.io: the webhook signing secret was rotated on 14 May, so signatures made with the "
            "old secret fail.\n\n```python\nhmac.new(secret, body, 'sha256').hexdigest()\n```\n"
            "- Copy the new secret from Settings > Webhooks.\n- Redeploy your endpoint.",
        ),
        blocks("user", "Updated the secret and redeployed, the webhooks work again."),
        blocks("assistant", "Great, the webhook issue is resolved. I have closed ticket #58213."),
    ]
    return [parse_element(element) for element in elements]


def address_conversation():
    """Flowise / LangChain JS elements in German, with an emoji."""
    elements = [
        langchain("human", "Hallo! Ich möchte die Lieferadresse für Bestellung 88123 ändern: Königstraße 5, Ulm."),
        langchain("ai", "Gern. Die Bestellung 88123 ist noch nicht versandt, daher kann ich die Adresse ändern."),
        langchain("human", "Super, danke 🙂"),
        langchain("ai", "Erledigt: die Lieferadresse von Bestellung 88123 ist jetzt Königstraße 5, Ulm."),
    ]
    return [parse_element(element) for element in elements]


def extractive(messages):
    return summarize(messages, SummarizerConfig())


def section(summary, label):
    """One line of an extractive summary, without its label; "" when it has no such line."""
    return next((line.removeprefix(label) for line in summary.splitlines() if line.startswith(label)), "")


# --- extractive -----------------------------------------------------------------


def test_extractive_summary_has_the_request_the_facts_and_the_outcome():
    messages = refund_conversation()

    result = extractive(messages)

    assert result.method == "extractive"
    assert result.message_count == len(messages)
    assert result.duration_ms >= 0
    asked, facts, outcome = (section(result.text, label) for label in ("User asked: ", "Key facts: ", "Outcome: "))
    assert "NW-10442" in asked and "cracked" in asked
    assert "A refund please" in asked  # the ask, in another message than the problem
    assert "49.99" in facts
    assert "refund issued" in outcome
    assert "STAFF-90" not in result.text  # the system prompt is not part of the conversation
    assert "{" not in result.text and "order_id" not in result.text  # the tool's JSON is read, not pasted
    assert "anything else" not in result.text


def test_extractive_summary_of_llamaindex_blocks_skips_code_and_small_talk():
    summary = extractive(webhook_conversation()).text

    assert "401" in section(summary, "User asked: ") and "dev@acme.io" in summary
    assert "closed ticket #58213" in section(summary, "Outcome: ")
    assert "hexdigest" not in summary
    assert "Hello" not in summary and "How can I help" not in summary


def test_extractive_summary_keeps_unicode_text_intact():
    summary = extractive(address_conversation()).text

    assert "Königstraße 5" in section(summary, "User asked: ")
    assert "Erledigt" in section(summary, "Outcome: ")


def test_extractive_summary_is_deterministic_across_runs_and_hash_seeds():
    expected = extractive(refund_conversation()).text
    script = "import tests.test_summarizers as t; print(t.extractive(t.refund_conversation()).text)"
    root = Path(__file__).resolve().parent.parent

    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.rstrip("\n")
        for seed in ("1", "2")
    }

    assert extractive(refund_conversation()).text == expected
    assert outputs == {expected}


def test_extractive_summary_uses_the_text_of_messages_with_problems_and_skips_unreadable_ones():
    messages = [
        parse_element(b"not json at all"),
        parse_element('{"role": "user", "content": "Caf\xe9 order 5521 never came, where is it?"}'.encode("latin-1")),
        parse_element(llamaindex("assistant", "Order 5521 was lost in transit; I have sent a replacement today.")),
    ]
    assert messages[0].problem and messages[1].problem  # invalid JSON; not UTF-8

    summary = extractive(messages).text

    assert "order 5521 never came" in section(summary, "User asked: ")
    assert "sent a replacement" in section(summary, "Outcome: ")
    assert "not json" not in summary


def test_extractive_summary_of_one_message_says_there_is_no_reply_yet():
    messages = [parse_element(llamaindex("user", "I was charged twice for invoice INV-2024-118."))]

    summary = extractive(messages).text

    assert summary == (
        "User asked: I was charged twice for invoice INV-2024-118.\nOutcome: No reply from the assistant yet."
    )


def test_extractive_summary_of_a_long_session_keeps_its_beginning_and_end():
    filler = [
        text
        for turn in range(2499)
        for text in (f"Scan {turn} shows the parcel in depot {turn % 7}.", f"Can you check scan number {turn + 1}?")
    ]
    request, resolution = "I need to cancel subscription SUB-2231 before it renews on 1 June.", "SUB-2231 is cancelled."
    texts = [request, *filler, resolution]
    messages = [parse_element(langchain("human" if i % 2 == 0 else "ai", text)) for i, text in enumerate(texts)]
    assert len(messages) == 5000

    result = extractive(messages)

    assert "SUB-2231" in section(result.text, "User asked: ")
    assert "is cancelled" in section(result.text, "Outcome: ")
    assert result.message_count == 5000
    assert len(result.text) < 1000


@pytest.mark.parametrize(
    "elements",
    [
        [],
        [langchain("system", SYSTEM_PROMPT_TEXT), b"{broken", langchain("ai", "")],
        [llamaindex("tool", '{"order_id": "NW-1", "items": [')],  # tool JSON cut off: no readable fact
    ],
    ids=["no messages", "only system prompts and unreadable messages", "only broken tool JSON"],
)
def test_extractive_summary_of_nothing_readable_is_an_error(elements):
    with pytest.raises(SummarizerError, match="Nothing to summarize"):
        extractive([parse_element(element) for element in elements])


# --- OpenAI-compatible: a real chat-completions server on 127.0.0.1 -------------

API_KEY = "sk-test-secret-4242"
MODEL = "llama3.2:3b"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0  # seconds before answering


@dataclass
class Received:
    path: str
    headers: dict  # lowercased names
    body: dict

    @property
    def prompt(self):
        return self.body["messages"][-1]["content"]


def completion(text, finish_reason="stop"):
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": finish_reason}
    return Answer(body=json.dumps({"choices": [choice]}).encode())


@dataclass
class ChatCompletionsServer:
    """Speaks just enough of the chat-completions API: records each request, answers with `answer(request)`."""

    answer: object = lambda request: completion("The user asked for a refund of order NW-10442; it was issued.")
    requests: list = field(default_factory=list)
    closing: threading.Event = field(default_factory=threading.Event)  # ends a deliberately slow answer early

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = Received(self.path, {name.lower(): value for name, value in self.headers.items()}, body)
                server.requests.append(request)
                answer = server.answer(request)
                server.closing.wait(answer.delay)
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: that is what a timeout test wants

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, 0.5 s by default, for every test.
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def model_server():
    server = ChatCompletionsServer()
    server.start()
    yield server
    server.stop()


def model_config(server, **changes):
    settings = {"provider": "openai", "base_url": f"{server.url}/v1/", "model": MODEL, "api_key": API_KEY, "timeout": 5}
    return SummarizerConfig(**{**settings, **changes})


def test_model_summary_posts_the_transcript_to_chat_completions(model_server):
    messages = refund_conversation()

    result = summarize(messages, model_config(model_server))

    assert result.text == "The user asked for a refund of order NW-10442; it was issued."
    assert result.method == MODEL
    assert result.message_count == len(messages)
    [request] = model_server.requests  # one chunk: one request
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["model"] == MODEL
    assert request.body["temperature"] == 0.2
    assert [message["role"] for message in request.body["messages"]] == ["system", "user"]
    assert "human: Hi! My order NW-10442 arrived yesterday but the glass kettle is cracked.\nai: " in request.prompt
    assert "ai: Done: refund issued for €49.99" in request.prompt
    assert '"order_id": "NW-10442"' in request.prompt  # tool results give the model the facts
    assert "STAFF-90" not in request.prompt


def test_model_summary_without_api_key_sends_no_authorization_and_keeps_the_base_url_query(model_server):
    config = model_config(model_server, api_key="", base_url=f"{model_server.url}/openai/v1?api-version=preview")

    summarize(address_conversation(), config)

    [request] = model_server.requests
    assert "authorization" not in request.headers
    assert request.path == "/openai/v1/chat/completions?api-version=preview"


def test_model_summary_drops_the_thinking_of_reasoning_models(model_server):
    model_server.answer = lambda request: completion("<think>\nThe user wants...\n</think>\n\nRefund issued.")

    assert summarize(refund_conversation(), model_config(model_server)).text == "Refund issued."


def numbered_conversation(count):
    texts = [f"Message {i:02d} about parcel {i}." for i in range(count)]
    return [parse_element(llamaindex("user" if i % 2 == 0 else "assistant", text)) for i, text in enumerate(texts)]


def test_long_transcript_is_summarized_in_chunks_then_merged(model_server):
    model_server.answer = lambda request: completion(
        "Final summary." if request.prompt.startswith("MERGE") else f"Summary {len(model_server.requests)}."
    )
    templates = {"prompt_template": "SUMMARIZE\n{transcript}", "merge_prompt_template": "MERGE\n{summaries}"}
    config = model_config(model_server, max_input_chars=120, **templates)

    messages = numbered_conversation(20)

    result = summarize(messages, config)

    *maps, merge = model_server.requests
    assert len(maps) >= 3
    chunks = [request.prompt.split("\n", 2)[2] for request in maps]  # after "SUMMARIZE" and "(Part i of n ...)"
    assert all(len(chunk) <= 120 for chunk in chunks)
    assert "\n".join(chunks) == "\n".join(f"{message.role}: {message.text}" for message in messages)
    assert maps[0].prompt.startswith(f"SUMMARIZE\n(Part 1 of {len(maps)} of a longer conversation.)\n")
    assert merge.prompt == "MERGE\n" + "\n\n".join(f"Summary {n}." for n in range(1, len(maps) + 1))
    assert result.text == "Final summary."


def test_summaries_that_do_not_fit_one_request_are_merged_in_rounds(model_server):
    # Each answer is 50 characters: two fit in a 120-character request, three do not.
    model_server.answer = lambda request: completion(f"{len(model_server.requests):02d}".ljust(50, "."))
    config = model_config(model_server, max_input_chars=120)

    result = summarize(numbered_conversation(10), config)  # 10 messages of ~30 characters: 4 chunks

    # 4 chunk summaries -> 2 merges -> 1 merge.
    assert len(model_server.requests) == 7
    assert result.text == "07".ljust(50, ".")
    assert "05...." in model_server.requests[-1].prompt and "06...." in model_server.requests[-1].prompt


def test_summaries_too_long_to_merge_are_an_error(model_server):
    model_server.answer = lambda request: completion("x" * 100)  # two of them never fit in 120 characters

    with pytest.raises(SummarizerError, match="too long to merge within 120 characters"):
        summarize(numbered_conversation(10), model_config(model_server, max_input_chars=120))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "rejected the API key (HTTP 401"),
        (403, "rejected the API key (HTTP 403"),
        (404, f'the base URL or the model name "{MODEL}" is wrong'),
        (429, "is rate limiting requests (HTTP 429"),
        (500, "had a server error (HTTP 500"),
        (503, "had a server error (HTTP 503"),
        (400, "refused the request (HTTP 400"),
    ],
)
def test_http_errors_say_what_to_fix_and_never_show_the_key(model_server, status, expected):
    error_body = {"error": {"message": f"Upstream says no; key {API_KEY} was sent", "type": "invalid_request_error"}}
    model_server.answer = lambda request: Answer(status=status, body=json.dumps(error_body).encode())

    with pytest.raises(SummarizerError) as caught:
        summarize(refund_conversation(), model_config(model_server))

    message = str(caught.value)
    assert expected in message
    assert f"The summarizer at {model_server.url}/v1/" in message
    assert "Upstream says no; key •••• was sent" in message
    assert API_KEY not in message


@pytest.mark.parametrize(
    "body",
    [b"<html>Open WebUI</html>", b'{"result": "ok"}', b'{"choices": "none"}', b"[1, 2]"],
    ids=["html", "no choices", "choices not a list", "a list"],
)
def test_an_answer_that_is_not_a_chat_completion_is_an_error(model_server, body):
    model_server.answer = lambda request: Answer(body=body)

    with pytest.raises(SummarizerError, match="answered with something that is not a chat completion"):
        summarize(refund_conversation(), model_config(model_server))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Answer(body=b'{"choices": []}'), "returned an empty summary. Try again"),
        (completion("", finish_reason="length"), "returned an empty summary (finish reason: length)"),
        (completion("<think>Hmm.</think>\n  "), "returned an empty summary (finish reason: stop)"),
        (Answer(body=b'{"choices": [{"message": null}]}'), "returned an empty summary. Try again"),
    ],
    ids=["no choices", "empty content", "only thinking", "null message"],
)
def test_an_empty_completion_is_an_error(model_server, answer, expected):
    model_server.answer = lambda request: answer

    with pytest.raises(SummarizerError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        summarize(refund_conversation(), model_config(model_server))


def test_a_slow_server_times_out_with_the_configured_timeout(model_server):
    model_server.answer = lambda request: Answer(body=completion("Too late.").body, delay=1.0)

    with pytest.raises(SummarizerError, match=r"did not answer within 0\.3 seconds"):
        summarize(refund_conversation(), model_config(model_server, timeout=0.3))


def test_a_server_that_is_not_running_names_the_base_url(model_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{closed_port}/v1"

    with pytest.raises(SummarizerError, match=f"Could not connect to the summarizer at {base_url} "):
        summarize(refund_conversation(), model_config(model_server, base_url=base_url))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"base_url": ""}, "needs a base URL and a model name"),
        ({"model": " "}, "needs a base URL and a model name"),
        ({"base_url": "localhost:11434/v1"}, 'base URL "localhost:11434/v1" is not an http(s) URL'),
        ({"prompt_template": "Summarize the chat."}, "has no {transcript} placeholder"),
        ({"max_input_chars": 0}, "must be positive"),
        ({"max_input_chars": 50, "max_chunks": 2}, "take 7 requests of 50 characters, more than the limit of 2"),
        ({"provider": "anthropic"}, 'Unknown summarizer provider "anthropic"'),
    ],
)
def test_settings_that_cannot_work_are_reported_before_any_request(model_server, changes, expected):
    with pytest.raises(SummarizerError) as caught:
        summarize(address_conversation(), model_config(model_server, **changes))

    assert expected in str(caught.value)
    assert model_server.requests == []


def test_a_model_summary_of_nothing_readable_is_an_error_without_a_request(model_server):
    with pytest.raises(SummarizerError, match="Nothing to summarize"):
        summarize([parse_element(langchain("system", SYSTEM_PROMPT_TEXT))], model_config(model_server))

    assert model_server.requests == []
