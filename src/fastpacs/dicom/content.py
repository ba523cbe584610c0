"""Navigation in a DICOM file for ``/instances/{id}/content/...``.

A path alternates attribute tags and item indexes: ``0040-a730/0/0040-a043``.
The answer at a dataset or item is the list of its tags (``gggg-eeee``), at
a sequence the list of its item indexes, at PixelData the list of its
fragments (one for native pixel data), and at a leaf the raw value bytes as
stored, padding included, in little-endian byte order (as DCMTK holds them
in memory: the numbers and words of a big-endian file are swapped).
"""

from collections.abc import Sequence as AnySequence

import msgspec
import numpy
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.sequence import Sequence

from fastpacs.dicom.dictionary import (
    dictionary_vr,
    is_private,
    is_private_creator,
    parse_tag,
    private_creator_tag,
)
from fastpacs.dicom.parse import read_dataset
from fastpacs.errors import BareHttpError

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
_WORD_SIZES = {
    **dict.fromkeys(("US", "SS", "OW", "AT", "US or SS", "US or OW", "US or SS or OW", "OB or OW"), 2),
    **dict.fromkeys(("UL", "SL", "FL", "OF", "OL"), 4),
    **dict.fromkeys(("FD", "OD", "SV", "UV", "OV"), 8),
}
"""Size of the numbers (or words) of the binary VRs whose bytes depend on the byte order."""


class ContentAnswer(msgspec.Struct, array_like=True):
    """Either a listing (JSON array of strings) or raw bytes."""

    listing: list[str] | None = None
    raw: bytes | None = None


def _listing_of_dataset(dataset: Dataset) -> list[str]:
    return [f"{int(tag) >> 16:04x}-{int(tag) & 0xFFFF:04x}" for tag in dataset.keys()]  # noqa: SIM118


def _raw_value(dataset: Dataset, tag: int, little_endian: bool = True) -> bytes:
    """An element's value bytes, little-endian; padded to an even length if pydicom converted it."""
    element = dataset.get_item(tag)
    if isinstance(element, RawDataElement):
        raw = element.value or b""
        word_size = _WORD_SIZES.get(element.VR or dictionary_vr(tag, None), 1)
        return raw if little_endian or word_size == 1 else _swapped(raw, word_size)
    value = element.value
    if isinstance(value, bytes):
        return value
    if isinstance(value, AnySequence) and not isinstance(value, str):  # MultiValue
        text = "\\".join(str(item) for item in value)
    else:
        text = str(value or "")
    raw = text.encode("latin-1", errors="replace")
    return raw + b" " if len(raw) % 2 else raw  # conversion dropped the padding of text values


def _swapped(raw: bytes, word_size: int) -> bytes:
    """Big-endian numbers or words in little-endian order (a trailing odd byte kept as it is)."""
    whole = len(raw) - len(raw) % word_size
    words = numpy.frombuffer(raw, dtype=f">u{word_size}", count=whole // word_size)
    return words.astype(f"<u{word_size}").tobytes() + raw[whole:]


def _is_sequence(dataset: Dataset, tag: int) -> bool:
    """Whether an element is a sequence, without converting it (conversion loses the raw bytes)."""
    element = dataset.get_item(tag)
    vr = element.VR or dictionary_vr(tag, _creator(dataset, tag))
    return vr == "SQ"


def _creator(dataset: Dataset, tag: int) -> str | None:
    """The private creator of a private element's block (its dictionary entry depends on it)."""
    if not is_private(tag) or is_private_creator(tag) or private_creator_tag(tag) not in dataset:
        return None
    return str(dataset[private_creator_tag(tag)].value)


def _pixel_fragments(dataset: Dataset, little_endian: bool) -> list[bytes]:
    element = dataset.get_item(PIXEL_DATA)
    if isinstance(element, RawDataElement) and element.length == UNDEFINED_LENGTH:
        return list(generate_fragments(element.value or b""))
    return [_raw_value(dataset, PIXEL_DATA, little_endian)]


def navigate(data: bytes, path: list[str]) -> ContentAnswer:
    """The content at ``path`` in a DICOM file; an empty 404 when the path leads nowhere."""
    dataset = read_dataset(data)
    little_endian = dataset.original_encoding[1] is not False
    node: Dataset | Sequence | list[bytes] | bytes = dataset
    for segment in path:
        if isinstance(node, Dataset):
            tag = parse_tag(segment)
            if tag not in node:
                raise BareHttpError(404)
            if tag == PIXEL_DATA:
                node = _pixel_fragments(node, little_endian)
            elif _is_sequence(node, tag):
                node = node[tag].value
            else:
                node = _raw_value(node, tag, little_endian)
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
