"""The Markdown export of a hostile session, read by a real CommonMark parser: no stored text becomes markup.

Every stored string must come out as text or code content, and the token stream must hold no HTML, link or
image, whatever the chat users typed or the writers stored.
"""

import json
import re

import pytest
from markdown_it import MarkdownIt

from memoryadmin.dashboard.converters import encode_key

from .factories import langchain

pytestmark = pytest.mark.django_db

KEY = "k`ey <b>bold</b>\n\n<script>alert('key')</script> [x](javascript:alert(1))"

# Prose: each must come out as text, exactly (each line of it, in order).
PROSE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1)) and ![img](http://x.example/i.png) and [ref]\n\n[ref]: javascript:alert(2)",
    "<http://x.example> and <mailto:a@b.example> and http://bare.example www.bare.example a@b.example",
    "&amp; &lt;b&gt; &#x3C;script&#x3E; &copy;",
    "# heading\n> quote\n1. list\n2) list\n- item\n+ item\n* item\n---\n***\n===\n| a | b |\n|---|---|",
    "paragraph\n    indented four\n\n    indented code after a blank line\n\tand a tab\n  two spaces",
    "Setext\n---\nand\n===",
    "*emphasis* _under_ **strong** ~~strike~~ \\*escaped\\* \\\\ back\\slash",
    "a line ending in two spaces  \nand one ending in a backslash\\\nand `code with\n\nblank line` inside",
    "one\n\ntwo after a blank line\n\n\n\nthree after several\r\nfour after CRLF\rfive after CR",
    "<!-- comment --> <?php x ?> <![CDATA[x]]> <!DOCTYPE html> <div>block</div>",
    "``double `tick` span`` and ```` a long run",
]

HOSTILE_TYPE = '<img src=x onerror="alert(3)">`[t](javascript:x)`\n\n<script>'

ELEMENTS = [langchain("human", text) for text in PROSE] + [
    # ``` blocks in a message are code; their text, backticks and fences included, is code content only.
    langchain("ai", "Here:\n```python\nprint('<b>x</b>')\n~~~\n    ```\n````\n```\nafter the block"),
    langchain("ai", "```a`b onerror=alert(1)\n<script>in a block with a hostile info string</script>\n```"),
    langchain("ai", "```\nclosed by a longer fence <b>\n`````\n<b>after the longer fence</b>"),
    langchain("ai", "```\nnever closed <script>alert(4)</script>"),
    langchain("human", "<b>the message after an unclosed block</b>"),
    langchain(
        "ai",
        "",
        tool_calls=[
            {"name": "na`me <b>x</b>\n\nline", "args": {"q": "```\n<script>alert(5)</script>"}, "id": "id\n\n<i>"},
            {"name": "", "args": {}, "id": ""},
        ],
    ),
    langchain("tool", "{}", tool_call_id="<u>call</u>\n# id", name="``tool <s>name</s>``"),
    json.dumps(
        {
            "type": "human",
            "data": {
                "content": [
                    {"type": "text", "text": "see <b>this</b>"},
                    {"type": "image_url", "image_url": {"url": "javascript:alert(6)\n\n<img src=x onerror=alert(7)>"}},
                    {"type": HOSTILE_TYPE, "text": "x"},
                ]
            },
        }
    ),
    json.dumps({"<script>alert(8)</script>": 1, "`k`\n\n<b>key</b>": 2}),  # an unknown shape: its keys in the note
    "not json <script>alert(9)</script>\n```\n````",
    langchain("chat", "hi", role="<b>role</b>\n\n# heading"),
]

FORBIDDEN = {"html_block", "html_inline", "link_open", "image", "autolink"}
# The tags CommonMark makes of the export's own structure; anything else came from stored text.
ALLOWED_TAGS = {"h1", "h2", "h3", "p", "ul", "li", "pre", "code", "br"}


def lines(text):
    return [line.strip(" \t") for line in re.split(r"\r\n|\r|\n", text) if line.strip(" \t")]


