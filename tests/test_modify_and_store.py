"""Files stored by the workers themselves (modified files: pool/modify.py ``modify_and_store``; the files
of a ZIP upload) and indexed by the server (``IngestService.ingest_stored``): the bytes never cross back,
no blob is left unreferenced, not even when a store fails half-way."""

import asyncio
import hashlib
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from fastpacs.dicom.modification import ModifiedFile
from fastpacs.dicom.modification_request import parse_anonymize_request
from fastpacs.dicom.parse import summarize
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.pool import modify as pool_modify
from fastpacs.pool import tasks
from fastpacs.pool.ingest_transcoding import IngestTranscoding
from fastpacs.pool.modify import modify_and_store, modify_file
from fastpacs.pool.tasks import ParsedFile, StoreInterruptedError
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin
from fastpacs.storage.blobs import BlobStore, StoredBlob
from fastpacs.testing import ServerProcess
from tests.conftest import InlinePool, dicom_variant, stored_blobs
from tests.differential.data import zip_of


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
    expected = modify_file(modification, source, "Latin1", None).data  # the UID mapping is the modification's
    assert storage.read(parsed.blob) == expected
    assert parsed.blob.size == len(expected)
    assert parsed.summary == summarize(expected, "Latin1")  # as the ingest of the same bytes would say


def test_a_worker_failing_half_way_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = BlobStore(tmp_path / "storage")
    monkeypatch.setattr(tasks, "_storage", storage)
    good = storage.put(dicom_variant(instance="half")).digest
    modification = parse_anonymize_request({}).modification
    calls = []
    real_modify_file = pool_modify.modify_file

    def second_fails(*args: object) -> ModifiedFile:
        calls.append(args)
        if len(calls) == 2:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
        return real_modify_file(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pool_modify, "modify_file", second_fails)
    with pytest.raises(OrthancError):
        modify_and_store(modification, [good, good, good], "Latin1", None)
    assert len(calls) == 2
    assert [digest for digest, _ in storage.digests()] == [good]


def test_a_store_failing_after_others_names_the_blobs_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker cannot remove what it wrote (an upload of the same bytes may be indexing it):
    it tells the server, which releases the blobs, along with the failure to answer."""
    storage = BlobStore(tmp_path / "storage")
    monkeypatch.setattr(tasks, "_storage", storage)
    sources = [storage.put(dicom_variant(instance=f"interrupted{number}")).digest for number in range(3)]
    modification = parse_anonymize_request({}).modification
    real_put = storage.put
    written: list[bytes] = []
    stores_allowed = 2

    def failing_put(data: bytes) -> StoredBlob:
        if len(written) >= stores_allowed:
            raise OrthancError(ErrorCode.FULL_STORAGE, "no space left")
        blob = real_put(data)
        written.append(blob.digest)
        return blob

    monkeypatch.setattr(storage, "put", failing_put)
    with pytest.raises(StoreInterruptedError) as raised:
        modify_and_store(modification, sources, "Latin1", None)
    assert raised.value.digests == written
    assert isinstance(raised.value.error, OrthancError)
    assert raised.value.error.code == ErrorCode.FULL_STORAGE

    written.clear()
    stores_allowed = 0  # a first store that fails has nothing to name: its error as it is
    with pytest.raises(OrthancError):
        modify_and_store(modification, sources, "Latin1", None)


def test_a_file_whose_bytes_before_pixel_data_cannot_be_stored_names_its_own_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With StorageCompression a file is two blobs: the second write failing names the first, even
    for the first file of a task, for the server to release."""
    storage = BlobStore(tmp_path / "storage", compression=True)
    monkeypatch.setattr(tasks, "_storage", storage)
    data = dicom_variant(instance="until-pixel-data")

    def full(*_: object) -> None:
        raise OrthancError(ErrorCode.FULL_STORAGE, "no space left")

    monkeypatch.setattr(storage, "put_until_pixel_data", full)
    with pytest.raises(StoreInterruptedError) as raised:
        tasks.store_parsed(data, summarize(data, "Latin1"), [])
    assert raised.value.digests == [digest for digest, _ in storage.digests()]
    assert len(raised.value.digests) == 1
    assert raised.value.error.code == ErrorCode.FULL_STORAGE  # type: ignore[union-attr]


