"""Writing DICOM files from datasets read by pydicom, unchanged elements kept as raw bytes.

A modified instance is mostly its original. pydicom's writer converts and
re-encodes every element (about 40 µs each, ten times the cost of reading
the file); this writer copies every element still in the form pydicom read
it (a ``RawDataElement``: tag, VR and value bytes, pixel data included) and
encodes only what changed. Sequences that were opened are written with
undefined lengths, as DCMTK does; other values keep the encoding of the
transfer syntax they were read with, so the output has the transfer syntax
of its source.
"""

import struct
import zlib
from collections.abc import Iterable
from operator import itemgetter

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_16, EXPLICIT_VR_LENGTH_32

from fastpacs import __version__

IMPLEMENTATION_CLASS_UID = "2.25.189410036312962532866102853463312744245"
"""fastpacs's ImplementationClassUID (the integer form of a UUID, fixed once for all)."""
IMPLEMENTATION_VERSION_NAME = f"FASTPACS_{__version__.replace('.', '')}"[:16]

DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
SPECIFIC_CHARACTER_SET = 0x00080005
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
LONG_HEADER_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
"""VRs whose explicit header has two reserved bytes and a 4-byte length."""
PREAMBLE = bytes(128) + b"DICM"
ITEM_HEADER_SIZE = 8
"""An item's tag and length, an item delimiter, a sequence delimiter: 8 bytes each."""


