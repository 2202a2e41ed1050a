import csv
import json

from django.http import StreamingHttpResponse

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP, CSV Injection;
# ASVS adds NUL). Session keys are chosen by chat users and User-Agents by browsers, so any cell can.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")


class _Echo:
    """csv.writer writes to this; each row comes straight back to be streamed."""

    def write(self, value):
        return value


def spreadsheet_safe(value):
    """A cell a spreadsheet shows as text: a leading single quote before anything it would run as a formula.

    Numbers the app wrote itself (an int, such as a TTL of -1) stay numbers: they cannot hold a formula.
    """
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def streaming_csv(rows, filename):
    """A CSV download written row by row as it is read (large reports stay out of memory).

    Every CSV the app writes goes through here: every cell is made spreadsheet-safe, and every text field
    is quoted, so a separator or quote inside a cell cannot start a cell of its own.
    """
    writer = csv.writer(_Echo(), quoting=csv.QUOTE_NONNUMERIC)
    chunks = (writer.writerow([spreadsheet_safe(value) for value in row]) for row in rows)
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def json_strings(windows):
    """Stored elements, window by window, as one JSON array of strings, written as it is read.

    Byte for byte what json.dumps(elements, ensure_ascii=False, indent=1) gives; bytes that are
    not UTF-8 become U+FFFD, the one thing JSON cannot carry. Returns how many elements it holds.
    """
    written = 0
    for window in windows:
        items = []
        for element in window:
            items.append(
                ("[\n " if written == 0 else ",\n ") + json.dumps(element.decode(errors="replace"), ensure_ascii=False)
            )
            written += 1
        yield "".join(items)
    yield "\n]" if written else "[]"
    return written
