"""What the index stores, database by database, and how keys and records are encoded.

IDs are the 20 raw bytes of Orthanc's SHA-1 (see :mod:`fastpacs.dicom.ids`);
sequence numbers are 8-byte big-endian integers so that LMDB's byte order is
numeric order. Records are msgpack-encoded msgspec structs.

=====================  =====================================  ==========================================
database               key                                    value
=====================  =====================================  ==========================================
resources              id                                     :class:`Resource`
children               parent id                              seq + child id (dupsort: insertion order)
levels                 level byte + seq                       id (every resource of a level, in order)
identifiers            folded identifier (PatientID, UIDs)    level byte + id (dupsort, /tools/lookup)
updated                id                                     LastUpdate text (patients/studies/series)
unstable               id                                     :class:`Unstable` (not yet stable)
metadata               id + 2-byte metadata type              :class:`MetadataValue` (see index.metadata)
tags                   instance id                            :class:`StoredTags` (tag JSON, 3 forms)
changes                change seq                             :class:`Change`
changes_by_resource    id                                     change seq (dupsort)
blobs                  SHA-256                                reference count
counters               name                                   8-byte integer
jobs                   job ID (UUID text)                     JobRecord (fastpacs.jobs.persistence)
find_values            level + tag + value key                id (dupsort; /tools/find, see index.find)
find_ids               level byte + id                        empty (non-instance levels, in ID order)
modalities             symbolic name                          DicomModality (services.modalities)
exports                export seq                             ExportedResource (/exports, services.exports)
attachments            id + 2-byte content type               :class:`Attachment` (see index.attachments)
protected              patient id                             empty (patient protected from recycling)
peers                  symbolic name                          OrthancPeer (services.peers)
=====================  =====================================  ==========================================
"""

import struct

import msgspec

from fastpacs.storage.blobs import StoredBlob

DATABASES: dict[str, dict[str, bool]] = {
    "resources": {},
    "children": {"dupsort": True, "dupfixed": True},
    "levels": {},
    "identifiers": {"dupsort": True, "dupfixed": True},
    "updated": {},
    "unstable": {},
    "metadata": {},
    "tags": {},
    "changes": {},
    "changes_by_resource": {"dupsort": True, "dupfixed": True},
    "blobs": {},
    "counters": {},
    "jobs": {},
    "find_values": {"dupsort": True, "dupfixed": True},
    "find_ids": {},
    "modalities": {},
    "exports": {},
    "attachments": {},
    "protected": {},
    "peers": {},
}

SCHEMA_VERSION = 1
MAX_KEY_SIZE = 480
"""LMDB's key limit is 511 bytes; longer identifier keys are cut (and checked on read)."""

_U64 = struct.Struct(">Q")


def pack_u64(value: int) -> bytes:
    return _U64.pack(value)


def unpack_u64(data: bytes) -> int:
    return _U64.unpack(data)[0]


class Resource(msgspec.Struct, array_like=True, omit_defaults=True):
    """One patient, study, series or instance."""

    level: int
    seq: int
    """Insertion number, unique across levels: the order of every listing."""
    parent: bytes | None
    main_tags: dict[str, str]
    blob: StoredBlob | None = None
    """The DICOM file (instances only)."""
    index_in_series: int | None = None
    expected_instances: int | None = None
    """CardiacNumberOfImages of the first instance (series only)."""
    patient_tags: dict[str, str] | None = None
    """Patient main tags of the study's first instance (studies only): Orthanc's
    PatientMainDicomTags, which may differ from the patient's when studies share a PatientID."""


class Change(msgspec.Struct, array_like=True):
    """One entry of the change log."""

    change_type: str
    level: int
    resource: bytes
    date: str


class Unstable(msgspec.Struct, array_like=True):
    """A resource that received an instance less than StableAge seconds ago."""

    level: int
    last_update: float
    """Wall-clock time (seconds since the epoch) of the last new instance."""


RESOURCE_ENCODER = msgspec.msgpack.Encoder()
RESOURCE_DECODER = msgspec.msgpack.Decoder(Resource)
CHANGE_DECODER = msgspec.msgpack.Decoder(Change)
UNSTABLE_DECODER = msgspec.msgpack.Decoder(Unstable)
encode = RESOURCE_ENCODER.encode


def fold_identifier(value: str) -> bytes:
    """Key of /tools/lookup: trimmed and case-folded, as Orthanc matches identifiers.

    The ``=`` prefix keeps the key of an empty PatientID non-empty, as LMDB requires.
    """
    return b"=" + value.strip().casefold().encode("utf-8")[:MAX_KEY_SIZE]


class Counter:
    """Names of the counters database entries."""

    NEXT_SEQ = b"next_seq"
    LAST_CHANGE = b"last_change"
    LAST_EXPORT = b"last_export"
    DISK_SIZE = b"disk_size"
    UNCOMPRESSED_SIZE = b"uncompressed_size"
    SCHEMA_VERSION = b"schema_version"

    @staticmethod
    def count_of(level: int) -> bytes:
        return b"count_%d" % level
