"""Numba kernels for the per-pixel work of rendering (one pass over the pixels each), and for the walk
over a native file's element headers to its pixels.

Every kernel is compiled ahead of the first request (see
:mod:`fastpacs.imaging.warmup`) for every pixel type it is used with, and
cached on disk (``cache=True``), so that no request pays for compilation.
Arrays are flat, C-contiguous and in native byte order; callers reshape.
"""

import numpy as np
from numba import njit

from fastpacs.dicom.writer import (
    ITEM,
    ITEM_DELIMITER,
    LONG_HEADER_VRS,
    PIXEL_DATA,
    SEQUENCE_DELIMITER,
    UNDEFINED_LENGTH,
)

_KERNEL_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False}
_PARSER_OPTIONS = {**_KERNEL_OPTIONS, "boundscheck": True}
"""The element walk reads uploaded files: an index out of bounds must raise, never read beyond."""


@njit(**_KERNEL_OPTIONS)
def min_max(values):  # pragma: no cover - compiled
    """The smallest and the largest value, as 64-bit integers.

    ``min`` and ``max`` rather than comparisons that branch: the compiler vectorizes them (0.01
    instead of 0.3 ms for a 512×512 slice).
    """
    low = values[0]
    high = values[0]
    for index in range(1, values.size):
        value = values[index]
        low = min(low, value)
        high = max(high, value)
    return np.int64(low), np.int64(high)


@njit(**_KERNEL_OPTIONS)
def stretch_to_uint8(values, low, high, invert):  # pragma: no cover - compiled
    """Linear stretch of ``low..high`` to ``0..255``, rounded; ``invert`` gives ``255 - v`` (MONOCHROME1).

    As Orthanc computes its previews: ``a * v + b`` in single precision, with
    ``a = 255 / (high - low)`` and ``b = -low * a`` (not ``(v - low) * a``,
    which rounds differently), then rounded half up; a constant image becomes 0.
    """
    out = np.empty(values.size, np.uint8)
    if high == low:
        out[:] = 255 if invert else 0
        return out
    scale = np.float32(255.0) / np.float32(high - low)
    offset = np.float32(-low) * scale
    for index in range(values.size):
        scaled = scale * np.float32(values[index]) + offset
        if scaled >= 255:
            level = np.uint8(255)
        elif scaled <= 0:
            level = np.uint8(0)
        else:
            whole = np.floor(scaled)
            level = np.uint8(whole) + np.uint8(scaled - whole >= 0.5)
        out[index] = 255 - level if invert else level
    return out


@njit(**_KERNEL_OPTIONS)
def clip_into(values, out, low, high):  # pragma: no cover - compiled
    """``out[i] = values[i]`` clamped to ``low..high`` (a conversion to a narrower pixel type)."""
    for index in range(values.size):
        value = np.int64(values[index])
        if value < low:
            value = low
        elif value > high:
            value = high
        out[index] = value
    return out


@njit(**_KERNEL_OPTIONS)
def rescale_to_float32(values, slope, intercept):  # pragma: no cover - compiled
    """Modality rescale as Orthanc's ``/numpy`` gives it: ``floor(v * slope + intercept)``, in float32."""
    out = np.empty(values.size, np.float32)
    slope32 = np.float32(slope)
    intercept32 = np.float32(intercept)
    for index in range(values.size):
        out[index] = np.floor(np.float32(values[index]) * slope32 + intercept32)
    return out


@njit(**_KERNEL_OPTIONS)
def ybr_full_to_rgb(values):  # pragma: no cover - compiled
    """YCbCr (YBR_FULL, interleaved 8-bit triplets) to RGB, in place (the DICOM PS3.3 C.7.6.3.1.2 matrix)."""
    for index in range(0, values.size, 3):
        luma = np.float32(values[index])
        blue = np.float32(values[index + 1]) - np.float32(128.0)
        red = np.float32(values[index + 2]) - np.float32(128.0)
        r = np.floor(luma + np.float32(1.402) * red + np.float32(0.5))
        g = np.floor(luma - np.float32(0.344136286) * blue - np.float32(0.714136286) * red + np.float32(0.5))
        b = np.floor(luma + np.float32(1.772) * blue + np.float32(0.5))
        values[index] = 0 if r < 0 else 255 if r > 255 else np.uint8(r)
        values[index + 1] = 0 if g < 0 else 255 if g > 255 else np.uint8(g)
        values[index + 2] = 0 if b < 0 else 255 if b > 255 else np.uint8(b)
    return values


