"""Worker side of ``/reconstruct``: parse a stored file again."""

from fastpacs.dicom.parse import InstanceSummary, summarize
from fastpacs.pool.tasks import read_blob
from fastpacs.storage.blobs import StoredBlob


def summary_of(blob: StoredBlob, default_encoding: str) -> InstanceSummary:
    """The index summary of a stored file, as ingest computes it."""
    return summarize(read_blob(blob), default_encoding)
