"""Attachments (/{level}/{id}/attachments): the DICOM file of instances and user attachments.

User attachments are the content types declared in ``UserContentType``
(or named by their number, 1024-65535), on resources of any level. Their
bytes are content-addressed blobs, written durably before the index entry
that references them is committed, exactly as DICOM files are.

MD5 hashes are not computed at ingest (that would cost every upload a full
pass over the file): the MD5 of an attachment is computed in a thread the
first time a client needs it, then cached in the index (blobs never
change). fastpacs stores every attachment uncompressed, whatever
``StorageCompression`` says, so the compressed views (``compressed-size``,
``compressed-md5``, ``compressed-data``) show the attachment itself and
``is-compressed`` is ``0``, as Orthanc answers for an uncompressed
attachment; ``compress`` and ``uncompress`` succeed and leave it as it is.
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
)
from fastpacs.index.writer import IndexWriter
from fastpacs.storage.blobs import BlobStore

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
            stored[DICOM] = Attachment(blob=record.blob, md5=cached.md5 if cached else None)
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
        if attachment.md5 is None:
            data = await self.read(attachment)
            attachment.md5 = await asyncio.to_thread(_md5, data)
            await self.writer.run(
                lambda update: remember_md5(update, rid, kind, attachment.blob, attachment.md5)
            )
        return kind, attachment

    async def read(self, attachment: Attachment) -> bytes:
        """The attachment's content; ``FileNotFoundError`` if its file is missing from the storage."""
        return await asyncio.to_thread(self.storage.read, attachment.blob.digest)

    async def verify(self, level: Level, rid: RawId, name: str) -> None:
        """Read the attachment again and check it against its SHA-256 name and its MD5."""
        _, attachment = await self.get(level, rid, name)
        data = await self.read(attachment)
        sha256, md5 = await asyncio.to_thread(_hashes, data)
        if sha256 != attachment.blob.digest or md5 != attachment.md5 or len(data) != attachment.blob.size:
            raise OrthancError(ErrorCode.CORRUPTED_FILE)

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


def _hashes(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.sha256(data).digest(), _md5(data)


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
