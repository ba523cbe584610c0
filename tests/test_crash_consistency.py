"""Crash consistency: SIGKILL under concurrent REST and C-STORE ingest loses nothing acknowledged.

Each round, several REST clients (POST /instances) and several DICOM
associations (C-STORE, pynetdicom) ingest distinct instances into one
server; at a random moment after the first acknowledgements the whole
server process tree is killed (SIGKILL, as a power cut would leave it, less
the page cache). The server is restarted on the same folder, and then:

- every instance ever acknowledged (200 or C-STORE Success), in this round or
  an earlier one, is stored byte for byte (for C-STORE: the dataset as sent);
- index and storage agree (:func:`tests.reliability_helpers.check_store`):
  no indexed instance without its file, no file without its instance, no
  temporary file left, /statistics equal to what the listings add up to.

A second test kills the server while large files are being written and
checks the start-up repair: the temporary files and unindexed blobs the
crash left are removed, and counted in ``fastpacs_startup_repair_*``.

``FASTPACS_CRASH_ROUNDS`` sets the number of rounds (default 3: each costs a
server start, 10 to 25 s on a loaded 2-core machine).
"""

import io
import random
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import Figures, stored_blobs
from tests.reliability_helpers import (
    InstanceMaker,
    c_store_all,
    check_store,
    dataset_part,
    environment_number,
)

pytestmark = pytest.mark.slow

ROUNDS = int(environment_number("FASTPACS_CRASH_ROUNDS", 3))
REST_CLIENTS = 4
ASSOCIATIONS = 3
PER_CLIENT = 400
"""More than a client can send before the kill: the kill always lands mid-stream."""
KILL_AFTER_ACKNOWLEDGED = 20
KILL_DELAY = (0.05, 1.5)
"""Seconds between reaching the acknowledged threshold and the kill, drawn at random."""


class Acknowledged:
    """What the server acknowledged, by instance ID, shared by the client threads."""

    def __init__(self) -> None:
        self.rest: dict[str, bytes] = {}
        """Instance ID → the file uploaded."""
        self.dicom: dict[str, bytes] = {}
        """Instance ID → the dataset sent (the stored file holds it after its own meta group)."""
        self.unexpected: list[str] = []
        """Answers that are neither a success nor the server's disappearance."""
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            return len(self.rest) + len(self.dicom)


def upload(server: ServerProcess, files: Iterator[bytes], acknowledged: Acknowledged) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for data in files:
            try:
                answer = http.post("/instances", content=data)
            except httpx.HTTPError:
                return  # the server is gone
            with acknowledged.lock:
                if answer.status_code == 200:
                    acknowledged.rest[answer.json()["ID"]] = data
                elif answer.status_code != 503:  # 503: busy (backpressure), not an error
                    acknowledged.unexpected.append(f"HTTP {answer.status_code} {answer.text}")


def store(server: ServerProcess, maker: InstanceMaker, patient: str, acknowledged: Acknowledged) -> None:
    def record(instance: str, data: bytes, status: int) -> None:
        with acknowledged.lock:
            if status == 0x0000:
                acknowledged.dicom[instance] = data
            elif status != -1:  # -1: no answer, the server died
                acknowledged.unexpected.append(f"C-STORE status {status:#06x}")

    datasets = (maker.dataset(patient, number % 4, number) for number in range(PER_CLIENT))
    c_store_all(server, datasets, on_answer=record)


@pytest.fixture(scope="module")
def crashing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(tmp_path_factory.mktemp("crash"), {"StableAge": 1}).start()
    yield process
    process.stop()


