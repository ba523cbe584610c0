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

from fastpacs.imaging import kernels
from fastpacs.imaging.decode import DecodedFrame, ImageDescription, check_frame_index

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"

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
_WANTED = np.array([(tag, kernels.vr_code(vr)) for tag, vr in _WANTED_VRS.items()], np.int64)
"""The attributes :func:`kernels.walk_elements` is to find, as it takes them."""
_SYNTAXES = {
    ImplicitVRLittleEndian.encode(): ImplicitVRLittleEndian,
    ExplicitVRLittleEndian.encode(): ExplicitVRLittleEndian,
}
_PHOTOMETRIC = {b"MONOCHROME1 ": "MONOCHROME1", b"MONOCHROME2 ": "MONOCHROME2"}
_DECIMAL = re.compile(rb" *[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)? *")
_INTEGER = re.compile(rb" *\d+ *")
_SHORT_LENGTH = struct.Struct("<H")


FileBytes = bytearray | mmap.mmap
"""A stored file as a worker holds it: read into memory, or mapped copy-on-write."""


class _NotPlainError(Exception):
    """The file is not one this reader takes (pydicom's path decides what it is)."""


@dataclass(frozen=True)
class NativeImage:
    """A plain native grayscale file: its description and where its frames are in ``data``."""

    data: FileBytes
    """The whole file, writeable (a buffer of its own, or a copy-on-write mapping), so that frames are
    views the kernels take as they are."""
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
    array = np.frombuffer(data, np.uint8)
    try:
        syntax, start = _transfer_syntax(data, array)
        attributes, pixel_offset, pixel_length = _image_pixel_module(
            data, array, start, syntax == ImplicitVRLittleEndian
        )
        description = _description(syntax, attributes)
    except _NotPlainError:
        return None
    if pixel_length < description.frame_length * description.number_of_frames:
        return None
    return NativeImage(data, description, pixel_offset)


def _transfer_syntax(data: FileBytes, array: np.ndarray) -> tuple[UID, int]:
    """The transfer syntax of the file meta group, and where the dataset starts."""
    if data[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] != MAGIC:
        raise _NotPlainError()
    value, length, start = kernels.walk_file_meta(array, PREAMBLE_LENGTH + 4)
    syntax = _SYNTAXES.get(bytes(data[value : value + length]).rstrip(b"\x00 ")) if value >= 0 else None
    if syntax is None:
        raise _NotPlainError()
    return syntax, start


def _image_pixel_module(
    data: FileBytes, array: np.ndarray, position: int, implicit: bool
) -> tuple[dict[int, bytes], int, int]:
    """The wanted attributes (raw values), and the offset and length of the PixelData value.

    The walk is a kernel's (as the meta group's): in Python it took about 0.1 ms per CT slice of
    the benchmark, a sixth of a worker's time per uncached render.
    """
    found = np.full((len(_WANTED), 2), -1, np.int64)
    outcome, value, length = kernels.walk_elements(array, position, implicit, _WANTED, found)
    if outcome != kernels.ELEMENTS_REACHED_PIXEL_DATA:
        raise _NotPlainError()
    attributes = {
        tag: bytes(data[start : start + size])
        for (tag, _), (start, size) in zip(_WANTED.tolist(), found.tolist(), strict=True)
        if start >= 0
    }
    return attributes, value, length


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
