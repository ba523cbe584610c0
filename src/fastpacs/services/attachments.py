"""Attachments (/{level}/{id}/attachments): the DICOM file of instances and user attachments.

User attachments are the content types declared in ``UserContentType``
(or named by their number, 1024-65535), on resources of any level. Their
bytes are content-addressed blobs, written durably before the index entry
that references them is committed, exactly as DICOM files are.

MD5 hashes are not computed at ingest (that would cost every upload a full
pass over the file): the MD5 of an attachment is computed in a thread the
first time a client needs it, then cached in the index (blobs never
change); for a compressed attachment, with the MD5 of its stored bytes.

With ``StorageCompression`` every new attachment is stored zlib-compressed
in Orthanc's form (see :mod:`fastpacs.storage.blobs`): the compressed views
(``compressed-size``, ``compressed-md5``, ``compressed-data``) show the
stored bytes and ``is-compressed`` is ``1``. ``compress`` and ``uncompress``
store an attachment in the other form, whatever the option says: a new blob
replaces the old one in the index in one transaction (the old blob is
removed once nothing references it), its revision and ETag stay (they name
the content), and its ``Uuid`` changes, as in Orthanc; one already in the
asked form is left as it is.
"""

import asyncio
import hashlib
from typing import Any

import msgspec

from fastpacs.dicom.ids import Level, RawId
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.index.attachments import DICOM, SYSTEM_TYPES, Attachment, is_user_type, stored_attachments
from fastpacs.index.database import Database
from fastpacs.index.updates import (
    BlobMissingError,
    MissingAttachmentError,
    RevisionMismatchError,
    delete_attachment,
    put_attachment,
    remember_md5,
    replace_attachment_blob,
)
from fastpacs.index.writer import IndexWriter
from fastpacs.storage.blobs import BlobStore, StoredBlob, decompress

DEFAULT_MIME_TYPE = "application/octet-stream"
DICOM_MIME_TYPE = "application/dicom"
MAX_BLOB_RETRIES = 3
_SYSTEM_NAMES = {kind: name for name, kind in SYSTEM_TYPES.items()}


class UserContentType(msgspec.Struct, frozen=True):
    kind: int
    mime_type: str = DEFAULT_MIME_TYPE


def user_content_types(declared: dict[str, int | list[Any]]) -> dict[str, UserContentType]:
    """``UserContentType`` entries: ``"name": number`` or ``"name": [number, "mime/type"]``."""
    types = {}
    for name, value in declared.items():
        if isinstance(value, list):
            if not value or not isinstance(value[0], int):
                raise ValueError(f"UserContentType {name!r}: expected [number, mime type], not {value!r}")
            mime = value[1] if len(value) > 1 and isinstance(value[1], str) else DEFAULT_MIME_TYPE
            types[name] = UserContentType(value[0], mime)
        else:
            types[name] = UserContentType(value)
    return {name: entry for name, entry in types.items() if is_user_type(entry.kind)}