def contents(tokens):
    """What a reader sees, as lines: the text of every paragraph and heading, and the code of every block."""
    seen = []
    for token in tokens:
        if token.type in ("fence", "code_block"):
            seen += token.content.splitlines()
        elif token.type == "inline":
            text = "".join(
                "\n" if child.type in ("softbreak", "hardbreak") else child.content for child in token.children
            )
            seen += [line.strip(" \t") for line in text.split("\n")]
    return seen


def contains_in_order(seen, wanted):
    """`wanted` lines appear in `seen` as one consecutive run."""
    return any(seen[start : start + len(wanted)] == wanted for start in range(len(seen)))


@pytest.fixture
def exported(web, store):
    store.call("RPUSH", KEY, *reversed(ELEMENTS))  # LangChain's order: newest first
    store.call(
        "HSET", "memoryadmin:summary:" + KEY, "text", "Summary with <script>alert(10)</script>\n\n# and a heading"
    )
    response = web.get(f"/sessions/{encode_key(KEY)}/export.md")
    assert response.status_code == 200
    text = b"".join(response.streaming_content if response.streaming else [response.content]).decode()
    return text, MarkdownIt("commonmark").parse(text)


def flatten(tokens):
    for token in tokens:
        yield token
        yield from flatten(token.children or [])


def test_no_stored_text_becomes_html_a_link_or_an_image(exported):
    text, tokens = exported
    assert {token.type for token in flatten(tokens)} & FORBIDDEN == set()
    html = MarkdownIt("commonmark").render(text)
    assert set(re.findall(r"</?([a-zA-Z][\w-]*)", html)) <= ALLOWED_TAGS


def test_stored_prose_comes_through_as_text_exactly(exported):
    _, tokens = exported
    seen = contents(tokens)
    for stored in PROSE + ["see <b>this</b>", "<b>the message after an unclosed block</b>"]:
        for paragraph in re.split(r"(?:\r\n|\r|\n)[ \t]*(?:\r\n|\r|\n)", stored):
            assert contains_in_order(seen, lines(paragraph)), paragraph
    assert contains_in_order(seen, ["Summary with <script>alert(10)</script>"])


def test_code_blocks_hold_their_code_and_nothing_after_them(exported):
    _, tokens = exported
    blocks = [token for token in tokens if token.type in ("fence", "code_block")]
    codes = [token.content for token in blocks]
    assert "print('<b>x</b>')\n~~~\n    ```\n````\n" in codes  # the block ends at the message's own closing fence
    assert "<script>in a block with a hostile info string</script>\n" in codes
    assert "closed by a longer fence <b>\n`````\n<b>after the longer fence</b>\n" in codes  # as the page shows it
    assert "never closed <script>alert(4)</script>\n" in codes  # closed at the end of its message
    assert "not json <script>alert(9)</script>\n```\n````\n" in codes  # an unreadable element, as stored
    assert any('"q": "```\\n<script>alert(5)</script>"' in code for code in codes)
    # Nothing of a stored info string but a plain language word ("a" of "a`b onerror=...").
    assert [token.info for token in blocks if token.info] == ["python", "a", "json", "json"]
    seen = contents(tokens)
    assert "after the block" in seen and "<b>the message after an unclosed block</b>" in seen


def test_keys_names_types_and_urls_come_through_as_text_or_code(exported):
    text, tokens = exported
    seen = " ".join(contents(tokens))
    inline_code = [token.content for token in flatten(tokens) if token.type == "code_inline"]
    flat_key = " ".join(re.split(r"\n", KEY))
    assert flat_key in inline_code  # line breaks of a key read as spaces in inline code, as CommonMark does
    assert "Transcript: " + flat_key in seen
    assert "na`me <b>x</b>  line" in inline_code
    assert "javascript:alert(6)  <img src=x onerror=alert(7)>" in inline_code
    assert " ".join(HOSTILE_TYPE.split("\n")) in seen
    assert "reply to <u>call</u> # id" in seen and "``tool <s>name</s>``" in seen
    assert "<b>role</b>  # heading" in seen
    assert "`k`  <b>key</b>" in seen and "<script>alert(8)</script>" in seen
    assert text.startswith("# Transcript: ")
