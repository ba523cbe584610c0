"""Write operations on the index, each run inside the writer's transaction.

Every function here takes an :class:`IndexUpdate` (a view on the write
transaction) and leaves the index consistent: counters, links, the change
log and blob references move together. None of them touches the file
system except to check that a blob exists; unreferenced blobs are reported
through :attr:`IndexUpdate.released_blobs` and removed by the writer once
the transaction is committed.
"""

import functools
import math
import time
from collections.abc import Callable

import msgspec

from fastpacs.dicom.ids import Level, RawId, resource_ids
from fastpacs.dicom.parse import InstanceSummary
from fastpacs.index.attachments import (
    ATTACHMENT_DECODER,
    DICOM,
    DICOM_UNTIL_PIXEL_DATA,
    Attachment,
    attachment_key,
    etag,
    stored_attachments,
)
from fastpacs.index.find import index_resource, unindex_resource
from fastpacs.index.metadata import SYSTEM_METADATA, MetadataValue, metadata_key
from fastpacs.index.schema import (
    UNSTABLE_DECODER,
    Change,
    Counter,
    Resource,
    Unstable,
    encode,
    fold_identifier,
    pack_u64,
)
from fastpacs.index.view import IndexView, SeriesStatus
from fastpacs.storage.blobs import StoredBlob

NEW_CHANGES = ("NewPatient", "NewStudy", "NewSeries", "NewInstance")
STABLE_CHANGES = ("StablePatient", "StableStudy", "StableSeries")


def orthanc_timestamp(moment: float) -> str:
    """``YYYYMMDDTHHMMSS`` in local time, Orthanc's format for LastUpdate and change dates."""
    return _timestamp_of_second(math.floor(moment))


@functools.lru_cache(maxsize=4)
def _timestamp_of_second(second: int) -> str:
    """:func:`orthanc_timestamp`, formatted once per second: an ingest asks for it 5 to 8 times."""
    return time.strftime("%Y%m%dT%H%M%S", time.localtime(second))


class BlobMissingError(Exception):
    """A blob the operation should reference was removed meanwhile; store it again and retry."""


class IngestOutcome(msgspec.Struct, array_like=True):
    """What adding an instance did."""

    status: str
    """``Success`` or ``AlreadyStored``."""
    ids: tuple[RawId, RawId, RawId, RawId]


