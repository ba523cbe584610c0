"""The DICOMDIR of a DICOM media (``/media``, ``/tools/create-media``), as Orthanc 1.10.1 writes it.

A media holds files ``IMAGES/IM0``, ``IMAGES/IM1``... and a DICOMDIR whose
directory records form a tree: PATIENT, STUDY, SERIES, then one IMAGE record
per file (whatever its SOP class), with ReferencedFileID ``IMAGES\\IM0``.
Observed on Orthanc 1.10.1:

- Records are found by the DICOM identifier of their level (PatientID,
  StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID), bottom up: a file
  whose series already has a record joins it, whatever its patient; a file
  whose SOPInstanceUID already has a record gets none.
- Each record copies a few attributes of the first file that created it,
  with the rules of DCMTK's general-purpose profile: some always (empty
  when the file lacks them), some only when not empty; StudyDate and
  StudyTime are today and now (UTC) when the file lacks them.
  SpecificCharacterSet is copied on every record when the file has one;
  values keep only their printable ASCII characters.
- The "extended" media adds SeriesDescription (when the file has it).
- File-set ID ``ORTHANC_MEDIA``; records are written depth first, children
  in the order they were created.

pydicom's ``FileSet`` names files in its own hierarchy, chooses record types
by SOP class and refuses files without PatientID, so it cannot write this
directory; the records are simple enough to encode here (Explicit VR Little
Endian, defined lengths), which also gives the byte offsets the records
point to each other with.
"""

import itertools
import struct
import time
from collections.abc import Iterator
from enum import Enum

import msgspec

from fastpacs.dicom.writer import part10_file

MEDIA_FOLDER = "IMAGES"
FILE_SET_ID = "ORTHANC_MEDIA"
MEDIA_STORAGE_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

SPECIFIC_CHARACTER_SET = 0x00080005
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_DATE = 0x00080020
STUDY_TIME = 0x00080030
ACCESSION_NUMBER = 0x00080050
MODALITY = 0x00080060
STUDY_DESCRIPTION = 0x00081030
SERIES_DESCRIPTION = 0x0008103E
PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
STUDY_ID = 0x00200010
SERIES_NUMBER = 0x00200011
INSTANCE_NUMBER = 0x00200013

_FILE_SET_ID = 0x00041130
_FIRST_RECORD = 0x00041200
_LAST_RECORD = 0x00041202
_CONSISTENCY_FLAG = 0x00041212
_RECORD_SEQUENCE = 0x00041220
_NEXT_RECORD = 0x00041400
_IN_USE = 0x00041410
_LOWER_LEVEL = 0x00041420
_RECORD_TYPE = 0x00041430
_REFERENCED_FILE_ID = 0x00041500
_REFERENCED_SOP_CLASS = 0x00041510
_REFERENCED_SOP_INSTANCE = 0x00041511
_REFERENCED_TRANSFER_SYNTAX = 0x00041512
_IN_USE_FLAG = 0xFFFF


class Copy(Enum):
    """How a record takes an attribute from the file that created it."""

    ALWAYS = "always"
    """DICOMDIR type 1 or 2: present, empty when the file lacks it."""
    IF_NOT_EMPTY = "if not empty"
    """Type 1C: present only with a value."""
    IF_PRESENT = "if present"
    """Type 3: present when the file has it, even empty."""
    OR_NOW = "or now"
    """StudyDate and StudyTime: the current date or time when the file lacks them."""


RecordAttributes = tuple[tuple[int, str, Copy], ...]
"""(tag, VR, rule) of the attributes a record copies, in tag order."""

PATIENT_ATTRIBUTES: RecordAttributes = (
    (PATIENT_NAME, "PN", Copy.ALWAYS),
    (PATIENT_ID, "LO", Copy.IF_NOT_EMPTY),
)
STUDY_ATTRIBUTES: RecordAttributes = (
    (STUDY_DATE, "DA", Copy.OR_NOW),
    (STUDY_TIME, "TM", Copy.OR_NOW),
    (ACCESSION_NUMBER, "SH", Copy.ALWAYS),
    (STUDY_DESCRIPTION, "LO", Copy.ALWAYS),
    (STUDY_INSTANCE_UID, "UI", Copy.ALWAYS),
    (STUDY_ID, "SH", Copy.IF_NOT_EMPTY),
)
SERIES_ATTRIBUTES: RecordAttributes = (
    (MODALITY, "CS", Copy.ALWAYS),
    (SERIES_INSTANCE_UID, "UI", Copy.ALWAYS),
    (SERIES_NUMBER, "IS", Copy.IF_NOT_EMPTY),
)
EXTENDED_SERIES_ATTRIBUTES: RecordAttributes = (
    (MODALITY, "CS", Copy.ALWAYS),
    (SERIES_DESCRIPTION, "LO", Copy.IF_PRESENT),
    (SERIES_INSTANCE_UID, "UI", Copy.ALWAYS),
    (SERIES_NUMBER, "IS", Copy.IF_NOT_EMPTY),
)
IMAGE_ATTRIBUTES: RecordAttributes = ((INSTANCE_NUMBER, "IS", Copy.ALWAYS),)

