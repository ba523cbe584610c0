"""Building new DICOM files from JSON, for ``POST /tools/create-dicom``, as Orthanc 1.10.1 does.

The body is read in two steps around the lookup of ``Parent`` (Orthanc
checks ``Tags`` and its ``SpecificCharacterSet`` first, the other options
after the parent), see :func:`read_request` and :func:`read_options`.

A new instance starts with a random PatientID and new study, series and
SOP instance UIDs, the character set, the tags of the parent's modules
(:class:`Inheritance`) and today's UTC dates. The request's tags are then
written in the order of their names; a tag the instance already has
cannot be given unless ``Force`` is true (except PatientID and the dates).
Values are strings (``null`` is empty), arrays of objects for sequences, and
``data:application/octet-stream;base64,`` URIs for binary values; text is
written as DCMTK writes it (IS and DS unchecked, binary numbers range-checked,
what the character set cannot hold dropped).

``Content`` is a data URI: a PDF becomes an Encapsulated PDF instance, a
PNG or JPEG image the pixel data (8 or 16-bit grayscale, RGB; the alpha of
RGBA dropped). An array of them makes a series, one instance per element.

The legacy form (no ``Tags`` member, Orthanc 0.9.3 and before) takes the
body's members as string tags, ``PixelData`` being the image; its text is in
the default character set, which the file does not name, and it has no dates.

Everything after the parent lookup runs in the worker pool
(:func:`create_dicom`).
"""

import base64
import binascii
import copy
import io
import math
import re
import time
import uuid
from typing import Any

import msgspec
import numpy
from PIL import Image, UnidentifiedImageError
from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fastpacs.dicom.dictionary import (
    default_private_creator,
    is_private,
    is_private_creator,
    parse_tag,
    private_entry,
    public_entry,
)
from fastpacs.dicom.ids import Level
from fastpacs.dicom.modules import MODULES
from fastpacs.dicom.tags import tag_key
from fastpacs.dicom.values import DEFAULT_ENCODINGS, TEXT_VRS
from fastpacs.dicom.writer import file_meta
from fastpacs.errors import ErrorCode, OrthancError

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
UNKNOWN_SOP_CLASS = "1.2.276.0.7230010.3.1.0.1"
"""DCMTK's MediaStorageSOPClassUID for a dataset that names no class."""
OCTET_STREAM_URI = "data:application/octet-stream;base64,"

SPECIFIC_CHARACTER_SET = 0x00080005
PATIENT_ID = 0x00100020
PIXEL_DATA = 0x7FE00010
_STUDY_DATE, _STUDY_TIME = 0x00080020, 0x00080030
_SERIES_DATE, _SERIES_TIME = 0x00080021, 0x00080031
_ALWAYS_DATED = ((0x00080022, 0x00080032), (0x00080023, 0x00080033), (0x00080012, 0x00080013))
"""AcquisitionDate/Time, ContentDate/Time, InstanceCreationDate/Time: set on every new instance."""
OVERRIDABLE = frozenset(
    {
        PATIENT_ID,
        _STUDY_DATE,
        _STUDY_TIME,
        _SERIES_DATE,
        _SERIES_TIME,
        *(tag for pair in _ALWAYS_DATED for tag in pair),
    }
)
"""The tags a request may give although the new instance already has them."""

_IMAGES_IN_ACQUISITION = 0x00201002
_NUMBER_OF_TEMPORAL_POSITIONS = 0x00200105
_INSTANCE_NUMBER = 0x00200013
_IMAGE_INDEX = 0x00541330

