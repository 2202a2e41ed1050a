"""What the browser tests share besides fixtures: sizes, data, paths and helpers."""

import re
from pathlib import Path

from memoryadmin.dashboard.converters import encode_key
from tests.factories import langchain

BASE_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS = BASE_DIR / "test-artifacts"

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}


class Console:
    """What went wrong in the browser during a test: console errors, page errors, CSP violations."""

    def __init__(self):
        self.errors = []
        self.allowed = []

    def allow(self, *patterns):
        """Errors this test provokes on purpose (e.g. a 503 while the store is down)."""
        self.allowed += [re.compile(pattern) for pattern in patterns]

    def watch(self, page):
        page.on(
            "console",
            lambda message: (
                message.type == "error"
                and self.errors.append(f"{message.text} (at {message.location.get('url') or page.url})")
            ),
        )
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def unexpected(self):
        return [error for error in self.errors if not any(pattern.search(error) for pattern in self.allowed)]


def detail_path(key):
    return f"/sessions/{encode_key(key)}/"


def screenshot(page, name, full_page=True):
    path = ARTIFACTS / "screenshots" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path


# A conversation with the things a transcript must render well: a system prompt, a
# long answer, a fenced code block (with markup in it that must stay text) and a tool call.
SUPPORT_CHAT = [
    langchain("system", "You are the support assistant of an online shop. Be brief."),
    langchain("human", "Hi! My order A-1042 has not arrived. Can you check?"),
    langchain(
        "ai",
        "",
        tool_calls=[{"name": "lookup_order", "args": {"order": "A-1042"}, "id": "call_1", "type": "tool_call"}],
    ),
    langchain("tool", '{"status": "in transit", "carrier": "DHL"}', tool_call_id="call_1", name="lookup_order"),
    langchain(
        "ai",
        "Your parcel is in transit with DHL. To track it yourself:\n"
        "```bash\ncurl https://track.example.com/A-1042 | jq '.events[] | <b>.status</b>'\n```\n"
        "It should arrive tomorrow. " + "Thank you for your patience, we appreciate it. " * 12,
    ),
    langchain(
        "human", "Great, thanks <script>alert('x')</script>! The link I got: https://track.example.com/" + "x" * 120
    ),
]
CHAT_KEY = "shop:order-a1042"
