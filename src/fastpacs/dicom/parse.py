"""Reading an uploaded file: check it is whole DICOM, and summarize what the index needs.

Runs in the worker pool. The file is parsed once; its full tag JSON (see
:mod:`fastpacs.dicom.tags`) is built from the raw element bytes, and
everything else the index stores (identifiers, main tags, index in series)
is read from that JSON, so that every view of an instance agrees.

pydicom reads leniently (a truncated file silently loses its tail) while
Orthanc refuses files that end early, so the declared length of every
top-level element is checked against the data.
"""

import io
import struct
import warnings
import zlib

import msgspec
import pydicom.config
from isal import isal_zlib
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import dcmread
from pydicom.tag import BaseTag

from fastpacs.dicom.dictionary import installed_fingerprint
from fastpacs.dicom.ids import Level
from fastpacs.dicom.main_tags import MAIN_TAGS, MainTags
from fastpacs.dicom.tags import SPECIFIC_CHARACTER_SET, TagJson, TagWalker, shorten, simplify, tag_key
from fastpacs.dicom.values import DEFAULT_ENCODINGS, python_encodings
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
    BytesLengthException,
    struct.error,
    zlib.error,
    RecursionError,
)
"""What pydicom raises on malformed input (RecursionError: sequences nested hundreds deep)."""

UNDEFINED_LENGTH = 0xFFFFFFFF
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
_REFUSED_WARNINGS = (
    "Expected explicit VR, but found implicit VR",
    "Expected implicit VR, but found explicit VR",
    # A value of undefined length other than a sequence's (encapsulated pixels) cut before its
    # delimiter: pydicom then drops the whole dataset, and Orthanc refuses the file as a bad one.
    "End of file reached before delimiter",
)

_SOP_CLASS_UID = 0x00080016
_INSTANCE_NUMBER = 0x00200013
_IMAGE_INDEX = 0x00541330
_CARDIAC_NUMBER_OF_IMAGES = 0x00181090
_IMAGES_IN_ACQUISITION = 0x00201002
_NUMBER_OF_TEMPORAL_POSITIONS = 0x00200105
_PIXEL_DATA = 0x7FE00010
_ELEMENT_HEADER_SIZE = 8
"""The shortest element header (implicit VR, or explicit VR with a 2-byte length)."""
_DELIMITATION_ITEMS = {True: b"\xfe\xff\xdd\xe0" + bytes(4), False: b"\xff\xfe\xe0\xdd" + bytes(4)}
"""The Sequence Delimitation Item (FFFE,E0DD) of length 0 that ends a value of undefined length,
little and big endian."""
_IDENTIFIER_TAGS = (0x00100020, 0x0020000D, 0x0020000E, 0x00080018)
_PIXEL_DATA_TAG_LE = b"\xe0\x7f\x10\x00"
_LONG_LENGTH_PIXEL_VRS_BYTES = frozenset({b"OB", b"OW", b"UN"})
"""The VRs PixelData may have in explicit VR, all with a 4-byte length."""
_MAX_PIXEL_TAG_CANDIDATES = 8
"""Places where the PixelData tag's bytes appear that :func:`header_prefix` looks at (they may
appear in other values too), so that a file full of them costs no more than a few."""
_encoder = msgspec.json.Encoder(order="sorted")


class StoredTags(msgspec.Struct, array_like=True):
    """The tag JSON of an instance in Orthanc's forms, computed once at ingest.

    The three forms of the dataset are zlib-compressed JSON (they are read far
    more often than written, and a CT's full form is ~25 KB raw, ~4 KB
    compressed); the file meta group is kept in full form only.
    """

    full: bytes
    simplified: bytes
    short: bytes
    header: bytes
    default_encoding: str | None
    """The DefaultEncoding the strings were decoded with, when the file has no
    SpecificCharacterSet and contains non-ASCII text (``None`` otherwise): such
    tags are decoded again if DefaultEncoding changes."""
    dictionary: str | None = None
    """The user dictionary (``Dictionary``, ``LoadPrivateDictionary``) names and VRs were read with,
    by its :attr:`~fastpacs.dicom.dictionary.UserDictionary.fingerprint` (``None``: DCMTK's alone,
    as for every record written before user dictionaries); :data:`NO_USER_DICTIONARY` when no
    user dictionary could change them. Tags read with another dictionary are read again from the
    file, as Orthanc reads them at each request.
    """

    def is_current(self, default_encoding: str) -> bool:
        """Whether these tags are those the file gives with today's DefaultEncoding and dictionary."""
        return (self.default_encoding is None or self.default_encoding == default_encoding) and (
            self.dictionary == NO_USER_DICTIONARY or self.dictionary == installed_fingerprint()
        )


