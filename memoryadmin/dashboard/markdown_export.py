"""The Markdown export of a transcript, written so that no stored text can become markup.

A CommonMark viewer renders HTML found in Markdown, and links, images, headings, lists and code
blocks; a transcript holds whatever chat users typed. So every stored string (message text, keys,
names, ids, part types, URLs, summaries, problem notes) goes out in one of three forms:

- prose: every ASCII punctuation character backslash-escaped (CommonMark shows an escaped character
  as itself and gives it no other meaning); the spaces and tabs at either end of a line written as
  character references, so that no line is an indented code block and none ends in a hard break;
  each line break kept as a hard line break, and blank lines between paragraphs.
  In a heading or a list item, where a line break would end the line, line breaks become spaces.
- a code block: a backtick fence longer than any run of backticks in the code, so nothing inside
  closes it, and no stored text in the info string but a plain language word;
- inline code (keys, tool names, URLs): line breaks as spaces (CommonMark shows them so anyway, and
  one inside could start a new block), between backtick runs longer than any inside.

The ``` blocks of a message are its code blocks, found as the transcript page finds them.
"""

import re
import string

from memoryadmin.services.messages import parse_element, text_pieces

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # CommonMark's line endings
_ESCAPES = str.maketrans({char: "\\" + char for char in string.punctuation})  # all of ASCII punctuation
_BACKTICKS = re.compile(r"`+")
_LANGUAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+#.-]{0,39}")


def _references(spaces):
    return "".join(f"&#{ord(char)};" for char in spaces)


def _escaped(line):
    """One line of stored text, escaped: punctuation backslashed, spaces and tabs at its ends as references."""
    unindented = line.lstrip(" \t")
    text = unindented.rstrip(" \t")
    indent, trail = line[: len(line) - len(unindented)], unindented[len(text) :]
    return _references(indent) + text.translate(_ESCAPES) + _references(trail)


def prose(text):
    """Stored text as Markdown paragraphs that show it as written, and nothing else."""
    paragraphs, lines = [], []
    for line in [*_LINE_BREAK.split(text), ""]:
        if line.strip(" \t"):
            lines.append(_escaped(line))
        elif lines:
            paragraphs.append("\\\n".join(lines))  # a backslash at the end of a line: a hard line break
            lines = []
    return "\n\n".join(paragraphs)


def inline(text):
    """Stored text on one line (a heading, a list item): escaped, line breaks as spaces."""
    return _escaped(" ".join(_LINE_BREAK.split(text)))


def _longest_backtick_run(text):
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


def code_span(text):
    """Stored text as inline code."""
    text = " ".join(_LINE_BREAK.split(text))
    if not text:
        return '""'
    ticks = "`" * (_longest_backtick_run(text) + 1)
    # CommonMark strips one space from each end of a code span: pad when the text's own ends would be lost.
    pad = " " if text.strip(" ") and (text[0] in "` " or text[-1] in "` ") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def code_block(code, language=""):
    """Stored text as a fenced code block; a language word that is not plain is left out."""
    fence = "`" * max(3, _longest_backtick_run(code) + 1)
    info = language if _LANGUAGE.fullmatch(language) else ""
    body = code if not code or code.endswith(("\n", "\r")) else code + "\n"
    return f"{fence}{info}\n{body}{fence}"


def message_text(text):
    """A message's text: prose, and its ``` blocks as code blocks."""
    pieces = (
        code_block(piece.text, piece.language) if piece.code else prose(piece.text) for piece in text_pieces(text)
    )
    return "\n\n".join(piece for piece in pieces if piece)


def message_section(number, message):
    """One message as a section headed by its number (from 1) and its role."""
    heading = f"### {number}. {inline(message.role_label)}"
    if message.name:
        heading += f" ({inline(message.name)})"
    if message.tool_call_id:
        heading += f", reply to {inline(message.tool_call_id)}"
    blocks = [heading]
    if message.problem:
        blocks.append(f"⚠ {inline(message.problem)}")
    if message.parts:
        for part in message.parts:
            if part.kind == "text":
                blocks.append(message_text(part.text))
            elif part.url:
                blocks.append(f"{inline(f'[{part.kind}]')} {code_span(part.url)}")
            else:
                blocks.append(inline(part.text))
    elif message.text:
        blocks.append(message_text(message.text))
    elif not message.tool_calls:
        blocks.append(code_block(message.raw))  # nothing readable: the element as stored
    for call in message.tool_calls:
        label = f"Tool call {code_span(call.name)}" + (f" ({inline(call.id)})" if call.id else "")
        blocks += [f"{label}:", code_block(call.arguments, "json")]
    return "\n\n".join(block for block in blocks if block) + "\n\n"


def transcript(session, *, connection, permalink, exported_at, username):
    """The export of a session being read (sessions.read_whole_session), in pieces: one per window.

    Returns how many messages it holds.
    """
    count = session.message_count
    header = [
        f"# Transcript: {inline(session.display_name)}",
        "",
        f"- Key: {code_span(session.key)}",
        f"- Connection: {inline(connection.name)} ({inline(connection.host)})",
        f"- Writer: {inline(session.writer)}, {count} message{'' if count == 1 else 's'} ({session.order} in the store)",
        f"- Exported: {exported_at:%Y-%m-%d %H:%M:%S} UTC by {inline(username)}",
        f"- Link: {code_span(permalink)}",
        "",
    ]
    if session.summary:
        header += ["## Summary", "", prose(session.summary.text), ""]
    header += ["## Messages", "", ""]
    yield "\n".join(header)
    written = 0
    for window in session.windows:
        sections = []
        for element in window:
            written += 1
            sections.append(message_section(written, parse_element(element)))
        yield "".join(sections)
    if written < count:
        yield f"The export ends after {written} of {count} messages: the session was cleared or expired meanwhile.\n"
    return written
