"""``/rendered`` of instances and frames, and ``/series/{id}/numpy``, computed in the worker pool.

Renderings are kept in the rendered cache the other image routes use (one
memory budget, ``RenderedCacheSize``), keyed by the stored file's digest and
everything the request asks: a viewer scrolling back through a series with
the same window gets its answers without a worker's round trip.
"""

from typing import NoReturn

from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.imaging.cache import RenderedCache
from fastpacs.imaging.formats import (
    DEFAULT_JPEG_QUALITY,
    ImageFormat,
    ImagingError,
    InvalidFrameCountError,
    Rendering,
    number_of_frames,
    out_of_range_is_not_found,
)
from fastpacs.index.database import Database
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.pool.pool import WorkerFunction, WorkerPool
from fastpacs.services.slices import SliceService
from fastpacs.storage.blobs import StoredBlob

UNSUPPORTED_MEDIA_TYPE = 415
RENDERED = "rendered"
"""The part of a cache key that tells a /rendered answer from the other routes' (an :class:`Operation`)."""

_RENDER_WINDOWED = WorkerFunction("fastpacs.pool.rendered", "render_windowed")
_SERIES_NUMPY = WorkerFunction("fastpacs.pool.series", "series_numpy")


async def frame_out_of_range(database: Database, pool: WorkerPool, rid: RawId, blob: StoredBlob) -> NoReturn:
    """Orthanc's answer to a rendering (``preview``, ``image-*``, ``rendered``) of a frame beyond the last.

    An empty 415 for encapsulated pixel data and for pixels Orthanc cannot decode, else an empty 404, even
    for a colour image asked as ``image-uint8`` (Orthanc checks the index before the conversion; see
    :func:`fastpacs.imaging.formats.out_of_range_is_not_found`). Whether the pixels can be decoded is
    told by ``/rendered`` of the first frame, which refuses what Orthanc cannot render (native 32-bit
    grayscale, whose ``preview`` fastpacs gives).
    """
    with database.read() as view:
        syntax = view.metadata_value(rid, SYSTEM_METADATA["TransferSyntax"])
    if not out_of_range_is_not_found(None if syntax is None else syntax.value):
        raise BareHttpError(UNSUPPORTED_MEDIA_TYPE)
    try:
        await pool.run(_RENDER_WINDOWED, blob, 0, Rendering(), ImageFormat.PNG, DEFAULT_JPEG_QUALITY)
    except (ImagingError, FileNotFoundError):
        raise BareHttpError(UNSUPPORTED_MEDIA_TYPE) from None
    raise BareHttpError(404)


class RenderedService:
    def __init__(self, database: Database, pool: WorkerPool, cache: RenderedCache):
        self.database = database
        self.pool = pool
        self.cache = cache
        self.slices = SliceService(database)

    async def rendered(
        self, rid: RawId, frame: int, rendering: Rendering, image_format: ImageFormat, quality: int
    ) -> bytes:
        """A frame windowed to 8 bits; the empty 404/415 answers of Orthanc's other image routes."""
        with self.database.read() as view:
            record = view.resource_at(rid, Level.INSTANCE)
        if record is None or record.blob is None:
            raise BareHttpError(404)
        try:
            count = number_of_frames(record.main_tags.get("NumberOfFrames"))
        except InvalidFrameCountError:
            raise BareHttpError(UNSUPPORTED_MEDIA_TYPE) from None
        if frame >= count:
            await frame_out_of_range(self.database, self.pool, rid, record.blob)
        key = (record.blob.digest, frame, RENDERED, rendering, image_format, quality)
        cached = self.cache.get(key)
        if cached is not None:
            return cached[0]
        try:
            body = await self.pool.run(_RENDER_WINDOWED, record.blob, frame, rendering, image_format, quality)
        except (ImagingError, FileNotFoundError):  # the file: lost, or deleted since the lookup
            raise BareHttpError(UNSUPPORTED_MEDIA_TYPE) from None
        self.cache.put(key, body, image_format.value)
        return body

    async def series_numpy(self, series_id: RawId, rescale: bool, compress: bool) -> bytes:
        """Every frame of the series in ``ordered-slices`` order, as one ``.npy`` (or ``.npz``)."""
        order = self.slices.ordered(series_id)
        with self.database.read() as view:
            blobs = {}
            for instance, _, _ in order["SlicesShort"]:
                record = view.resource(parse_id(instance) or b"")
                if record is None or record.blob is None:
                    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
                blobs[instance] = record.blob
        slices = [
            (blobs[instance], frame)
            for instance, first, count in order["SlicesShort"]
            for frame in range(first, first + count)
        ]
        try:
            return await self.pool.run(_SERIES_NUMPY, slices, rescale, compress)
        except ImagingError as error:
            raise OrthancError(ErrorCode.NOT_IMPLEMENTED, str(error) or None) from None
