"""The index writer goes on after what can fail once a batch is committed.

Every write of the server waits on its one thread: if that thread ended,
every later upload, deletion and stability check would wait for ever.
"""

import asyncio
import logging
from pathlib import Path

import pytest

from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate
from fastpacs.index.writer import IndexWriter
from fastpacs.storage.blobs import BlobStore


def test_a_blob_that_cannot_be_removed_is_logged_and_left_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(tmp_path / "index", map_size_gb=1)
    storage = BlobStore(tmp_path / "storage")
    writer = IndexWriter(database, storage)
    blob = storage.put(b"released, then impossible to remove")
    path = storage.path_of(blob.digest)
    path.unlink()
    (path / "in-the-way").mkdir(parents=True)  # unlink() of the blob's path now fails (EISDIR)

    def still_referenced(update: IndexUpdate) -> int:
        return update.blob_references(blob.digest)

    async def scenario() -> int:
        await writer.run(lambda update: update.reference_blob(blob, flushed=True))
        await writer.run(lambda update: update.release_blob(blob))
        return await writer.run(still_referenced)

    writer.start()
    try:
        with caplog.at_level(logging.ERROR, logger="fastpacs.index.writer"):
            references = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    finally:
        writer.stop()
        database.close()
    assert references == 0
    assert path.is_dir()
    assert f"could not remove the unreferenced blob {blob.digest.hex()}" in caplog.text
