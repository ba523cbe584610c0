"""Modified files stored by the workers themselves (pool/modify.py ``modify_and_store``) and indexed by
the server (``IngestService.ingest_stored``): the bytes never cross back, no blob is left unreferenced."""

import time
from pathlib import Path

import httpx
import pytest

from fastpacs.dicom.modification_request import parse_anonymize_request
from fastpacs.dicom.parse import summarize
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.pool import modify as pool_modify
from fastpacs.pool import tasks
from fastpacs.pool.modify import modify_and_store, modify_file
from fastpacs.storage.blobs import BlobStore
from fastpacs.testing import ServerProcess
from tests.conftest import dicom_variant


def test_the_worker_stores_and_summarizes_each_modified_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = BlobStore(tmp_path / "storage")
    monkeypatch.setattr(tasks, "_storage", storage)
    source = dicom_variant(instance="stored")
    good = storage.put(source).digest
    modification = parse_anonymize_request({}).modification
    stored = modify_and_store(modification, [good, bytes(32)], "Latin1", None)
    assert stored[1] is None  # bytes(32): a blob deleted since the request was accepted
    parsed = stored[0]
    assert parsed is not None
    expected = modify_file(modification, source, "Latin1", None)  # the UID mapping is the modification's
    assert storage.read(parsed.blob.digest) == expected
    assert parsed.blob.size == len(expected)
    assert parsed.summary == summarize(expected, "Latin1")  # as the ingest of the same bytes would say


def test_a_worker_failing_half_way_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = BlobStore(tmp_path / "storage")
    monkeypatch.setattr(tasks, "_storage", storage)
    good = storage.put(dicom_variant(instance="half")).digest
    modification = parse_anonymize_request({}).modification
    calls = []
    real_modify_file = pool_modify.modify_file

    def second_fails(*args: object) -> bytes:
        calls.append(args)
        if len(calls) == 2:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
        return real_modify_file(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pool_modify, "modify_file", second_fails)
    with pytest.raises(OrthancError):
        modify_and_store(modification, [good, good, good], "Latin1", None)
    assert len(calls) == 2
    assert [digest for digest, _ in storage.digests()] == [good]


def test_anonymizing_a_study_leaves_no_unreferenced_blob(server: ServerProcess, client: httpx.Client) -> None:
    study = "1.2.826.0.1.3680043.8.498.stored"
    for number in range(8):
        answer = client.post("/instances", content=dicom_variant(study=study, instance=f"stored{number}"))
        assert answer.status_code == 200
    study_id = client.get(f"/instances/{answer.json()['ID']}/study").json()["ID"]
    anonymized = client.post(f"/studies/{study_id}/anonymize", json={})
    assert anonymized.status_code == 200
    instances = client.get(f"/studies/{anonymized.json()['ID']}/instances").json()
    assert len(instances) == 8
    for instance in instances:
        assert client.get(f"/instances/{instance['ID']}/tags?simplify").json()["PatientName"] == "Anonymized1"
        stored = client.get(f"/instances/{instance['ID']}/file").content
        assert summarize(stored, "Latin1").identifiers[3] == instance["MainDicomTags"]["SOPInstanceUID"]
    storage = BlobStore(Path(server.directory) / "storage")
    assert len(storage.digests()) == client.get("/statistics").json()["CountInstances"] == 16


def test_a_job_canceled_half_way_leaves_no_unreferenced_blob(
    server: ServerProcess, client: httpx.Client
) -> None:
    """The batch modified ahead (stored by the workers, not indexed) is released when the job is dropped."""
    study = "1.2.826.0.1.3680043.8.498.canceled"
    for number in range(60):  # several steps: the next one is modified while one is indexed
        answer = client.post("/instances", content=dicom_variant(study=study, instance=f"canceled{number}"))
        assert answer.status_code == 200
    study_id = client.get(f"/instances/{answer.json()['ID']}/study").json()["ID"]
    job_id = client.post(f"/studies/{study_id}/anonymize", json={"Asynchronous": True}).json()["ID"]
    deadline = time.monotonic() + 30
    while client.get(f"/jobs/{job_id}").json()["Progress"] == 0:  # canceled after a step: one modified ahead
        assert time.monotonic() < deadline
        time.sleep(0.005)
    client.post(f"/jobs/{job_id}/cancel", content=b"")
    while client.get(f"/jobs/{job_id}").json()["State"] not in ("Failure", "Success"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    storage = BlobStore(Path(server.directory) / "storage")
    while len(storage.digests()) != client.get("/statistics").json()["CountInstances"]:
        assert time.monotonic() < deadline, "blobs stored for the canceled job were not released"
        time.sleep(0.05)