NO_USER_DICTIONARY = ""
""":attr:`StoredTags.dictionary` of tags no user dictionary could change (only public attributes
DCMTK's dictionary knows)."""


class InstanceSummary(msgspec.Struct, array_like=True):
    """What the index stores about one instance, computed from its file."""

    identifiers: tuple[str, str, str, str]
    """PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, as hashed into the IDs."""
    main_tags: tuple[MainTags, MainTags, MainTags, MainTags]
    """Main DICOM tags of the patient, study, series and instance."""
    index_in_series: int | None
    expected_instances: int | None
    """The instances the series should have, which makes Orthanc track its completeness
    (see :func:`expected_instances`)."""
    transfer_syntax: str
    sop_class_uid: str | None
    """The dataset's SOPClassUID (``None`` without one: Orthanc then records no SopClassUid, even
    where the file meta names a MediaStorageSOPClassUID)."""
    tags: StoredTags
    pixel_data_offset: int | None = None
    """Position of the PixelData element in the file (Orthanc's PixelDataOffset metadata)."""


def bad_file(data: bytes) -> OrthancError:
    return bad_file_of_size(len(data))


def bad_file_of_size(size: int) -> OrthancError:
    if not size:
        return OrthancError(ErrorCode.BAD_FILE_FORMAT, "Received an empty DICOM file")
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Cannot parse an invalid DICOM file (size: {size} bytes)")


