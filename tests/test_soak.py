"""Soak: 64 concurrent clients run a mixed workload for a while; no 5xx, flat memory, a consistent store.

Each client loops over a weighted mix of what a PACS sees: uploads of new
instances, reads (resource, tags, file), /tools/find, deletes of its own
instances, synchronous anonymization of a study and ZIP archives of a study.
Every answer is counted by status; a 5xx or a broken connection is an error
(there must be none). The memory of the server's whole process tree is
sampled every second: its anonymous part (heaps: where a leak shows) may not
grow by more than a bound after the warm-up (the first fifth of the run,
while caches and the worker pool fill); the file-backed rest is mostly the
LMDB index mapped into the server, which grows with the data stored (about
10 KB per instance) and is printed too. At the end index and storage must
agree (tests/reliability_helpers.check_store).

``FASTPACS_SOAK_SECONDS`` sets the duration (default 300 s, five minutes; the
suite runs it first, beside the other test files: see tests/conftest.py).
"""

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from benchmarks.procstats import ProcessTreeMonitor

from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import Figures
from tests.reliability_helpers import (
    InstanceMaker,
    check_store,
    environment_number,
    megabytes,
    tree_anonymous_memory,
    tree_memory,
)

pytestmark = pytest.mark.slow

SECONDS = environment_number("FASTPACS_SOAK_SECONDS", 300)
CLIENTS = 64
WARM_UP_SHARE = 0.2
ANONYMOUS_GROWTH_LIMIT = 100 * 1024 * 1024
"""How much the tree's anonymous memory may grow between the end of the warm-up and the end of the run."""
OPERATIONS = {
    "upload": 30,
    "read": 30,
    "find": 14,
    "delete": 10,
    "anonymize": 4,
    "archive": 4,
    "statistics": 8,
}
"""The mix, as relative weights."""


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(tmp_path_factory.mktemp("soak"), {"StableAge": 2}).start()
    yield process
    process.stop()


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def record(self, operation: str, answer: httpx.Response) -> None:
        with self.lock:
            self.statuses[(operation, answer.status_code)] += 1
            if answer.status_code >= 500:
                self.errors.append(
                    f"{operation} {answer.request.url.path}: {answer.status_code} {answer.text[:200]}"
                )

    def failure(self, operation: str, error: Exception) -> None:
        with self.lock:
            self.statuses[(operation, -1)] += 1
            self.errors.append(f"{operation}: {type(error).__name__} {error}")


class SoakClient:
    """One client: its own connection, its own instances, a random mix of operations until the deadline."""

    def __init__(self, server: ServerProcess, number: int, tally: Tally):
        self.server = server
        self.number = number
        self.tally = tally
        self.rng = random.Random(number)
        self.maker = InstanceMaker()
        self.mine: list[dict] = []
        """Upload answers of this client's instances still stored."""
        self.uploaded = 0

    def run_until(self, deadline: float) -> None:
        names, weights = zip(*OPERATIONS.items(), strict=True)
        with httpx.Client(base_url=self.server.base_url, timeout=120) as http:
            while time.monotonic() < deadline:
                operation = self.rng.choices(names, weights)[0] if self.mine else "upload"
                try:
                    answer = self.send(http, operation)
                except httpx.HTTPError as error:
                    self.tally.failure(operation, error)
                    continue
                self.tally.record(operation, answer)
                if operation == "upload" and answer.status_code == 200:
                    self.mine.append(answer.json())

    def send(self, http: httpx.Client, operation: str) -> httpx.Response:
        if operation == "upload":
            self.uploaded += 1
            n = self.uploaded
            return http.post("/instances", content=self.maker.file(f"SOAK{self.number}.{n // 20}", n % 3, n))
        target = self.rng.choice(self.mine)
        if operation == "read":
            path = self.rng.choice(["", "/tags", "/simplified-tags", "/file", "/metadata"])
            return http.get(f"/instances/{target['ID']}{path}")
        if operation == "find":
            query = {"Level": "Series", "Query": {"PatientID": f"SOAK{self.number}*"}, "Expand": True}
            return http.post("/tools/find", json=query)
        if operation == "delete":
            self.mine.remove(target)
            return http.delete(f"/instances/{target['ID']}")
        if operation == "anonymize":
            return http.post(f"/studies/{target['ParentStudy']}/anonymize", json={"Force": True})
        if operation == "archive":
            return http.get(f"/studies/{target['ParentStudy']}/archive")
        return http.get("/statistics")


@pytest.mark.timeout(SECONDS + 240)
def test_mixed_workload_at_64_clients(soaked: ServerProcess, figures: Figures) -> None:
    tally = Tally()
    monitor = ProcessTreeMonitor(soaked.process.pid).start()
    memory_start, anonymous_start = tree_memory(soaked), tree_anonymous_memory(soaked)
    anonymous: list[int] = []
    sampling = threading.Event()
    sampler = threading.Thread(target=sample_every_second, args=(soaked, anonymous, sampling))
    started = time.monotonic()
    deadline = started + SECONDS
    clients = [
        threading.Thread(target=SoakClient(soaked, n, tally).run_until, args=(deadline,))
        for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    time.sleep(SECONDS * WARM_UP_SHARE)
    anonymous_warm = tree_anonymous_memory(soaked)
    sampler.start()
    for client in clients:
        client.join(SECONDS + 180)
        assert not client.is_alive(), "a client is stuck"
    elapsed = time.monotonic() - started
    sampling.set()
    sampler.join()
    memory_end, anonymous_end = tree_memory(soaked), tree_anonymous_memory(soaked)
    monitor.stop()
    with httpx.Client(base_url=soaked.base_url, timeout=120) as http:
        checked = check_store(soaked, http)

    requests = sum(tally.statuses.values())
    by_operation: Counter[str] = Counter()
    by_status: Counter[int] = Counter()
    for (operation, status), count in tally.statuses.items():
        by_operation[operation] += count
        by_status[status] += count
    figures.add(
        "soak",
        f"{CLIENTS} clients, {elapsed:.0f} s, {requests} requests ({requests / elapsed:.0f}/s) "
        f"{dict(by_operation)}; statuses {dict(by_status)}; "
        f"errors {len(tally.errors)}; server tree anonymous memory start {megabytes(anonymous_start)}, "
        f"after warm-up {megabytes(anonymous_warm)}, peak after it {megabytes(max(anonymous))}, "
        f"end {megabytes(anonymous_end)}; whole PSS (index pages included) start {megabytes(memory_start)}, "
        f"peak {megabytes(monitor.lifetime_peak_rss)}, end {megabytes(memory_end)}; "
        f"{checked.instances} instances stored, consistent",
    )
    assert tally.errors == [], "\n".join(tally.errors[:20])
    assert all(by_operation[operation] > 0 for operation in OPERATIONS), by_operation
    assert max(anonymous) - anonymous_warm < ANONYMOUS_GROWTH_LIMIT


def sample_every_second(server: ServerProcess, samples: list[int], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        samples.append(tree_anonymous_memory(server))
    samples.append(tree_anonymous_memory(server))
