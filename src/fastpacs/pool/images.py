"""Worker-side pixel work: read the stored file, decode one frame, render, encode.

Only the blob's index entry and a few parameters cross the process boundary; the
answer comes back as encoded bytes. Each worker keeps its last parsed files
(bounded in bytes), so that walking through the frames of a multi-frame
instance parses it once. Errors are :class:`fastpacs.imaging.decode.ImagingError`
subclasses; the service turns them into Orthanc's answers.
"""

from collections import OrderedDict

import numpy as np
from isal import igzip
from pydicom.dataset import Dataset

from fastpacs.dicom.parse import read_dataset
from fastpacs.imaging import kernels
from fastpacs.imaging.decode import DecodedFrame, ImageDescription, decode_frame, describe, raw_frame
from fastpacs.imaging.encode import encode_image
from fastpacs.imaging.formats import ImageFormat, ImagingError, Operation
from fastpacs.imaging.matlab import matlab_text
from fastpacs.imaging.native import NativeImage, read_native
from fastpacs.imaging.npy import npy_file, npz_file
from fastpacs.imaging.render import render
from fastpacs.pool.tasks import read_blob_writeable
from fastpacs.storage.blobs import StoredBlob

PARSED_FILES_BUDGET = 16 * 1024 * 1024
"""Bytes of parsed files a worker keeps for the next requests (at least the last one, whatever its
size: enough to walk the frames of a multi-frame instance, or render a slice in several ways, without
parsing it again). Most repeated answers are served by the server's rendered cache, never reaching a
worker: at 64 MB per worker this cache held about 130 MB per worker while answering uncached renders,
for no hit."""
GZIP_LEVEL = 1


class _ParsedFiles:
    """The most recently used files of this worker, by digest: plain native grayscale files as their
    bytes (:class:`NativeImage`, read without pydicom), every other file as pydicom's dataset."""

    def __init__(self, maximum_bytes: int):
        self.maximum_bytes = maximum_bytes
        self.size = 0
        self._entries: OrderedDict[bytes, tuple[NativeImage | Dataset, ImageDescription | None, int]] = (
            OrderedDict()
        )

    def get(
        self, blob: StoredBlob, native: bool = True
    ) -> tuple[NativeImage | Dataset, ImageDescription | None]:
        """The file, as a :class:`NativeImage` when it is one and ``native`` allows, else its dataset."""
        digest = blob.digest
        entry = self._entries.get(digest)
        if entry is not None and (native or isinstance(entry[0], Dataset)):
            self._entries.move_to_end(digest)
            return entry[0], entry[1]
        data = entry[0].data if entry is not None else read_blob_writeable(blob)
        image = read_native(data) if native else None
        if image is not None:
            return self._keep(digest, image, image.description, len(data))
        dataset = read_dataset(bytes(data))
        # pydicom keeps the buffer it read (for deferred values, which are not used here): without
        # this, each entry holds the file twice (its bytes, and the values parsed out of them).
        dataset.buffer = None
        try:
            description = describe(dataset)
        except ImagingError:  # remembered as "no image"; raised again by _image() and _pixels()
            description = None
        return self._keep(digest, dataset, description, len(data))

    def _keep(
        self, digest: bytes, parsed: NativeImage | Dataset, description: ImageDescription | None, size: int
    ) -> tuple[NativeImage | Dataset, ImageDescription | None]:
        previous = self._entries.pop(digest, None)
        if previous is not None:
            self.size -= previous[2]
        self._entries[digest] = (parsed, description, size)
        self.size += size
        while self.size > self.maximum_bytes and len(self._entries) > 1:
            _, (_, _, evicted) = self._entries.popitem(last=False)
            self.size -= evicted
        return parsed, description


_parsed = _ParsedFiles(PARSED_FILES_BUDGET)


def _pixels(blob: StoredBlob) -> tuple[Dataset, ImageDescription]:
    """The parsed dataset of an image (``raw`` needs pydicom's view of the pixel data)."""
    dataset, description = _parsed.get(blob, native=False)
    assert isinstance(dataset, Dataset)
    if description is None:
        describe(dataset)  # raises the reason there is no image
    assert description is not None
    return dataset, description


def _image(blob: StoredBlob) -> tuple[NativeImage | Dataset, ImageDescription]:
    image, description = _parsed.get(blob)
    if description is None:
        assert isinstance(image, Dataset)
        describe(image)  # raises the reason there is no image
    assert description is not None
    return image, description


def _decoded(image: NativeImage | Dataset, description: ImageDescription, index: int) -> DecodedFrame:
    """Frame ``index``; a native image's frame is a view of the file's bytes, not to be written to."""
    if isinstance(image, NativeImage):
        return image.frame(index)
    return decode_frame(image, description, index)


def render_frame(blob: StoredBlob, index: int, operation: str, image_format: str, quality: int) -> bytes:
    """``/preview``, ``/image-uint8``, ``/image-uint16``, ``/image-int16`` of one frame, encoded.

    The operation and the format come as their values: unpickling an enum member costs more than
    the lookup here.
    """
    image, description = _image(blob)
    frame = _decoded(image, description, index)
    return encode_image(render(frame, Operation(operation)), ImageFormat(image_format), quality)


def frame_bytes(blob: StoredBlob, index: int, compress: bool) -> tuple[bytes, str]:
    """``/frames/{i}/raw`` (the stored bytes and their content type), or ``raw.gz``."""
    dataset, description = _pixels(blob)
    data, media_type = raw_frame(dataset, description, index)
    if compress:
        return igzip.compress(data, GZIP_LEVEL), "application/gzip"
    return data, media_type


def frame_matlab(blob: StoredBlob, index: int) -> bytes:
    image, description = _image(blob)
    return matlab_text(_decoded(image, description, index).pixels)


def _numpy_frame(
    image: NativeImage | Dataset, description: ImageDescription, index: int, rescale: bool
) -> np.ndarray:
    """One frame as ``(rows, columns, channels)``: colour as uint8, grayscale rescaled (float32) or not."""
    pixels = _decoded(image, description, index).pixels
    if pixels.ndim == 3:
        return pixels
    if rescale:
        flat = kernels.rescale_to_float32(
            pixels.reshape(-1), description.rescale_slope, description.rescale_intercept
        )
        pixels = flat.reshape(pixels.shape)
    return pixels[:, :, np.newaxis]


def frames_numpy(blob: StoredBlob, index: int | None, rescale: bool, compress: bool) -> bytes:
    """``/numpy`` of one frame (``index``) or of every frame (``None``, with a leading frame axis)."""
    image, description = _image(blob)
    if index is not None:
        array = _numpy_frame(image, description, index, rescale)
    else:
        array = np.stack(
            [_numpy_frame(image, description, i, rescale) for i in range(description.number_of_frames)]
        )
    npy = npy_file(array)
    return npz_file(npy) if compress else npy