class DatasetWriter:
    """Encodes datasets in one transfer syntax (implicit or explicit VR, either byte order)."""

    def __init__(self, implicit_vr: bool, little_endian: bool, character_sets: list[str]):
        self.implicit_vr = implicit_vr
        self.little_endian = little_endian
        self.character_sets = character_sets
        order = "<" if little_endian else ">"
        self._tag_and_long_length = struct.Struct(order + "HHL")
        self._explicit_short = struct.Struct(order + "HH2sH")
        self._explicit_long = struct.Struct(order + "HH2s2xL")

    def dataset(self, dataset: Dataset) -> list[bytes]:
        """The encoded elements of the dataset, as chunks (the pixel data one is not copied)."""
        chunks: list[bytes] = []
        self._elements(chunks, dataset)
        return chunks

    def _elements(self, chunks: list[bytes], dataset: Dataset) -> None:
        for _, element in _in_order(dataset):
            self._element(chunks, element)

    def _element(self, chunks: list[bytes], element: RawDataElement | DataElement) -> None:
        if isinstance(element, RawDataElement):
            value = element.value or b""
            undefined = element.length == UNDEFINED_LENGTH
            chunks.append(
                self._header(int(element.tag), element.VR, UNDEFINED_LENGTH if undefined else len(value))
            )
            chunks.append(value)
            if undefined:
                chunks.append(self._tag_and_long_length.pack(0xFFFE, 0xE0DD, 0))
        elif element.VR == "SQ":
            self._sequence(chunks, int(element.tag), element.value)
        else:
            chunks.append(self._converted(element))

    def _converted(self, element: DataElement) -> bytes:
        """An element pydicom converted while reading (SpecificCharacterSet), encoded by its own writer."""
        buffer = DicomBytesIO()
        buffer.is_little_endian = self.little_endian
        buffer.is_implicit_VR = self.implicit_vr
        write_data_element(buffer, element, self.character_sets)
        return buffer.getvalue()

    def _sequence(self, chunks: list[bytes], tag: int, items: Iterable[Dataset]) -> None:
        chunks.append(self._header(tag, "SQ", UNDEFINED_LENGTH))
        item_header = self._tag_and_long_length.pack(0xFFFE, 0xE000, UNDEFINED_LENGTH)
        item_end = self._tag_and_long_length.pack(0xFFFE, 0xE00D, 0)
        for item in items:
            chunks.append(item_header)
            self._elements(chunks, item)
            chunks.append(item_end)
        chunks.append(self._tag_and_long_length.pack(0xFFFE, 0xE0DD, 0))

    def _header(self, tag: int, vr: str | None, length: int) -> bytes:
        group, element = tag >> 16, tag & 0xFFFF
        written = self._written_vr(vr, length)
        if written is None:
            return self._tag_and_long_length.pack(group, element, length)
        if written in LONG_HEADER_VRS:
            return self._explicit_long.pack(group, element, written.encode(), length)
        return self._explicit_short.pack(group, element, written.encode(), length)

    def _written_vr(self, vr: str | None, length: int) -> str | None:
        """The VR an element's header says (``None`` in implicit VR)."""
        if self.implicit_vr:
            return None
        vr = vr or "UN"
        if vr not in LONG_HEADER_VRS and length > 0xFFFF:
            return "UN"  # too long for its VR's 2-byte length (a 70 000-character LO): UN, as DCMTK
        return vr

    # -- reading back what is written

    def read_back(self, dataset: Dataset, offset: int) -> Dataset | None:
        """The dataset pydicom reads from what :meth:`dataset` writes of ``dataset``, at ``offset`` in
        a file, without the reading.

        Each element is given as pydicom's reader gives it: a ``RawDataElement``
        with the VR and length of its header, its value bytes and their position
        (the pixel data's is Orthanc's PixelDataOffset); a sequence written with
        undefined length opened into its items. Whatever is computed from it
        (the tag JSON, the index summary) is then what a reading of the new file
        would give. ``None`` where the reader could decide otherwise than the
        writer wrote: a value of undefined length other than the top-level pixel
        data (pydicom may read one as a sequence), a VR a reader would not take as
        one, a sequence an implicit VR reader would not take as one.
        """
        read = self._read_back_elements(dataset, offset, top_level=True)
        if read is None:
            return None
        read_back = read[0]
        read_back.get(SPECIFIC_CHARACTER_SET)  # converted in place, as the reader does to learn the encoding
        return read_back

    def _read_back_elements(
        self, dataset: Dataset, position: int, top_level: bool
    ) -> tuple[Dataset, int] | None:
        """The elements of ``dataset`` written from ``position``, as read back; the position after them."""
        elements: dict[BaseTag, RawDataElement | DataElement] = {}
        for tag, element in _in_order(dataset):
            if isinstance(element, RawDataElement):
                read = self._read_back_value(element, position, top_level)
            elif element.VR == "SQ":
                read = self._read_back_sequence(int(tag), element.value, position)
            else:
                read = self._read_back_converted(element, position)
            if read is None:
                return None
            elements[BaseTag(tag)], position = read
        read_back = Dataset(elements)
        read_back.set_original_encoding(self.implicit_vr, self.little_endian)
        return read_back, position

    def _read_back_value(
        self, element: RawDataElement, position: int, top_level: bool
    ) -> tuple[RawDataElement, int] | None:
        value = element.value or b""
        undefined = element.length == UNDEFINED_LENGTH
        written = self._written_vr(element.VR, len(value))
        if (
            written is not None
            and written not in EXPLICIT_VR_LENGTH_16
            and written not in EXPLICIT_VR_LENGTH_32
        ):
            return None
        if undefined and not (top_level and element.tag == PIXEL_DATA and written != "UN"):
            return None
        value_tell = position + _header_size(written)
        length = UNDEFINED_LENGTH if undefined else len(value)
        read = RawDataElement(
            BaseTag(element.tag), written, length, value, value_tell, self.implicit_vr, self.little_endian
        )
        return read, value_tell + len(value) + (ITEM_HEADER_SIZE if undefined else 0)

    def _read_back_converted(self, element: DataElement, position: int) -> tuple[RawDataElement, int] | None:
        """An element pydicom's writer encodes, read back by its reader."""
        encoded = self._converted(element)
        elements = data_element_generator(DicomBytesIO(encoded), self.implicit_vr, self.little_endian)
        read = next(elements, None)
        if not isinstance(read, RawDataElement) or read.length == UNDEFINED_LENGTH:
            return None
        return read._replace(value_tell=position + read.value_tell), position + len(encoded)

    def _read_back_sequence(self, tag: int, items: Sequence, position: int) -> tuple[DataElement, int] | None:
        if self.implicit_vr and not _read_as_sequence(tag, bool(items)):
            return None
        value_tell = position + _header_size(self._written_vr("SQ", UNDEFINED_LENGTH))
        position = value_tell
        read_items = []
        for item in items:
            read = self._read_back_elements(item, position + ITEM_HEADER_SIZE, top_level=False)
            if read is None:
                return None
            read_item, position = read
            read_items.append(read_item)
            position += ITEM_HEADER_SIZE
        sequence = DataElement(tag, "SQ", Sequence(read_items), value_tell, is_undefined_length=True)
        return sequence, position + ITEM_HEADER_SIZE


