"""Navigation in a DICOM file for ``/instances/{id}/content/...``.

A path alternates attribute tags and item indexes: ``0040-a730/0/0040-a043``.
The answer at a dataset or item is the list of its tags (``gggg-eeee``), at
a sequence the list of its item indexes, at PixelData the list of its
fragments (one for native pixel data), and at a leaf the raw value bytes as
stored, padding included.
"""

import msgspec
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.sequence import Sequence

from fastpacs.dicom.dictionary import dictionary_vr, parse_tag
from fastpacs.dicom.parse import read_dataset
from fastpacs.errors import BareHttpError

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF


class ContentAnswer(msgspec.Struct, array_like=True):
    """Either a listing (JSON array of strings) or raw bytes."""

    listing: list[str] | None = None
    raw: bytes | None = None


def _listing_of_dataset(dataset: Dataset) -> list[str]:
    return [f"{int(tag) >> 16:04x}-{int(tag) & 0xFFFF:04x}" for tag in dataset.keys()]  # noqa: SIM118


def _raw_value(dataset: Dataset, tag: int) -> bytes:
    element = dataset.get_item(tag)
    if isinstance(element, RawDataElement):
        return element.value or b""
    value = element.value
    if isinstance(value, bytes):
        return value
    text = "\\".join(str(item) for item in value) if isinstance(value, list) else str(value or "")
    return text.encode("latin-1", errors="replace")


def _is_sequence(dataset: Dataset, tag: int) -> bool:
    """Whether an element is a sequence, without converting it (conversion loses the raw bytes)."""
    element = dataset.get_item(tag)
    vr = element.VR or dictionary_vr(tag, None)
    return vr == "SQ"


def _pixel_fragments(dataset: Dataset) -> list[bytes]:
    element = dataset.get_item(PIXEL_DATA)
    value = element.value or b""
    if isinstance(element, RawDataElement) and element.length == UNDEFINED_LENGTH:
        return list(generate_fragments(value))
    return [value]


def navigate(data: bytes, path: list[str]) -> ContentAnswer:
    """The content at ``path`` in a DICOM file; an empty 404 when the path leads nowhere."""
    node: Dataset | Sequence | list[bytes] | bytes = read_dataset(data)
    for segment in path:
        if isinstance(node, Dataset):
            tag = parse_tag(segment)
            if tag not in node:
                raise BareHttpError(404)
            if tag == PIXEL_DATA:
                node = _pixel_fragments(node)
            elif _is_sequence(node, tag):
                node = node[tag].value
            else:
                node = _raw_value(node, tag)
        elif isinstance(node, Sequence | list):
            if not segment.isdigit() or int(segment) >= len(node):
                raise BareHttpError(404)
            node = node[int(segment)]
        else:
            raise BareHttpError(404)
    if isinstance(node, Dataset):
        return ContentAnswer(listing=_listing_of_dataset(node))
    if isinstance(node, Sequence | list):
        return ContentAnswer(listing=[str(index) for index in range(len(node))])
    return ContentAnswer(raw=node)


ENCAPSULATED_DOCUMENT = 0x00420011
ENCAPSULATED_DOCUMENT_LENGTH = 0x00420015


def encapsulated_document(data: bytes) -> bytes:
    """The EncapsulatedDocument of a file, without the padding byte DICOM adds to odd lengths."""
    dataset = read_dataset(data)
    if ENCAPSULATED_DOCUMENT not in dataset:
        raise BareHttpError(404)
    document = _raw_value(dataset, ENCAPSULATED_DOCUMENT)
    if ENCAPSULATED_DOCUMENT_LENGTH in dataset:
        length = dataset[ENCAPSULATED_DOCUMENT_LENGTH].value
        if isinstance(length, int) and 0 <= length <= len(document):
            return document[:length]
    if document.endswith(b"\x00"):
        return document[:-1]
    return document
