"""Rows of results and the three ways they are shown: the terminal, Markdown and JSON."""

import json
from dataclasses import asdict, dataclass, field


@dataclass
class Goal:
    text: str
    met: bool


@dataclass
class Row:
    """One line of a measurement's table; `cells` are its columns, in order."""

    measurement: str
    case: str
    latency_ms: float
    cells: dict
    goals: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)  # samples, in the JSON only


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return str(value)


def goals_cell(goals):
    return "; ".join(("✓ " if goal.met else "✗ ") + goal.text for goal in goals) or "–"


def tables(rows):
    """One Markdown table per measurement: the columns of its rows' cells."""
    out, by_measurement = [], {}
    for row in rows:
        by_measurement.setdefault(row.measurement, []).append(row)
    for name, group in by_measurement.items():
        columns = list(dict.fromkeys(column for row in group for column in row.cells))
        header = ["case", "store latency", *columns, "goals"]
        out += [f"#### {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in group:
            values = [
                row.case,
                f"{row.latency_ms:g} ms",
                *(fmt(row.cells.get(c)) for c in columns),
                goals_cell(row.goals),
            ]
            out.append("| " + " | ".join(values) + " |")
        out.append("")
    return "\n".join(out)


def missed(rows):
    return [(row, goal) for row in rows for goal in row.goals if not goal.met]


def gunicorn_env(about):
    settings = about.get("gunicorn_env")
    return " (" + ", ".join(f"{name}={value}" for name, value in settings.items()) + ")" if settings else ""


def markdown(rows, about):
    lines = [
        "### Latest results",
        "",
        f"`{about['command']}` · {about['generated_at']} · commit {about['commit']}",
        "",
        f"Machine: {about['cpus']} cores, Python {about['python']}; app: gunicorn {about['workers']} workers "
        f"× {about['threads']} threads{gunicorn_env(about)}, store timeout {about['store_timeout']:g} s. Times in ms are medians (p50) "
        f"and p95 of {about['runs']} runs ({about['naive_runs']} for the naive way), measured by the client over "
        "127.0.0.1; round trips are counted by the store's gateway. Load average (1 min) before the run "
        f"{about['load_average_at_start']:.1f} (other work on the machine skews every figure); {about['seconds']} s in all.",
        "",
        tables(rows),
    ]
    misses = missed(rows)
    lines.append(f"Goals missed: {len(misses)}" + ("" if misses else " (every goal met)"))
    lines += [f"- {row.measurement}, {row.case}, {row.latency_ms:g} ms: {goal.text}" for row, goal in misses]
    return "\n".join(lines) + "\n"


def as_json(rows, about):
    return json.dumps({"about": about, "rows": [asdict(row) for row in rows]}, indent=1, ensure_ascii=False) + "\n"
