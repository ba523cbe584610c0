"""Reading an uploaded file: check it is a whole DICOM file, and summarize what the index needs.

Runs in the worker pool. pydicom reads leniently (a truncated file silently
loses its tail), while Orthanc refuses files that end early, so the
declared length of every top-level element is checked against the data.
"""

import io
import warnings

import msgspec
import pydicom.config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import dcmread

from fastpacs.dicom.ids import Level
from fastpacs.dicom.main_tags import MAIN_TAGS, MainTags
from fastpacs.dicom.values import DEFAULT_ENCODINGS, format_value, python_encodings
from fastpacs.errors import ErrorCode, OrthancError

pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

PARSER_ERRORS = (
    InvalidDicomError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    NotImplementedError,
    OSError,
    UnicodeError,
)
"""What pydicom raises on malformed input."""

UNDEFINED_LENGTH = 0xFFFFFFFF
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

_SPECIFIC_CHARACTER_SET = 0x00080005
_SOP_CLASS_UID = 0x00080016
_INSTANCE_NUMBER = 0x00200013
_IMAGE_INDEX = 0x00541330
_CARDIAC_NUMBER_OF_IMAGES = 0x00181090
_IDENTIFIER_TAGS = (0x00100020, 0x0020000D, 0x0020000E, 0x00080018)


class InstanceSummary(msgspec.Struct, array_like=True):
    """What the index stores about one instance, computed from its file."""

    identifiers: tuple[str, str, str, str]
    """PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, as hashed into the IDs."""
    main_tags: tuple[MainTags, MainTags, MainTags, MainTags]
    """Main DICOM tags of the patient, study, series and instance."""
    index_in_series: int | None
    expected_instances: int | None
    """CardiacNumberOfImages, which makes Orthanc track the completeness of the series."""
    transfer_syntax: str
    sop_class_uid: str


def bad_file(data: bytes) -> OrthancError:
    if not data:
        return OrthancError(ErrorCode.BAD_FILE_FORMAT, "Received an empty DICOM file")
    return OrthancError(
        ErrorCode.BAD_FILE_FORMAT, f"Cannot parse an invalid DICOM file (size: {len(data)} bytes)"
    )


def read_dataset(data: bytes) -> Dataset:
    """Parse a Part-10 file or a bare dataset; :class:`OrthancError` if it is not whole DICOM."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = dcmread(io.BytesIO(data), force=True)
        except PARSER_ERRORS as error:
            raise bad_file(data) from error
    if not _is_complete(dataset, len(data)):
        raise bad_file(data)
    return dataset


def _is_complete(dataset: Dataset, size: int) -> bool:
    """True when the dataset has content and no element claims bytes beyond the end of the data."""
    has_content = False
    for tag in dataset.keys():  # noqa: SIM118 - iterating a Dataset would convert every element
        element = dataset.get_item(tag)
        if tag >> 16 >= 0x0008:
            has_content = True
        if (
            isinstance(element, RawDataElement)
            and element.length != UNDEFINED_LENGTH
            and element.value_tell + element.length > size
        ):
            return False
    return has_content


def transfer_syntax_of(dataset: Dataset) -> str:
    """The transfer syntax UID, from the file meta or, for a bare dataset, from how it was read."""
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return str(meta.TransferSyntaxUID).rstrip("\x00 ")
    implicit_vr, little_endian = dataset.original_encoding
    if implicit_vr:
        return IMPLICIT_VR_LITTLE_ENDIAN
    return EXPLICIT_VR_LITTLE_ENDIAN if little_endian else EXPLICIT_VR_BIG_ENDIAN


class ElementReader:
    """Orthanc's text for top-level elements of one dataset, read from their raw bytes."""

    def __init__(self, dataset: Dataset, default_encoding: str):
        self.dataset = dataset
        self.little_endian = dataset.original_encoding[1] is not False
        charset = self.raw_text(_SPECIFIC_CHARACTER_SET, "CS")
        self.encodings = python_encodings(
            charset or None, DEFAULT_ENCODINGS.get(default_encoding, "ISO_IR 100")
        )

    def raw_text(self, tag: int, vr: str) -> str | None:
        """A value of an ASCII VR without any charset handling (used for SpecificCharacterSet)."""
        if tag not in self.dataset:
            return None
        raw = self.dataset.get_item(tag).value
        return raw.decode("latin-1").rstrip(" \x00") if isinstance(raw, bytes) else str(raw or "")

    def text(self, tag: int) -> str | None:
        """Orthanc's string for the element, or ``None`` when absent, binary or too long."""
        if tag not in self.dataset:
            return None
        element = self.dataset.get_item(tag)
        if isinstance(element, RawDataElement):
            vr = element.VR or dictionary_VR(tag)
            raw = element.value
        else:  # pydicom already converted it (the meta group, or SpecificCharacterSet)
            vr, raw = element.VR, element.value
            if not isinstance(raw, bytes):
                return str(raw) if raw is not None else ""
        value = format_value(raw, vr, self.encodings, self.little_endian)
        return value if isinstance(value, str) else None


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def summarize(data: bytes, default_encoding: str) -> InstanceSummary:
    """Check an uploaded file and compute its index summary (IDs, main tags, metadata)."""
    dataset = read_dataset(data)
    reader = ElementReader(dataset, default_encoding)
    try:
        return _summarize(dataset, reader)
    except PARSER_ERRORS as error:
        raise bad_file(data) from error


def _summarize(dataset: Dataset, reader: ElementReader) -> InstanceSummary:
    identifiers = []
    for level, tag in zip(Level, _IDENTIFIER_TAGS, strict=True):
        value = reader.text(tag)
        if value is None:
            if level == Level.PATIENT:
                value = ""
            else:
                raise OrthancError(ErrorCode.INEXISTENT_TAG)
        elif not value and level != Level.PATIENT:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Empty {level.identifier_keyword}")
        identifiers.append(value)

    main_tags = tuple(
        {keyword: value for tag, keyword in MAIN_TAGS[level] if (value := reader.text(tag)) is not None}
        for level in Level
    )
    index_in_series = _parse_int(reader.text(_INSTANCE_NUMBER))
    if index_in_series is None:
        index_in_series = _parse_int(reader.text(_IMAGE_INDEX))
    sop_class_uid = reader.text(_SOP_CLASS_UID)
    if sop_class_uid is None:
        meta = getattr(dataset, "file_meta", None)
        sop_class_uid = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    return InstanceSummary(
        identifiers=(identifiers[0], identifiers[1], identifiers[2], identifiers[3]),
        main_tags=main_tags,  # type: ignore[arg-type]
        index_in_series=index_in_series,
        expected_instances=_parse_int(reader.text(_CARDIAC_NUMBER_OF_IMAGES)),
        transfer_syntax=transfer_syntax_of(dataset),
        sop_class_uid=sop_class_uid,
    )