def _in_order(dataset: Dataset) -> list[tuple[BaseTag, RawDataElement | DataElement]]:
    """The elements of a dataset as stored (raw ones unconverted), by tag: ``items()`` rather than a
    ``get_item`` per tag, which costs a tag conversion and a lookup each (about 100 per file). The
    datasets written here never hold deferred values (which ``get_item`` would read): the modified
    file's unread PixelData is given its value before it is written."""
    return sorted(dataset.items(), key=itemgetter(0))


def _read_as_sequence(tag: int, has_items: bool) -> bool:
    """Whether pydicom reads a value of undefined length in implicit VR as a sequence: when its
    dictionary says SQ or, for an attribute it does not know, when an item follows."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return has_items


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> FileMetaDataset:
    """The file meta group fastpacs writes, as pydicom's dataset (for pydicom's encoders)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _meta_elements(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str
) -> list[tuple[int, str, bytes]]:
    """The file meta group fastpacs writes: (element, VR, value padded to an even length), the group
    length first."""
    elements = [
        (element, vr, value + (b"\x00" if vr == "UI" else b" ") * (len(value) % 2))
        for element, vr, value in (
            (0x0001, "OB", b"\x00\x01"),
            (0x0002, "UI", sop_class_uid.encode()),
            (0x0003, "UI", sop_instance_uid.encode()),
            (0x0010, "UI", transfer_syntax.encode()),
            (0x0012, "UI", IMPLEMENTATION_CLASS_UID.encode()),
            (0x0013, "SH", IMPLEMENTATION_VERSION_NAME.encode()),
        )
    ]
    length = sum(_header_size(vr) + len(value) for _, vr, value in elements)
    return [(0x0000, "UL", struct.pack("<L", length)), *elements]


def _header_size(written_vr: str | None) -> int:
    """Bytes of an element's header: tag, (VR, reserved,) length."""
    return 12 if written_vr in LONG_HEADER_VRS else 8


def _meta_element(element: int, vr: str, value: bytes) -> bytes:
    if vr in LONG_HEADER_VRS:
        return _META_LONG.pack(0x0002, element, vr.encode(), len(value)) + value
    return _META_SHORT.pack(0x0002, element, vr.encode(), len(value)) + value


_META_SHORT = struct.Struct("<HH2sH")
_META_LONG = struct.Struct("<HH2s2xL")


def part10_file(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, dataset: list[bytes]
) -> bytes:
    """Preamble, file meta group and the dataset's encoded chunks (deflated when the transfer syntax
    says so), joined once."""
    group = b"".join(
        _meta_element(*element)
        for element in _meta_elements(sop_class_uid, sop_instance_uid, transfer_syntax)
    )
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        dataset = [compressor.compress(b"".join(dataset)) + compressor.flush()]
    return b"".join((PREAMBLE, group, *dataset))


def read_back_file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> FileMetaDataset:
    """The file meta group :func:`part10_file` writes, as pydicom's reader gives it (which converts
    the first element while checking the group's encoding)."""
    elements = {}
    position = len(PREAMBLE)
    for element, vr, value in _meta_elements(sop_class_uid, sop_instance_uid, transfer_syntax):
        tag = BaseTag(0x00020000 | element)
        position += _header_size(vr)
        elements[tag] = RawDataElement(tag, vr, len(value), value, position, False, True)
        position += len(value)
    meta = FileMetaDataset(elements)
    meta.set_original_encoding(False, True)
    meta[next(iter(elements))]  # converted in place, as the reader does
    return meta


def sop_uids(dataset: Dataset) -> tuple[str, str]:
    """The SOP Class and Instance UIDs of a file: its dataset's, else its file meta's (a file may lack
    them in its dataset, as those /tools/create-dicom writes lack SOPClassUID, as Orthanc's do)."""
    meta = getattr(dataset, "file_meta", Dataset())
    return (
        str(dataset.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID", "")),
        str(dataset.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID", "")),
    )