@njit(**_KERNEL_OPTIONS)
def palette_to_rgb(indices, table, first_mapped):  # pragma: no cover - compiled
    """Palette color lookup: ``table`` holds one RGB row per entry; indices outside it are clamped."""
    out = np.empty(indices.size * 3, np.uint8)
    last = table.shape[0] - 1
    for index in range(indices.size):
        entry = np.int64(indices[index]) - first_mapped
        if entry < 0:
            entry = 0
        elif entry > last:
            entry = last
        out[3 * index] = table[entry, 0]
        out[3 * index + 1] = table[entry, 1]
        out[3 * index + 2] = table[entry, 2]
    return out


@njit(**_KERNEL_OPTIONS)
def png_up_filter(rows):  # pragma: no cover - compiled
    """PNG scanlines with the "Up" filter (type 2): each byte minus the byte above it, modulo 256.

    ``rows`` is the image as bytes, one row per line; the result has the
    filter-type byte in front of every row, ready for deflate.
    """
    height, width = rows.shape
    out = np.empty((height, width + 1), np.uint8)
    for row in range(height):
        out[row, 0] = 2
        if row == 0:
            for column in range(width):
                out[0, column + 1] = rows[0, column]
        else:
            for column in range(width):
                out[row, column + 1] = np.uint8((np.int32(rows[row, column]) - rows[row - 1, column]) & 0xFF)
    return out


ELEMENTS_REACHED_PIXEL_DATA = 0
""":func:`walk_elements` found the top-level PixelData element."""
ELEMENTS_NOT_PLAIN = 1
""":func:`walk_elements` found what the native reader does not take (pydicom's path reads the file)."""
MAX_SEQUENCE_DEPTH = 16
"""Nested sequences of undefined length :func:`walk_elements` skips before giving up (a pathological file)."""
_FLOAT_PIXEL_DATA = 0x7FE00008


def vr_code(vr: bytes) -> int:
    """A two-letter VR as the element walk compares it: one 16-bit little-endian number."""
    return vr[0] | vr[1] << 8


_VR_OB, _VR_OW, _VR_SQ, _VR_UN = (vr_code(vr) for vr in (b"OB", b"OW", b"SQ", b"UN"))
_LONG_HEADER_VR_CODES = np.array(sorted(vr_code(vr.encode()) for vr in LONG_HEADER_VRS))
"""The writer's explicit VRs with a 4-byte length, as the walks compare them (a constant of the compiled
code: ``writer.py`` is among the sources the kernel cache's stamp covers)."""


@njit(**_PARSER_OPTIONS)
def _unsigned(data, position, size):  # pragma: no cover - compiled
    """The little-endian unsigned integer of ``size`` bytes at ``position``."""
    value = np.int64(0)
    for index in range(size):
        value |= np.int64(data[position + index]) << (8 * index)
    return value


@njit(**_PARSER_OPTIONS)
def _element_header(data, position, implicit):  # pragma: no cover - compiled
    """The VR (0 when implicit), the value's offset and its length of the element at ``position``;
    a length of -1 when the header runs past the end of ``data``."""
    if implicit:
        return 0, position + 8, _unsigned(data, position + 4, 4)
    vr = _unsigned(data, position + 4, 2)
    for long_vr in _LONG_HEADER_VR_CODES:
        if vr == long_vr:
            if position + 12 > data.size:
                return vr, position + 12, np.int64(-1)
            return vr, position + 12, _unsigned(data, position + 8, 4)
    return vr, position + 8, _unsigned(data, position + 6, 2)


