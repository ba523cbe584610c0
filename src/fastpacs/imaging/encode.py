"""Encoding a rendered image in the format the client accepted: PNG, JPEG or PAM.

JPEG goes through Pillow (libjpeg-turbo): already needed to decode JPEG
baseline like Orthanc does, and as fast as simplejpeg here (0.8 vs 1.2 ms
for a 512×512 RGB image at quality 90, 0.55 vs 0.38 ms for grayscale).
"""

import io

import numpy as np
from PIL import Image

from fastpacs.imaging.formats import DEFAULT_JPEG_QUALITY, ImageFormat
from fastpacs.imaging.png import encode_png


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG of an 8-bit grayscale or RGB image."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def encode_pam(pixels: np.ndarray) -> bytes:
    """Netpbm PAM (``P7``): GRAYSCALE or RGB tuples, MAXVAL 255 or 65535, 16-bit samples big-endian."""
    height, width = pixels.shape[:2]
    depth = 3 if pixels.ndim == 3 else 1
    wide = pixels.dtype.itemsize == 2
    header = (
        f"P7\nWIDTH {width}\nHEIGHT {height}\nDEPTH {depth}\nMAXVAL {65535 if wide else 255}\n"
        f"TUPLTYPE {'RGB' if depth == 3 else 'GRAYSCALE'}\nENDHDR\n"
    ).encode()
    if wide:
        pixels = pixels.astype(">u2" if pixels.dtype.kind == "u" else ">i2", copy=False)
    return header + np.ascontiguousarray(pixels).tobytes()


def encode_image(pixels: np.ndarray, image_format: ImageFormat, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    if image_format == ImageFormat.PNG:
        return encode_png(pixels)
    if image_format == ImageFormat.JPEG:
        return encode_jpeg(pixels, quality)
    return encode_pam(pixels)
