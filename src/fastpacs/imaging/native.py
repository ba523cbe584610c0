"""The pixels of a plain native file, read straight from its bytes without pydicom.

Most stored images are uncompressed little-endian grayscale files (CT, MR,
CR slices). For them, pydicom's parse of the whole header was a third of a
worker's time per uncached rendering (about 0.26 ms of 0.8 ms for a CT
slice), for a dozen attributes. :func:`read_native` walks the element
headers up to PixelData instead, keeps the Image Pixel module's attributes
and the position of the pixels, and gives ``None`` for anything that is not
plainly such a file: another transfer syntax, colour, samples that do not
fill their 8 or 16 bits, an attribute not in its usual form, an element
header that runs past the end. The caller then takes pydicom's path
(:mod:`fastpacs.imaging.decode`), which answers the same pixels for the
files read here (what ``decode._plain_grayscale`` reads from pydicom's
dataset, this reads from the file).
"""

import mmap
import re
import struct
from dataclasses import dataclass

import numpy as np
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from fastpacs.imaging.decode import DecodedFrame, ImageDescription, check_frame_index

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
UNDEFINED_LENGTH = 0xFFFFFFFF
TRANSFER_SYNTAX_UID = 0x00020010
PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
LONG_HEADER_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
"""Explicit VRs whose header has two reserved bytes and a 4-byte length."""
MAX_DEPTH = 16
"""Nested sequences skipped before giving up (to pydicom) on a pathological file."""

SAMPLES_PER_PIXEL = 0x00280002
PHOTOMETRIC_INTERPRETATION = 0x00280004
NUMBER_OF_FRAMES = 0x00280008
ROWS = 0x00280010
COLUMNS = 0x00280011
BITS_ALLOCATED = 0x00280100
BITS_STORED = 0x00280101
PIXEL_REPRESENTATION = 0x00280103
RESCALE_INTERCEPT = 0x00281052
RESCALE_SLOPE = 0x00281053
_WANTED_VRS = {
    SAMPLES_PER_PIXEL: b"US",
    PHOTOMETRIC_INTERPRETATION: b"CS",
    NUMBER_OF_FRAMES: b"IS",
    ROWS: b"US",
    COLUMNS: b"US",
    BITS_ALLOCATED: b"US",
    BITS_STORED: b"US",
    PIXEL_REPRESENTATION: b"US",
    RESCALE_INTERCEPT: b"DS",
    RESCALE_SLOPE: b"DS",
}
_SYNTAXES = {
    ImplicitVRLittleEndian.encode(): ImplicitVRLittleEndian,
    ExplicitVRLittleEndian.encode(): ExplicitVRLittleEndian,
}
_PHOTOMETRIC = {b"MONOCHROME1 ": "MONOCHROME1", b"MONOCHROME2 ": "MONOCHROME2"}
_DECIMAL = re.compile(rb" *[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)? *")
_INTEGER = re.compile(rb" *\d+ *")
_TAG = struct.Struct("<HH")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<L")


FileBytes = bytearray | mmap.mmap
"""A stored file as a worker holds it: read into memory, or mapped copy-on-write."""


class _NotPlainError(Exception):
    """The file is not one this reader takes (pydicom's path decides what it is)."""


@dataclass(frozen=True)
class NativeImage:
    """A plain native grayscale file: its description and where its frames are in ``data``."""

    data: FileBytes
    """The whole file, writeable (a copy-on-write mapping), so that frames are views the kernels take
    as they are."""
    description: ImageDescription
    pixel_offset: int

    def frame(self, index: int) -> DecodedFrame:
        """Frame ``index`` as pydicom's decoder gives it (a view of :attr:`data`, not a copy)."""
        description = self.description
        check_frame_index(description, index)
        dtype = np.dtype(
            f"<{'i' if description.pixel_representation else 'u'}{description.bits_allocated // 8}"
        )
        start = self.pixel_offset + index * description.frame_length
        pixels = np.frombuffer(self.data, dtype, description.rows * description.columns, start)
        if not pixels.flags.aligned:  # the kernels are compiled for aligned arrays only
            pixels = pixels.copy()
        return DecodedFrame(
            pixels.reshape(description.rows, description.columns),
            monochrome1=description.photometric_interpretation == "MONOCHROME1",
        )


