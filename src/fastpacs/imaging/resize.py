"""Resizing a rendered 8-bit image to fit the ``width``/``height`` of ``/rendered``, as Orthanc 1.10.1 does.

Measured against Orthanc pixel for pixel (tests/differential/test_odd_images_vs_orthanc.py):

* one scale for both axes, the smaller of ``width / columns`` and
  ``height / rows`` (of those given), in single precision; each side becomes
  ``floor(side * scale + 0.5)`` (30 columns at 42/40 give 31: 1.05 is
  1.04999995 in single precision). A side of 0 is no image (415);
* every target pixel takes the source pixel under its centre,
  ``floor((i + 0.5) * (source / target))``, the ratio in single precision,
  separately for rows and columns (their ratios differ after rounding);
* a target of more than :data:`MAX_PIXELS` is refused (415): Orthanc
  1.10.1 tries to allocate it and dies (``width=99999`` of a 3x3 image is
  10 GB);
* ``smooth`` blurs the source with a 5x5 Gaussian (``[1 4 6 4 1] / 16``
  both ways, edges repeated, the sum floored) before sampling, when the
  image shrinks; enlarged images are sampled as they are.
"""

import numpy as np

from fastpacs.imaging.formats import UnsupportedConversionError

MAX_PIXELS = 8192 * 8192
"""The largest rendering answered (64 MB of grayscale, 192 MB of RGB before encoding)."""
_SINGLE = np.float32


def fitted(image: np.ndarray, width: int, height: int, smooth: bool) -> np.ndarray:
    """``image`` (2-D, or rows x columns x 3) scaled to fit ``width`` x ``height`` (0: unconstrained)."""
    rows, columns = image.shape[:2]
    scales = [_SINGLE(size) / _SINGLE(extent) for size, extent in ((width, columns), (height, rows)) if size]
    if not scales:
        return image
    scale = min(scales)
    target_columns = int(np.floor(_SINGLE(columns) * scale + _SINGLE(0.5)))
    target_rows = int(np.floor(_SINGLE(rows) * scale + _SINGLE(0.5)))
    if target_columns == 0 or target_rows == 0 or target_columns * target_rows > MAX_PIXELS:
        raise UnsupportedConversionError()
    if smooth and scale < 1:
        image = gaussian_5x5(image)
    return image[_sources(rows, target_rows)[:, np.newaxis], _sources(columns, target_columns)]


def _sources(extent: int, target: int) -> np.ndarray:
    """The source index sampled by each of ``target`` pixels along an axis of ``extent`` pixels."""
    centres = np.arange(target, dtype=_SINGLE) + _SINGLE(0.5)
    return np.minimum((centres * (_SINGLE(extent) / _SINGLE(target))).astype(np.intp), extent - 1)


def gaussian_5x5(image: np.ndarray) -> np.ndarray:
    """The 8-bit image blurred by the separable ``[1 4 6 4 1]`` kernel, borders repeated, floored.

    In 16-bit integers, exact: a pass sums at most 16 times its input (255, then 4080 = 16 * 255).
    """
    pixels = image.astype(np.uint16)
    for axis in (1, 0):
        padding = [(0, 0)] * pixels.ndim
        padding[axis] = (2, 2)
        padded = np.pad(pixels, padding, mode="edge")
        length = pixels.shape[axis]
        before = (slice(None),) * axis
        taps = [padded[(*before, slice(offset, offset + length))] for offset in range(5)]
        pixels = taps[0] + taps[4] + np.uint16(4) * (taps[1] + taps[3]) + np.uint16(6) * taps[2]
    return (pixels >> 8).astype(np.uint8)
