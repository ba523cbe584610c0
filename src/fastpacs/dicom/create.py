"""Building a new DICOM file from JSON, for ``POST /tools/create-dicom``.

Runs in the worker pool. The request's tags (names or ``gggg,eeee``, string
values, arrays of objects for sequences, ``data:`` URIs for binary values)
are written with the tags Orthanc adds to every created instance: the
character set, new UIDs, and today's dates. ``Content`` is a data URI:
a PDF becomes an Encapsulated PDF instance, a PNG or JPEG image becomes the
pixel data (8-bit grayscale or RGB).
"""

import base64
import binascii
import io
import time
import uuid
from typing import Any

import msgspec
import numpy
from PIL import Image, UnidentifiedImageError
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fastpacs.dicom.dictionary import (
    default_private_creator,
    is_private,
    is_private_creator,
    parse_tag,
    private_entry,
)
from fastpacs.dicom.values import DEFAULT_ENCODINGS
from fastpacs.errors import ErrorCode, OrthancError

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
_DATED = ("InstanceCreation", "Content", "Acquisition", "Series", "Study")
_BINARY_VRS = ("OB", "OW", "OD", "OF", "OL", "OV", "UN")


class CreateRequest(msgspec.Struct, rename="pascal", forbid_unknown_fields=False):
    """The body of ``POST /tools/create-dicom``."""

    tags: dict[str, Any] = msgspec.field(default_factory=dict)
    content: str | None = None
    parent: str | None = None
    private_creator: str | None = None
    force: bool = False


def decode_data_uri(text: str) -> tuple[str, bytes]:
    """``data:<mime>;base64,<payload>`` → (mime, bytes); Orthanc's "Bad file format" otherwise."""
    head, separator, payload = text.partition(",")
    if not separator or not head.startswith("data:") or not head.endswith(";base64"):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
    try:
        return head[5:-7], base64.b64decode(payload, validate=True)
    except binascii.Error as error:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from error


class DatasetBuilder:
    """Writes JSON tag values into a pydicom dataset."""

    def __init__(self, private_creator: str | None):
        self.private_creator = private_creator

    def put(self, dataset: Dataset, name: str, value: Any) -> None:
        tag = parse_tag(name)
        if is_private(tag) and not is_private_creator(tag):
            self._put_private(dataset, tag, value)
            return
        try:
            vr = dictionary_VR(tag)
        except KeyError as error:
            raise OrthancError(ErrorCode.UNKNOWN_DICOM_TAG) from error
        dataset.add_new(tag, vr.split(" or ")[0], self._value(vr, value))

    def _put_private(self, dataset: Dataset, tag: int, value: Any) -> None:
        creator = self.private_creator or default_private_creator()
        if not creator:
            raise OrthancError(ErrorCode.BAD_REQUEST, "Missing PrivateCreator for a private tag")
        block = dataset.private_block(tag >> 16, creator, create=True)
        entry = private_entry(tag, creator)
        vr = entry[1].split(" or ")[0] if entry else "UN"
        block.add_new(tag & 0xFF, vr, self._value(vr, value))

    def _value(self, vr: str, value: Any) -> Any:
        if vr == "SQ":
            if not isinstance(value, list):
                raise OrthancError(ErrorCode.BAD_REQUEST, "A sequence must be given as an array of objects")
            items = []
            for item_tags in value:
                if not isinstance(item_tags, dict):
                    raise OrthancError(ErrorCode.BAD_REQUEST, "A sequence item must be a JSON object")
                item = Dataset()
                for name, item_value in item_tags.items():
                    self.put(item, name, item_value)
                items.append(item)
            return Sequence(items)
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.BAD_REQUEST, "Tag values must be strings")
        if vr.split(" or ", maxsplit=1)[0] not in _BINARY_VRS:
            return value
        if value.startswith("data:"):
            return decode_data_uri(value)[1]
        return value.encode("latin-1", "replace")


def _image_pixels(data: bytes) -> tuple[numpy.ndarray, str]:
    """Pixels of a PNG/JPEG as 8-bit grayscale or RGB, with the photometric interpretation."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Cannot decode the image of Content") from error
    if image.mode in ("L", "1", "P", "LA"):
        return numpy.asarray(image.convert("L"), dtype=numpy.uint8), "MONOCHROME2"
    return numpy.asarray(image.convert("RGB"), dtype=numpy.uint8), "RGB"


def _attach_content(dataset: Dataset, content: str) -> None:
    mime, data = decode_data_uri(content)
    if mime == "application/pdf":
        dataset.SOPClassUID = ENCAPSULATED_PDF_STORAGE
        dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
        dataset.ConversionType = "WSD"
        dataset.add_new(0x00420011, "OB", data)
        return
    if mime not in ("image/png", "image/jpeg"):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Unsupported content type: {mime}")
    pixels, photometric = _image_pixels(data)
    dataset.Rows, dataset.Columns = pixels.shape[0], pixels.shape[1]
    dataset.SamplesPerPixel = 3 if photometric == "RGB" else 1
    dataset.PhotometricInterpretation = photometric
    if photometric == "RGB":
        dataset.PlanarConfiguration = 0
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.tobytes()


def create_dicom(request: CreateRequest, parent_tags: dict[str, str], default_encoding: str) -> bytes:
    """A new DICOM file (Part 10, explicit VR little endian) for a create-dicom request.

    ``parent_tags`` are the main tags of the parent resources (patient, study,
    series) the new instance is attached to.
    """
    dataset = Dataset()
    dataset.SpecificCharacterSet = DEFAULT_ENCODINGS.get(default_encoding, "ISO_IR 100")
    builder = DatasetBuilder(request.private_creator)
    for name, value in parent_tags.items():
        builder.put(dataset, name, value)
    for name, value in request.tags.items():
        builder.put(dataset, name, value)
    if "PatientID" not in dataset:
        dataset.PatientID = str(uuid.uuid4())
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword not in dataset:
            setattr(dataset, keyword, generate_uid(prefix=None))
    now = time.localtime()
    for prefix in _DATED:
        if f"{prefix}Date" not in dataset and not (prefix == "Study" and "StudyInstanceUID" in parent_tags):
            setattr(dataset, f"{prefix}Date", time.strftime("%Y%m%d", now))
            setattr(dataset, f"{prefix}Time", time.strftime("%H%M%S.000000", now))
    if request.content is not None:
        _attach_content(dataset, request.content)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.get("SOPClassUID", SECONDARY_CAPTURE_STORAGE)
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return output.getvalue()