class IndexUpdate(IndexView):
    """A view on the write transaction, with the primitives the operations share."""

    def __init__(self, txn, dbs, blob_exists: Callable[[bytes], bool]):
        super().__init__(txn, dbs)
        self.blob_exists = blob_exists
        self.released_blobs: set[bytes] = set()
        self.new_blobs: set[bytes] = set()
        """Blobs that got their first reference unflushed: the storage flushes them before the commit."""

    def add_counter(self, name: bytes, delta: int) -> int:
        value = self.counter(name) + delta
        self.txn.put(name, pack_u64(value), db=self.dbs["counters"])
        return value

    def log_change(self, change_type: str, level: Level, rid: RawId, moment: float) -> None:
        seq = self.add_counter(Counter.LAST_CHANGE, 1)
        change = Change(
            change_type=change_type, level=int(level), resource=rid, date=orthanc_timestamp(moment)
        )
        self.txn.put(pack_u64(seq), encode(change), db=self.dbs["changes"], append=True)
        self.txn.put(rid, pack_u64(seq), db=self.dbs["changes_by_resource"])

    def reference_blob(self, blob: StoredBlob, *, flushed: bool = False) -> None:
        """Count one more reference to a blob; ``flushed``: its caller made it durable already."""
        references = self.blob_references(blob.digest)
        if references == 0:
            if not self.blob_exists(blob.digest):
                raise BlobMissingError(blob.digest.hex())
            self.add_counter(Counter.DISK_SIZE, blob.stored_size)
            if not flushed:
                self.new_blobs.add(blob.digest)
        self.txn.put(blob.digest, pack_u64(references + 1), db=self.dbs["blobs"])
        self.add_counter(Counter.UNCOMPRESSED_SIZE, blob.size)

    def release_blob(self, blob: StoredBlob) -> None:
        references = self.blob_references(blob.digest) - 1
        if references <= 0:
            self.txn.delete(blob.digest, db=self.dbs["blobs"])
            self.add_counter(Counter.DISK_SIZE, -blob.stored_size)
            self.released_blobs.add(blob.digest)
        else:
            self.txn.put(blob.digest, pack_u64(references), db=self.dbs["blobs"])
        self.add_counter(Counter.UNCOMPRESSED_SIZE, -blob.size)

    def touch(self, level: Level, rid: RawId, moment: float) -> None:
        """Record a new instance below a resource: LastUpdate, and unstable for StableAge."""
        self.txn.put(rid, orthanc_timestamp(moment).encode(), db=self.dbs["updated"])
        self.txn.put(rid, encode(Unstable(level=int(level), last_update=moment)), db=self.dbs["unstable"])

    def create(self, level: Level, rid: RawId, record: Resource) -> None:
        self.txn.put(rid, encode(record), db=self.dbs["resources"])
        seq = pack_u64(record.seq)
        self.txn.put(bytes([level]) + seq, rid, db=self.dbs["levels"])
        if record.parent is not None:
            self.txn.put(record.parent, seq + rid, db=self.dbs["children"])
        identifier = self.identifier_of(record)
        self.txn.put(fold_identifier(identifier), bytes([level]) + rid, db=self.dbs["identifiers"])
        index_resource(self.txn, self.dbs, level, rid, record)
        self.add_counter(Counter.count_of(level), 1)

    def destroy(self, rid: RawId, record: Resource) -> None:
        """Remove one resource's own entries (not its children's)."""
        level = Level(record.level)
        seq = pack_u64(record.seq)
        self.txn.delete(rid, db=self.dbs["resources"])
        self.txn.delete(bytes([level]) + seq, db=self.dbs["levels"])
        if record.parent is not None:
            self.txn.delete(record.parent, seq + rid, db=self.dbs["children"])
        identifier = self.identifier_of(record)
        self.txn.delete(fold_identifier(identifier), bytes([level]) + rid, db=self.dbs["identifiers"])
        unindex_resource(self.txn, self.dbs, level, rid, record)
        self.txn.delete(rid, db=self.dbs["updated"])
        self.txn.delete(rid, db=self.dbs["unstable"])
        self.txn.delete(rid, db=self.dbs["tags"])
        for key in self._metadata_keys(rid):
            self.txn.delete(key, db=self.dbs["metadata"])
        self._forget_changes(rid)
        if record.blob is not None:
            self.release_blob(record.blob)
        forget_attachments(self, rid)
        self.txn.delete(rid, db=self.dbs["protected"])
        self.add_counter(Counter.count_of(level), -1)

    def _metadata_keys(self, rid: RawId) -> list[bytes]:
        cursor = self.txn.cursor(db=self.dbs["metadata"])
        keys: list[bytes] = []
        if cursor.set_range(rid):
            for key in cursor.iternext(values=False):
                if key[: len(rid)] != rid:
                    break
                keys.append(key)
        return keys

    def _forget_changes(self, rid: RawId) -> None:
        cursor = self.txn.cursor(db=self.dbs["changes_by_resource"])
        if not cursor.set_key(rid):
            return
        sequences = list(cursor.iternext_dup())
        for seq in sequences:
            self.txn.delete(seq, db=self.dbs["changes"])
        self.txn.delete(rid, db=self.dbs["changes_by_resource"])

    def set_metadata(self, rid: RawId, values: dict[str, str]) -> None:
        """Set system metadata, by Orthanc name (``TransferSyntax``...)."""
        for name, value in values.items():
            self.put_metadata(rid, SYSTEM_METADATA[name], value)

    def put_metadata(self, rid: RawId, kind: int, value: str) -> int:
        """Set one metadata entry; return its new revision."""
        previous = self.metadata_value(rid, kind)
        revision = 1 if previous is None else previous.revision + 1
        entry = MetadataValue(value=value, revision=revision)
        self.txn.put(metadata_key(rid, kind), encode(entry), db=self.dbs["metadata"])
        return revision

    def delete_metadata(self, rid: RawId, kind: int) -> bool:
        return self.txn.delete(metadata_key(rid, kind), db=self.dbs["metadata"])


