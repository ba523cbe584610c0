"""Metadata of resources: Orthanc's numbered metadata types, with revisions.

Orthanc numbers its metadata: system entries below 1024 (``IndexInSeries``
is 1, ``ReceptionDate`` 2, ...), user entries from 1024 to 65535, named in
the configuration (``UserMetadata``) or by their number. The index keys an
entry by resource ID + 2-byte type, so a resource's metadata lists in
Orthanc's order; each value carries a revision number for ``If-Match``.
"""

import struct

import msgspec

from fastpacs.dicom.ids import RawId

SYSTEM_METADATA: dict[str, int] = {
    "IndexInSeries": 1,
    "ReceptionDate": 2,
    "RemoteAET": 3,
    "ExpectedNumberOfInstances": 4,
    "ModifiedFrom": 5,
    "AnonymizedFrom": 6,
    "LastUpdate": 7,
    "Origin": 8,
    "TransferSyntax": 9,
    "SopClassUid": 10,
    "RemoteIP": 11,
    "CalledAET": 12,
    "HttpUsername": 13,
    "PixelDataOffset": 14,
}
LAST_UPDATE = SYSTEM_METADATA["LastUpdate"]
FIRST_USER_METADATA = 1024
LAST_USER_METADATA = 65535

_TYPE = struct.Struct(">H")


class MetadataValue(msgspec.Struct, array_like=True):
    value: str
    revision: int = 1


METADATA_DECODER = msgspec.msgpack.Decoder(MetadataValue)


def metadata_key(rid: RawId, kind: int) -> bytes:
    return rid + _TYPE.pack(kind)


def metadata_kind(key: bytes) -> int:
    return _TYPE.unpack(key[-2:])[0]


def is_user_metadata(kind: int) -> bool:
    return FIRST_USER_METADATA <= kind <= LAST_USER_METADATA
