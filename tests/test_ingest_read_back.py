"""An upload the worker pool reads back is written through the page cache; any other, directly.

The store writes large files with ``O_DIRECT`` (storage/blobs.py). A file
the pool summarizes from its header alone is never read again by the
ingest, but one without such a header (encapsulated pixels, elements after
them) is read back whole at once by a worker, and so is every file to
convert with ``IngestTranscoding``: those go through the page cache, where
the worker finds them.
"""

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ImplicitVRLittleEndian

from fastpacs.dicom.parse import header_prefix
from fastpacs.index.writer import IndexWriter
from fastpacs.pool.ingest_transcoding import IngestTranscoding
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin
from fastpacs.storage.blobs import BlobStore, StoredBlob
from tests.conftest import InlinePool
from tests.reliability_helpers import InstanceMaker


class CachedSpy(BlobStore):
    """A real store that records, for each put, whether it was asked to write through the cache."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.cached: list[bool] = []

    def put(self, data: bytes, compression: bool | None = None, **options: Any) -> StoredBlob:
        self.cached.append(options.get("cached", False))
        return super().put(data, compression, **options)


@pytest.fixture
def store(tmp_path: Path) -> CachedSpy:
    return CachedSpy(tmp_path / "storage")


def headed_file() -> bytes:
    """An uncompressed CT whose PixelData ends the file (CT_small's trailing padding removed)."""
    dataset = InstanceMaker().dataset("READBACK", 1, 1)
    del dataset[0xFFFCFFFC]
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert header_prefix(data) is not None
    return data


def ingested(ingest: IngestService, data: bytes) -> str:
    return asyncio.run(asyncio.wait_for(ingest.ingest(data, Origin()), timeout=60)).status


def test_only_files_the_pool_reads_back_are_written_through_the_cache(
    store: CachedSpy, inline_ingest: IngestService
) -> None:
    encapsulated = Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes()
    assert header_prefix(encapsulated) is None

    assert ingested(inline_ingest, headed_file()) == "Success"
    assert ingested(inline_ingest, encapsulated) == "Success"
    assert store.cached == [False, True]


def test_files_to_convert_are_written_through_the_cache(
    store: CachedSpy, index_writer: IndexWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = IngestService(
        InlinePool(store, monkeypatch),  # type: ignore[arg-type]
        index_writer,
        DefaultEncoding("Latin1"),
        1 << 30,
        transcoding=IngestTranscoding(ImplicitVRLittleEndian),
    )
    assert ingested(ingest, headed_file()) == "Success"
    assert store.cached[0] is True  # the received file; the converted one is stored by the worker