def index_in_series_text(summary: InstanceSummary) -> str | None:
    """Orthanc's ``IndexInSeries`` metadata: the text of InstanceNumber, else of ImageIndex, without
    its spaces, whatever it holds (``007``, ``1.5``, empty); the resource's IndexInSeries is the
    integer it may be."""
    tags = summary.main_tags[Level.INSTANCE]
    text = tags.get("InstanceNumber", tags.get("ImageIndex"))
    return None if text is None else text.strip()


def add_instance(
    update: IndexUpdate,
    summary: InstanceSummary,
    blob: StoredBlob,
    metadata: dict[str, str],
    moment: float,
    *,
    blob_flushed: bool = False,
    until_pixel_data: StoredBlob | None = None,
) -> IngestOutcome:
    """Index a new instance and whatever ancestors it creates; ``AlreadyStored`` if it exists.

    ``until_pixel_data``: the blob of its ``dicom-until-pixel-data`` attachment (``StorageCompression``),
    flushed with the file's.
    """
    ids = resource_ids(summary.identifiers)
    if update.resource(ids[Level.INSTANCE]) is not None:
        for written in (blob, until_pixel_data):
            if written is not None and update.blob_references(written.digest) == 0:
                update.released_blobs.add(written.digest)
        return IngestOutcome(status="AlreadyStored", ids=ids)

    update.reference_blob(blob, flushed=blob_flushed)
    if until_pixel_data is not None:
        update.reference_blob(until_pixel_data, flushed=blob_flushed)
        key = attachment_key(ids[Level.INSTANCE], DICOM_UNTIL_PIXEL_DATA)
        update.txn.put(key, encode(Attachment(blob=until_pixel_data)), db=update.dbs["attachments"])
    created: list[Level] = []
    for level in Level:
        rid = ids[level]
        parent = ids[level - 1] if level > Level.PATIENT else None
        if level < Level.INSTANCE and update.resource(rid) is not None:
            continue
        seq = update.add_counter(Counter.NEXT_SEQ, 1)
        is_instance = level == Level.INSTANCE
        record = Resource(
            level=int(level),
            seq=seq,
            parent=parent,
            main_tags=summary.main_tags[level],
            blob=blob if is_instance else None,
            index_in_series=summary.index_in_series if is_instance else None,
            expected_instances=summary.expected_instances if level == Level.SERIES else None,
            patient_tags=summary.main_tags[Level.PATIENT] if level == Level.STUDY else None,
        )
        update.create(level, rid, record)
        created.append(level)

    instance_metadata = dict(metadata)
    instance_metadata["TransferSyntax"] = summary.transfer_syntax
    if summary.sop_class_uid is not None:
        instance_metadata["SopClassUid"] = summary.sop_class_uid
    if (index_text := index_in_series_text(summary)) is not None:
        instance_metadata["IndexInSeries"] = index_text
    if summary.pixel_data_offset is not None:
        instance_metadata["PixelDataOffset"] = str(summary.pixel_data_offset)
    update.set_metadata(ids[Level.INSTANCE], instance_metadata)
    if Level.SERIES in created:  # Orthanc keeps the sender of the series' first instance
        update.set_metadata(ids[Level.SERIES], {"RemoteAET": metadata.get("RemoteAET", "")})
    update.txn.put(ids[Level.INSTANCE], encode(summary.tags), db=update.dbs["tags"])

    for level in (Level.SERIES, Level.STUDY, Level.PATIENT):
        update.touch(level, ids[level], moment)
    for level in reversed(created):
        update.log_change(NEW_CHANGES[level], level, ids[level], moment)

    series = update.resource(ids[Level.SERIES])
    if (
        series is not None
        and series.expected_instances is not None
        and _child_count(update, ids[Level.SERIES]) == series.expected_instances
        and update.series_status(series, ids[Level.SERIES]) == SeriesStatus.COMPLETE
    ):
        update.log_change("CompletedSeries", Level.SERIES, ids[Level.SERIES], moment)
    return IngestOutcome(status="Success", ids=ids)


