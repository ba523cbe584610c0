"""/{level}/{id}/reconstruct, /tools/reconstruct and /tools/invalidate-tags.

Reconstructing parses the stored files again (in the worker pool) and
rewrites what the index derives from them: main tags of every level, tag
JSON, file metadata. It repairs an index written by an older fastpacs
whose parser has since been fixed. Files are parsed a few at a time (twice
as many as the pool has workers) so that the rest of the server keeps
running.

``invalidate-tags`` is Orthanc's way to drop the cached tag JSON of every
instance; fastpacs keeps that JSON in the index, so it reconstructs every
instance instead, in the background (the answer comes at once, as from
Orthanc), logging when it is done.
"""

import asyncio
import logging

from fastpacs.dicom.ids import Level, RawId
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import refresh_instance
from fastpacs.index.writer import IndexWriter
from fastpacs.pool.pool import WorkerPool
from fastpacs.pool.reconstruct import summary_of
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.storage.blobs import StoredBlob

logger = logging.getLogger(__name__)


class ReconstructService:
    def __init__(
        self, database: Database, writer: IndexWriter, pool: WorkerPool, default_encoding: DefaultEncoding
    ):
        self.database = database
        self.writer = writer
        self.pool = pool
        self.default_encoding = default_encoding
        self._background: asyncio.Task | None = None

    def _instances(self, rid: RawId | None) -> list[tuple[RawId, StoredBlob]]:
        """The instances to reconstruct with their blobs: below a resource, or all (``None``).

        The resource is found at whatever level it is, as Orthanc does whatever route names it
        (``/series/{a study's ID}/reconstruct`` reconstructs the study).
        """
        with self.database.read() as view:
            if rid is None:
                instances = view.list_level(Level.INSTANCE)
            else:
                resource = view.resource(rid)
                if resource is None:
                    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
                instances = view.descendants(rid, resource.level, Level.INSTANCE)
            found = []
            for instance in instances:
                record = view.resource(instance)
                if record is not None and record.blob is not None:
                    found.append((instance, record.blob))
            return found

    async def _reconstruct_one(self, instance: RawId, blob: StoredBlob) -> bool:
        try:
            summary = await self.pool.run(summary_of, blob, self.default_encoding.name)
        except FileNotFoundError:
            logger.warning("reconstruct: the file of instance %s is missing", instance.hex())
            return False
        except OrthancError as error:
            logger.warning("reconstruct: the file of instance %s cannot be parsed: %s", instance.hex(), error)
            return False
        return await self.writer.run(lambda update: refresh_instance(update, instance, summary))

    async def reconstruct(self, rid: RawId | None = None) -> int:
        """Reconstruct the instances below a resource (or all); return how many were rewritten."""
        instances = self._instances(rid)
        batch = 2 * self.pool.processes
        rewritten = 0
        for start in range(0, len(instances), batch):
            chunk = instances[start : start + batch]
            done = await asyncio.gather(*(self._reconstruct_one(instance, blob) for instance, blob in chunk))
            rewritten += sum(done)
        return rewritten

    def invalidate_tags(self) -> None:
        """Start reconstructing every instance in the background (once at a time)."""
        if self._background is not None and not self._background.done():
            return
        self._background = asyncio.create_task(self._invalidate())

    async def _invalidate(self) -> None:
        count = await self.reconstruct()
        logger.info("invalidate-tags: the tag JSON of %d instances was computed again", count)
