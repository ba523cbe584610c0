"""Pixel endpoints: frames of an instance decoded, rendered and encoded in the worker pool.

The event loop only looks up the stored file's digest, checks the cache
of rendered answers and awaits the worker. Failures become Orthanc's
answers, which differ by endpoint: image renderings answer an empty 415
for anything they cannot do (no pixels, undecodable, colour asked as
grayscale, frame out of range); ``matlab``, ``numpy`` and ``raw`` answer
500 "Not implemented" for pixels they cannot give and 400 "Parameter out
of range" for a bad frame index.
"""

from fastpacs.dicom.ids import Level, RawId
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.imaging.cache import RenderedCache
from fastpacs.imaging.formats import (
    BadPixelDataError,
    FrameOutOfRangeError,
    ImageFormat,
    ImagingError,
    InvalidFrameCountError,
    Operation,
    UndecodableImageError,
    number_of_frames,
)
from fastpacs.index.database import Database
from fastpacs.index.schema import Resource
from fastpacs.pool.pool import WorkerFunction, WorkerPool
from fastpacs.services.rendered import frame_out_of_range
from fastpacs.storage.blobs import StoredBlob

_RENDER_FRAME = WorkerFunction("fastpacs.pool.images", "render_frame")
_FRAME_BYTES = WorkerFunction("fastpacs.pool.images", "frame_bytes")
_FRAME_MATLAB = WorkerFunction("fastpacs.pool.images", "frame_matlab")
_FRAMES_NUMPY = WorkerFunction("fastpacs.pool.images", "frames_numpy")

UNSUPPORTED_MEDIA_TYPE = 415


def _not_decodable(
    error: ImagingError, bad_frame_count: ErrorCode = ErrorCode.BAD_FILE_FORMAT
) -> OrthancError:
    """The answer of ``matlab``/``numpy``/``raw`` to pixels they cannot give."""
    if isinstance(error, FrameOutOfRangeError):
        return OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    if isinstance(error, InvalidFrameCountError):
        return OrthancError(bad_frame_count)
    if isinstance(error, BadPixelDataError):
        return OrthancError(ErrorCode.BAD_FILE_FORMAT)
    details = str(error) if isinstance(error, UndecodableImageError) and str(error) else None
    return OrthancError(ErrorCode.NOT_IMPLEMENTED, details)


class ImageService:
    def __init__(self, database: Database, pool: WorkerPool, cache: RenderedCache):
        self.database = database
        self.pool = pool
        self.cache = cache

    def _instance(self, rid: RawId) -> Resource | None:
        with self.database.read() as view:
            return view.resource_at(rid, Level.INSTANCE)

    def number_of_frames(self, rid: RawId) -> int:
        """Frames of an instance, from its indexed NumberOfFrames."""
        record = self._instance(rid)
        if record is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        try:
            return number_of_frames(record.main_tags.get("NumberOfFrames"))
        except InvalidFrameCountError:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT) from None

    def _known_blob(self, rid: RawId) -> StoredBlob:
        record = self._instance(rid)
        if record is None or record.blob is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return record.blob

    async def image(
        self, rid: RawId, frame: int, operation: Operation, image_format: ImageFormat, quality: int
    ) -> bytes:
        """A rendered frame (``preview``, ``image-*``); an unknown instance is an empty 404.

        A frame beyond the last is an empty 404 or 415, as Orthanc (:func:`frame_out_of_range`).
        """
        record = self._instance(rid)
        if record is None or record.blob is None:
            raise BareHttpError(404)
        try:
            count = number_of_frames(record.main_tags.get("NumberOfFrames"))
        except InvalidFrameCountError:
            raise BareHttpError(UNSUPPORTED_MEDIA_TYPE) from None
        if frame >= count:
            await frame_out_of_range(self.database, self.pool, rid, record.blob)
        key = (record.blob.digest, frame, operation, image_format, quality)
        cached = self.cache.get(key)
        if cached is not None:
            return cached[0]
        try:
            # The enums' values: a plain string costs less to unpickle than an enum member.
            body = await self.pool.run(
                _RENDER_FRAME, record.blob, frame, operation.value, image_format.value, quality
            )
        except (ImagingError, FileNotFoundError):  # the file: lost, or deleted since the lookup
            raise BareHttpError(UNSUPPORTED_MEDIA_TYPE) from None
        self.cache.put(key, body, image_format.value)
        return body

    async def raw(self, rid: RawId, frame: int, compress: bool) -> tuple[bytes, str]:
        """``/frames/{i}/raw`` and ``raw.gz``: the body and its content type."""
        blob = self._known_blob(rid)
        try:
            return await self.pool.run(_FRAME_BYTES, blob, frame, compress)
        except ImagingError as error:
            raise _not_decodable(error) from None

    async def matlab(self, rid: RawId, frame: int) -> bytes:
        blob = self._known_blob(rid)
        try:
            return await self.pool.run(_FRAME_MATLAB, blob, frame)
        except ImagingError as error:
            raise _not_decodable(error, bad_frame_count=ErrorCode.NOT_IMPLEMENTED) from None

    async def numpy(self, rid: RawId, frame: int | None, rescale: bool, compress: bool) -> bytes:
        """``.npy`` of one frame, or of all frames when ``frame`` is ``None``.

        A NumberOfFrames that is no number answers as in Orthanc: 400 "Bad file format" for all
        frames, 500 "Not implemented" for one frame (as ``matlab``).
        """
        blob = self._known_blob(rid)
        try:
            return await self.pool.run(_FRAMES_NUMPY, blob, frame, rescale, compress)
        except ImagingError as error:
            bad_frame_count = ErrorCode.BAD_FILE_FORMAT if frame is None else ErrorCode.NOT_IMPLEMENTED
            raise _not_decodable(error, bad_frame_count) from None
