"""Orthanc's resource identifiers.

Each resource is named by the SHA-1 of the identifiers on the path from the
patient down to it, joined by ``|``::

    patient  = sha1(PatientID)
    study    = sha1(PatientID|StudyInstanceUID)
    series   = sha1(PatientID|StudyInstanceUID|SeriesInstanceUID)
    instance = sha1(PatientID|StudyInstanceUID|SeriesInstanceUID|SOPInstanceUID)

written as 40 lowercase hex digits in five dash-separated groups of eight.
Inside the index an ID is kept as its 20 raw digest bytes.
"""

import hashlib
import re
from enum import IntEnum


class Level(IntEnum):
    """The four levels of the DICOM model of the real world, top down."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    INSTANCE = 3

    @property
    def type_name(self) -> str:
        """The level's name in JSON (``"Type": "Study"``)."""
        return _TYPE_NAMES[self]

    @property
    def plural(self) -> str:
        """The level's path segment in the REST API (``/studies``)."""
        return _PLURALS[self]

    @property
    def identifier_keyword(self) -> str:
        """The DICOM attribute that identifies a resource of this level."""
        return IDENTIFIER_KEYWORDS[self]

    @classmethod
    def from_name(cls, name: str) -> "Level":
        """Parse ``"Study"``, ``"study"`` or ``"studies"``; ``KeyError`` otherwise."""
        return _BY_NAME[name.lower()]


_TYPE_NAMES = ("Patient", "Study", "Series", "Instance")
_PLURALS = ("patients", "studies", "series", "instances")
IDENTIFIER_KEYWORDS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_BY_NAME = {name.lower(): Level(i) for i, name in enumerate(_TYPE_NAMES)} | {
    name: Level(i) for i, name in enumerate(_PLURALS)
}

RawId = bytes
"""An ID as the 20 bytes of its SHA-1 digest, as stored in the index."""


def hash_identifiers(identifiers: list[str]) -> RawId:
    """The raw ID of the resource identified by this path of identifiers (1 to 4 of them)."""
    return hashlib.sha1("|".join(identifiers).encode("utf-8")).digest()


def format_id(raw: RawId) -> str:
    """``b'\\xfa\\x55...'`` → ``"fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718"``."""
    return raw.hex("-", 4)  # groups of 4 bytes counted from the right: exact for 20 bytes


_PUBLIC_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")


def parse_id(public_id: str) -> RawId | None:
    """The raw ID of a public ID, or ``None`` if the text is not one (Orthanc's IDs are lower case)."""
    if not _PUBLIC_ID.fullmatch(public_id):
        return None
    return bytes.fromhex(public_id.replace("-", ""))


def resource_ids(identifiers: tuple[str, str, str, str]) -> tuple[RawId, RawId, RawId, RawId]:
    """The raw IDs of the patient, study, series and instance of one DICOM instance."""
    parts = list(identifiers)
    return (
        hash_identifiers(parts[:1]),
        hash_identifiers(parts[:2]),
        hash_identifiers(parts[:3]),
        hash_identifiers(parts[:4]),
    )
