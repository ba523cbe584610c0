"""Reads racing deletes of the same instance: every answer is a 200 or a 404, never a 5xx.

A read looks the instance up in the index, then reads its file; a delete
committed in between has removed the file. Such a read is answered as if it
came a moment later (404 "Unknown resource"), where it used to be a 500
with a traceback. A file lost while still indexed stays Orthanc's 500
(tests/differential/test_lost_files_vs_orthanc.py).
"""

import threading
import time
from collections import Counter
from types import SimpleNamespace

import httpx
import pytest

from fastpacs.api.errors import is_lost
from fastpacs.testing import ServerProcess
from tests.reliability_helpers import InstanceMaker, instance_id

SECONDS = 4.0
READ_ROUTES = ("frames/0/raw", "numpy", "matlab", "content/0010-0010", "attachments/dicom/data", "file")


def test_reads_racing_deletes_get_no_server_error(server: ServerProcess) -> None:
    dataset = InstanceMaker().dataset("READ-DELETE-RACE", 1, 1)
    data = InstanceMaker().file("READ-DELETE-RACE", 1, 1)
    instance = instance_id(dataset)
    statuses: Counter[tuple[str, int]] = Counter()
    bodies: list[str] = []
    deadline = time.monotonic() + SECONDS

    def store_and_delete() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            while time.monotonic() < deadline:
                assert http.post("/instances", content=data).status_code == 200
                assert http.delete(f"/instances/{instance}").status_code == 200

    def read(route: str) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            while time.monotonic() < deadline:
                answer = http.get(f"/instances/{instance}/{route}")
                statuses[(route, answer.status_code)] += 1
                if answer.status_code >= 500:
                    bodies.append(answer.text)

    threads = [threading.Thread(target=store_and_delete)]
    threads += [threading.Thread(target=read, args=(route,)) for route in READ_ROUTES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bodies == [], bodies[:3]
    assert {status for _, status in statuses} <= {200, 404}, statuses
    assert all(statuses[(route, 200)] > 0 for route in READ_ROUTES), statuses


def states(referenced: list[bool], stored: list[bool]) -> SimpleNamespace:
    """Services whose index and storage answer in turn as listed (the blob changing between looks)."""
    return SimpleNamespace(
        resources=SimpleNamespace(is_blob_referenced=lambda digest: referenced.pop(0)),
        storage=SimpleNamespace(exists=lambda digest: stored.pop(0)),
    )


@pytest.mark.parametrize(
    ("referenced", "stored", "lost"),
    [
        ([False], [], False),  # deleted
        ([True], [True], False),  # deleted and stored again before the index was asked
        ([True, False], [False], False),  # referenced, then deleted while the storage was asked
        ([True, True], [False, True], False),  # stored again between the looks
        ([True, True], [False, False], True),  # referenced and missing, twice: lost
    ],
)
def test_a_missing_file_counts_as_lost_only_if_referenced_and_missing_twice(
    referenced: list[bool], stored: list[bool], lost: bool
) -> None:
    assert is_lost(states(referenced, stored), b"\0" * 32) is lost  # type: ignore[arg-type]
