"""The HTTP stack's ceiling for the read rows, measured beside fastpacs and Orthanc.

    .venv/bin/python -m benchmarks.ceiling [--rounds 3] [--duration 3]

fastpacs answers reads from a Python application served by Granian; how
fast it can go is bounded by what Granian and the event loop do per request
whatever the application does. This command measures that bound: it uploads
the benchmark corpus to fastpacs and to the reference Orthanc, records
fastpacs's answers to the requests of the ``get-instance``, ``get-tags`` and
``file`` workloads, and has a bare ASGI application
(:mod:`benchmarks.ceiling_app`) serve the same bytes from memory, on Granian
with fastpacs's settings (one worker, uvloop). The three servers are then
driven by wrk with the same requests and connections as in the suite, in
interleaved rounds (the machine's noise falls on all three alike), and the
table gives the medians and the ratios to Orthanc: no saving inside fastpacs
can take a row past its ceiling.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from benchmarks.corpus import DEFAULT_CACHE, CorpusSpec, ensure_corpus
from benchmarks.http_client import Request, requests_from, run_requests
from benchmarks.procstats import ProcessTreeMonitor, measured
from benchmarks.stats import RunResult
from benchmarks.workloads import DICOM_UPLOAD
from benchmarks.wrk import run_wrk
from fastpacs.testing import ServerProcess, fastpacs_server, free_port, orthanc_server

WORKLOADS = {"get-instance": "", "get-tags": "/tags?simplify", "file": "/file"}
"""The suite's wrk workloads of one request per stored instance, by their suffix."""
CONNECTIONS = 16
SERVERS = ("ceiling", "fastpacs", "orthanc")
APPLICATION = "benchmarks.ceiling_app:create_app"


@dataclass
class Target:
    """A server under measurement: its address and the monitor of its processes' CPU."""

    base_url: str
    monitor: ProcessTreeMonitor


def _upload_corpus(server: ServerProcess, cache: Path) -> list[str]:
    """The instance IDs of the corpus, uploaded (the same on both servers: the IDs are Orthanc's)."""
    corpus = ensure_corpus(CorpusSpec(), cache=cache)
    requests = [Request("POST", "/instances", corpus.read(file), DICOM_UPLOAD) for file in corpus.files]
    result, answers = run_requests(server.base_url, requests_from(requests), 4, keep_answers=True)
    if result.errors:
        raise RuntimeError(f"uploading the corpus to {server.name} failed: {result.error_sample}")
    return sorted(msgspec.json.decode(answer.body)["ID"] for answer in answers)


def _recorded_answers(base_url: str, paths: list[str]) -> dict[str, tuple[list[tuple[bytes, bytes]], bytes]]:
    """fastpacs's answer to each path: its headers (those an answer needs) and its body."""
    answers = {}
    with httpx.Client(base_url=base_url, timeout=60, headers={"Accept-Encoding": "identity"}) as client:
        for path in paths:
            response = client.get(path)
            response.raise_for_status()
            headers = [
                (name.encode(), value.encode())
                for name, value in response.headers.items()
                if name in ("content-type", "content-disposition")
            ]
            headers.append((b"content-length", str(len(response.content)).encode()))
            answers[path] = (headers, response.content)
    return answers


def _start_ceiling(answers_file: Path) -> tuple[subprocess.Popen, str]:
    """The bare application on Granian, in a session of its own (for its CPU figures), and its URL."""
    port = free_port()
    command = ["granian", "--interface", "asgi", "--loop", "uvloop", "--workers", "1", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            *command,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--factory",
            APPLICATION,
        ],
        env={**os.environ, "CEILING_ANSWERS": str(answers_file)},
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base_url, timeout=1)
            return process, base_url
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the bare Granian application did not start") from None
            time.sleep(0.2)


def _run(target: Target, requests: list[Request], duration: float) -> RunResult:
    with measured(target.monitor) as window:
        result = run_wrk(target.base_url, requests, connections=CONNECTIONS, duration=duration)
    result.server_cpu = window["server_cpu"]
    return result


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _table(figures: dict[str, dict[str, list[RunResult]]]) -> str:
    lines = [
        "| workload     | server   | req/s (median) | MB/s  | server CPU ms/req | × Orthanc | runs |",
        "|--------------|----------|---------------:|------:|------------------:|----------:|-----:|",
    ]
    for workload, by_server in figures.items():
        rates = {name: _median([run.per_second or 0 for run in runs]) for name, runs in by_server.items()}
        for name, runs in by_server.items():
            megabytes = _median([run.megabytes_per_second or 0 for run in runs])
            cpu = _median([run.server_cpu * 1000 / run.operations for run in runs if run.operations])
            ratio = f"{rates[name] / rates['orthanc']:.2f}×" if name != "orthanc" else ""
            lines.append(
                f"| {workload:<12} | {name:<8} | {rates[name]:>14,.0f} | {megabytes:>5.0f} | {cpu:>17.3f} "
                f"| {ratio:>9} | {len(runs):>4} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=3, help="seconds per measured run (default 3)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fastpacs-ceiling-") as folder, ExitStack() as stack:
        directory = Path(folder)
        fastpacs = fastpacs_server(directory / "fastpacs", {}).start()
        stack.callback(fastpacs.stop)
        orthanc = orthanc_server(directory / "orthanc", {}).start()
        stack.callback(orthanc.stop)
        ids = _upload_corpus(fastpacs, arguments.cache)
        if _upload_corpus(orthanc, arguments.cache) != ids:
            raise RuntimeError("fastpacs and Orthanc gave the corpus different instance IDs")
        paths = {name: [f"/instances/{rid}{suffix}" for rid in ids] for name, suffix in WORKLOADS.items()}
        answers_file = directory / "answers.msgpack"
        recorded = _recorded_answers(fastpacs.base_url, [path for group in paths.values() for path in group])
        answers_file.write_bytes(msgspec.msgpack.encode(recorded))
        ceiling, ceiling_url = _start_ceiling(answers_file)
        stack.callback(lambda: (ceiling.terminate(), ceiling.wait(10)))
        targets = {
            "ceiling": Target(ceiling_url, ProcessTreeMonitor(ceiling.pid).start()),
            "fastpacs": Target(fastpacs.base_url, ProcessTreeMonitor(fastpacs.process.pid).start()),
            "orthanc": Target(orthanc.base_url, ProcessTreeMonitor(orthanc.process.pid).start()),
        }
        for target in targets.values():
            stack.callback(target.monitor.stop)
        figures: dict[str, dict[str, list[RunResult]]] = {
            name: {s: [] for s in SERVERS} for name in WORKLOADS
        }
        for workload, workload_paths in paths.items():
            requests = [Request("GET", path) for path in workload_paths]
            for name in SERVERS:  # warm-up
                run_wrk(targets[name].base_url, requests, connections=CONNECTIONS, duration=1)
            for round_number in range(arguments.rounds):
                for name in SERVERS if round_number % 2 == 0 else reversed(SERVERS):
                    result = _run(targets[name], requests, arguments.duration)
                    if result.errors:
                        raise RuntimeError(f"{workload} on {name}: {result.errors} errors")
                    figures[workload][name].append(result)
            print(f"{workload} done", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
    print(_table(figures))
    rounds = f"{arguments.rounds} interleaved rounds of {arguments.duration:g} s"
    print(f"\nload average at the end: {load:.1f}; {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
