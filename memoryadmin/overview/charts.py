"""The overview's charts as numbers a template draws: horizontal bars in an SVG's own units.

Server-rendered SVG with attributes only (no style attribute, no script): it passes the CSP as it
is, and needs no library; the colours come from classes in static/css/app.css.
"""

from dataclasses import dataclass, field

from django.template.defaultfilters import filesizeformat

WIDTH = 640  # the viewBox's width; the SVG scales to its box
LABEL_WIDTH = 180  # room for the labels (22 characters), right-aligned at its end
BAR_SPACE = 370  # the longest bar; the value is written after its bar
ROW = 26
BAR = 18


@dataclass
class Bar:
    label: str
    value: float
    text: str  # the value as the chart and its table write it
    width: float
    y: int

    @property
    def text_y(self):
        return self.y + BAR - 4

    @property
    def value_x(self):
        return LABEL_WIDTH + self.width + 6


@dataclass
class Chart:
    title: str
    unit: str  # the table's heading for the values
    bars: list[Bar] = field(default_factory=list)

    @property
    def height(self):
        return max(1, len(self.bars)) * ROW

    width = WIDTH
    label_x = LABEL_WIDTH - 8
    bar_x = LABEL_WIDTH
    bar_height = BAR


def bar_chart(title, rows, unit="sessions", text=lambda value: f"{value:,}"):
    """A chart of (label, value) rows, each bar as long as its share of the largest value."""
    rows = list(rows)
    largest = max((value for _, value in rows), default=0) or 1
    return Chart(
        title,
        unit,
        [
            Bar(label, value, text(value), round(BAR_SPACE * value / largest, 1), index * ROW + 4)
            for index, (label, value) in enumerate(rows)
        ],
    )


def size(value):
    return filesizeformat(value)


def percent(value):
    return f"{value:.1f}%"