def test_an_ingest_conversion_whose_second_write_fails_leaves_no_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IngestTranscoding with StorageCompression: the converted file is stored, its bytes before pixel
    data cannot be; the upload is refused as a full storage, and neither the received nor the
    converted file's blob stays."""
    storage = BlobStore(tmp_path / "storage", compression=True)
    database = Database(tmp_path / "index", map_size_gb=1)
    writer = IndexWriter(database, storage)
    conversion = IngestTranscoding(ImplicitVRLittleEndian)
    ingest = IngestService(
        InlinePool(storage, monkeypatch),  # type: ignore[arg-type]
        writer,
        DefaultEncoding("Latin1"),
        1 << 30,
        transcoding=conversion,
    )

    def full(*_: object, **__: object) -> None:
        raise OrthancError(ErrorCode.FULL_STORAGE, "no space left")

    monkeypatch.setattr(storage, "put_until_pixel_data", full)
    writer.start()
    try:
        with pytest.raises(OrthancError) as raised:
            asyncio.run(asyncio.wait_for(ingest.ingest(dicom_variant(instance="converted"), Origin()), 30))
    finally:
        writer.stop()
        database.close()
    assert raised.value.code == ErrorCode.FULL_STORAGE
    assert storage.digests() == []


def test_a_zip_whose_store_fails_half_way_leaves_no_blob(server: ServerProcess, client: httpx.Client) -> None:
    """The third file of the archive cannot be stored (its folder is taken by a file): the upload
    fails, and the two blobs stored before it are released."""
    storage = Path(server.directory) / "storage"
    taken = {path.name for path in storage.iterdir()}
    files = [dicom_variant(study="zip-interrupted", instance=f"zip{number}") for number in range(2)]
    folders = {hashlib.sha256(data).hexdigest()[:2] for data in files}
    number = 2
    while (folder := hashlib.sha256(third := dicom_variant(instance=f"zip{number}")).hexdigest()[:2]) in (
        taken | folders
    ):
        number += 1
    blocker = storage / folder
    blocker.write_bytes(b"")
    blobs_before = stored_blobs(storage).keys()
    try:
        answer = client.post(
            "/instances", content=zip_of({"1.dcm": files[0], "2.dcm": files[1], "3.dcm": third})
        )
        assert answer.status_code == 500, answer.text
    finally:
        blocker.unlink()
    deadline = time.monotonic() + 10
    while stored_blobs(storage).keys() != blobs_before:  # released by the index writer, after the answer
        assert time.monotonic() < deadline, "the blobs stored before the failure were left behind"
        time.sleep(0.05)
    assert client.post("/instances", content=zip_of({"3.dcm": third})).json()[0]["Status"] == "Success"


class _IndexFailingFor(IngestService):
    """An ingest service whose indexing of a file takes its size in hundredths of a second, and fails
    for the sizes in ``failing``; it records what it indexed and the statuses of its metrics."""

    def __init__(self, failing: set[int]):
        self.failing = failing
        self.transcoding = None
        self.indexed: list[int] = []
        self.statuses: list[str] = []
        self.metrics = self  # type: ignore[assignment]
        self.flush = self  # type: ignore[assignment]

    def begin(self, *digests: bytes) -> None:  # the flush, done at once
        return None

    def observe_ingest(self, status: str, *_: object) -> None:
        self.statuses.append(status)

    async def _index(  # type: ignore[override]
        self, summary: object, blob: StoredBlob, data: object, origin: Origin, flushed: object, **_: object
    ) -> SimpleNamespace:
        await asyncio.sleep(blob.size / 100)
        if blob.size in self.failing:
            raise OrthancError(ErrorCode.INTERNAL_ERROR, f"file {blob.size}")
        self.indexed.append(blob.size)
        return SimpleNamespace(status="Success")


def test_indexing_stored_files_sees_every_file_through_before_failing() -> None:
    """A file of a ZIP failing to index fails the upload, but only once its siblings are indexed
    (and counted): no indexing is left running, no failure unretrieved; the first failure is raised."""
    service = _IndexFailingFor(failing={1, 3})
    files = [ParsedFile(summary=None, blob=StoredBlob(digest=bytes(32), size=size)) for size in (4, 3, 1, 2)]

    async def ingest() -> None:
        await service.ingest_stored(files, Origin())

    with pytest.raises(OrthancError, match="file 3"):
        asyncio.run(ingest())
    assert service.indexed == [2, 4]
    assert service.statuses == ["Success", "Success"]


def test_anonymizing_a_study_leaves_no_unreferenced_blob(server: ServerProcess, client: httpx.Client) -> None:
    study = "1.2.826.0.1.3680043.8.498.stored"
    before = client.get("/statistics").json()["CountInstances"]
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
    assert len(storage.digests()) == client.get("/statistics").json()["CountInstances"] == before + 16


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