def read_native(data: FileBytes) -> NativeImage | None:
    """The file as a :class:`NativeImage`, or ``None`` when pydicom's path must read it."""
    try:
        syntax, start = _transfer_syntax(data)
        attributes, pixel_offset, pixel_length = _image_pixel_module(
            data, start, syntax == ImplicitVRLittleEndian
        )
        description = _description(syntax, attributes)
    except (_NotPlainError, struct.error):
        return None
    if pixel_length < description.frame_length * description.number_of_frames:
        return None
    return NativeImage(data, description, pixel_offset)


def _transfer_syntax(data: FileBytes) -> tuple[UID, int]:
    """The transfer syntax of the file meta group, and where the dataset starts."""
    if data[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] != MAGIC:
        raise _NotPlainError()
    position = PREAMBLE_LENGTH + 4
    syntax = None
    while position + 8 <= len(data):
        group, element = _TAG.unpack_from(data, position)
        if group != 0x0002:
            break
        position, length = _explicit_header(data, position, bytes(data[position + 4 : position + 6]))
        if length == UNDEFINED_LENGTH:
            raise _NotPlainError()
        if (group << 16 | element) == TRANSFER_SYNTAX_UID:
            syntax = _SYNTAXES.get(bytes(data[position : position + length]).rstrip(b"\x00 "))
        position += length
    if syntax is None:
        raise _NotPlainError()
    return syntax, position


def _explicit_header(data: FileBytes, position: int, vr: bytes) -> tuple[int, int]:
    """Where the value of the explicit VR element at ``position`` (whose VR is ``vr``) starts, and its
    length."""
    if vr in LONG_HEADER_VRS:
        return position + 12, _LONG_LENGTH.unpack_from(data, position + 8)[0]
    return position + 8, _SHORT_LENGTH.unpack_from(data, position + 6)[0]


def _image_pixel_module(data: FileBytes, position: int, implicit: bool) -> tuple[dict[int, bytes], int, int]:
    """The wanted attributes (raw values), and the offset and length of the PixelData value."""
    attributes: dict[int, bytes] = {}
    previous = -1
    end = len(data)
    while position + 8 <= end:
        group, element = _TAG.unpack_from(data, position)
        tag = group << 16 | element
        if tag <= previous:
            raise _NotPlainError()
        previous = tag
        vr = b""
        if implicit:
            value, length = position + 8, _LONG_LENGTH.unpack_from(data, position + 4)[0]
        else:
            vr = bytes(data[position + 4 : position + 6])
            value, length = _explicit_header(data, position, vr)
        if tag >= FLOAT_PIXEL_DATA:  # FloatPixelData, DoubleFloatPixelData or PixelData
            if tag != PIXEL_DATA or length == UNDEFINED_LENGTH or value + length > end:
                raise _NotPlainError()
            if not (implicit or vr in (b"OB", b"OW")):
                raise _NotPlainError()
            return attributes, value, length
        if length == UNDEFINED_LENGTH:
            if tag in _WANTED_VRS or not (implicit or vr in (b"SQ", b"UN")):
                raise _NotPlainError()
            position = _skip_sequence(data, value, implicit or vr == b"UN", 0)
            continue
        if value + length > end:
            raise _NotPlainError()
        expected_vr = _WANTED_VRS.get(tag)
        if expected_vr is not None:
            if vr and vr != expected_vr:
                raise _NotPlainError()
            attributes[tag] = bytes(data[value : value + length])
        position = value + length
    raise _NotPlainError()  # no PixelData: pydicom's path says so


