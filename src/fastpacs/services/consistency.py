"""The start-up check: repair what a crash can leave between storage and index.

A crash can leave half-written temporary files, and blobs written durably
whose index transaction never committed. Both are removed before the
server accepts requests; the index itself is transactional and needs no
repair.
"""

import logging
import time

import msgspec

from fastpacs.index.database import Database
from fastpacs.storage.blobs import BlobStore

logger = logging.getLogger(__name__)


class ConsistencyReport(msgspec.Struct):
    temporary_files_removed: int
    orphan_blobs_removed: int
    blobs_checked: int
    seconds: float


def repair_storage(database: Database, storage: BlobStore) -> ConsistencyReport:
    """Remove temporary files and blobs the index does not reference. Run before serving."""
    started = time.monotonic()
    temporary = storage.remove_temporary_files()
    blobs = storage.digests()
    orphans = 0
    with database.read() as view:
        unreferenced = [digest for digest, _ in blobs if view.blob_references(digest) == 0]
    for digest in unreferenced:
        storage.remove(digest)
        orphans += 1
    report = ConsistencyReport(
        temporary_files_removed=temporary,
        orphan_blobs_removed=orphans,
        blobs_checked=len(blobs),
        seconds=round(time.monotonic() - started, 3),
    )
    if temporary or orphans:
        logger.warning("start-up repair: %s", msgspec.json.encode(report).decode())
    else:
        logger.info("start-up check: %d blobs, all referenced", len(blobs))
    return report