def test_sigkill_during_concurrent_ingest_loses_nothing_acknowledged(
    crashing: ServerProcess, figures: Figures
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    maker = InstanceMaker()
    everything = Acknowledged()
    figures.add("crash consistency", f"{ROUNDS} rounds, seed {seed}")
    for round_number in range(ROUNDS):
        acknowledged = Acknowledged()
        clients = [
            threading.Thread(
                target=upload,
                args=(
                    crashing,
                    (maker.file(f"REST{round_number}.{c}", n % 4, n) for n in range(PER_CLIENT)),
                    acknowledged,
                ),
            )
            for c in range(REST_CLIENTS)
        ] + [
            threading.Thread(target=store, args=(crashing, maker, f"DIMSE{round_number}.{c}", acknowledged))
            for c in range(ASSOCIATIONS)
        ]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 120
        while acknowledged.count() < KILL_AFTER_ACKNOWLEDGED:
            assert time.monotonic() < deadline, "ingest too slow to reach the kill threshold"
            assert any(client.is_alive() for client in clients), "every client stopped early"
            time.sleep(0.01)
        delay = rng.uniform(*KILL_DELAY)
        time.sleep(delay)
        crashing.kill()
        for client in clients:
            client.join(60)
            assert not client.is_alive()
        sent_in_round = REST_CLIENTS * PER_CLIENT + ASSOCIATIONS * PER_CLIENT
        assert acknowledged.count() < sent_in_round, "everything was stored before the kill: nothing tested"
        assert acknowledged.unexpected == []
        everything.rest.update(acknowledged.rest)
        everything.dicom.update(acknowledged.dicom)

        crashing.start()
        with httpx.Client(base_url=crashing.base_url, timeout=60) as http:
            lost = lost_instances(http, everything)
            checked = check_store(crashing, http)
        figures.add(
            f"round {round_number}",
            f"killed {delay:.2f} s after the threshold; acknowledged "
            f"{len(acknowledged.rest)} REST + {len(acknowledged.dicom)} C-STORE; after restart "
            f"{checked.instances} instances, {checked.blobs} blobs, {checked.disk_size} bytes; "
            f"lost {len(lost)} of {len(everything.rest) + len(everything.dicom)} acknowledged so far",
        )
        assert lost == [], f"acknowledged then lost or changed: {lost[:5]}"
        repair = [line for line in crashing.log_tail(40).splitlines() if "start-up" in line]
        figures.add(
            f"round {round_number} start-up", repair[-1] if repair else "no start-up check line in the log"
        )


def test_startup_repair_removes_and_counts_what_a_crash_left(
    crashing: ServerProcess, figures: Figures
) -> None:
    maker = InstanceMaker()
    large = [large_file(maker, number) for number in range(24)]
    acknowledged = Acknowledged()
    clients = [
        threading.Thread(target=upload, args=(crashing, iter(large[i::4]), acknowledged)) for i in range(4)
    ]
    for client in clients:
        client.start()
    time.sleep(random.uniform(0.5, 1.5))
    crashing.kill()
    for client in clients:
        client.join(60)
    storage = crashing.directory / "storage"
    # What the crash left, plus one leftover of each kind for certain.
    (storage / "tmp" / "half-written.0.0").write_bytes(b"\0" * 1000)
    planted = storage / "00" / "00" / ("00" * 32)
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"never indexed")
    temporary = len(list((storage / "tmp").iterdir()))
    blobs_before = len(stored_blobs(storage))

    crashing.start()

    blobs_after = len(stored_blobs(storage))
    with httpx.Client(base_url=crashing.base_url, timeout=60) as http:
        check_store(crashing, http)
        exposition = http.get("/tools/metrics-prometheus").text
    repair = {
        line.split()[0]: float(line.split()[1])
        for line in exposition.splitlines()
        if line.startswith("fastpacs_startup_repair_")
    }
    figures.add(
        "start-up repair",
        f"after a kill during {len(large)} uploads of {len(large[0])} bytes "
        f"({len(acknowledged.rest)} acknowledged): {repair}",
    )
    assert repair["fastpacs_startup_repair_temporary_files_removed"] == temporary >= 1
    assert repair["fastpacs_startup_repair_orphan_blobs_removed"] == blobs_before - blobs_after >= 1
    assert repair["fastpacs_startup_repair_blobs_checked"] == blobs_before
    assert not planted.exists()
    assert "start-up repair" in crashing.log_tail(80)


def large_file(maker: InstanceMaker, number: int) -> bytes:
    """A file of about 8 MB (its pixel data repeated), slow enough to write that a kill catches some."""
    dataset = maker.dataset("LARGE", 0, number)
    dataset.NumberOfFrames = 200
    dataset.PixelData = dataset.PixelData * 200
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def lost_instances(http: httpx.Client, acknowledged: Acknowledged) -> list[str]:
    """The acknowledged instances that are missing or differ from what was sent."""
    lost = []
    for instance, data in acknowledged.rest.items():
        answer = http.get(f"/instances/{instance}/file")
        if answer.status_code != 200 or answer.content != data:
            lost.append(instance)
    for instance, data in acknowledged.dicom.items():
        answer = http.get(f"/instances/{instance}/file")
        if answer.status_code != 200 or dataset_part(answer.content) != data:
            lost.append(instance)
    return lost
