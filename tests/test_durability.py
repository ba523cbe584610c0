"""Durability: everything acknowledged survives a clean restart and a crash (SIGKILL), byte for byte.

One server, restarted on the same folder: first stopped cleanly, then killed
while uploads are in flight, after a batch of acknowledged ones.
"""

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import STABLE_WAIT, dicom_variant, pydicom_file, stored_blobs
from tests.differential.data import zip_of

LEVELS = ("patients", "studies", "series", "instances")
pytestmark = pytest.mark.slow  # each test restarts the server


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(tmp_path_factory.mktemp("durable"), {"StableAge": 1}).start()
    yield process
    process.stop()


def client_of(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=60)


def snapshot(server: ServerProcess) -> dict[str, Any]:
    """Everything the REST API shows of what is stored, files included (by SHA-256)."""
    with client_of(server) as http:
        state: dict[str, Any] = {
            level: http.get(f"/{level}", params={"expand": ""}).json() for level in LEVELS
        }
        state["files"] = {
            instance: hashlib.sha256(http.get(f"/instances/{instance}/file").content).hexdigest()
            for instance in http.get("/instances").json()
        }
        state["changes"] = http.get("/changes", params={"limit": "100000"}).json()
        state["statistics"] = http.get("/statistics").json()
    return state


def wait_until_stable(server: ServerProcess) -> None:
    deadline = time.monotonic() + STABLE_WAIT
    with client_of(server) as http:
        while not all(p["IsStable"] for p in http.get("/patients", params={"expand": ""}).json()):
            assert time.monotonic() < deadline, f"not stable in time; the server's log:\n{server.log_tail()}"
            time.sleep(0.2)


def upload_all(server: ServerProcess, files: list[bytes], threads: int = 4) -> list[dict]:
    with client_of(server) as http, ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(lambda data: http.post("/instances", content=data), files))
    assert [answer.status_code for answer in answers] == [200] * len(files)
    return [answer.json() for answer in answers]


def test_a_clean_restart_keeps_everything_identical(durable: ServerProcess) -> None:
    names = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "test-SR.dcm", "SC_rgb_rle_2frame.dcm")
    upload_all(durable, [pydicom_file(name).read_bytes() for name in names])
    with client_of(durable) as http:
        archive = zip_of({"plan.dcm": pydicom_file("rtplan.dcm").read_bytes(), "x.txt": b"x"})
        assert http.post("/instances", content=archive).status_code == 200
    wait_until_stable(durable)
    before = snapshot(durable)

    durable.stop()
    durable.start()

    assert snapshot(durable) == before
    assert len(before["instances"]) == 6


def test_a_crash_loses_no_acknowledged_upload(durable: ServerProcess) -> None:
    """SIGKILL while uploads are in flight, after a first batch was acknowledged."""
    batch = [dicom_variant(patient_id="CRASH", series=str(i % 3), instance=str(i)) for i in range(24)]
    batch_answers = upload_all(durable, batch)
    with client_of(durable) as http:
        batch_changes = http.get("/changes", params={"limit": "100000"}).json()["Changes"]

    in_flight = [dicom_variant(patient_id="INFLIGHT", series=str(i % 5), instance=str(i)) for i in range(400)]
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()

    def keep_uploading(part: list[bytes]) -> None:
        with client_of(durable) as http:
            for data in part:
                try:
                    answer = http.post("/instances", content=data)
                except httpx.HTTPError:
                    return  # the server is gone
                if answer.status_code == 200:
                    with lock:
                        acknowledged[answer.json()["ID"]] = data

    uploaders = [threading.Thread(target=keep_uploading, args=(in_flight[i::4],)) for i in range(4)]
    for uploader in uploaders:
        uploader.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40:
        assert time.monotonic() < deadline, "uploads too slow"
        time.sleep(0.01)
    durable.kill()
    for uploader in uploaders:
        uploader.join()
    with lock:
        survivors = dict(acknowledged)
    assert len(survivors) < len(in_flight), "every upload finished before the crash: nothing was tested"

    durable.start()

    with client_of(durable) as http:
        for answer, data in zip(batch_answers, batch, strict=True):
            assert http.get(f"/instances/{answer['ID']}/file").content == data
        for instance_id, data in survivors.items():
            assert http.get(f"/instances/{instance_id}/file").content == data
        changes = http.get("/changes", params={"limit": "100000"}).json()["Changes"]
    assert changes[: len(batch_changes)] == batch_changes
    assert_consistent(durable)


def assert_consistent(server: ServerProcess) -> None:
    """Index and storage agree: every instance has its file, counts and sizes add up, no leftovers."""
    with client_of(server) as http:
        instances = http.get("/instances", params={"expand": ""}).json()
        statistics = http.get("/statistics").json()
        sizes = 0
        for instance in instances:
            data = http.get(f"/instances/{instance['ID']}/file").content
            assert len(data) == instance["FileSize"]
            sizes += len(data)
        assert statistics["CountInstances"] == len(instances)
        assert int(statistics["TotalDiskSize"]) == sizes
        for level, key in zip(LEVELS[:3], ("CountPatients", "CountStudies", "CountSeries"), strict=True):
            assert statistics[key] == len(http.get(f"/{level}").json())
    storage = server.directory / "storage"
    assert len(stored_blobs(storage)) == len(instances)
    assert list((storage / "tmp").iterdir()) == []
