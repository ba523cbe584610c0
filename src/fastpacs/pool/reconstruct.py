"""Worker side of ``/reconstruct``: parse a stored file again."""

from fastpacs.dicom.parse import InstanceSummary, summarize
from fastpacs.pool.tasks import read_blob


def summary_of(digest: bytes, default_encoding: str) -> InstanceSummary:
    """The index summary of a stored file, as ingest computes it."""
    return summarize(read_blob(digest), default_encoding)
