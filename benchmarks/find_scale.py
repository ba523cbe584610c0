"""/tools/find at scale: p50 latencies on fastpacs and on the reference Orthanc, side by side.

``python -m benchmarks.find_scale --studies 2000 --orthanc-seconds 240`` measures,
one request at a time over a kept-alive connection:

- ``uid``: POST /tools/find, Study level, StudyInstanceUID of a random study;
- ``name+date``: POST /tools/find, Study level, PatientName ``<first 4 letters>*``
  of a random study's patient and the year of that study as a StudyDate range;
- ``list``: GET /studies?limit=100&since=N, N random.

fastpacs is loaded by the bulk loader (``benchmarks.bulk_index``) with
``--studies`` studies (50 instances each by default). The reference Orthanc
(default SQLite index) is loaded through its REST API with the same files
for ``--orthanc-seconds`` seconds, whole studies only, and measured at the
size it reached; fastpacs is measured again at that size, so that the
ratio compares equal indexes. Both servers are asked the same queries,
and their answers are compared (they must be equal).
"""

import argparse
import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx

from benchmarks.bulk_index import BulkSpec, bulk_load, patient_name, series_files, study_date, study_uid
from benchmarks.stats import percentile
from fastpacs.testing import ServerProcess, fastpacs_server, orthanc_server

UPLOAD_THREADS = 4
Query = tuple[str, str, dict | None]
"""(method, path, JSON body)."""


def uid_query(spec: BulkSpec, rng: random.Random) -> Query:
    uid = study_uid(rng.randrange(spec.studies))
    return "POST", "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": uid}}