def _skip_sequence(data: FileBytes, position: int, implicit: bool, depth: int) -> int:
    """Where the sequence of undefined length whose items start at ``position`` ends."""
    if depth > MAX_DEPTH:
        raise _NotPlainError()
    end = len(data)
    while position + 8 <= end:
        group, element = _TAG.unpack_from(data, position)
        tag = group << 16 | element
        length = _LONG_LENGTH.unpack_from(data, position + 4)[0]
        position += 8
        if tag == SEQUENCE_DELIMITER:
            return position
        if tag != ITEM:
            raise _NotPlainError()
        if length == UNDEFINED_LENGTH:
            position = _skip_item(data, position, implicit, depth)
        else:
            position += length
    raise _NotPlainError()


def _skip_item(data: FileBytes, position: int, implicit: bool, depth: int) -> int:
    """Where the item of undefined length whose elements start at ``position`` ends."""
    end = len(data)
    while position + 8 <= end:
        group, element = _TAG.unpack_from(data, position)
        tag = group << 16 | element
        if tag == ITEM_DELIMITER:
            return position + 8
        if implicit:
            value, length = position + 8, _LONG_LENGTH.unpack_from(data, position + 4)[0]
            vr = b""
        else:
            vr = bytes(data[position + 4 : position + 6])
            value, length = _explicit_header(data, position, vr)
        if length == UNDEFINED_LENGTH:
            if not (implicit or vr in (b"SQ", b"UN")):
                raise _NotPlainError()
            position = _skip_sequence(data, value, implicit or vr == b"UN", depth + 1)
        else:
            position = value + length
    raise _NotPlainError()


def _unsigned_short(attributes: dict[int, bytes], tag: int, default: int | None) -> int:
    value = attributes.get(tag)
    if value is None:
        if default is None:
            raise _NotPlainError()  # pydicom's path tells what is missing
        return default
    if len(value) != 2:
        raise _NotPlainError()
    return _SHORT_LENGTH.unpack(value)[0]


def _decimal(attributes: dict[int, bytes], tag: int, default: float) -> float:
    value = attributes.get(tag)
    if not value or not value.strip(b" "):
        return default
    if not _DECIMAL.fullmatch(value):
        raise _NotPlainError()
    return float(value)


def _frames(attributes: dict[int, bytes]) -> int:
    value = attributes.get(NUMBER_OF_FRAMES)
    if not value or not value.strip(b" "):
        return 1
    if not _INTEGER.fullmatch(value):
        raise _NotPlainError()
    return max(int(value), 1)


def _description(syntax: UID, attributes: dict[int, bytes]) -> ImageDescription:
    """The description ``decode.describe`` gives of the same file, when it is plain grayscale."""
    photometric = _PHOTOMETRIC.get(attributes.get(PHOTOMETRIC_INTERPRETATION, b""))
    bits = _unsigned_short(attributes, BITS_ALLOCATED, None)
    description = ImageDescription(
        transfer_syntax=syntax,
        rows=_unsigned_short(attributes, ROWS, None),
        columns=_unsigned_short(attributes, COLUMNS, None),
        samples_per_pixel=_unsigned_short(attributes, SAMPLES_PER_PIXEL, 1) or 1,
        bits_allocated=bits,
        bits_stored=_unsigned_short(attributes, BITS_STORED, None),
        pixel_representation=_unsigned_short(attributes, PIXEL_REPRESENTATION, 0),
        photometric_interpretation=photometric or "",
        number_of_frames=_frames(attributes),
        rescale_slope=_decimal(attributes, RESCALE_SLOPE, 1.0),
        rescale_intercept=_decimal(attributes, RESCALE_INTERCEPT, 0.0),
    )
    if (
        photometric is None
        or description.samples_per_pixel != 1
        or bits not in (8, 16)
        or description.bits_stored != bits
        or description.pixel_representation not in (0, 1)
        or description.rows == 0
        or description.columns == 0
    ):
        raise _NotPlainError()
    return description
