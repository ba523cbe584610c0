"""``/rendered`` of instances and frames, and ``/series/{id}/numpy``, computed in the worker pool."""

from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.imaging.formats import (
    ImageFormat,
    ImagingError,
    InvalidFrameCountError,
    Rendering,
    number_of_frames,
)
from fastpacs.index.database import Database
from fastpacs.pool.pool import WorkerFunction, WorkerPool
from fastpacs.services.slices import SliceService

UNSUPPORTED_MEDIA_TYPE = 415

_RENDER_WINDOWED = WorkerFunction("fastpacs.pool.rendered", "render_windowed")
_SERIES_NUMPY = WorkerFunction("fastpacs.pool.series", "series_numpy")


class RenderedService:
    def __init__(self, database: Database, pool: WorkerPool):
        self.database = database
        self.pool = pool
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
            raise BareHttpError(404 if count == 1 else UNSUPPORTED_MEDIA_TYPE)
        try:
            return await self.pool.run(
                _RENDER_WINDOWED, record.blob.digest, frame, rendering, image_format, quality
            )
        except ImagingError:
            raise BareHttpError(UNSUPPORTED_MEDIA_TYPE) from None

    async def series_numpy(self, series_id: RawId, rescale: bool, compress: bool) -> bytes:
        """Every frame of the series in ``ordered-slices`` order, as one ``.npy`` (or ``.npz``)."""
        order = self.slices.ordered(series_id)
        with self.database.read() as view:
            digests = {}
            for instance, _, _ in order["SlicesShort"]:
                record = view.resource(parse_id(instance) or b"")
                if record is None or record.blob is None:
                    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
                digests[instance] = record.blob.digest
        slices = [
            (digests[instance], frame)
            for instance, first, count in order["SlicesShort"]
            for frame in range(first, first + count)
        ]
        try:
            return await self.pool.run(_SERIES_NUMPY, slices, rescale, compress)
        except ImagingError as error:
            raise OrthancError(ErrorCode.NOT_IMPLEMENTED, str(error) or None) from None