@njit(**_PARSER_OPTIONS)
def _skip_sequence(data, position, implicit):  # pragma: no cover - compiled
    """Where the sequence of undefined length whose items start at ``position`` ends; -1 if it does not
    end well (or nests deeper than :data:`MAX_SEQUENCE_DEPTH`). Items and nested sequences are
    followed without recursion: ``implicit_at[depth]`` says how the elements of the sequence open at
    each depth are encoded (those of a UN sequence are implicit)."""
    end = data.size
    implicit_at = np.empty(MAX_SEQUENCE_DEPTH + 1, np.bool_)
    implicit_at[0] = implicit
    depth = 0
    in_item = False
    while position + 8 <= end:
        tag = _unsigned(data, position, 2) << 16 | _unsigned(data, position + 2, 2)
        if not in_item:  # between the items of the sequence open at ``depth``
            length = _unsigned(data, position + 4, 4)
            position += 8
            if tag == SEQUENCE_DELIMITER:
                if depth == 0:
                    return position
                depth -= 1
                in_item = True  # back among the elements of the enclosing item
            elif tag != ITEM:
                return -1
            elif length == UNDEFINED_LENGTH:
                in_item = True
            else:
                position += length
        elif tag == ITEM_DELIMITER:
            position += 8
            in_item = False
        else:
            vr, value, length = _element_header(data, position, implicit_at[depth])
            if length < 0:
                return -1
            if length != UNDEFINED_LENGTH:
                position = value + length
            elif depth == MAX_SEQUENCE_DEPTH or not (implicit_at[depth] or vr in (_VR_SQ, _VR_UN)):
                return -1
            else:
                depth += 1
                implicit_at[depth] = implicit_at[depth - 1] or vr == _VR_UN
                in_item = False
                position = value
    return -1


@njit(**_PARSER_OPTIONS)
def walk_file_meta(data, position):  # pragma: no cover - compiled
    """Walk the file meta group (group 0002, explicit VR little endian) from ``position``.

    Answers ``(value, length, end)``: the offset and length of its
    TransferSyntaxUID value (-1 and -1 when absent, or when an element has an
    undefined length or a header past the end of ``data``), and where the
    dataset starts.
    """
    end = data.size
    syntax_value = np.int64(-1)
    syntax_length = np.int64(-1)
    while position + 8 <= end and _unsigned(data, position, 2) == 0x0002:
        _, value, length = _element_header(data, position, False)
        if length < 0 or length == UNDEFINED_LENGTH:
            return np.int64(-1), np.int64(-1), position
        if _unsigned(data, position + 2, 2) == 0x0010:  # TransferSyntaxUID
            syntax_value = value
            syntax_length = length
        position = value + length
    return syntax_value, syntax_length, position


@njit(**_PARSER_OPTIONS)
def walk_elements(data, position, implicit, wanted, found):  # pragma: no cover - compiled
    """Walk the little-endian element headers of ``data`` (a file's bytes) from ``position`` to PixelData.

    Tags must increase. ``wanted`` holds rows of a tag and its VR
    (:func:`vr_code`), which an explicit VR file must give it; the value
    offset and length of each wanted element found go to the same row of
    ``found``. Sequences of undefined length are skipped (a wanted element
    must not be one). Answers ``(outcome, value, length)``: the offset and
    length of the pixels when :data:`ELEMENTS_REACHED_PIXEL_DATA`.
    """
    end = data.size
    previous = -1
    while position + 8 <= end:
        tag = _unsigned(data, position, 2) << 16 | _unsigned(data, position + 2, 2)
        if tag <= previous:
            break
        previous = tag
        vr, value, length = _element_header(data, position, implicit)
        if length < 0:
            break
        if tag >= _FLOAT_PIXEL_DATA:  # FloatPixelData, DoubleFloatPixelData or PixelData
            if tag != PIXEL_DATA or length == UNDEFINED_LENGTH or value + length > end:
                break
            if not (implicit or vr in (_VR_OB, _VR_OW)):
                break
            return ELEMENTS_REACHED_PIXEL_DATA, value, length
        wanted_row = -1
        for row in range(wanted.shape[0]):
            if wanted[row, 0] == tag:
                wanted_row = row
                break
        if length == UNDEFINED_LENGTH:
            if wanted_row >= 0 or not (implicit or vr in (_VR_SQ, _VR_UN)):
                break
            position = _skip_sequence(data, value, implicit or vr == _VR_UN)
            if position < 0:
                break
            continue
        if value + length > end:
            break
        if wanted_row >= 0:
            if not implicit and vr != wanted[wanted_row, 1]:
                break
            found[wanted_row, 0] = value
            found[wanted_row, 1] = length
        position = value + length
    return ELEMENTS_NOT_PLAIN, 0, 0