def _child_count(update: IndexUpdate, rid: RawId) -> int:
    """How many children a resource has, without reading them.

    A series is complete only with exactly its expected number of instances:
    checked first, this spares each ingest into a series that announces its
    size the reading of every instance already there (quadratic in the
    series' length).
    """
    cursor = update.txn.cursor(db=update.dbs["children"])
    return cursor.count() if cursor.set_key(rid) else 0


class RevisionMismatchError(Exception):
    """The If-Match revision is not the current one."""


def delete_resource(update: IndexUpdate, level: Level, rid: RawId) -> tuple[Level, RawId] | None:
    """Delete a resource, its descendants and the ancestors left empty.

    Returns the nearest ancestor that remains (Orthanc's RemainingAncestor), if any.
    """
    record = update.resource_at(rid, level)
    if record is None:
        raise KeyError(rid)
    _delete_subtree(update, rid, record)
    parent = record.parent
    parent_level = level - 1
    while parent is not None:
        if update.has_children(parent):
            return Level(parent_level), parent
        parent_record = update.resource(parent)
        assert parent_record is not None
        update.destroy(parent, parent_record)
        parent = parent_record.parent
        parent_level -= 1
    return None


def _delete_subtree(update: IndexUpdate, rid: RawId, record: Resource) -> None:
    for child in update.children(rid):
        child_record = update.resource(child)
        if child_record is not None:
            _delete_subtree(update, child, child_record)
    update.destroy(rid, record)


def log_stable_resources(update: IndexUpdate, now: float, stable_age: float) -> int:
    """Log Stable* changes for resources untouched for ``stable_age`` seconds; return how many."""
    cursor = update.txn.cursor(db=update.dbs["unstable"])
    expired: list[tuple[float, RawId, int]] = []
    for rid, value in cursor:
        entry = UNSTABLE_DECODER.decode(value)
        if entry.last_update + stable_age <= now:
            expired.append((entry.last_update, rid, entry.level))
    expired.sort(key=lambda item: (item[0], -item[2]))
    for _, rid, level in expired:
        update.txn.delete(rid, db=update.dbs["unstable"])
        update.log_change(STABLE_CHANGES[level], Level(level), rid, now)
    return len(expired)


def clear_changes(update: IndexUpdate) -> None:
    """Empty the change log; numbering continues after the last sequence number."""
    update.txn.drop(update.dbs["changes"], delete=False)
    update.txn.drop(update.dbs["changes_by_resource"], delete=False)


class MissingAttachmentError(Exception):
    """The attachment to delete is not there."""


def put_attachment(
    update: IndexUpdate,
    level: Level,
    rid: RawId,
    kind: int,
    attachment: Attachment,
    *,
    if_match: str | None,
    check_revisions: bool,
) -> Attachment:
    """Add or replace a user attachment and log ``UpdatedAttachment``; return it as the answer names it.

    Replacing needs ``if_match`` (the current ETag) when given or when
    ``check_revisions`` is on. ``KeyError`` if the resource does not exist,
    :class:`BlobMissingError` if the attachment's blob was removed meanwhile.
    """
    if update.resource_at(rid, level) is None:
        raise KeyError(rid)
    key = attachment_key(rid, kind)
    value = update.txn.get(key, db=update.dbs["attachments"])
    current = None if value is None else ATTACHMENT_DECODER.decode(value)
    needs_match = if_match is not None or check_revisions
    if current is not None and needs_match and not _etag_matches(current, if_match):
        raise RevisionMismatchError(current.revision)
    update.reference_blob(attachment.blob)
    update.txn.put(key, encode(attachment), db=update.dbs["attachments"])
    update.log_change("UpdatedAttachment", level, rid, time.time())
    if current is None:
        return attachment
    update.release_blob(current.blob)
    # Orthanc's SQLite index stores every attachment at revision 0, and names revision 1 in the
    # answer to a replacement (a revision it computes and does not keep), as for metadata.
    return msgspec.structs.replace(attachment, revision=1)


