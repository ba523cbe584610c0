"""/{level}/{id}/statistics: counts of descendants and the sizes of what they store.

``Dicom*Size`` counts the DICOM files of the instances below the resource;
``DiskSize``/``UncompressedSize`` add every user attachment of the resource
and of its descendants. The disk sizes count the stored bytes, the
uncompressed ones the content: they differ for attachments stored
compressed (``StorageCompression``, ``/compress``).
"""

from typing import Any

from fastpacs.dicom.ids import Level, RawId
from fastpacs.index.attachments import DICOM, stored_attachments
from fastpacs.index.database import Database
from fastpacs.index.view import IndexView

MEGABYTE = 1024 * 1024
_COUNT_KEYS = {Level.STUDY: "CountStudies", Level.SERIES: "CountSeries", Level.INSTANCE: "CountInstances"}


def _sizes(prefix: str, disk: int, uncompressed: int) -> dict[str, Any]:
    return {
        f"{prefix}DiskSize": str(disk),
        f"{prefix}DiskSizeMB": disk // MEGABYTE,
        f"{prefix}UncompressedSize": str(uncompressed),
        f"{prefix}UncompressedSizeMB": uncompressed // MEGABYTE,
    }


def resource_statistics(view: IndexView, level: Level, rid: RawId) -> dict[str, Any] | None:
    """Orthanc's statistics of one resource; ``None`` if it does not exist at that level."""
    if view.resource_at(rid, level) is None:
        return None
    counts = dict.fromkeys(range(level + 1, Level.INSTANCE + 1), 0)
    dicom_disk = dicom_size = other_disk = other_size = 0
    current = [rid]
    for depth in range(level, Level.INSTANCE + 1):
        if depth > level:
            counts[depth] = len(current)
        for resource in current:
            for kind, attachment in stored_attachments(view.txn, view.dbs, resource).items():
                if kind != DICOM:
                    other_disk += attachment.blob.stored_size
                    other_size += attachment.blob.size
            if depth == Level.INSTANCE:
                record = view.resource(resource)
                if record is not None and record.blob is not None:
                    dicom_disk += record.blob.stored_size
                    dicom_size += record.blob.size
        if depth < Level.INSTANCE:
            current = [child for parent in current for child in view.children(parent)]
    answer: dict[str, Any] = {_COUNT_KEYS[Level(depth)]: count for depth, count in counts.items()}
    answer.update(_sizes("Dicom", dicom_disk, dicom_size))
    answer.update(_sizes("", dicom_disk + other_disk, dicom_size + other_size))
    return answer


class StatisticsService:
    def __init__(self, database: Database):
        self.database = database

    def of(self, level: Level, rid: RawId) -> dict[str, Any] | None:
        with self.database.read() as view:
            return resource_statistics(view, level, rid)
