"""Worker side of ``/series/{id}/numpy``: every slice of a series in one array."""

import numpy as np

from fastpacs.imaging.formats import UndecodableImageError
from fastpacs.imaging.npy import npy_file, npz_file
from fastpacs.pool.images import _numpy_frame, _pixels
from fastpacs.storage.blobs import StoredBlob


def series_numpy(slices: list[tuple[StoredBlob, int]], rescale: bool, compress: bool) -> bytes:
    """``.npy`` of shape (slices, rows, columns, channels) from (blob, frame) pairs, in order."""
    frames = []
    for blob, index in slices:
        dataset, description = _pixels(blob)
        if description.bits_allocated > 16:
            raise UndecodableImageError()  # Orthanc 1.10.1 decodes no 32-bit image (rtdose)
        frames.append(_numpy_frame(dataset, description, index, rescale))
    npy = npy_file(np.stack(frames))
    return npz_file(npy) if compress else npy