_ALL_ATTRIBUTES = (*PATIENT_ATTRIBUTES, *STUDY_ATTRIBUTES, *EXTENDED_SERIES_ATTRIBUTES, *IMAGE_ATTRIBUTES)
RECORD_SOURCE_TAGS = frozenset(
    {SPECIFIC_CHARACTER_SET, SOP_CLASS_UID, SOP_INSTANCE_UID, *(tag for tag, _, _ in _ALL_ATTRIBUTES)}
)
"""The attributes of a file the records may need (give them all to :class:`MediaFile`)."""


class MediaFile(msgspec.Struct, frozen=True, array_like=True):
    """One file of the media, as its records need it."""

    name: str
    """Its name in the media folder (``IM0``)."""
    attributes: dict[int, str]
    """Its values of :data:`RECORD_SOURCE_TAGS` as text (an attribute it lacks is not there)."""
    transfer_syntax_uid: str
    """From its file meta information (its SOP class and instance come from the dataset, as Orthanc's)."""


def printable_ascii(value: str) -> str:
    """The value with only its printable ASCII characters (what Orthanc keeps in a DICOMDIR)."""
    return "".join(character for character in value if " " <= character <= "~")


class _Record:
    """A directory record: its encoded attributes (offsets excepted) and the records below it."""

    def __init__(self, record_type: str, elements: list[bytes]):
        self.body = _element(_RECORD_TYPE, "CS", record_type) + b"".join(elements)
        self.children: list[_Record] = []
        self.offset = 0
        """Where the record starts in the file, once placed."""
        self.next_offset = 0
        """Where its next sibling starts (0: it is the last one)."""


def _copied(attributes: dict[int, str], wanted: RecordAttributes, now: tuple[str, str]) -> list[bytes]:
    """The encoded attributes a record takes from a file (``now``: the current date and time)."""
    elements = []
    character_set = attributes.get(SPECIFIC_CHARACTER_SET)
    if character_set:
        elements.append(_element(SPECIFIC_CHARACTER_SET, "CS", printable_ascii(character_set)))
    for tag, vr, copy in wanted:
        value = attributes.get(tag)
        if value is None:
            if copy in (Copy.IF_NOT_EMPTY, Copy.IF_PRESENT):
                continue
            value = (now[0] if tag == STUDY_DATE else now[1]) if copy == Copy.OR_NOW else ""
        elif not value and copy == Copy.IF_NOT_EMPTY:
            continue
        elements.append(_element(tag, vr, printable_ascii(value)))
    return elements


def _image_record(file: MediaFile, now: tuple[str, str]) -> _Record:
    references = [
        _element(_REFERENCED_FILE_ID, "CS", f"{MEDIA_FOLDER}\\{file.name}"),
        _element(_REFERENCED_SOP_CLASS, "UI", file.attributes.get(SOP_CLASS_UID, "")),
        _element(_REFERENCED_SOP_INSTANCE, "UI", file.attributes.get(SOP_INSTANCE_UID, "")),
        _element(_REFERENCED_TRANSFER_SYNTAX, "UI", file.transfer_syntax_uid),
    ]
    return _Record("IMAGE", references + _copied(file.attributes, IMAGE_ATTRIBUTES, now))


