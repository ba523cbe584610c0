"""Numba kernels for the per-pixel work of rendering: one pass over the pixels each.

Every kernel is compiled ahead of the first request (see
:mod:`fastpacs.imaging.warmup`) for every pixel type it is used with, and
cached on disk (``cache=True``), so that no request pays for compilation.
Arrays are flat, C-contiguous and in native byte order; callers reshape.
"""

import numpy as np
from numba import njit

_KERNEL_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False}


@njit(**_KERNEL_OPTIONS)
def min_max(values):  # pragma: no cover - compiled
    """The smallest and the largest value, as 64-bit integers."""
    low = np.int64(values[0])
    high = low
    for index in range(1, values.size):
        value = np.int64(values[index])
        if value < low:
            low = value
        elif value > high:
            high = value
    return low, high


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