def read_dataset(data: bytes) -> Dataset:
    """Parse a Part-10 file or a bare dataset; :class:`OrthancError` if it is not whole DICOM.

    Refused like Orthanc refuses them: files that end early, files whose
    elements are not encoded as their transfer syntax declares (pydicom would
    guess and go on), and bare datasets without an element of group 0008 or
    above. A file with a meta group is DICOM even with no such element (a
    DICOMDIR): uploading it fails later, on its missing identifiers.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = dcmread(io.BytesIO(data), force=True)
            deflated = transfer_syntax_of(dataset) == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
            # Positions in a deflated file are in the inflated stream; zlib reports truncation itself.
            complete = _is_complete(dataset, None if deflated else data)
        except PARSER_ERRORS as error:
            raise bad_file(data) from error
    if not complete or _refused(caught):
        raise bad_file(data)
    return dataset


def _refused(caught: list[warnings.WarningMessage]) -> bool:
    return any(str(warning.message).startswith(_REFUSED_WARNINGS) for warning in caught)


def header_prefix(data: bytes) -> bytes | None:
    """The bytes of a file up to the value of its PixelData, when that value seems to end the file.

    Most images end with their pixels, which the index never needs: the
    worker can summarize the file from this prefix alone (see
    :func:`read_header`), which is a few KB instead of the whole file. This
    only proposes where the header ends, from a little-endian PixelData tag
    whose declared length reaches the end of the data exactly; the worker
    checks it is the top-level element. ``None`` when no such place is found.
    """
    position = data.find(_PIXEL_DATA_TAG_LE)
    for _ in range(_MAX_PIXEL_TAG_CANDIDATES):
        if position < 0:
            return None
        explicit_end = position + 12
        if data[position + 4 : position + 6] in _LONG_LENGTH_PIXEL_VRS_BYTES and (
            explicit_end + int.from_bytes(data[position + 8 : explicit_end], "little") == len(data)
        ):
            return data[:explicit_end]
        implicit_end = position + 8
        if implicit_end + int.from_bytes(data[position + 4 : implicit_end], "little") == len(data):
            return data[:implicit_end]
        position = data.find(_PIXEL_DATA_TAG_LE, position + 1)
    return None


def read_header(prefix: bytes, size: int) -> Dataset | None:
    """The dataset :func:`read_dataset` gives for a file of ``size`` bytes, from its
    :func:`header_prefix`: the PixelData element is there, its value unread (``None``, as
    pydicom's deferred elements).

    ``None`` unless the prefix ends with the header of the top-level PixelData,
    whose value ends the file, and everything before it is whole, well-formed
    DICOM: anything else is left to :func:`read_dataset` of the whole file,
    which reads (or refuses) it as always.
    """
    file = io.BytesIO(prefix)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = dcmread(file, force=True, stop_before_pixels=True)
            start = file.tell()
            pixels = _final_pixel_data(file, dataset, size)
        except PARSER_ERRORS:
            return None
    if (
        pixels is None
        or file.tell() != len(prefix)
        or _refused(caught)
        or not _is_complete(dataset, memoryview(prefix)[:start])
    ):
        return None
    dataset[_PIXEL_DATA] = pixels
    return dataset


def _final_pixel_data(file: io.BytesIO, dataset: Dataset, size: int) -> RawDataElement | None:
    """The PixelData element at the position of ``file``, its value unread, if that value ends the file."""
    if transfer_syntax_of(dataset) == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return None  # positions are in the inflated stream
    implicit_vr, little_endian = dataset.original_encoding
    if implicit_vr is None or not little_endian:
        return None
    start = file.tell()
    header = file.read(8 if implicit_vr else 12)
    if len(header) < (8 if implicit_vr else 12) or header[:4] != _PIXEL_DATA_TAG_LE:
        return None
    if not implicit_vr and header[4:6] not in _LONG_LENGTH_PIXEL_VRS_BYTES:
        return None
    vr = None if implicit_vr else header[4:6].decode("ascii")
    length = int.from_bytes(header[-4:], "little")
    value_tell = start + len(header)
    if length == UNDEFINED_LENGTH or value_tell + length != size:
        return None
    return RawDataElement(BaseTag(_PIXEL_DATA), vr, length, None, value_tell, implicit_vr, True)


def _is_complete(dataset: Dataset, read: bytes | memoryview | None) -> bool:
    """True when the file has a meta group or content and nothing of it was cut off: no element
    (of the meta group too) claims bytes beyond the end of ``read`` (the bytes the dataset was
    read from; ``None`` where positions do not apply), no part of an element's header follows
    its last element, and a last value of undefined length (encapsulated pixels, a sequence)
    ends with its delimiter.

    pydicom stops quietly at a header cut short (fewer than 8 bytes left),
    reads what it can of a cut meta group, reads a sequence without its
    delimiter to the end, and takes a delimiter whose length is cut off as
    found; Orthanc refuses all of them as bad files.
    """
    meta = getattr(dataset, "file_meta", None)
    has_content = bool(meta)
    last: object = None
    for tag, element in [*(meta.items() if meta else ()), *dataset.items()]:  # as read, none converted
        if tag >> 16 >= 0x0008:
            has_content = True
        last = element
        if (
            read is not None
            and isinstance(element, RawDataElement)
            and element.length != UNDEFINED_LENGTH
            and element.value_tell + element.length > len(read)
        ):
            return False
    if read is None:
        return has_content
    if _of_undefined_length(last):
        little_endian = dataset.original_encoding[1] is not False
        return has_content and bytes(read[-8:]) == _DELIMITATION_ITEMS[little_endian]
    if (
        isinstance(last, RawDataElement)
        and 0 < len(read) - (last.value_tell + last.length) < _ELEMENT_HEADER_SIZE
    ):
        return False
    return has_content


def _of_undefined_length(element: object) -> bool:
    """Whether an element as read has a value of undefined length: raw bytes (encapsulated pixels)
    or a sequence, either read by pydicom up to its delimiter or, without one, to the end."""
    if isinstance(element, RawDataElement):
        return element.length == UNDEFINED_LENGTH
    return getattr(element, "VR", None) == "SQ" and bool(getattr(element, "is_undefined_length", False))


def transfer_syntax_of(dataset: Dataset) -> str:
    """The transfer syntax UID, from the file meta or, for a bare dataset, from how it was read."""
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return str(meta.TransferSyntaxUID).rstrip("\x00 ")
    implicit_vr, little_endian = dataset.original_encoding
    if implicit_vr:
        return IMPLICIT_VR_LITTLE_ENDIAN
    return EXPLICIT_VR_LITTLE_ENDIAN if little_endian else EXPLICIT_VR_BIG_ENDIAN


def tag_walker(dataset: Dataset, default_encoding: str) -> TagWalker:
    """A walker decoding strings with the dataset's SpecificCharacterSet, or Orthanc's DefaultEncoding."""
    default_character_set = DEFAULT_ENCODINGS.get(default_encoding, "ISO_IR 100")
    little_endian = dataset.original_encoding[1] is not False
    return TagWalker(python_encodings(None, default_character_set), little_endian, default_character_set)


def file_meta_tags(walker: TagWalker, meta: Dataset | None) -> TagJson:
    """The file meta group in full form; Orthanc leaves out its binary elements
    (FileMetaInformationVersion)."""
    if meta is None:
        return {}
    return {key: entry for key, entry in walker.full(meta).items() if entry["Type"] != "Null"}


def pixel_data_offset(dataset: Dataset) -> int | None:
    """Where the PixelData element starts in the file (not known for deflated files)."""
    if _PIXEL_DATA not in dataset or transfer_syntax_of(dataset) == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return None
    element = dataset.get_item(_PIXEL_DATA, keep_deferred=True)  # an unread value stays unread
    if not isinstance(element, RawDataElement):
        return None
    header_size = 8 if element.is_implicit_VR else 12  # tag, (VR, reserved,) length
    return element.value_tell - header_size


def string_value(full: TagJson, tag: int) -> str | None:
    """The text of a top-level element of a full form; ``None`` if absent, binary or too long."""
    entry = full.get(tag_key(tag))
    return entry["Value"] if entry is not None and entry["Type"] == "String" else None


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def expected_instances(full: TagJson) -> int | None:
    """Orthanc's ExpectedNumberOfInstances of a series, from its first instance.

    ImagesInAcquisition × NumberOfTemporalPositions when the instance has both,
    else CardiacNumberOfImages; nothing when that is not a positive integer
    (Orthanc does not fall back to CardiacNumberOfImages from a product that is
    not, and ignores NumberOfSlices).
    """
    images = string_value(full, _IMAGES_IN_ACQUISITION)
    positions = string_value(full, _NUMBER_OF_TEMPORAL_POSITIONS)
    if images is not None and positions is not None:
        images_count, positions_count = _parse_int(images), _parse_int(positions)
        if images_count is None or positions_count is None:
            return None
        expected = images_count * positions_count
    else:
        expected = _parse_int(string_value(full, _CARDIAC_NUMBER_OF_IMAGES))
    return expected if expected is not None and expected > 0 else None


def summarize(data: bytes, default_encoding: str) -> InstanceSummary:
    """Check an uploaded file and compute its index summary (IDs, main tags, tag JSON)."""
    return summarize_dataset(read_dataset(data), len(data), default_encoding)


def summarize_header(prefix: bytes, size: int, default_encoding: str) -> InstanceSummary | None:
    """:func:`summarize` of a file of ``size`` bytes from its :func:`header_prefix`; ``None`` when
    :func:`read_header` cannot tell, and the whole file must be summarized."""
    dataset = read_header(prefix, size)
    return None if dataset is None else summarize_dataset(dataset, size, default_encoding)


def summarize_dataset(dataset: Dataset, size: int, default_encoding: str) -> InstanceSummary:
    """The index summary of a dataset read from a file of ``size`` bytes."""
    try:
        walker = tag_walker(dataset, default_encoding)
        full = walker.full(dataset)
        meta = getattr(dataset, "file_meta", None)
        header = file_meta_tags(walker, meta)
    except PARSER_ERRORS as error:
        raise bad_file_of_size(size) from error

    identifiers = []
    for level, tag in zip(Level, _IDENTIFIER_TAGS, strict=True):
        value = string_value(full, tag)
        if value is None:
            if level != Level.PATIENT:
                raise OrthancError(ErrorCode.INEXISTENT_TAG)
            value = ""
        elif not value and level != Level.PATIENT:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Empty {level.identifier_keyword}")
        identifiers.append(value)

    main_tags = tuple(
        {
            keyword: value
            for tag, keyword in MAIN_TAGS[level]
            if (value := string_value(full, tag)) is not None
        }
        for level in Level
    )
    index_in_series = _parse_int(string_value(full, _INSTANCE_NUMBER))
    if index_in_series is None:
        index_in_series = _parse_int(string_value(full, _IMAGE_INDEX))
    return InstanceSummary(
        identifiers=(identifiers[0], identifiers[1], identifiers[2], identifiers[3]),
        main_tags=main_tags,  # type: ignore[arg-type]
        index_in_series=index_in_series,
        expected_instances=expected_instances(full),
        transfer_syntax=transfer_syntax_of(dataset),
        sop_class_uid=string_value(full, _SOP_CLASS_UID),
        tags=store_tags(walker, full, header, SPECIFIC_CHARACTER_SET in dataset, default_encoding),
        pixel_data_offset=pixel_data_offset(dataset),
    )


def compress_tags(tag_json: bytes) -> bytes:
    """The zlib stream a tag JSON form is kept as: ISA-L's level 1, about 2.5 times faster than
    zlib's level 1 on a CT's forms (in every ingest's worker time) and a little smaller, and zlib
    data all the same."""
    return isal_zlib.compress(tag_json, 1)


def store_tags(
    walker: TagWalker, full: TagJson, header: TagJson, has_character_set: bool, default_encoding: str
) -> StoredTags:
    """Encode and compress the tag JSON forms ``walker`` made of an instance (see :class:`StoredTags`)."""
    full_json = _encoder.encode(full)
    depends_on_default = not has_character_set and not full_json.isascii()
    return StoredTags(
        full=compress_tags(full_json),
        simplified=compress_tags(_encoder.encode(simplify(full))),
        short=compress_tags(_encoder.encode(shorten(full))),
        header=_encoder.encode(header),
        default_encoding=default_encoding if depends_on_default else None,
        dictionary=installed_fingerprint() if walker.named_by_user_dictionary else NO_USER_DICTIONARY,
    )
