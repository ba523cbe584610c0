"""Attachments of resources: the DICOM file of each instance, and user attachments.

Orthanc numbers its attachment ("content") types: 1 is the DICOM file of an
instance, 2 and 3 are internal caches Orthanc may keep (3, the file's bytes
before its pixel data, is stored with ``StorageCompression``, by fastpacs
too), and 1024 to 65535 are user types, named in the configuration (``UserContentType``) or by
their number. A user attachment is a content-addressed blob like any DICOM
file: its blob is referenced once per attachment, so that identical bytes
are stored once and removed with their last reference.

The ``attachments`` database keys an entry by resource ID + 2-byte type.
The DICOM file of an instance lives in its :class:`~fastpacs.index.schema.Resource`;
its entry here, when there is one, only caches the MD5 of the file, which
is computed the first time a client asks for it (blobs are immutable, so
it never goes stale). A compressed blob (``StorageCompression``) has two
MD5s, of its content and of its stored bytes, cached alike.
"""

import struct

import lmdb
import msgspec

from fastpacs.dicom.ids import RawId
from fastpacs.storage.blobs import StoredBlob

DICOM = 1
DICOM_UNTIL_PIXEL_DATA = 3
"""The bytes of an instance's file before its PixelData, which Orthanc stores (compressed) alongside
the file with ``StorageCompression``; fastpacs too, for the same attachments and sizes."""
FIRST_USER_TYPE = 1024
LAST_USER_TYPE = 65535
SYSTEM_TYPES: dict[str, int] = {
    "dicom": DICOM,
    "dicom-as-json": 2,
    "dicom-until-pixel-data": DICOM_UNTIL_PIXEL_DATA,
}

_TYPE = struct.Struct(">H")
ID_SIZE = 20


class Attachment(msgspec.Struct, array_like=True):
    """One attachment: where its bytes are, their MD5s (once known) and its revision."""

    blob: StoredBlob
    md5: bytes | None = None
    """MD5 of the content (16 bytes); ``None`` until first computed."""
    revision: int = 0
    """0 in the index, as in Orthanc's SQLite index, which keeps no revisions; 1 in the answer to a
    replacement, the revision Orthanc names there."""
    compressed_md5: bytes | None = None
    """MD5 of the stored bytes of a compressed blob, known with ``md5`` (``md5`` itself otherwise)."""

    @property
    def stored_md5(self) -> bytes | None:
        """Orthanc's ``CompressedMD5``: of the bytes on disk."""
        return self.compressed_md5 if self.blob.compressed else self.md5


ATTACHMENT_DECODER = msgspec.msgpack.Decoder(Attachment)


def attachment_key(rid: RawId, kind: int) -> bytes:
    return rid + _TYPE.pack(kind)


def attachment_kind(key: bytes) -> int:
    return _TYPE.unpack(key[-2:])[0]


def is_user_type(kind: int) -> bool:
    return FIRST_USER_TYPE <= kind <= LAST_USER_TYPE


def etag(attachment: Attachment) -> str:
    """Orthanc's ETag of an attachment: revision and MD5 (``0-ccf71ca6...``)."""
    assert attachment.md5 is not None
    return f"{attachment.revision}-{attachment.md5.hex()}"


def stored_attachments(txn: lmdb.Transaction, dbs: dict, rid: RawId) -> dict[int, Attachment]:
    """The entries of the ``attachments`` database for one resource, in type order."""
    cursor = txn.cursor(db=dbs["attachments"])
    found: dict[int, Attachment] = {}
    if not cursor.set_range(rid):
        return found
    for key, value in cursor:
        if key[:ID_SIZE] != rid:
            break
        found[attachment_kind(key)] = ATTACHMENT_DECODER.decode(value)
    return found
