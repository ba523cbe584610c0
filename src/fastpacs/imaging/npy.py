"""NumPy ``.npy`` files written the way Orthanc writes them (``/numpy`` endpoints).

The header is Orthanc's text, byte for byte (``'shape': (1, 128,128,1)``),
padded with spaces to a multiple of 64 bytes as the format asks. With
``compress``, the array goes into a ZIP archive (``.npz``) as entry
``arr_0``, as Orthanc does.
"""

import io
import struct
import zipfile

import numpy as np

MAGIC = b"\x93NUMPY\x01\x00"
ALIGNMENT = 64


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """Orthanc's ``.npy`` header for a C-ordered array; a leading frame count is set apart by ``", "``."""
    *frames, rows, columns, channels = shape
    dimensions = f"{rows},{columns},{channels}"
    if frames:
        dimensions = f"{frames[0]}, {dimensions}"
    descr = f"<{dtype.kind}{dtype.itemsize}"  # Orthanc writes "<u1" where NumPy would write "|u1"
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dimensions}), }}"
    unpadded = len(MAGIC) + 2 + len(text) + 1
    padding = -unpadded % ALIGNMENT
    header = text + " " * padding + "\n"
    return MAGIC + struct.pack("<H", len(header)) + header.encode("latin-1")


def npy_file(array: np.ndarray) -> bytes:
    """A ``.npy`` of an array shaped ``(rows, columns, channels)``, maybe with a leading frame axis."""
    little_endian = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return npy_header(array.dtype, array.shape) + np.ascontiguousarray(little_endian).tobytes()


def npz_file(npy: bytes) -> bytes:
    """The ``.npz`` archive of one ``.npy`` file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("arr_0", npy)
    return buffer.getvalue()