_BYTES_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
"""VRs given as bytes: an octet-stream data URI's payload, or else the text's own bytes."""
_INTEGER_RANGES = {
    "US": (-(2**15), 2**16 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "UL": (-(2**31), 2**32 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UV": (-(2**63), 2**64 - 1),
    "SV": (-(2**63), 2**63 - 1),
}
"""The values DCMTK takes for each binary integer VR (a negative one wraps for the unsigned ones)."""
_INTEGER_VRS = frozenset(_INTEGER_RANGES)
_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT_VRS = frozenset({"FL", "FD"})
_IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG"}
"""The images ``Content`` may hold: MIME type → Pillow's format (the only one tried)."""
_IMAGE_MODES = {
    "PNG": frozenset({"L", "I;16", "I;16B", "I;16L", "RGB", "RGBA"}),
    "JPEG": frozenset({"L", "RGB"}),
}
"""The pixel formats Orthanc embeds (8-bit and 16-bit grayscale, RGB, RGBA); others are not implemented."""
_DATA_URI = re.compile(r"data:/*([^;]*);base64,([a-zA-Z0-9=+/]*)", re.DOTALL)

CHARACTER_SETS = {
    **{term: term for term in DEFAULT_ENCODINGS.values()},
    **{
        term.replace("ISO_IR", "ISO 2022 IR"): term
        for term in DEFAULT_ENCODINGS.values()
        if term.startswith("ISO_IR") and term != "ISO_IR 192"
    },
    "GBK": "GB18030",
}
"""The SpecificCharacterSet values Orthanc accepts, and the term it writes for each."""
_MULTI_BYTE = frozenset({"ISO_IR 192", "GB18030"})


class CreateRequest(msgspec.Struct, frozen=True):
    """A create-dicom body, checked."""

    tags: dict[str, Any]
    legacy: bool = False
    """Orthanc 0.9.3's form: the body's members are the tags."""
    character_set: str | None = None
    """The SpecificCharacterSet term ``Tags`` asks for (``None``: DefaultEncoding)."""
    content: Any = None
    """``None``, a data URI, or an array of data URIs or ``{"Content", "Tags"}`` objects (a series)."""
    private_creator: str | None = None
    """``None``: DefaultPrivateCreator."""
    interpret_binary_tags: bool = True
    force: bool = False


class Inheritance(msgspec.Struct, frozen=True):
    """What a new instance takes from its ``Parent``: the tags of the parent levels' modules."""

    level: Level
    tags: dict[int, str]
    """Module tags of the parent and its ancestors, as one of its instances has them (strings)."""
    character_set: str | None
    """That instance's SpecificCharacterSet, when Orthanc knows it."""

    @classmethod
    def of(cls, level: Level, instance_tags: bytes) -> "Inheritance":
        """What a child of a ``level`` resource inherits from the full tag JSON of one of its instances.

        As Orthanc, only string values are inherited (an empty one too): not sequences nor binary values.
        """
        full = msgspec.json.decode(instance_tags)
        inherited: dict[int, str] = {}
        for module_level in range(Level.PATIENT, level + 1):
            for tag, _ in MODULES[Level(module_level)]:
                entry = full.get(tag_key(tag))
                if entry is not None and entry["Type"] in ("String", "Null"):
                    inherited[tag] = entry["Value"] or ""
        term = full.get(tag_key(SPECIFIC_CHARACTER_SET), {}).get("Value")
        return cls(level, inherited, CHARACTER_SETS.get(term) if isinstance(term, str) else None)


def read_request(document: dict[str, Any]) -> CreateRequest:
    """The first checks of a body: ``Tags`` an object, its SpecificCharacterSet known."""
    if "Tags" not in document:
        return CreateRequest(tags=document, legacy=True)
    tags = document["Tags"]
    if not isinstance(tags, dict):
        raise OrthancError(ErrorCode.BAD_REQUEST)
    character_set = None
    if "SpecificCharacterSet" in tags:
        term = tags["SpecificCharacterSet"]
        if not isinstance(term, str):
            raise OrthancError(
                ErrorCode.INTERNAL_ERROR, "An unhandled exception was generated inside the HTTP server"
            )
        character_set = CHARACTER_SETS.get(term)
        if character_set is None:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown specific character set: {term}")
    return CreateRequest(tags=tags, character_set=character_set, content=document.get("Content"))


def read_options(request: CreateRequest, document: dict[str, Any]) -> CreateRequest:
    """The options, checked after the parent as Orthanc does: a wrong type is a bare "Bad request"."""
    if request.legacy:
        return request
    options: dict[str, Any] = {}
    for member, field, kind in (
        ("InterpretBinaryTags", "interpret_binary_tags", bool),
        ("PrivateCreator", "private_creator", str),
        ("Force", "force", bool),
    ):
        if member in document:
            if not isinstance(document[member], kind):
                raise OrthancError(ErrorCode.BAD_REQUEST)
            options[field] = document[member]
    return msgspec.structs.replace(request, **options)


def _out_of_range(tag: int, value: str) -> OrthancError:
    return OrthancError(
        ErrorCode.BAD_FILE_FORMAT,
        f'While creating a DICOM instance, tag ({tag_key(tag)}) has out-of-range value: "{value}"',
    )


def _bad_type(tag: int) -> OrthancError:
    return OrthancError(ErrorCode.BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {tag_key(tag)}")


class ElementWriter:
    """Turns JSON values into data elements, as Orthanc's conversion from JSON does."""

    def __init__(
        self, character_set: str, private_creator: str, decode_binary: bool, undeclared: bool = False
    ):
        """``undeclared``: the file does not name ``character_set`` (legacy form): text is encoded here."""
        self.private_creator = private_creator
        self.decode_binary = decode_binary
        self.codec: str | None = None
        """Python's codec for the text of single-byte character sets (what it cannot hold is dropped)."""
        self.text_codec: str | None = None
        """The codec text values are encoded with here rather than by pydicom."""
        if character_set == "ISO 2022 IR 87":
            self.text_codec = "iso2022_jp"  # back to ASCII before each PN delimiter, as DCMTK
        elif undeclared:
            self.text_codec = convert_encodings([character_set])[0]
        if character_set == "ISO_IR 6":
            self.codec = "ascii"
        elif character_set not in _MULTI_BYTE and "2022" not in character_set:
            self.codec = convert_encodings([character_set])[0]

    def vr(self, tag: int) -> str:
        if is_private(tag) and not is_private_creator(tag):
            entry = private_entry(tag, self.private_creator or None)
        elif is_private_creator(tag):
            return "LO"
        else:
            entry = public_entry(tag)
        if entry is None or entry[1] in ("NONE", "UN"):
            return "UN"
        return entry[1].split(" or ")[0]

    def element(self, tag: int, value: Any) -> DataElement | RawDataElement:
        if tag >> 16 == 0xFFFE:  # item and delimiters: not attributes (Orthanc 1.10.1 crashes on them)
            raise _out_of_range(tag, value if isinstance(value, str) else "")
        vr = self.vr(tag)
        if value is None:
            value = ""
        if isinstance(value, list):
            if vr != "SQ":
                raise _bad_type(tag)
            return DataElement(tag, vr, Sequence([self._item(item) for item in value]))
        if not isinstance(value, str):
            raise _bad_type(tag)
        if vr in ("IS", "DS"):
            return self._unchecked_number(tag, vr, value)
        return DataElement(tag, vr, self._from_string(tag, vr, value))

    def _unchecked_number(self, tag: int, vr: str, value: str) -> RawDataElement:
        """An IS or DS written as given, as DCMTK does ("abc" too), which pydicom would refuse to convert."""
        data = value.encode(self.codec or "utf-8", "ignore")
        if len(data) % 2:
            data += b" "
        return RawDataElement(tag, vr, len(data), data, 0, False, True)

    def _item(self, item: Any) -> Dataset:
        dataset = Dataset()
        if isinstance(item, list) and not item:
            return dataset  # an empty array stands for an empty object (Lua cannot tell them apart)
        if not isinstance(item, dict):
            raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE)
        for name in sorted(item):
            tag = parse_tag(name)
            if not _left_to_the_writer(tag):
                dataset[tag] = self.element(tag, item[name])
        return dataset

    def _from_string(self, tag: int, vr: str, value: str) -> Any:
        if vr == "SQ":
            if value:
                raise _out_of_range(tag, value)
            return Sequence()
        if vr in _BYTES_VRS:
            if self.decode_binary and value.startswith(OCTET_STREAM_URI):
                try:
                    return base64.b64decode(value[len(OCTET_STREAM_URI) :], validate=True)
                except binascii.Error as error:
                    raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from error
            return value.encode()
        if not value:
            return None if vr in _INTEGER_VRS | _FLOAT_VRS | {"AT"} else ""
        if vr in _INTEGER_VRS or vr in _FLOAT_VRS or vr == "AT":
            return self._numbers(tag, vr, value)
        if vr == "UI":
            return value.replace(" ", "")
        if self.text_codec is not None and vr in TEXT_VRS:
            return value.encode(self.text_codec, "ignore")
        if self.codec is not None:
            return value.encode(self.codec, "ignore").decode(self.codec)
        return value

    @staticmethod
    def _numbers(tag: int, vr: str, value: str) -> list[int | float] | int | float:
        """A binary number, as DCMTK reads one from text: one value, in range (or ``AT``'s tags)."""
        if vr == "AT":
            return [parse_tag(part) for part in value.split("\\")]
        try:
            number: int | float = float(value) if vr in _FLOAT_VRS else int(value)
        except ValueError as error:
            raise _out_of_range(tag, value) from error
        if vr in _FLOAT_VRS:
            if not math.isfinite(number) or (vr == "FL" and abs(number) > _FLOAT32_MAX):
                raise _out_of_range(tag, value)
            return number
        low, high = _INTEGER_RANGES[vr]
        if not low <= number <= high:
            raise _out_of_range(tag, value)
        if number < 0 and vr[0] == "U":
            number += high + 1  # DCMTK wraps a negative value given for an unsigned VR: -1 is 65535
        return number


def decode_data_uri(text: str) -> tuple[str, bytes]:
    """``data:<mime>;base64,<payload>`` → (mime, bytes); Orthanc's "Bad file format" otherwise."""
    match = _DATA_URI.fullmatch(text)
    if match is None:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    try:
        return match[1], base64.b64decode(match[2], validate=True)
    except binascii.Error as error:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from error


def _image_pixels(data: bytes, image_format: str) -> tuple[numpy.ndarray, str]:
    """Pixels of a PNG/JPEG (8-bit or 16-bit grayscale, or RGB), with the photometric interpretation."""
    if image_format == "JPEG" and not data.startswith(b"\xff\xd8"):
        # libjpeg's refusal, which Orthanc answers as an internal error
        start = " ".join(f"0x{byte:02x}" for byte in data[:2].ljust(2, b"\x00"))
        raise OrthancError(
            ErrorCode.INTERNAL_ERROR, f"Error during JPEG decoding: Not a JPEG file: starts with {start}"
        )
    try:
        image = Image.open(io.BytesIO(data), formats=(image_format,))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from error
    if image.mode not in _IMAGE_MODES[image_format]:
        raise OrthancError(ErrorCode.NOT_IMPLEMENTED)  # palette, gray with alpha, 1-bit, CMYK...
    if image.mode.startswith("I;16"):
        return numpy.asarray(image).astype("<u2"), "MONOCHROME2"
    if image.mode == "L":
        return numpy.asarray(image, dtype=numpy.uint8), "MONOCHROME2"
    return numpy.asarray(image.convert("RGB"), dtype=numpy.uint8), "RGB"  # the alpha of RGBA is dropped


def embed_content(dataset: Dataset, content: str) -> None:
    """A PDF or an image into the instance (Orthanc's EmbedContent)."""
    mime, data = decode_data_uri(content)
    if mime == "application/pdf":
        if not data.startswith(b"%PDF-"):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Not a PDF file")
        dataset.SOPClassUID = ENCAPSULATED_PDF_STORAGE
        if "Modality" not in dataset:
            dataset.Modality = "OT"
        dataset.ConversionType = "WSD"
        dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
        dataset.add_new(0x00420011, "OB", data)
        return
    image_format = _IMAGE_FORMATS.get(mime)
    if image_format is None:
        raise OrthancError(
            ErrorCode.NOT_IMPLEMENTED, f"Unsupported MIME type for the content of a new DICOM file: {mime}"
        )
    pixels, photometric = _image_pixels(data, image_format)
    bits = pixels.dtype.itemsize * 8
    dataset.SamplesPerPixel = 3 if photometric == "RGB" else 1
    dataset.PhotometricInterpretation = photometric
    if photometric == "RGB":
        dataset.PlanarConfiguration = 0
    dataset.Rows, dataset.Columns = pixels.shape[0], pixels.shape[1]
    dataset.BitsAllocated = dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 0
    dataset.add_new(PIXEL_DATA, "OW" if bits == 16 else "OB", pixels.tobytes())


def _new_dataset() -> Dataset:
    """Orthanc's empty new instance: a random PatientID and new study, series and instance UIDs."""
    dataset = Dataset()
    dataset.PatientID = str(uuid.uuid4())
    dataset.StudyInstanceUID = generate_uid(prefix=None)
    dataset.SeriesInstanceUID = generate_uid(prefix=None)
    dataset.SOPInstanceUID = generate_uid(prefix=None)
    return dataset


def _left_to_the_writer(tag: int) -> bool:
    """The file meta group and group lengths: a request may name them, the file writer makes its own."""
    return tag >> 16 == 0x0002 or tag & 0xFFFF == 0


def _inject_tags(dataset: Dataset, tags: dict[str, Any], writer: ElementWriter, force: bool) -> None:
    """The request's tags, in the order of their names (Orthanc's InjectTags)."""
    for name in sorted(tags):
        tag = parse_tag(name)
        if tag == SPECIFIC_CHARACTER_SET or _left_to_the_writer(tag):
            continue
        if not force and tag not in OVERRIDABLE and tag in dataset:
            raise OrthancError(ErrorCode.CREATE_DICOM_OVERRIDE_TAG, name)
        if tag == PIXEL_DATA:
            raise OrthancError(ErrorCode.CREATE_DICOM_USE_CONTENT)
        dataset[tag] = writer.element(tag, tags[name])


def _legacy_dataset(tags: dict[str, Any], character_set: str) -> Dataset:
    """The legacy form: text in the default character set, which the file does not name."""
    dataset = _new_dataset()
    writer = ElementWriter(character_set, "", decode_binary=False, undeclared=True)
    for name in sorted(tags):
        value = tags[name]
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.CREATE_DICOM_NOT_STRING)
        tag = parse_tag(name)
        if tag == PIXEL_DATA:
            embed_content(dataset, value)
        elif not _left_to_the_writer(tag):
            dataset[tag] = writer.element(tag, value)
    return dataset


def _dated(dataset: Dataset, parent_level: Level | None) -> None:
    """Today's UTC date and time in the tags the new instance does not inherit."""
    now = time.gmtime()
    date, clock = time.strftime("%Y%m%d", now), time.strftime("%H%M%S.000000", now)
    pairs = list(_ALWAYS_DATED)
    if parent_level in (None, Level.PATIENT, Level.STUDY):
        pairs.append((_SERIES_DATE, _SERIES_TIME))
    if parent_level in (None, Level.PATIENT):
        pairs.append((_STUDY_DATE, _STUDY_TIME))
    for date_tag, time_tag in pairs:
        dataset.add_new(date_tag, "DA", date)
        dataset.add_new(time_tag, "TM", clock)


def _part10(dataset: Dataset) -> bytes:
    """The file: a dataset without SOPClassUID has DCMTK's placeholder class in its file meta, as
    Orthanc's files have (nothing else would be true of it)."""
    sop_class = dataset.get("SOPClassUID", UNKNOWN_SOP_CLASS)
    dataset.file_meta = file_meta(sop_class, dataset.SOPInstanceUID, ExplicitVRLittleEndian)
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return output.getvalue()


def create_dicom(
    request: CreateRequest, parent: tuple[Level, bytes] | None, default_encoding: str
) -> list[bytes]:
    """The new DICOM files (Part 10, explicit VR little endian): one, or one per element of ``Content``."""
    default_character_set = DEFAULT_ENCODINGS.get(default_encoding, "ISO_IR 100")
    if request.legacy:
        return [_part10(_legacy_dataset(request.tags, default_character_set))]
    character_set = request.character_set or default_character_set
    inheritance = Inheritance.of(*parent) if parent is not None else None
    if inheritance is not None and inheritance.character_set is not None:
        character_set = inheritance.character_set
    creator = request.private_creator if request.private_creator is not None else default_private_creator()
    writer = ElementWriter(character_set, creator, request.interpret_binary_tags)

    dataset = _new_dataset()
    dataset.SpecificCharacterSet = character_set
    if inheritance is not None:
        for tag, value in inheritance.tags.items():
            dataset[tag] = writer.element(tag, value)
    _dated(dataset, inheritance.level if inheritance is not None else None)
    _inject_tags(dataset, request.tags, writer, request.force)

    content = request.content
    if content is None or content == []:
        return [_part10(dataset)]
    if isinstance(content, str):
        embed_content(dataset, content)
        return [_part10(dataset)]
    if not isinstance(content, list):
        raise OrthancError(ErrorCode.CREATE_DICOM_USE_DATA_URI_SCHEME)
    return _series(dataset, content, writer, request.force)


def _series(base: Dataset, content: list[Any], writer: ElementWriter, force: bool) -> list[bytes]:
    """One instance per element of ``Content``, numbered from 1.

    Orthanc stores each instance as soon as it is built: an error in the
    first element answers "Unknown resource" (its clean-up finds no series);
    an error in a later one deletes the series and answers the error. Here
    every instance is built before any is stored, with the same answers.
    """
    base.add_new(_IMAGES_IN_ACQUISITION, "IS", str(len(content)))
    base.add_new(_NUMBER_OF_TEMPORAL_POSITIONS, "IS", "1")
    files = []
    for index, item in enumerate(content):
        try:
            files.append(_series_instance(base, index, item, writer, force))
        except OrthancError:
            if index == 0:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE) from None
            raise
    return files


def _series_instance(base: Dataset, index: int, item: Any, writer: ElementWriter, force: bool) -> bytes:
    dataset = copy.deepcopy(base)
    dataset.SOPInstanceUID = generate_uid(prefix=None)
    payload = item
    if isinstance(item, dict):
        if "Content" not in item:
            raise OrthancError(ErrorCode.CREATE_DICOM_NO_PAYLOAD)
        payload = item["Content"]
        if "Tags" in item:
            if not isinstance(item["Tags"], dict):
                raise OrthancError(ErrorCode.BAD_REQUEST, "Tags field is not an array")
            _inject_tags(dataset, item["Tags"], writer, force)
    if not isinstance(payload, str):
        raise OrthancError(ErrorCode.CREATE_DICOM_USE_DATA_URI_SCHEME)
    embed_content(dataset, payload)
    dataset.add_new(_INSTANCE_NUMBER, "IS", str(index + 1))
    dataset.add_new(_IMAGE_INDEX, "US", index + 1)
    return _part10(dataset)
