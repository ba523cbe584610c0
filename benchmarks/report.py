"""The side-by-side table and the JSON record of one invocation of the suite.

The table is Markdown with padded columns, so that it reads in a terminal
and pastes into a README. Each workload has one row per server; the last
column, on the reference rows, says how many times fastpacs's throughput is
that server's (higher is better for fastpacs), with the goal from issue 3.
"""

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.stats import RunResult, Summary, ratio

CANDIDATE = "fastpacs"
MEGABYTE = 1e6


@dataclass
class Row:
    workload: str
    server: str
    unit: str
    summary: Summary
    runs: list[RunResult] = field(default_factory=list)
    goal: float | None = None
    reference: str = "orthanc"
    """The server fastpacs is compared with on this workload."""


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _milliseconds(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f}"


def _ratio_cell(row: Row, rows: list[Row]) -> str:
    if row.server == CANDIDATE:
        return ""
    candidate = next(
        (other for other in rows if other.workload == row.workload and other.server == CANDIDATE), None
    )
    if candidate is None:
        return ""
    if candidate.unit != row.unit:
        return "n/a"  # measured differently (the bulk loader against REST ingest)
    value = ratio(candidate.summary, row.summary)
    text = "n/a" if value is None else f"{value:.2f}×"
    if row.goal is not None and row.server == row.reference:
        text += f" (goal {row.goal:g}×)"
    return text


HEADERS = [
    "workload",
    "server",
    "ops/s",
    "unit",
    "MB/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "peak memory MB",
    "server CPU %",
    "client CPU %",
    "fastpacs ×",
]


def table(rows: list[Row]) -> str:
    """The Markdown table, one row per workload and server, workloads in suite order."""
    lines = []
    previous = None
    for row in rows:
        summary = row.summary
        lines.append(
            [
                row.workload if row.workload != previous else "",
                row.server,
                _number(summary.per_second),
                row.unit,
                _number(summary.megabytes_per_second),
                _milliseconds(summary.p50),
                _milliseconds(summary.p99),
                str(summary.errors),
                f"{summary.server_peak_rss / MEGABYTE:.0f}" if summary.server_peak_rss else "n/a",
                _number(summary.server_cpu_percent, 0),
                _number(summary.client_cpu_percent, 0),
                _ratio_cell(row, rows),
            ]
        )
        previous = row.workload
    widths = [
        max(len(header), *(len(line[column]) for line in lines)) for column, header in enumerate(HEADERS)
    ]
    numeric = set(range(2, len(HEADERS))) - {3}

    def render(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    separator = "|" + "|".join(
        "-" * (width + 1) + ":" if column in numeric else "-" * (width + 2)
        for column, width in enumerate(widths)
    )
    separator += "|"
    return "\n".join([render(HEADERS), separator, *(render(line) for line in lines)])


def notes(rows: list[Row]) -> str:
    """Why a figure is missing or what its errors looked like, one line per row that has something to say."""
    lines = []
    for row in rows:
        for note in row.summary.notes:
            lines.append(f"- {row.workload} on {row.server}: {note}")
    return "\n".join(lines)


def _git(*arguments: str) -> str:
    completed = subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)
    return completed.stdout.strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def machine() -> dict:
    """What the figures were measured on, and when."""
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average_at_start": os.getloadavg(),
    }


def header(info: dict, settings: dict) -> str:
    dirty = " (with uncommitted changes)" if info["uncommitted_changes"] else ""
    return (
        f"fastpacs benchmark, {info['date']}, commit {info['commit']}{dirty}\n"
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB; "
        f"load average at start {info['load_average_at_start'][0]:.2f}, at end {os.getloadavg()[0]:.2f}\n"
        f"settings: {', '.join(f'{key}={value}' for key, value in settings.items())}"
    )


def write_json(path: Path, info: dict, settings: dict, servers: dict, rows: list[Row]) -> None:
    record = {
        "machine": {**info, "load_average_at_end": os.getloadavg()},
        "settings": settings,
        "servers": servers,
        "results": [
            {
                "workload": row.workload,
                "server": row.server,
                "unit": row.unit,
                "goal": row.goal,
                "reference": row.reference,
                "summary": asdict(row.summary),
                "runs": [asdict(run) for run in row.runs],
            }
            for row in rows
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str))