def _etag_matches(attachment: Attachment, if_match: str | None) -> bool:
    return if_match is not None and attachment.md5 is not None and etag(attachment) == if_match


def delete_attachment(
    update: IndexUpdate, level: Level, rid: RawId, kind: int, *, if_match: str | None
) -> None:
    """Remove a user attachment and log ``UpdatedAttachment``.

    ``KeyError`` if the resource does not exist, :class:`MissingAttachmentError`
    if the attachment does not, :class:`RevisionMismatchError` if ``if_match``
    is given and is not its ETag.
    """
    if update.resource_at(rid, level) is None:
        raise KeyError(rid)
    key = attachment_key(rid, kind)
    value = update.txn.get(key, db=update.dbs["attachments"])
    if value is None:
        raise MissingAttachmentError(kind)
    current = ATTACHMENT_DECODER.decode(value)
    if if_match is not None and not _etag_matches(current, if_match):
        raise RevisionMismatchError(current.revision)
    update.txn.delete(key, db=update.dbs["attachments"])
    update.release_blob(current.blob)
    update.log_change("UpdatedAttachment", level, rid, time.time())


def remember_md5(update: IndexUpdate, rid: RawId, kind: int, known: Attachment) -> None:
    """Cache the MD5s computed for an attachment (of its content, and of its stored bytes when
    compressed), if the attachment still holds the blob they were computed from."""
    key = attachment_key(rid, kind)
    if kind == DICOM:
        record = update.resource(rid)
        if record is not None and record.blob is not None and record.blob.digest == known.blob.digest:
            cached = Attachment(blob=record.blob, md5=known.md5, compressed_md5=known.compressed_md5)
            update.txn.put(key, encode(cached), db=update.dbs["attachments"])
        return
    value = update.txn.get(key, db=update.dbs["attachments"])
    if value is not None:
        current = ATTACHMENT_DECODER.decode(value)
        if current.blob.digest == known.blob.digest:
            current.md5, current.compressed_md5 = known.md5, known.compressed_md5
            update.txn.put(key, encode(current), db=update.dbs["attachments"])


def replace_attachment_blob(
    update: IndexUpdate, rid: RawId, kind: int, current: bytes, stored: Attachment
) -> bool:
    """Store an attachment's content in another form (``/compress``, ``/uncompress``): its blob
    becomes ``stored.blob``, the blob of digest ``current`` is released, nothing is logged and the
    revision stays, as in Orthanc. False if the attachment no longer holds ``current`` (replaced or
    deleted meanwhile): nothing changes, and the new blob is released unless something references
    the same bytes. :class:`BlobMissingError` if the new blob is gone.
    """
    key = attachment_key(rid, kind)
    record = update.resource(rid) if kind == DICOM else None
    if kind == DICOM:
        previous = None if record is None or record.blob is None else Attachment(blob=record.blob)
    else:
        value = update.txn.get(key, db=update.dbs["attachments"])
        previous = None if value is None else ATTACHMENT_DECODER.decode(value)
    if previous is None or previous.blob.digest != current:
        if update.blob_references(stored.blob.digest) == 0:
            update.released_blobs.add(stored.blob.digest)
        return False
    update.reference_blob(stored.blob)
    if record is not None:  # the DICOM file, which lives in the instance's record
        update.txn.put(
            rid, encode(msgspec.structs.replace(record, blob=stored.blob)), db=update.dbs["resources"]
        )
    update.txn.put(
        key, encode(msgspec.structs.replace(stored, revision=previous.revision)), db=update.dbs["attachments"]
    )
    update.release_blob(previous.blob)
    return True


