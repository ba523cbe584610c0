"""Drive the GET (and small POST) workloads with wrk, Debian's C load generator.

A Python client tops out at a few thousand requests per second on one core,
below what the servers answer for small reads; wrk does hundreds of
thousands, so it measures the server and not itself. ``wrk_requests.lua``
cycles through the workload's request list and prints a JSON summary.
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.http_client import Request
from benchmarks.stats import RunResult

WRK = shutil.which("wrk") or "/usr/bin/wrk"
SCRIPT = Path(__file__).with_name("wrk_requests.lua")
SUMMARY_PREFIX = "WRK_SUMMARY "


def request_line(request: Request) -> str:
    """The request as one line of the Lua script's request file."""
    if any(character in request.path for character in "\t\n"):
        raise ValueError(f"path not fit for a request file: {request.path!r}")
    if request.body is None:
        return f"{request.method}\t{request.path}"
    body = request.body.decode("ascii")
    if "\t" in body or "\n" in body:
        raise ValueError("request bodies for wrk must be one line of ASCII (compact JSON)")
    return f"{request.method}\t{request.path}\t{body}"


def parse_summary(output: str) -> dict:
    for line in output.splitlines():
        if line.startswith(SUMMARY_PREFIX):
            return json.loads(line[len(SUMMARY_PREFIX) :])
    raise RuntimeError(f"wrk printed no summary:\n{output[-2000:]}")


def result_from_summary(summary: dict) -> RunResult:
    """Successes are complete responses below 400; socket errors and time-outs are errors too."""
    answered = summary["requests"]
    succeeded = answered - summary["status"]
    socket_errors = summary["connect"] + summary["read"] + summary["write"] + summary["timeout"]
    return RunResult(
        operations=succeeded,
        errors=summary["status"] + socket_errors,
        elapsed=summary["duration_us"] / 1e6,
        transferred=summary["bytes"] * succeeded // answered if answered else 0,
        p50=summary["p50_us"] / 1e6 if answered else None,
        p99=summary["p99_us"] / 1e6 if answered else None,
    )


def run_wrk(
    base_url: str,
    requests: list[Request],
    *,
    connections: int,
    duration: float,
    threads: int = 1,
    timeout: float = 60,
) -> RunResult:
    """Run wrk for ``duration`` seconds with ``connections`` connections over ``requests``, cycled."""
    with tempfile.NamedTemporaryFile("w", suffix=".requests", delete=False) as listing:
        listing.write("\n".join(request_line(request) for request in requests) + "\n")
    try:
        completed = subprocess.run(
            [
                WRK,
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{max(duration, 1):.0f}s",
                f"--timeout={timeout:.0f}s",
                "-s",
                str(SCRIPT),
                base_url,
                "--",
                listing.name,
            ],
            capture_output=True,
            text=True,
            timeout=duration + timeout + 30,
            check=False,
        )
    finally:
        Path(listing.name).unlink()
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return result_from_summary(parse_summary(completed.stdout))
