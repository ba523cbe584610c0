"""The pixel operations of Orthanc's image endpoints, on one decoded frame.

* ``preview``: grayscale stretched from its own min..max to 0..255 (window
  and rescale ignored, MONOCHROME1 inverted); colour given as 8-bit RGB
  (the high byte of 16- and 32-bit samples).
* ``image-uint8`` / ``image-uint16``: stored values clamped to the type.
* ``image-int16``: stored values clamped to -32768..32767, sent as the
  two's-complement bits in a 16-bit image.

Colour images have no ``image-*`` form (Orthanc answers 415).
"""

import numpy as np

from fastpacs.imaging import kernels
from fastpacs.imaging.decode import DecodedFrame
from fastpacs.imaging.formats import Operation, UnsupportedConversionError

_CLAMPS: dict[Operation, tuple[type[np.integer], int, int]] = {
    Operation.UINT8: (np.uint8, 0, 255),
    Operation.UINT16: (np.uint16, 0, 65535),
    Operation.INT16: (np.int16, -32768, 32767),
}


def preview(frame: DecodedFrame) -> np.ndarray:
    pixels = frame.pixels
    if frame.is_color:
        if pixels.dtype == np.uint8:
            return pixels
        return (pixels >> (8 * pixels.dtype.itemsize - 8)).astype(np.uint8)  # 16/32-bit: the high byte
    flat = pixels.reshape(-1)
    low, high = kernels.min_max(flat)
    return kernels.stretch_to_uint8(flat, low, high, frame.monochrome1).reshape(pixels.shape)


def clamp(frame: DecodedFrame, operation: Operation) -> np.ndarray:
    if frame.is_color:
        raise UnsupportedConversionError()
    dtype, low, high = _CLAMPS[operation]
    pixels = frame.pixels
    out = np.empty(pixels.shape, dtype)
    kernels.clip_into(pixels.reshape(-1), out.reshape(-1), low, high)
    return out


def render(frame: DecodedFrame, operation: Operation) -> np.ndarray:
    """The image to encode: 2-D ``uint8``/``uint16``/``int16``, or ``(rows, columns, 3)`` ``uint8``."""
    if operation == Operation.PREVIEW:
        return preview(frame)
    return clamp(frame, operation)
