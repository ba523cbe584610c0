"""Reading the index inside one LMDB transaction.

An :class:`IndexView` wraps a transaction (read-only for the REST API, the
write transaction inside write operations) and answers the questions every
part of fastpacs asks: a resource, its children, a level's listing, the
change log, counters.
"""

from collections import deque
from collections.abc import Iterator
from enum import StrEnum
from itertools import islice

import lmdb
import msgspec

from fastpacs.dicom.ids import Level, RawId
from fastpacs.dicom.parse import StoredTags
from fastpacs.index.metadata import METADATA_DECODER, MetadataValue, metadata_key, metadata_kind
from fastpacs.index.schema import (
    CHANGE_DECODER,
    RESOURCE_DECODER,
    Change,
    Counter,
    Resource,
    fold_identifier,
    pack_u64,
    unpack_u64,
)

STORED_TAGS_DECODER = msgspec.msgpack.Decoder(StoredTags)
SEQ_SIZE = 8
ID_SIZE = 20


class SeriesStatus(StrEnum):
    """Completeness of a series whose expected number of instances is known."""

    UNKNOWN = "Unknown"
    MISSING = "Missing"
    COMPLETE = "Complete"
    INCONSISTENT = "Inconsistent"


class IndexView:
    """Queries on the index within one transaction."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, lmdb._Database]):
        self.txn = txn
        self.dbs = dbs

    def __enter__(self) -> "IndexView":
        return self

    def __exit__(self, *exception: object) -> None:
        """Ends the read-only transaction of :meth:`Database.read` (a write one is its writer's to end)."""
        self.txn.abort()

    def counter(self, name: bytes) -> int:
        value = self.txn.get(name, db=self.dbs["counters"])
        return 0 if value is None else unpack_u64(value)

    def resource(self, rid: RawId) -> Resource | None:
        data = self.txn.get(rid, db=self.dbs["resources"])
        return None if data is None else RESOURCE_DECODER.decode(data)

    def resource_at(self, rid: RawId, level: Level) -> Resource | None:
        """The resource if it exists at that level (a known ID at another level is not found)."""
        record = self.resource(rid)
        return record if record is not None and record.level == level else None

    def children(self, rid: RawId) -> list[RawId]:
        """Child IDs in insertion order."""
        cursor = self.txn.cursor(db=self.dbs["children"])
        if not cursor.set_key(rid):
            return []
        return [value[SEQ_SIZE:] for value in cursor.iternext_dup()]

    def has_children(self, rid: RawId) -> bool:
        cursor = self.txn.cursor(db=self.dbs["children"])
        return cursor.set_key(rid)

    def descendants(self, rid: RawId, level: Level, target: Level) -> list[RawId]:
        """IDs of the resources of level ``target`` below ``rid`` (itself when the levels match)."""
        current = [rid]
        for _ in range(level, target):
            current = [child for parent in current for child in self.children(parent)]
        return current

    def descendants_last_first(self, rid: RawId, level: Level, target: Level) -> list[RawId]:
        """:meth:`descendants` in the order Orthanc 1.10.1 walks a tree to send its instances (C-STORE
        to a modality, C-MOVE, C-GET) or to list them for a storage commitment: the last stored first,
        series included (observed)."""
        return self.descendants(rid, level, target)[::-1]

    def ancestor(self, rid: RawId, level: Level, target: Level) -> RawId:
        """The ID of the ancestor at level ``target`` (``target`` <= ``level``)."""
        for _ in range(target, level):
            record = self.resource(rid)
            assert record is not None and record.parent is not None
            rid = record.parent
        return rid

    def count(self, level: Level) -> int:
        return self.counter(Counter.count_of(level))

    def list_level(self, level: Level, since: int = 0, limit: int = 0) -> list[RawId]:
        """IDs of a level in insertion order; ``since`` skips, ``limit`` (0: none) truncates.

        The level's counter says where the page lies, so the skipped entries
        are stepped over without reading them (in C), from the nearer end of
        the level; the level bytes of the page's first and last keys confirm
        the count (else the level is scanned).
        """
        total = self.count(level)
        if since >= total:
            return []
        wanted = min(limit, total - since) if limit else total - since
        cursor = self.txn.cursor(db=self.dbs["levels"])
        marker = bytes([level])
        if since <= total - since - wanted:
            found = self._page_forward(cursor, marker, since, wanted)
        else:
            found = self._page_backward(cursor, marker, total - since - wanted, wanted)
        return found if found is not None else self._scan_level(cursor, marker, since, limit)

    @staticmethod
    def _page_forward(cursor: lmdb.Cursor, marker: bytes, skip: int, wanted: int) -> list[RawId] | None:
        if not cursor.set_range(marker) or cursor.key()[:1] != marker:
            return None
        if skip:
            deque(islice(cursor.iternext(keys=False, values=False), skip), maxlen=0)
            cursor.next()
        found = list(islice(cursor.iternext(keys=False), wanted))
        return found if len(found) == wanted and cursor.key()[:1] == marker else None

    @staticmethod
    def _page_backward(cursor: lmdb.Cursor, marker: bytes, skip: int, wanted: int) -> list[RawId] | None:
        """The page ending ``skip`` entries before the level's last one."""
        if not (cursor.prev() if cursor.set_range(bytes([marker[0] + 1])) else cursor.last()):
            return None
        if cursor.key()[:1] != marker:
            return None
        if skip:
            deque(islice(cursor.iterprev(keys=False, values=False), skip), maxlen=0)
            cursor.prev()
        found = list(islice(cursor.iterprev(keys=False), wanted))
        if len(found) != wanted or cursor.key()[:1] != marker:
            return None
        found.reverse()
        return found

    @staticmethod
    def _scan_level(cursor: lmdb.Cursor, marker: bytes, since: int, limit: int) -> list[RawId]:
        """The page read entry by entry, when the level's counter disagrees with its entries."""
        if not cursor.set_range(marker):
            return []
        found: list[RawId] = []
        for key, value in islice(cursor.iternext(), since, None):
            if key[:1] != marker:
                break
            found.append(value)
            if limit and len(found) >= limit:
                break
        return found

    def last_update(self, rid: RawId) -> str:
        value = self.txn.get(rid, db=self.dbs["updated"])
        return "" if value is None else value.decode()

    def is_stable(self, rid: RawId) -> bool:
        return self.txn.get(rid, db=self.dbs["unstable"]) is None

    def metadata(self, rid: RawId) -> dict[int, MetadataValue]:
        """Metadata type → value of a resource, in type order (LastUpdate is kept apart)."""
        cursor = self.txn.cursor(db=self.dbs["metadata"])
        found: dict[int, MetadataValue] = {}
        if not cursor.set_range(rid):
            return found
        for key, value in cursor:
            if key[:ID_SIZE] != rid:
                break
            found[metadata_kind(key)] = METADATA_DECODER.decode(value)
        return found

    def metadata_range(self, rid: RawId, first: int, last: int) -> dict[int, MetadataValue]:
        """Metadata type → value of a resource, for the types from ``first`` to ``last`` (one B-tree descent,
        where a :meth:`metadata_value` per type would make one each; usually none is found)."""
        cursor = self.txn.cursor(db=self.dbs["metadata"])
        found: dict[int, MetadataValue] = {}
        if not cursor.set_range(metadata_key(rid, first)):
            return found
        end = metadata_key(rid, last)
        key = cursor.key()
        while key <= end:
            found[metadata_kind(key)] = METADATA_DECODER.decode(cursor.value())
            if not cursor.next():
                break
            key = cursor.key()
        return found

    def metadata_value(self, rid: RawId, kind: int) -> MetadataValue | None:
        value = self.txn.get(metadata_key(rid, kind), db=self.dbs["metadata"])
        return None if value is None else METADATA_DECODER.decode(value)

    def stored_tags(self, rid: RawId) -> StoredTags | None:
        """The tag JSON of an instance, as computed at ingest."""
        value = self.txn.get(rid, db=self.dbs["tags"])
        return None if value is None else STORED_TAGS_DECODER.decode(value)

    def blob_references(self, digest: bytes) -> int:
        value = self.txn.get(digest, db=self.dbs["blobs"])
        return 0 if value is None else unpack_u64(value)

    def changes(self, since: int, limit: int) -> Iterator[tuple[int, Change]]:
        """Changes with a sequence number above ``since``, at most ``limit`` of them."""
        if limit <= 0:
            return
        cursor = self.txn.cursor(db=self.dbs["changes"])
        if not cursor.set_range(pack_u64(since + 1)):
            return
        for count, (key, value) in enumerate(cursor, start=1):
            yield unpack_u64(key), CHANGE_DECODER.decode(value)
            if count >= limit:
                return

    def last_change(self) -> tuple[int, Change] | None:
        cursor = self.txn.cursor(db=self.dbs["changes"])
        if not cursor.last():
            return None
        return unpack_u64(cursor.key()), CHANGE_DECODER.decode(cursor.value())

    def lookup(self, identifier: str) -> list[tuple[Level, RawId]]:
        """Resources whose identifier (PatientID or a UID) matches, case-insensitively."""
        cursor = self.txn.cursor(db=self.dbs["identifiers"])
        key = fold_identifier(identifier)
        if not cursor.set_key(key):
            return []
        found = []
        wanted = identifier.strip().casefold()
        for value in cursor.iternext_dup():
            level, rid = Level(value[0]), value[1:]
            record = self.resource(rid)
            if record is not None and self.identifier_of(record).strip().casefold() == wanted:
                found.append((level, rid))
        return found

    @staticmethod
    def identifier_of(record: Resource) -> str:
        return record.main_tags.get(Level(record.level).identifier_keyword, "")

    def series_status(self, series: Resource, series_id: RawId) -> SeriesStatus:
        """Orthanc's completeness of a series, from its instances' IndexInSeries."""
        expected = series.expected_instances
        if expected is None:
            return SeriesStatus.UNKNOWN
        seen: set[int] = set()
        for child in self.children(series_id):
            record = self.resource(child)
            if record is None or record.index_in_series is None:
                return SeriesStatus.UNKNOWN
            index = record.index_in_series
            if not 1 <= index <= expected or index in seen:
                return SeriesStatus.INCONSISTENT
            seen.add(index)
        return SeriesStatus.COMPLETE if len(seen) == expected else SeriesStatus.MISSING