def name_and_date_query(spec: BulkSpec, rng: random.Random) -> Query:
    """The name's first four letters and the year of one of the patient's studies: at least one answer."""
    study = rng.randrange(spec.studies)
    name = patient_name(spec, study // spec.studies_per_patient)
    year = study_date(spec, study)[:4]
    query = {"PatientName": f"{name[:4]}*", "StudyDate": f"{year}0101-{year}1231"}
    return "POST", "/tools/find", {"Level": "Study", "Query": query}


def list_query(spec: BulkSpec, rng: random.Random) -> Query:
    return "GET", f"/studies?limit=100&since={rng.randrange(max(1, spec.studies - 100))}", None


QUERIES: dict[str, Callable[[BulkSpec, random.Random], Query]] = {
    "uid": uid_query,
    "name+date": name_and_date_query,
    "list": list_query,
}

COMPARED_ANSWERS = ("uid", "name+date")
"""Answers in ID order; /studies lists in insertion order, which concurrent uploads to Orthanc shuffle."""


@dataclass
class Latencies:
    """Milliseconds per request of one query kind on one server."""

    requests: int
    p50: float
    p90: float
    mean_answers: float


@dataclass
class Measurement:
    server: str
    studies: int
    instances: int
    load_seconds: float
    queries: dict[str, Latencies] = field(default_factory=dict)
    answers: dict[str, list] = field(default_factory=dict, repr=False)


def measure(
    server: ServerProcess, spec: BulkSpec, requests: int, seed: int
) -> tuple[dict[str, Latencies], dict[str, list]]:
    """Every query kind ``requests`` times (after a warm-up), and the answers, for comparison."""
    latencies: dict[str, Latencies] = {}
    answers: dict[str, list] = {}
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        for name, make in QUERIES.items():
            rng = random.Random(seed)
            queries = [make(spec, rng) for _ in range(requests)]
            for method, path, body in queries[:10]:
                client.request(method, path, json=body).raise_for_status()
            times, found = [], []
            for method, path, body in queries:
                started = time.perf_counter()
                response = client.request(method, path, json=body)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                found.append(response.json())
            latencies[name] = Latencies(
                requests=len(times),
                p50=round(percentile(times, 0.5), 2),
                p90=round(percentile(times, 0.9), 2),
                mean_answers=round(sum(len(answer) for answer in found) / len(found), 1),
            )
            answers[name] = found
    return latencies, answers


def measure_fastpacs(spec: BulkSpec, folder: Path, requests: int, seed: int) -> Measurement:
    started = time.monotonic()
    report = bulk_load(spec, folder, progress=True)
    load_seconds = time.monotonic() - started
    print(f"fastpacs: {report.instances:,} instances loaded in {load_seconds:.0f} s")
    server = fastpacs_server(folder, {"StableAge": 1}).start(timeout=600)
    try:
        queries, answers = measure(server, spec, requests, seed)
    finally:
        server.stop()
    return Measurement("fastpacs", spec.studies, spec.instances, round(load_seconds), queries, answers)


def _study_files(spec: BulkSpec) -> Iterator[list[bytes]]:
    for study in range(spec.studies):
        files: list[bytes] = []
        for series in range(spec.series_per_study):
            files += series_files(spec, study * spec.series_per_study + series)
        yield files


def load_orthanc(server: ServerProcess, spec: BulkSpec, seconds: float) -> int:
    """Upload whole studies, in order, until the time is up; the number of studies stored."""
    deadline = time.monotonic() + seconds
    clients: dict[int, httpx.Client] = {}

    def upload(files: list[bytes]) -> None:
        client = clients.setdefault(
            threading.get_ident(), httpx.Client(base_url=server.base_url, timeout=120)
        )
        for data in files:
            client.post("/instances", content=data).raise_for_status()

    stored = 0
    try:
        with ThreadPoolExecutor(UPLOAD_THREADS) as threads:
            pending = []
            for files in _study_files(spec):
                if time.monotonic() > deadline:
                    break
                pending.append(threads.submit(upload, files))
                if len(pending) >= UPLOAD_THREADS * 2:
                    pending.pop(0).result()
                    stored += 1
                    print(f"\rorthanc: {stored:,} studies", end="", flush=True)
            for future in pending:
                future.result()
                stored += 1
    finally:
        for client in clients.values():
            client.close()
    print()
    return stored


def measure_orthanc(spec: BulkSpec, folder: Path, seconds: float, requests: int, seed: int) -> Measurement:
    server = orthanc_server(folder).start()
    try:
        started = time.monotonic()
        studies = load_orthanc(server, spec, seconds)
        load_seconds = time.monotonic() - started
        reached = replace(spec, studies=studies)
        print(f"orthanc: {reached.instances:,} instances loaded in {load_seconds:.0f} s")
        queries, answers = measure(server, reached, requests, seed)
    finally:
        server.stop()
    return Measurement("orthanc", studies, reached.instances, round(load_seconds), queries, answers)


def _table(measurements: list[Measurement]) -> str:
    lines = ["| server | instances | query | p50 ms | p90 ms | answers |", "|---|---:|---|---:|---:|---:|"]
    for measurement in measurements:
        for name, latency in measurement.queries.items():
            cells = (measurement.server, f"{measurement.instances:,}", name, latency.p50, latency.p90)
            lines.append("| " + " | ".join(str(cell) for cell in (*cells, latency.mean_answers)) + " |")
    return "\n".join(lines)


def compare(folder: Path, spec: BulkSpec, arguments: argparse.Namespace) -> list[Measurement]:
    """fastpacs at the requested size; Orthanc at the size it reaches, and fastpacs at that size."""
    requests, seed = arguments.requests, arguments.seed
    results = [measure_fastpacs(spec, folder / "fastpacs-large", requests, seed)]
    if arguments.orthanc_seconds <= 0:
        return results
    orthanc = measure_orthanc(spec, folder / "orthanc", arguments.orthanc_seconds, requests, seed)
    fastpacs = measure_fastpacs(
        replace(spec, studies=orthanc.studies), folder / "fastpacs-same", requests, seed
    )
    for name in QUERIES:
        ratio = orthanc.queries[name].p50 / fastpacs.queries[name].p50
        print(f"{name}: Orthanc p50 / fastpacs p50 = {ratio:.1f}")
    for name in COMPARED_ANSWERS:
        pairs = zip(orthanc.answers[name], fastpacs.answers[name], strict=True)
        differing = sum(left != right for left, right in pairs)
        print(f"{name}: {differing} of {requests} answers differ between Orthanc and fastpacs")
    return [*results, orthanc, fastpacs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=2000, help="fastpacs size (50 instances per study)")
    parser.add_argument("--orthanc-seconds", type=float, default=240, help="time given to loading Orthanc")
    parser.add_argument("--requests", type=int, default=200, help="requests per query kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=None, help="work folder (default: a temporary one)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="find-scale-", dir=arguments.folder) as work:
        results = compare(Path(work), BulkSpec(studies=arguments.studies), arguments)
    print(_table(results))
    print(json.dumps([{k: v for k, v in asdict(m).items() if k != "answers"} for m in results], indent=2))


if __name__ == "__main__":
    main()
