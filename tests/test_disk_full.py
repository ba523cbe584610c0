"""Disk full: a store on a 20 MB tmpfs fills up; uploads get a clear error, nothing stored is hurt.

The store (index and files) lives on its own small tmpfs, which also holds
a ballast file standing for the other data of a real disk. Uploads of
distinct 512 KB instances, over REST and C-STORE, go on until the disk is
full and then a while longer: every refusal must be Orthanc's 507 "The file
storage is full" (C-STORE: 0xA700, out of resources), never a 500, and
neither the stored instances nor the index may suffer. Then the ballast is
deleted, as an operator would free space, and uploads succeed again without
a restart; deleting instances through the API works as well.

The index can run out of space too, when a file was written just before:
the index writer is filled alone on its own 1 MB tmpfs, and must refuse with
the same error, then go on once space returns.

The tests mount tmpfs file systems (they run as root, as CI does).
"""

import asyncio
import copy
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy
import pydicom
import pytest

from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate
from fastpacs.index.writer import IndexWriter
from fastpacs.storage.blobs import BlobStore
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import Figures, pydicom_file
from tests.reliability_helpers import c_store_all, check_store, dataset_part

pytestmark = pytest.mark.slow

DISK_SIZE = "20m"
BALLAST = 4 * 1024 * 1024
PAST_FULL = 8
"""Uploads tried after the first refusal: the server must keep refusing them cleanly."""


def mounted_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path_factory.mktemp("small-disk"), DISK_SIZE)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path, "1m")


@pytest.fixture(scope="module")
def filled(small_disk: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    store = small_disk / "storage"
    options = {"StorageDirectory": str(store), "IndexDirectory": str(store), "WorkerProcesses": 1}
    process = fastpacs_server(tmp_path_factory.mktemp("disk-full-server"), options).start()
    yield process
    process.stop()


def large_instance(template: pydicom.Dataset, number: int) -> pydicom.Dataset:
    """A 512×512 16-bit CT of about 512 KB, different for each number."""
    dataset = copy.deepcopy(template)
    dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1311.7.{number}"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.Rows = dataset.Columns = 512
    dataset.PixelData = numpy.full((512, 512), number, dtype=numpy.int16).tobytes()
    return dataset


def file_of(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_full_disk_refuses_uploads_cleanly_and_recovers(
    filled: ServerProcess, small_disk: Path, figures: Figures
) -> None:
    (small_disk / "ballast").write_bytes(b"\0" * BALLAST)
    template = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    stored: dict[str, bytes] = {}
    refusals: list[httpx.Response] = []
    number = 0
    with httpx.Client(base_url=filled.base_url, timeout=60) as http:
        while len(refusals) < PAST_FULL:
            number += 1
            assert number < 200, "the disk never filled up"
            data = file_of(large_instance(template, number))
            answer = http.post("/instances", content=data)
            if answer.status_code == 200:
                assert not refusals, "an upload succeeded after the disk was full"
                stored[answer.json()["ID"]] = data
            else:
                refusals.append(answer)
        statuses = {answer.status_code for answer in refusals}
        figures.add(
            "disk full", f"after {len(stored)} uploads; {len(refusals)} refused with {sorted(statuses)}"
        )
        assert statuses == {507}, [answer.text for answer in refusals]
        body = refusals[0].json()
        assert (body["OrthancError"], body["OrthancStatus"], body["HttpStatus"]) == (
            "The file storage is full",
            19,
            507,
        )

        full_store = c_store_all(filled, [large_instance(template, 1000 + n) for n in range(3)])
        figures.add(
            "C-STORE on the full disk",
            str({f"{status:#06x}": count for status, count in full_store.statuses.items()}),
        )
        assert full_store.statuses == {0xA700: 3}

        for instance, data in stored.items():
            assert http.get(f"/instances/{instance}/file").content == data
        check_store(filled, http, storage=small_disk / "storage")

        (small_disk / "ballast").unlink()  # the operator frees space
        recovered = [http.post("/instances", content=answer.request.content) for answer in refusals[:4]]
        assert [answer.status_code for answer in recovered] == [200] * 4
        again = c_store_all(filled, [large_instance(template, 1000)])
        assert again.statuses == {0x0000: 1}
        ((instance, sent),) = again.acknowledged.items()
        assert dataset_part(http.get(f"/instances/{instance}/file").content) == sent

        for instance in list(stored)[:5]:
            assert http.delete(f"/instances/{instance}").status_code == 200
        checked = check_store(filled, http, storage=small_disk / "storage")
        figures.add(
            "after freeing space", f"{checked.instances} instances, {checked.disk_size} bytes, consistent"
        )
        assert checked.instances == len(stored) - 5 + 4 + 1


def test_a_full_index_refuses_its_commits_as_storage_full_then_recovers(
    tiny_disk: Path, figures: Figures
) -> None:
    database = Database(tiny_disk / "index", map_size_gb=1)
    writer = IndexWriter(database, BlobStore(tiny_disk / "storage"))
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * 256 * 1024)

    def put(key: int):
        def operation(update: IndexUpdate) -> None:
            update.txn.put(f"fill-{key}".encode(), os.urandom(3000), db=update.dbs["metadata"])

        return operation

    async def fill() -> tuple[int, OrthancError]:
        for key in range(1000):
            try:
                await writer.run(put(key))
            except OrthancError as error:
                return key, error
        raise AssertionError("the index never filled the disk")

    writer.start()
    try:
        committed, error = asyncio.run(fill())
        figures.add("index full", f"after {committed} commits: {error.http_status} {error.details}")
        assert (error.code, error.http_status) == (ErrorCode.FULL_STORAGE, 507)
        ballast.unlink()
        asyncio.run(writer.run(put(committed)))
        with database.read() as view:
            stored = sum(1 for _ in view.txn.cursor(db=database.dbs["metadata"]))
        assert stored == committed + 1
    finally:
        writer.stop()
        database.close()
