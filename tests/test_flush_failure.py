"""A blob whose flush failed is not trusted afterwards.

After a failed write-back (``fdatasync`` reporting EIO or ENOSPC) the
kernel may have dropped the file's pages, and it reports the error once: a
later flush of the same file succeeds although its data is not on disk. A
blob the store keeps after such a failure would be taken as stored by the
next upload of the same bytes (the store does not write existing blobs
again). So a blob whose flush failed is never left named: an upload's own
write (flushed before its file is named) leaves nothing, and whoever waited
for the flush of a file stored earlier (by a worker) releases it; the next
upload writes the same bytes anew.

The same holds for an upload whose worker ended while reading it (a crash
in a decoder, the OOM killer): the file written beside the parse is
released, not left for the start-up repair.
"""

import asyncio
import errno
import os
from collections.abc import Iterable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from fastpacs.dicom.parse import InstanceSummary, summarize
from fastpacs.index.updates import IndexUpdate
from fastpacs.index.writer import IndexWriter
from fastpacs.pool import tasks
from fastpacs.services import ingest as ingest_module
from fastpacs.services.ingest import IngestService, Origin
from fastpacs.storage.blobs import BlobStore

CT_SMALL = Path(get_testdata_file("CT_small.dcm")).read_bytes()


class FailingStore(BlobStore):
    """A real store whose next ``failures`` flushes fail as a disk that cannot write back."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.failures = 0

    def sync(self, digests: Iterable[bytes]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EIO, "Input/output error")
        super().sync(digests)


@pytest.fixture
def store(tmp_path: Path) -> FailingStore:
    return FailingStore(tmp_path / "storage")


def refused_then_stored(
    store: BlobStore,
    ingest: IngestService,
    monkeypatch: pytest.MonkeyPatch,
    failing: list[tuple[object, str, Any]],
    error: type[Exception],
) -> None:
    """An upload of CT_small made while the ``failing`` (object, name, value) patches hold fails with
    ``error`` and leaves no blob; the next one stores the file, whole."""

    async def scenario() -> str:
        with monkeypatch.context() as patched:
            for target, name, value in failing:
                patched.setattr(target, name, value)
            with pytest.raises(error):
                await ingest.ingest(CT_SMALL, Origin())
        assert store.digests() == []
        return (await ingest.ingest(CT_SMALL, Origin())).status

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) == "Success"
    [(digest, _)] = store.digests()
    assert store.read_stored(digest) == CT_SMALL


def test_an_upload_whose_flush_fails_is_refused_and_leaves_no_blob(
    store: FailingStore, inline_ingest: IngestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(_: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    refused_then_stored(store, inline_ingest, monkeypatch, [(os, "fdatasync", failing)], OSError)


def test_the_blob_of_an_upload_whose_worker_ended_is_released(
    store: FailingStore, inline_ingest: IngestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def worker_ended(*_: object) -> InstanceSummary:
        raise BrokenProcessPool("a worker process ended abruptly (exit code -9)")

    # Whether the pool parses the header alone or the whole file.
    patches = [(ingest_module, "summarize_header", worker_ended), (tasks, "summarize_blob", worker_ended)]
    refused_then_stored(store, inline_ingest, monkeypatch, patches, BrokenProcessPool)


def test_files_stored_by_a_worker_whose_flush_fails_are_released(
    store: FailingStore, inline_ingest: IngestService
) -> None:
    """A ZIP upload's files, a modification's: written unflushed, flushed together by the server."""

    def stored() -> tasks.ParsedFile:
        return tasks.store_parsed(CT_SMALL, summarize(CT_SMALL, "Latin1"), [])

    async def scenario() -> list[str]:
        store.failures = 1
        with pytest.raises(OSError, match="Input/output error"):
            await inline_ingest.ingest_stored([stored()], Origin())
        assert store.digests() == []  # released, not left for the next upload to trust
        return [outcome.status for outcome in await inline_ingest.ingest_stored([stored()], Origin())]

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) == ["Success"]
    [(digest, _)] = store.digests()
    assert store.read_stored(digest) == CT_SMALL


def test_a_batch_whose_flush_fails_removes_the_blobs_it_referenced_first(
    store: FailingStore, index_writer: IndexWriter
) -> None:
    """Blobs the index writer flushes itself (attachments, modified files): the batch is undone and
    its new blobs, referenced by nothing, go."""
    blob = store.put(b"an attachment")

    def references(update: IndexUpdate) -> int:
        return update.blob_references(blob.digest)

    async def scenario() -> int:
        store.failures = 1
        with pytest.raises(OSError, match="Input/output error"):
            await index_writer.run(lambda update: update.reference_blob(blob))
        assert not store.exists(blob.digest)
        assert await index_writer.run(references) == 0
        assert store.put(b"an attachment") == blob  # written anew
        await index_writer.run(lambda update: update.reference_blob(blob))
        return await index_writer.run(references)

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) == 1
    assert store.read(blob) == b"an attachment"
