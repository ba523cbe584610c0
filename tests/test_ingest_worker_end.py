"""An upload whose worker ended while reading it: the blob written meanwhile is released.

The ingest writes the file while a worker parses its header. When that
worker ends (a crash in a decoder, the OOM killer), the upload fails with
the pool's error and the pool starts another worker; the file, written but
referenced by no instance, must not stay behind in the storage until the
next start-up repair.
"""

import asyncio
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from fastpacs.dicom.parse import InstanceSummary
from fastpacs.index.writer import IndexWriter
from fastpacs.pool import tasks
from fastpacs.services import ingest as ingest_module
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin
from fastpacs.storage.blobs import BlobStore
from tests.conftest import InlinePool

CT_SMALL = Path(get_testdata_file("CT_small.dcm")).read_bytes()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "storage")


def test_the_blob_of_an_upload_whose_worker_ended_is_released(
    store: BlobStore, index_writer: IndexWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = IngestService(InlinePool(store, monkeypatch), index_writer, DefaultEncoding("Latin1"), 1 << 30)  # type: ignore[arg-type]

    def worker_ended(*_: object) -> InstanceSummary:
        raise BrokenProcessPool("a worker process ended abruptly (exit code -9)")

    async def scenario() -> str:
        with monkeypatch.context() as ending:  # whether the pool parses the header or the whole file
            ending.setattr(ingest_module, "summarize_header", worker_ended)
            ending.setattr(tasks, "summarize_blob", worker_ended)
            with pytest.raises(BrokenProcessPool):
                await ingest.ingest(CT_SMALL, Origin())
        assert store.digests() == []
        return (await ingest.ingest(CT_SMALL, Origin())).status

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) == "Success"
    [(digest, _)] = store.digests()
    assert store.read_stored(digest) == CT_SMALL
