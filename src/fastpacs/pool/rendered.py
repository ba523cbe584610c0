"""Worker side of ``/rendered``: one frame windowed to 8 bits, resized, encoded (Orthanc 1.10.1's rules).

Grayscale frames go through the modality rescale (slope, intercept), then
the window: the ``window-center``/``window-width`` arguments, else the
first WindowCenter/WindowWidth of the file, else the range of the pixel
type as Orthanc takes it (8-bit pixels unchanged; 16-bit: center 32768,
width 65536). A value becomes ``floor((v - (center - width / 2)) * 255 /
width)`` clamped to 0..255 — checked pixel for pixel against Orthanc by
tests/differential/test_api_rest_vs_orthanc.py — and MONOCHROME1 is
inverted. Colour frames are given as 8-bit RGB. Resizing
keeps the aspect ratio within the requested box, sampling the nearest
source pixel of each target pixel's centre (``smooth``: bilinear).
"""

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from fastpacs.imaging.decode import DecodedFrame, ImageDescription, decode_frame
from fastpacs.imaging.encode import encode_image
from fastpacs.imaging.formats import ImageFormat, Rendering, UnsupportedConversionError
from fastpacs.pool.images import _pixels


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


def windowed(
    frame: DecodedFrame, dataset: Dataset, description: ImageDescription, rendering: Rendering
) -> np.ndarray:
    """The frame as 8-bit grayscale (windowed) or RGB."""
    pixels = frame.pixels
    if description.bits_allocated > 16:
        raise UnsupportedConversionError()  # Orthanc 1.10.1 renders no 32-bit image (rtdose)
    if frame.is_color:
        return pixels if pixels.dtype == np.uint8 else (pixels >> 8).astype(np.uint8)
    slope, intercept = np.float32(description.rescale_slope), np.float32(description.rescale_intercept)
    values = pixels.astype(np.float32) * slope + intercept
    center = rendering.window_center
    width = rendering.window_width
    if center is None or width is None:
        stored_center = _first_number(dataset, "WindowCenter")
        stored_width = _first_number(dataset, "WindowWidth")
        if stored_center is not None and stored_width is not None and stored_width > 0:
            center = stored_center if center is None else center
            width = stored_width if width is None else width
        else:
            default_center, default_width = (
                (127.5, 255.0) if description.bits_allocated <= 8 else (32768.0, 65536.0)
            )
            center = default_center if center is None else center
            width = default_width if width is None else width
    width = max(float(width), 1.0)
    low = np.float32(center - width / 2)
    scaled = np.floor((values - low) * np.float32(255.0 / width))
    out = np.clip(scaled, 0, 255).astype(np.uint8)
    return 255 - out if frame.monochrome1 else out


def resized(image: np.ndarray, rendering: Rendering) -> np.ndarray:
    rows, columns = image.shape[:2]
    scales = [
        size / extent for size, extent in ((rendering.width, columns), (rendering.height, rows)) if size > 0
    ]
    if not scales:
        return image
    scale = min(scales)
    target = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    if rendering.smooth:
        return np.asarray(Image.fromarray(image).resize(target, Image.Resampling.BILINEAR))
    source_columns = np.minimum(((np.arange(target[0]) + 0.5) / scale).astype(np.int64), columns - 1)
    source_rows = np.minimum(((np.arange(target[1]) + 0.5) / scale).astype(np.int64), rows - 1)
    return image[source_rows[:, np.newaxis], source_columns]


def render_windowed(
    digest: bytes, index: int, rendering: Rendering, image_format: ImageFormat, quality: int
) -> bytes:
    dataset, description = _pixels(digest)
    frame = decode_frame(dataset, description, index)
    image = windowed(frame, dataset, description, rendering)
    return encode_image(resized(image, rendering), image_format, quality)
