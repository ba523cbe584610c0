"""The ingest pipeline: one path from bytes to an indexed instance, for every producer.

bytes → blob written and flushed by a thread of the server, and meanwhile
checked and summarized in the worker pool from the file's header alone (the
bytes up to its PixelData, a few KB: :func:`header_prefix`) → index
operation in the next group commit → answer. The whole file never crosses a
pipe to the workers (receiving and unpickling it took about 15% of a
worker's time), and the parse overlaps the write and the flush instead of
following them. Each upload's flush runs on its own thread, beside the
others' (the kernel joins their journal commits): with one flushing thread
serving them all in groups, flushes were what bounded 16 concurrent uploads
(about 18% fewer instances per second here). A
file whose header alone does not suffice (encapsulated pixels, elements
after them) is summarized by a worker reading the stored blob instead.
A blob whose file is refused is released through the writer, which removes
it unless an instance already references the same bytes.
With ``IngestTranscoding`` configured, a file in another transfer syntax is
then converted by a worker, which reads the blob, stores the converted file
as a new blob and summarizes it; the new file is flushed (:class:`GroupFlush`,
with the other files the workers stored meanwhile) and indexed instead,
and the received blob released (:mod:`fastpacs.pool.ingest_transcoding`).
Files needing no conversion take the path above unchanged.
With ``StorageCompression`` the blob is written compressed, and the file's
bytes before its PixelData are written too (compressed) and indexed as its
``dicom-until-pixel-data`` attachment, as Orthanc does, durably too.
REST uploads, C-STORE, and the outputs of the instance-level modify/anonymize and
create-dicom all come through :meth:`IngestService.ingest`; the files a worker
stores itself (a ZIP archive's, those of the modification jobs) through
:meth:`IngestService.ingest_stored`.

Two hooks serve Lua scripting: :attr:`IngestService.instance_filter` may
refuse an instance once it is parsed (``ReceivedInstanceFilter``: it is not
stored and its status is ``FilteredOut``), and
:attr:`IngestService.stored_listeners` hear of every instance stored or
already stored (``OnStoredInstance``).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from contextvars import ContextVar

import msgspec

from fastpacs.config import Config
from fastpacs.dicom.ids import resource_ids
from fastpacs.dicom.parse import InstanceSummary, header_prefix, summarize, summarize_header
from fastpacs.errors import OrthancError, ServerBusyError
from fastpacs.index.updates import BlobMissingError, IngestOutcome, add_instance, orthanc_timestamp
from fastpacs.index.writer import IndexWriter
from fastpacs.metrics import DISABLED_METRICS, ServerMetrics
from fastpacs.pool import tasks
from fastpacs.pool.ingest_transcoding import IngestTranscoding, transcode_stored
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.storage.blobs import StoredBlob
from fastpacs.storage.flush import GroupFlush, retrieve_failure

MAX_BLOB_RETRIES = 3
DEFAULT_PENDING_LIMIT = 512 * 1024 * 1024


class Origin(msgspec.Struct, kw_only=True):
    """Where an instance came from; becomes the instance's system metadata."""

    kind: str = "RestApi"
    """Orthanc's ``Origin``: ``RestApi``, ``DicomProtocol``, ``Plugins``, ``Lua``."""
    remote_ip: str = ""
    remote_aet: str = ""
    called_aet: str = ""
    http_username: str = ""

    def metadata(self, moment: float) -> dict[str, str]:
        values = {
            "Origin": self.kind,
            "ReceptionDate": orthanc_timestamp(moment),
            "RemoteAET": self.remote_aet,
            "RemoteIP": self.remote_ip,
            "HttpUsername": self.http_username,
        }
        if self.called_aet:
            values["CalledAET"] = self.called_aet
        if self.kind != "RestApi":  # Orthanc records an HTTP user only for uploads over HTTP
            del values["HttpUsername"]
        if self.kind == "Lua":  # and no client for instances stored by scripts
            del values["RemoteIP"]
        return values


LUA_ORIGIN = Origin(kind="Lua")
forced_origin: ContextVar[Origin | None] = ContextVar("forced_origin", default=None)
"""The origin of every ingest of the current task, whatever its producer says: set around the
REST requests of Lua scripts, whose uploads Orthanc records as coming from ``Lua``."""