def forget_attachments(update: IndexUpdate, rid: RawId) -> None:
    """Remove the attachment entries of a resource being destroyed, releasing their blobs (user
    attachments, dicom-until-pixel-data; the DICOM file's goes with the instance's record)."""
    for kind, attachment in stored_attachments(update.txn, update.dbs, rid).items():
        update.txn.delete(attachment_key(rid, kind), db=update.dbs["attachments"])
        if kind != DICOM:
            update.release_blob(attachment.blob)


def set_protected(update: IndexUpdate, rid: RawId, protected: bool) -> None:
    """Protect a patient from recycling (or lift the protection); ``KeyError`` if no such patient."""
    if update.resource_at(rid, Level.PATIENT) is None:
        raise KeyError(rid)
    if protected:
        update.txn.put(rid, b"", db=update.dbs["protected"])
    else:
        update.txn.delete(rid, db=update.dbs["protected"])


def refresh_instance(update: IndexUpdate, rid: RawId, summary: InstanceSummary) -> bool:
    """Rewrite what the index derives from an instance's file (``/reconstruct``), from a new parse.

    The main tags of the instance and of its ancestors (as at ingest, the
    instance's values), its tag JSON and its file metadata (TransferSyntax,
    SopClassUid, IndexInSeries, PixelDataOffset) are replaced; the find
    indexes follow. Nothing is logged, as in Orthanc. False, and nothing
    changed, when the file no longer identifies this instance (a parser that
    now reads its UIDs differently cannot move it).
    """
    ids = resource_ids(summary.identifiers)
    if ids[Level.INSTANCE] != rid or update.resource(rid) is None:
        return False
    for level in Level:
        record = update.resource(ids[level])
        if record is None:
            return False
        changes: dict[str, object] = {"main_tags": summary.main_tags[level]}
        if level == Level.INSTANCE:
            changes["index_in_series"] = summary.index_in_series
        elif level == Level.SERIES:
            changes["expected_instances"] = summary.expected_instances
        elif level == Level.STUDY:
            changes["patient_tags"] = summary.main_tags[Level.PATIENT]
        refreshed = msgspec.structs.replace(record, **changes)
        unindex_resource(update.txn, update.dbs, level, ids[level], record)
        update.txn.put(ids[level], encode(refreshed), db=update.dbs["resources"])
        index_resource(update.txn, update.dbs, level, ids[level], refreshed)
    file_metadata = {"TransferSyntax": summary.transfer_syntax}
    if summary.sop_class_uid is not None:
        file_metadata["SopClassUid"] = summary.sop_class_uid
    else:
        update.delete_metadata(rid, SYSTEM_METADATA["SopClassUid"])
    if (index_text := index_in_series_text(summary)) is not None:
        file_metadata["IndexInSeries"] = index_text
    if summary.pixel_data_offset is not None:
        file_metadata["PixelDataOffset"] = str(summary.pixel_data_offset)
    for name, value in file_metadata.items():
        current = update.metadata_value(rid, SYSTEM_METADATA[name])
        if current is None or current.value != value:
            update.put_metadata(rid, SYSTEM_METADATA[name], value)
    update.txn.put(rid, encode(summary.tags), db=update.dbs["tags"])
    return True


ANONYMIZATION_SEQUENCE = b"anonymization_sequence"
"""Orthanc's global AnonymizationSequence: the N of the generated PatientName ``AnonymizedN``."""


def next_anonymization_number(update: IndexUpdate) -> int:
    """The next number of a generated PatientName (1, 2, ... across the server's life)."""
    return update.add_counter(ANONYMIZATION_SEQUENCE, 1)
