import csv

from django.http import StreamingHttpResponse


class _Echo:
    """csv.writer writes to this; each row comes straight back to be streamed."""

    def write(self, value):
        return value


def streaming_csv(rows, filename):
    """A CSV download written row by row as it is read (large reports stay out of memory)."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