def ingest_transcoding(config: Config) -> IngestTranscoding | None:
    """The ``IngestTranscoding`` options of a configuration; ``None``: files are stored as received."""
    if config.ingest_transcoding is None:
        return None
    return IngestTranscoding(
        config.ingest_transcoding,
        of_uncompressed=config.ingest_transcoding_of_uncompressed,
        of_compressed=config.ingest_transcoding_of_compressed,
        quality=config.dicom_lossy_transcoding_quality,
    )


InstanceFilter = Callable[[InstanceSummary, Origin], Awaitable[bool]]
StoredInstanceListener = Callable[[IngestOutcome, InstanceSummary, Origin], None]


class PendingIngests:
    """Bytes of uploads admitted and not yet stored, bounded so that a burst cannot exhaust memory.

    An upload is admitted while the total stays within the limit, and always
    when nothing else is pending (so that one upload larger than the limit
    still goes through, alone). Otherwise :class:`ServerBusyError`: the
    client is told to retry, the request body is never read.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.pending = 0

    @contextmanager
    def admit(self, size: int) -> Iterator[None]:
        if self.pending and self.pending + size > self.limit:
            raise ServerBusyError(f"{self.pending} bytes of uploads are being stored, retry later")
        self.pending += size
        try:
            yield
        finally:
            self.pending -= size


class IngestService:
    """Stores DICOM files: the single entry point of new instances."""

    def __init__(
        self,
        pool: WorkerPool,
        writer: IndexWriter,
        default_encoding: DefaultEncoding,
        max_upload_size: int,
        metrics: ServerMetrics = DISABLED_METRICS,
        *,
        pending_limit: int = DEFAULT_PENDING_LIMIT,
        transcoding: IngestTranscoding | None = None,
    ):
        self.pool = pool
        self.writer = writer
        self.flush = GroupFlush(writer.storage, metrics.observe_storage_flush)
        self.default_encoding = default_encoding
        self.max_upload_size = max_upload_size
        self.metrics = metrics
        self.pending = PendingIngests(pending_limit)
        self.transcoding = transcoding
        """The transfer syntax new files are converted to (``IngestTranscoding``); ``None``: none."""
        self.instance_filter: InstanceFilter | None = None
        """Decides whether a parsed instance is stored (``None``: every one is)."""
        self.stored_listeners: list[StoredInstanceListener] = []
        """Called once an instance is indexed (``Success`` or ``AlreadyStored``); must not block."""

    async def ingest(self, data: bytes, origin: Origin) -> IngestOutcome:
        """Store one DICOM file; ``OrthancError`` if it is not acceptable."""
        started = time.perf_counter()
        parsing = self._parse_header(data)
        # Without a header to summarize it from, or with IngestTranscoding, the pool reads it back.
        read_back = parsing is None or self.transcoding is not None
        for _ in range(MAX_BLOB_RETRIES):
            try:
                blob, store_seconds = await self._store(data, parsing, read_back=read_back)
            except OrthancError:
                self.metrics.observe_rejected(len(data))
                raise
            try:
                summary = None if parsing is None else await parsing
                if summary is None:
                    summary = await self.pool.run(tasks.summarize_blob, blob, self.default_encoding.name)
                converted = await self._converted(summary, blob)
            except FileNotFoundError:
                continue  # a concurrent delete of the same bytes removed the blob: store it again
            except OrthancError:
                self.metrics.observe_rejected(len(data))
                await self._release(blob.digest)
                raise
            except BrokenProcessPool:  # the worker reading the file ended (the pool starts another)
                await self._release(blob.digest)
                raise
            if converted is None:
                outcome = await self._index(summary, blob, data, origin, flushed=None)
            else:
                try:
                    outcome = await self._index_converted(converted, blob, origin)
                except BlobMissingError:
                    continue  # the converted blob was removed by a concurrent delete: start again
            seconds = time.perf_counter() - started
            self.metrics.observe_ingest(outcome.status, len(data), seconds, store_seconds)
            return outcome
        raise BlobMissingError("the blob was removed by concurrent deletes at every try")

    def _parse_header(self, data: bytes) -> "asyncio.Future[InstanceSummary | None] | None":
        """The summary of ``data`` from its header, being computed in the pool while the blob is
        written (its result ``None`` if the header alone cannot tell); ``None`` without such a header."""
        prefix = header_prefix(data)
        if prefix is None:
            return None
        parsing = self.pool.submit(summarize_header, prefix, len(data), self.default_encoding.name)
        parsing.add_done_callback(retrieve_failure)  # not awaited when the write fails
        return parsing

    async def _store(
        self,
        data: bytes,
        parsing: "asyncio.Future[InstanceSummary | None] | None" = None,
        *,
        read_back: bool = False,
    ) -> tuple[StoredBlob, float]:
        """Write the blob durably (on a thread) and say how long that took.

        A full storage refuses the file, but a file that is no DICOM is still
        refused as such first, as Orthanc checks before it writes.
        ``read_back``: the pool is to read the file back, so it is written
        through the page cache (see :meth:`BlobStore.put`).
        """
        started = time.perf_counter()
        try:
            # run_in_executor rather than to_thread: the write needs no copy of the context variables
            blob = await asyncio.get_running_loop().run_in_executor(None, self._put_flushed, data, read_back)
        except OrthancError:
            if parsing is None or await parsing is None:
                await self.pool.run(summarize, data, self.default_encoding.name)
            raise
        return blob, time.perf_counter() - started

    def _put_flushed(self, data: bytes, cached: bool) -> StoredBlob:
        return self.writer.storage.put(data, flush=True, cached=cached)

    async def ingest_admitted(self, data: bytes, origin: Origin) -> IngestOutcome:
        """:meth:`ingest` counted in :attr:`pending`, for producers that hold their bytes already
        (C-STORE): ``ServerBusyError`` when the pipeline holds too much, instead of queueing more."""
        with self.pending.admit(len(data)):
            return await self.ingest(data, origin)

    async def ingest_upload(self, data: bytes, origin: Origin) -> IngestOutcome | list[IngestOutcome]:
        """A POST /instances body: one DICOM file, or a ZIP archive of them."""
        if not tasks.is_zip(data):
            return await self.ingest(data, origin)
        try:
            parsed_files = await self.pool.run(
                tasks.parse_and_store_zip, data, self.default_encoding.name, self.max_upload_size
            )
        except tasks.StoreInterruptedError as interrupted:
            await self._release(*interrupted.digests)
            raise interrupted.error from interrupted
        return await self.ingest_stored(parsed_files, origin)

    async def ingest_stored(
        self, parsed_files: list[tasks.ParsedFile], origin: Origin
    ) -> list[IngestOutcome]:
        """Index files a worker has summarized and stored already (a ZIP archive's, modified instances).

        The blobs are flushed together, by a flush begun now, after their
        writes; each is released if refused. A blob removed meanwhile by a
        concurrent delete of the same bytes cannot be written again from
        here: ``BlobMissingError``. The files are indexed concurrently and
        every one is seen through before the first failure, if any, is raised
        (the others stay indexed, as files of a ZIP archive Orthanc stored
        before one failed).
        """
        flushed = self.flush.begin(*(digest for parsed in parsed_files for digest in parsed.digests))
        results = await asyncio.gather(
            *(self._index_stored(parsed, origin, flushed) for parsed in parsed_files),
            return_exceptions=True,
        )
        outcomes: list[IngestOutcome] = []
        failures: list[BaseException] = []
        for parsed, result in zip(parsed_files, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(result)
                continue
            self.metrics.observe_ingest(result.status, parsed.blob.size, None, parsed.store_seconds)
            outcomes.append(result)
        if failures:
            raise failures[0]
        return outcomes

    async def _index_stored(
        self, parsed: tasks.ParsedFile, origin: Origin, flushed: asyncio.Future[None]
    ) -> IngestOutcome:
        """Index one file of :meth:`ingest_stored`, converted first if ``IngestTranscoding`` says so."""
        try:
            converted = await self._converted(parsed.summary, parsed.blob)
        except FileNotFoundError as error:
            raise BlobMissingError(parsed.blob.digest.hex()) from error
        except OrthancError:
            await self._release(*parsed.digests)
            raise
        if converted is None:
            return await self._index(
                parsed.summary, parsed.blob, None, origin, flushed, until_pixel_data=parsed.until_pixel_data
            )
        await self._release(*parsed.digests[1:])  # the received file's bytes before its pixel data
        return await self._index_converted(converted, parsed.blob, origin)

    async def _converted(self, summary: InstanceSummary, blob: StoredBlob) -> tasks.ParsedFile | None:
        """The stored file converted to the ``IngestTranscoding`` syntax and stored as a new blob, by a
        worker; ``None`` when it is to be indexed as received (no conversion wanted, or not possible).
        ``FileNotFoundError`` if a concurrent delete of the same bytes removed ``blob``."""
        if self.transcoding is None or not self.transcoding.applies_to(summary.transfer_syntax):
            return None
        try:
            return await self.pool.run(transcode_stored, blob, self.transcoding, self.default_encoding.name)
        except tasks.StoreInterruptedError as interrupted:  # the converted file stored, not the rest
            await self._release(*interrupted.digests)
            raise interrupted.error from interrupted

    async def _index_converted(
        self, converted: tasks.ParsedFile, received: StoredBlob, origin: Origin
    ) -> IngestOutcome:
        """Index a converted file once a flush begun after its write made it durable, and release the
        blob of the file as it was received, which nothing references."""
        flushed = self.flush.begin(*converted.digests)
        indexed, released = await asyncio.gather(
            self._index(
                converted.summary,
                converted.blob,
                None,
                origin,
                flushed,
                until_pixel_data=converted.until_pixel_data,
            ),
            self._release(received.digest),
            return_exceptions=True,
        )
        for result in (indexed, released):
            if isinstance(result, BaseException):
                raise result
        return indexed

    async def _index(
        self,
        summary: InstanceSummary,
        blob: StoredBlob,
        data: bytes | None,
        origin: Origin,
        flushed: asyncio.Future[None] | None,
        *,
        until_pixel_data: StoredBlob | None = None,
    ) -> IngestOutcome:
        """Index a written blob once ``flushed`` (a flush begun after its write; ``None``: it was
        written durably) made it durable; ``until_pixel_data``: the ``dicom-until-pixel-data`` blob
        written with it, if any (else it is written here from ``data`` when the storage compresses)."""
        origin = forced_origin.get() or origin
        if self.instance_filter is not None and not await self.instance_filter(summary, origin):
            await self._release(blob.digest, *([] if until_pixel_data is None else [until_pixel_data.digest]))
            return IngestOutcome(status="FilteredOut", ids=resource_ids(summary.identifiers))
        outcome = await self._add(summary, blob, data, origin, flushed, until_pixel_data=until_pixel_data)
        for listener in self.stored_listeners:
            listener(outcome, summary, origin)
        return outcome

    def _put_until_pixel_data_flushed(self, data: bytes, pixel_data_offset: int | None) -> StoredBlob | None:
        return self.writer.storage.put_until_pixel_data(data, pixel_data_offset, flush=True)

    async def _release(self, *digests: bytes) -> None:
        """Remove the blobs of files not stored, unless an instance references the same bytes."""
        await self.writer.run(lambda update: update.released_blobs.update(digests))

    async def _add(
        self,
        summary: InstanceSummary,
        blob: StoredBlob,
        data: bytes | None,
        origin: Origin,
        flushed: asyncio.Future[None] | None,
        *,
        until_pixel_data: StoredBlob | None,
    ) -> IngestOutcome:
        moment = time.time()
        metadata = origin.metadata(moment)
        for _ in range(MAX_BLOB_RETRIES):
            if data is not None and self.writer.storage.compression:
                until_pixel_data = await asyncio.get_running_loop().run_in_executor(
                    None, self._put_until_pixel_data_flushed, data, summary.pixel_data_offset
                )
            if flushed is not None:
                try:
                    await flushed
                except (OSError, OrthancError):
                    # Its data may not be on disk, and a later flush of the same file would not say so
                    # (the kernel reports a write-back error once): the same bytes must be written anew.
                    written = [blob] if until_pixel_data is None else [blob, until_pixel_data]
                    await self._release(*(each.digest for each in written))
                    raise
            try:
                return await self.writer.run(
                    lambda update, blob=blob, until=until_pixel_data: add_instance(
                        update, summary, blob, metadata, moment, blob_flushed=True, until_pixel_data=until
                    )
                )
            except BlobMissingError:
                # A blob was removed by a concurrent delete between its write and this commit.
                if data is None:
                    raise
                blob, _ = await self._store(data)
                flushed = None
        raise BlobMissingError(blob.digest.hex())
