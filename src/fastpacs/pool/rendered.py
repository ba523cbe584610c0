"""Worker side of ``/rendered``: one frame windowed to 8 bits, resized, encoded (Orthanc 1.10.1's rules).

Grayscale frames go through the modality rescale (slope, intercept), then
the window: the ``window-center``/``window-width`` arguments, else the
first WindowCenter/WindowWidth of the file (whatever the width: below 1 it
counts as 1), else the range of BitsStored as Orthanc takes it (center
``2 ** (BitsStored - 1)``, width ``2 ** BitsStored``: 8-bit values become
``floor(v * 255 / 256)``; 32 bits stored, rendered from RLE only, give a
width of 1). A value becomes ``floor(a * v + b)`` clamped to
0..255, with ``a = 255 / width`` and ``b = -(center - width / 2) * a`` in
single precision (which, as in Orthanc, may give one level less than the
exact quotient). MONOCHROME1 is inverted after resizing (as Orthanc, whose
smoothing floors). Colour frames are given as 8-bit RGB. Resizing follows
Orthanc's rules (:mod:`fastpacs.imaging.resize`). All checked pixel for
pixel against Orthanc by tests/differential/test_api_rest_vs_orthanc.py and
tests/differential/test_odd_images_vs_orthanc.py.
"""

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import RLELossless

from fastpacs.imaging.decode import DecodedFrame, ImageDescription, decode_frame
from fastpacs.imaging.encode import encode_image
from fastpacs.imaging.formats import ImageFormat, Rendering, UnsupportedConversionError
from fastpacs.imaging.resize import fitted
from fastpacs.pool.images import _pixels
from fastpacs.storage.blobs import StoredBlob


def _first_number(dataset: Dataset, keyword: str) -> float | None:
    """The first value of a DS attribute (WindowCenter may hold several windows)."""
    value = dataset.get(keyword)
    if isinstance(value, MultiValue):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rendered_32_bit(frame: DecodedFrame, description: ImageDescription) -> bool:
    """Whether Orthanc 1.10.1 renders these 32-bit pixels: unsigned grayscale RLE only (rtdose_rle.dcm;
    native 32-bit, as rtdose.dcm, signed or colour data are its 415)."""
    return (
        description.transfer_syntax == RLELossless
        and description.pixel_representation == 0
        and not frame.is_color
    )


def windowed(
    frame: DecodedFrame, dataset: Dataset, description: ImageDescription, rendering: Rendering
) -> np.ndarray:
    """The frame as 8-bit grayscale (windowed, MONOCHROME1 not yet inverted) or RGB."""
    pixels = frame.pixels
    if description.bits_allocated > 16 and not _rendered_32_bit(frame, description):
        raise UnsupportedConversionError()
    if frame.is_color:
        return pixels if pixels.dtype == np.uint8 else (pixels >> 8).astype(np.uint8)
    slope, intercept = np.float32(description.rescale_slope), np.float32(description.rescale_intercept)
    values = pixels.astype(np.float32) * slope + intercept
    center = rendering.window_center
    width = rendering.window_width
    if center is None or width is None:
        stored_center = _first_number(dataset, "WindowCenter")
        stored_width = _first_number(dataset, "WindowWidth")
        if stored_center is not None and stored_width is not None:
            center = stored_center if center is None else center
            width = stored_width if width is None else width
        else:
            # 2 ** BitsStored as Orthanc computes it, a 32-bit shift: 32 bits stored give 1.
            default_width = float(1 << ((description.bits_stored or description.bits_allocated) % 32))
            center = default_width / 2 if center is None else center
            width = default_width if width is None else width
    width = max(float(width), 1.0)
    scale = np.float32(255.0 / width)
    offset = -np.float32(center - width / 2) * scale
    scaled = np.floor(values * scale + offset)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render_windowed(
    blob: StoredBlob, index: int, rendering: Rendering, image_format: ImageFormat, quality: int
) -> bytes:
    dataset, description = _pixels(blob)
    frame = decode_frame(dataset, description, index)
    image = fitted(
        windowed(frame, dataset, description, rendering), rendering.width, rendering.height, rendering.smooth
    )
    if frame.monochrome1:  # after the smoothing, whose flooring is not symmetric (as Orthanc)
        image = 255 - image
    return encode_image(image, image_format, quality)