class AttachmentService:
    def __init__(
        self,
        database: Database,
        writer: IndexWriter,
        storage: BlobStore,
        declared: dict[str, int | list[Any]],
        check_revisions: bool,
    ):
        self.database = database
        self.writer = writer
        self.storage = storage
        self.user_types = user_content_types(declared)
        self.user_names = {entry.kind: name for name, entry in self.user_types.items()}
        self.mime_types = {entry.kind: entry.mime_type for entry in self.user_types.values()}
        self.check_revisions = check_revisions

    def kind_of(self, name: str) -> int:
        """The content type a name designates; Orthanc's "inexistent item" for an unknown name."""
        if name in SYSTEM_TYPES:
            return SYSTEM_TYPES[name]
        if name in self.user_types:
            return self.user_types[name].kind
        if name.isdigit() and len(name) <= 5:
            return int(name)
        raise OrthancError(ErrorCode.INEXISTENT_ITEM)

    def name_of(self, kind: int) -> str:
        return _SYSTEM_NAMES.get(kind) or self.user_names.get(kind) or str(kind)

    def mime_type_of(self, kind: int) -> str:
        return DICOM_MIME_TYPE if kind == DICOM else self.mime_types.get(kind, DEFAULT_MIME_TYPE)

    def _attachments(self, level: Level, rid: RawId) -> dict[int, Attachment] | None:
        """The attachments of a resource in type order; ``None`` if there is no such resource."""
        with self.database.read() as view:
            record = view.resource_at(rid, level)
            if record is None:
                return None
            stored = stored_attachments(view.txn, view.dbs, rid)
        if record.blob is not None:
            cached = stored.get(DICOM)
            same = cached is not None and cached.blob.digest == record.blob.digest
            stored[DICOM] = Attachment(
                blob=record.blob,
                md5=cached.md5 if cached else None,  # the content's MD5 outlives a compress
                compressed_md5=cached.compressed_md5 if same else None,
            )
        return dict(sorted(stored.items()))

    def names(self, level: Level, rid: RawId) -> dict[str, int]:
        """Name → content type of every attachment; :class:`OrthancError` 404 if no such resource."""
        attachments = self._attachments(level, rid)
        if attachments is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return {self.name_of(kind): kind for kind in attachments}

    async def get(self, level: Level, rid: RawId, name: str) -> tuple[int, Attachment]:
        """One attachment, its MD5 known; Orthanc's 404 when the resource or the attachment is missing."""
        kind = self.kind_of(name)
        attachments = self._attachments(level, rid)
        attachment = None if attachments is None else attachments.get(kind)
        if attachment is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        if attachment.md5 is None or attachment.stored_md5 is None:
            hashes = await asyncio.to_thread(self._hashes, attachment.blob)
            attachment.md5, attachment.compressed_md5 = hashes.md5, hashes.compressed_md5
            await self.writer.run(lambda update: remember_md5(update, rid, kind, attachment))
        return kind, attachment

    async def read(self, attachment: Attachment) -> bytes:
        """The attachment's content; ``FileNotFoundError`` if its file is missing from the storage."""
        return await asyncio.to_thread(self.storage.read, attachment.blob)

    async def read_stored(self, attachment: Attachment) -> bytes:
        """The attachment's bytes as stored (compressed or not)."""
        return await asyncio.to_thread(self.storage.read_stored, attachment.blob.digest)

    async def verify(self, level: Level, rid: RawId, name: str) -> None:
        """Read the attachment again and check it against its SHA-256 name, its size and its MD5s."""
        _, attachment = await self.get(level, rid, name)
        hashes = await asyncio.to_thread(self._hashes, attachment.blob)
        if (
            hashes.sha256 != attachment.blob.digest
            or hashes.size != attachment.blob.size
            or (hashes.md5, hashes.compressed_md5) != (attachment.md5, attachment.compressed_md5)
        ):
            raise OrthancError(ErrorCode.CORRUPTED_FILE)

    def _hashes(self, blob: StoredBlob) -> "_Hashes":
        """The hashes of a blob, read from the storage (on a thread: zlib and hashlib release the GIL)."""
        stored = self.storage.read_stored(blob.digest)
        data = decompress(stored) if blob.compressed else stored
        return _Hashes(
            sha256=hashlib.sha256(stored).digest(),
            size=len(data),
            md5=_md5(data),
            compressed_md5=_md5(stored) if blob.compressed else None,
        )

    async def set_compression(self, level: Level, rid: RawId, name: str, compression: bool) -> None:
        """``compress`` (``uncompress``): store the attachment compressed (uncompressed) from now on."""
        for _ in range(MAX_BLOB_RETRIES):
            kind, attachment = await self.get(level, rid, name)
            if attachment.blob.compressed == compression:
                return
            blob = await asyncio.to_thread(self._stored_again, attachment.blob, compression)
            stored = Attachment(blob=blob, md5=attachment.md5)
            try:
                replaced = await self.writer.run(
                    lambda update, stored=stored, current=attachment.blob.digest, kind=kind: (
                        replace_attachment_blob(update, rid, kind, current, stored)
                    )
                )
            except BlobMissingError:
                continue  # removed by a concurrent delete between its write and this commit
            if replaced:
                return
        raise OrthancError(ErrorCode.CANNOT_WRITE_FILE, "The attachment changed while being converted")

    def _stored_again(self, blob: StoredBlob, compression: bool) -> StoredBlob:
        return self.storage.put(self.storage.read(blob), compression)

    def _writable_kind(self, name: str) -> int:
        kind = self.kind_of(name)
        if not is_user_type(kind):
            raise BareHttpError(403)
        return kind

    async def put(self, level: Level, rid: RawId, name: str, data: bytes, if_match: str | None) -> Attachment:
        """Store a user attachment (replacing any previous one); return it with its new revision."""
        kind = self._writable_kind(name)
        expected = _etag_of(if_match)
        md5 = await asyncio.to_thread(_md5, data)
        for _ in range(MAX_BLOB_RETRIES):
            blob = await asyncio.to_thread(self.storage.put, data)
            attachment = Attachment(blob=blob, md5=md5)
            try:
                return await self.writer.run(
                    lambda update, attachment=attachment: put_attachment(
                        update,
                        level,
                        rid,
                        kind,
                        attachment,
                        if_match=expected,
                        check_revisions=self.check_revisions,
                    )
                )
            except KeyError:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE) from None
            except RevisionMismatchError:
                raise OrthancError(ErrorCode.REVISION) from None
            except BlobMissingError:
                continue  # removed by a concurrent delete between its write and this commit
        raise OrthancError(ErrorCode.CANNOT_WRITE_FILE, "The attachment was removed while being stored")

    async def delete(self, level: Level, rid: RawId, name: str, if_match: str | None) -> None:
        kind = self._writable_kind(name)
        expected = _etag_of(if_match)
        if self.check_revisions and expected is None:
            raise OrthancError(
                ErrorCode.REVISION, 'HTTP header "If-Match" is missing, as "CheckRevisions" is "true"'
            )
        try:
            await self.writer.run(
                lambda update: delete_attachment(update, level, rid, kind, if_match=expected)
            )
        except (KeyError, MissingAttachmentError):
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE) from None
        except RevisionMismatchError:
            raise OrthancError(ErrorCode.REVISION) from None


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class _Hashes(msgspec.Struct, frozen=True):
    sha256: bytes
    """Of the stored bytes."""
    size: int
    """Of the content."""
    md5: bytes
    """Of the content."""
    compressed_md5: bytes | None
    """Of the stored bytes, when compressed."""


def _etag_of(if_match: str | None) -> str | None:
    """The ETag of an ``If-Match`` header (``"3-ccf71ca6..."``, quotes optional)."""
    if if_match is None:
        return None
    text = if_match.strip().strip('"')
    revision, dash, md5 = text.partition("-")
    if not (revision.isdigit() and dash and md5):
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE,
            f'The "if-match" HTTP header should contain the ETag (revision followed by MD5 hash), '
            f"but found: {text}",
        )
    return text