def directory_tree(files: list[MediaFile], extended: bool, now: tuple[str, str]) -> list[_Record]:
    """The PATIENT records (with everything below them) of the files, as Orthanc builds them."""
    series_attributes = EXTENDED_SERIES_ATTRIBUTES if extended else SERIES_ATTRIBUTES
    patients: dict[str, _Record] = {}
    studies: dict[str, _Record] = {}
    series: dict[str, _Record] = {}
    images: set[str] = set()
    for file in files:
        values = file.attributes
        sop_instance = values.get(SOP_INSTANCE_UID, "")
        if sop_instance in images:
            continue
        images.add(sop_instance)
        record = _image_record(file, now)
        series_uid = values.get(SERIES_INSTANCE_UID, "")
        if series_uid in series:
            series[series_uid].children.append(record)
            continue
        record, child = _Record("SERIES", _copied(values, series_attributes, now)), record
        record.children.append(child)
        series[series_uid] = record
        study_uid = values.get(STUDY_INSTANCE_UID, "")
        if study_uid in studies:
            studies[study_uid].children.append(record)
            continue
        record, child = _Record("STUDY", _copied(values, STUDY_ATTRIBUTES, now)), record
        record.children.append(child)
        studies[study_uid] = record
        patient_id = values.get(PATIENT_ID, "")
        if patient_id not in patients:
            patients[patient_id] = _Record("PATIENT", _copied(values, PATIENT_ATTRIBUTES, now))
        patients[patient_id].children.append(record)
    return list(patients.values())


def current_date_and_time(moment: float) -> tuple[str, str]:
    """``YYYYMMDD`` and ``HHMMSS.000000`` in UTC, what Orthanc writes for a missing StudyDate/Time."""
    utc = time.gmtime(moment)
    return time.strftime("%Y%m%d", utc), time.strftime("%H%M%S", utc) + ".000000"


def dicomdir(files: list[MediaFile], extended: bool, media_uid: str, moment: float) -> bytes:
    """The DICOMDIR file of a media holding ``files`` (``media_uid``: its MediaStorageSOPInstanceUID).

    Runs in the worker pool: a media of many thousand files has as many records.
    """
    roots = directory_tree(files, extended, current_date_and_time(moment))
    records = list(_depth_first(roots))
    # Every record points to others by their position in the file: place them all first.
    position = len(part10_file(MEDIA_STORAGE_DIRECTORY_STORAGE, media_uid, EXPLICIT_VR_LITTLE_ENDIAN, []))
    position += len(_header(0, 0)) + _SEQUENCE_HEADER.size
    for record in records:
        record.offset = position
        position += _ITEM_HEADER.size + _OFFSETS_SIZE + len(record.body)
    for siblings in (roots, *(record.children for record in records)):
        for record, next_record in itertools.pairwise(siblings):
            record.next_offset = next_record.offset
    sequence = b"".join(_item(record) for record in records)
    dataset = [
        _header(roots[0].offset, roots[-1].offset) if roots else _header(0, 0),
        _SEQUENCE_HEADER.pack(_RECORD_SEQUENCE >> 16, _RECORD_SEQUENCE & 0xFFFF, b"SQ", len(sequence)),
        sequence,
    ]
    return part10_file(MEDIA_STORAGE_DIRECTORY_STORAGE, media_uid, EXPLICIT_VR_LITTLE_ENDIAN, dataset)


def _depth_first(records: list[_Record]) -> Iterator[_Record]:
    for record in records:
        yield record
        yield from _depth_first(record.children)


def _header(first: int, last: int) -> bytes:
    """The attributes of the DICOMDIR before its record sequence (offsets of the first and last root)."""
    return b"".join(
        (
            _element(_FILE_SET_ID, "CS", FILE_SET_ID),
            _element(_FIRST_RECORD, "UL", first),
            _element(_LAST_RECORD, "UL", last),
            _element(_CONSISTENCY_FLAG, "US", 0),
        )
    )


def _item(record: _Record) -> bytes:
    """The record as an item of the sequence, pointing to its next sibling and its first child."""
    lower = record.children[0].offset if record.children else 0
    body = b"".join(
        (
            _element(_NEXT_RECORD, "UL", record.next_offset),
            _element(_IN_USE, "US", _IN_USE_FLAG),
            _element(_LOWER_LEVEL, "UL", lower),
            record.body,
        )
    )
    return _ITEM_HEADER.pack(0xFFFE, 0xE000, len(body)) + body


_SHORT_HEADER = struct.Struct("<HH2sH")
_SEQUENCE_HEADER = struct.Struct("<HH2s2xL")
_ITEM_HEADER = struct.Struct("<HHL")
_OFFSETS_SIZE = 12 + 10 + 12
"""Bytes of the three fixed-size attributes at the start of every record (UL, US, UL)."""


def _element(tag: int, vr: str, value: str | int) -> bytes:
    """One attribute in Explicit VR Little Endian (short header: text, US and UL values only)."""
    if vr == "UL":
        data = struct.pack("<L", value)
    elif vr == "US":
        data = struct.pack("<H", value)
    else:
        data = str(value).encode("ascii")
        if len(data) % 2:
            data += b"\x00" if vr == "UI" else b" "
    return _SHORT_HEADER.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(data)) + data
