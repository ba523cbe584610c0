"""DICOM media: ZIPs of stored instances with a DICOMDIR, as Orthanc 1.10.1 makes them.

``GET /{patients,studies,series}/{id}/media``, ``POST /tools/create-media``
and ``/tools/create-media-extended`` answer a ZIP of the same instances, in
the same order, as the archive of those resources
(:mod:`fastpacs.services.archive`), named ``IMAGES/IM0``, ``IMAGES/IM1``...,
followed by the ``DICOMDIR`` that lists them
(:mod:`fastpacs.dicom.dicomdir`). The files are the stored files, byte for
byte.

A media is built by a ``Media`` job, a kind of Archive job: each step
writes one file and notes what its directory records need, read from the
tag JSON stored at ingest (no file is parsed); the DICOMDIR is encoded in
the worker pool once every file is written, then the central directory
closes the ZIP. Synchronous requests stream the ZIP as it is built;
asynchronous ones leave it as the job's ``archive`` output (kept, like
archives, up to ``MediaArchiveSize``).
"""

import asyncio
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from fastpacs.dicom.dicomdir import MEDIA_FOLDER, RECORD_SOURCE_TAGS, MediaFile, dicomdir
from fastpacs.dicom.ids import RawId
from fastpacs.dicom.modification import new_uid
from fastpacs.dicom.parse import string_value
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.archive import ArchiveEntry, ArchiveJob, ArchiveService, ArchiveState
from fastpacs.services.zip_stream import StreamTarget, ZipTarget

DICOMDIR_NAME = "DICOMDIR"
_TRANSFER_SYNTAX_UID = 0x00020010


class MediaState(ArchiveState, kw_only=True):
    """What a media job saves: an archive job's state, and whether the DICOMDIR is extended."""

    extended: bool = False


_state_decoder = msgspec.msgpack.Decoder(MediaState)


class MediaJob(ArchiveJob):
    """Orthanc's ``Media`` job: one step per file, then the DICOMDIR and the central directory."""

    type_name = "Media"

    def __init__(
        self,
        service: "MediaService",
        state: MediaState,
        entries: list[ArchiveEntry] | None,
        target: ZipTarget | None,
    ):
        super().__init__(service.archives, state, entries, target)
        self.media = service
        self.extended = state.extended
        self.files: dict[int, MediaFile] = {}
        """What the directory records need of each file written, by step."""

    async def plan(self) -> list[ArchiveEntry]:
        return await self.media.plan(self.state.resources, skip_unknown=True)

    async def run_step(self, index: int) -> None:
        assert self.entries is not None and self._zip is not None
        file = await asyncio.to_thread(self.media.media_file, self.entries[index])
        written = self._zip.offset
        await super().run_step(index)
        if file is not None and self._zip.offset > written:  # no record of a file left out (gone meanwhile)
            self.files[index] = file

    async def closing_files(self) -> list[tuple[str, bytes]]:
        files = [self.files[step] for step in sorted(self.files)]
        return [(DICOMDIR_NAME, await self.media.dicomdir(files, self.extended))]


class MediaService:
    """Plans media, streams synchronous ones, submits asynchronous ones as ``Media`` jobs."""

    def __init__(self, archives: ArchiveService, pool: WorkerPool):
        self.archives = archives
        self.pool = pool
        archives.engine.register(MediaJob.type_name, self._load)

    def _load(self, data: bytes) -> MediaJob:
        return MediaJob(self, _state_decoder.decode(data), entries=None, target=None)

    async def plan(self, resources: list[RawId], skip_unknown: bool = False) -> list[ArchiveEntry]:
        """The files of the media: the archive's instances, named ``IMAGES/IM<n>``."""
        entries = await self.archives.plan(resources, skip_unknown)
        return [
            msgspec.structs.replace(entry, path=f"{MEDIA_FOLDER}/IM{index}")
            for index, entry in enumerate(entries)
        ]

    async def stream(self, resources: list[RawId], extended: bool, priority: int = 0) -> AsyncIterator[bytes]:
        """Start a synchronous media job; return the ZIP's bytes as they are built.

        Unknown resources raise before anything is sent.
        """
        entries = await self.plan(resources)
        target = StreamTarget()
        state = MediaState(resources=resources, synchronous=True, extended=extended)
        return self.archives.run_streamed(MediaJob(self, state, entries, target), target, priority)

    async def submit(self, resources: list[RawId], extended: bool, priority: int = 0) -> str:
        """Queue an asynchronous media job; return its ID."""
        entries = await self.plan(resources)
        state = MediaState(resources=resources, output_name=uuid.uuid4().hex, extended=extended)
        return await self.archives.engine.submit(MediaJob(self, state, entries, target=None), priority)

    def media_file(self, entry: ArchiveEntry) -> MediaFile | None:
        """What the directory records need of one file, from the index (blocking: run in a thread).

        ``None`` when the instance was deleted since the media was planned (its file is skipped too).
        """
        with self.archives.database.read() as view:
            stored = view.stored_tags(entry.instance)
            if stored is None:
                return None
            metadata = view.metadata_value(entry.instance, SYSTEM_METADATA["TransferSyntax"])
        stored_syntax = metadata.value if metadata is not None else ""
        full: dict[str, Any] = msgspec.json.decode(zlib.decompress(stored.full))
        header: dict[str, Any] = msgspec.json.decode(stored.header)
        values = {tag: string_value(full, tag) for tag in RECORD_SOURCE_TAGS}
        return MediaFile(
            name=entry.path.rsplit("/", 1)[-1],
            attributes={tag: value for tag, value in values.items() if value is not None},
            transfer_syntax_uid=string_value(header, _TRANSFER_SYNTAX_UID) or stored_syntax,
        )

    async def dicomdir(self, files: list[MediaFile], extended: bool) -> bytes:
        """The DICOMDIR of these files, encoded in the worker pool."""
        return await self.pool.run(dicomdir, files, extended, new_uid(), time.time())
