"""Archives: ZIP files of stored DICOM instances, laid out as Orthanc lays them out.

Layout (observed on Orthanc 1.10.1)::

    <PatientID PatientName>/<StudyDescription>/<Modality SeriesDescription>/<MO><index>.dcm

Patients, studies and series come in the order of their IDs, instances in
the order they were stored; the index restarts at 0 in every series and is
padded so that the file name has 8 characters (``CT000000.dcm``,
``M0000000.dcm``, ``00000000.dcm``; the prefix is the first two letters of
the Modality, upper-cased). Empty labels become ``Unknown Patient``,
``Unknown Study``, ``Unknown Series``. Every path component keeps only
ASCII letters, digits, spaces, ``_`` and ``.`` (``^`` becomes a space,
spaces are collapsed and trimmed), and a name already taken by a sibling
gets ``-2``, ``-3``... The files are the stored files, byte for byte.

Entries are *stored*, not deflated. Orthanc deflates; measured here, zlib
compresses a CT slice to 64 % of its size at 27 MB/s (level 6) or 51 MB/s
(level 1) on one core, while stored entries cost only a CRC-32 (2.4 GB/s):
deflating would cap archives near Orthanc's own speed, for a third of the
size on uncompressed pixel data and nothing on JPEG or JPEG 2000 files.

A synchronous archive is streamed while it is built: the ZIP is written
front to back with complete local headers (each file's CRC-32 is computed
before its data is sent; see :mod:`fastpacs.services.zip_stream`), so
nothing is held in memory beyond one chunk per download, and streaming
readers can read it too. An asynchronous archive is an ``Archive`` job whose
ZIP is written to a file under the storage folder, fetched with
``GET /jobs/{id}/archive``; as in Orthanc, only the latest
``MediaArchiveSize`` files (1 by default) are kept, archives and media together.
"""

import asyncio
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec

from fastpacs.dicom.ids import Level, RawId
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.schema import Resource
from fastpacs.index.view import IndexView
from fastpacs.jobs.engine import JobEngine
from fastpacs.jobs.job import Job, JobOutput
from fastpacs.services.zip_stream import FileTarget, StreamTarget, ZipTarget, ZipWriter
from fastpacs.storage.blobs import BlobStore, StoredBlob

MEGABYTE = 1024 * 1024
CHUNK_SIZE = MEGABYTE
"""Largest piece of a file read, sent or written at once."""
OUTPUT_FOLDER = "job-outputs"
"""Folder of the storage directory holding the archives of asynchronous jobs."""
RETAINED_OUTPUTS = 1
"""How many archive files of finished jobs are kept (Orthanc's ``MediaArchiveSize`` default)."""
DESCRIPTION = "REST API"


# ---------------------------------------------------------------------------- layout

_PATH_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _.")


def path_component(label: str) -> str:
    """A folder or file name as Orthanc writes it in archives."""
    kept = "".join(character for character in label.replace("^", " ") if character in _PATH_CHARACTERS)
    return " ".join(kept.split())


def _printable_ascii(value: str) -> str:
    return "".join(character for character in value if " " <= character <= "~").strip()


def patient_label(tags: dict[str, str]) -> str:
    patient_id = _printable_ascii(tags.get("PatientID", ""))
    name = _printable_ascii(tags.get("PatientName", ""))
    return f"{patient_id} {name}" if patient_id or name else "Unknown Patient"


def study_label(tags: dict[str, str]) -> str:
    return _printable_ascii(tags.get("StudyDescription", "")) or "Unknown Study"


def series_label(tags: dict[str, str]) -> str:
    modality = _printable_ascii(tags.get("Modality", ""))
    description = _printable_ascii(tags.get("SeriesDescription", ""))
    return f"{modality} {description}" if modality or description else "Unknown Series"


def instance_filename(modality: str, index: int) -> str:
    """``CT000000.dcm``: two letters of the Modality and the index, eight characters in all."""
    prefix = _printable_ascii(modality)[:2].upper()
    return path_component(f"{prefix}{index:0{8 - len(prefix)}d}") + ".dcm"


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    taken.add(candidate)
    return candidate


class ArchiveEntry(msgspec.Struct, array_like=True, frozen=True):
    """One file of an archive: where it goes and which stored file it is."""

    path: str
    instance: RawId
    digest: bytes
    size: int
    compressed_size: int | None = None
    """As in :class:`StoredBlob`: set when the file is stored compressed."""

    @property
    def blob(self) -> StoredBlob:
        return StoredBlob(self.digest, self.size, self.compressed_size)


def plan_archive(view: IndexView, resources: list[RawId], skip_unknown: bool = False) -> list[ArchiveEntry]:
    """The entries of the archive of some resources (any level), in Orthanc's order.

    An unknown ID is an ``Unknown resource`` error, or skipped with ``skip_unknown``.
    """
    records: dict[RawId, Resource] = {}

    def record_of(rid: RawId) -> Resource:
        record = records.get(rid)
        if record is None:
            record = view.resource(rid)
            assert record is not None, "the index links to a missing resource"
            records[rid] = record
        return record

    wanted: set[RawId] = set()
    for rid in resources:
        record = view.resource(rid)
        if record is None:
            if skip_unknown:
                continue
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        wanted.update(view.descendants(rid, Level(record.level), Level.INSTANCE))

    tree: dict[RawId, dict[RawId, set[RawId]]] = {}
    for instance in wanted:
        series = record_of(instance).parent
        study = record_of(series).parent
        patient = record_of(study).parent
        tree.setdefault(patient, {}).setdefault(study, set()).add(series)

    entries: list[ArchiveEntry] = []
    patient_names: set[str] = set()
    for patient in sorted(tree):
        patient_folder = _unique(path_component(patient_label(record_of(patient).main_tags)), patient_names)
        study_names: set[str] = set()
        for study in sorted(tree[patient]):
            study_folder = _unique(path_component(study_label(record_of(study).main_tags)), study_names)
            series_names: set[str] = set()
            for series in sorted(tree[patient][study]):
                tags = record_of(series).main_tags
                series_folder = _unique(path_component(series_label(tags)), series_names)
                folder = f"{patient_folder}/{study_folder}/{series_folder}/"
                instances = [child for child in view.children(series) if child in wanted]
                for index, instance in enumerate(instances):
                    blob = record_of(instance).blob
                    assert blob is not None
                    name = folder + instance_filename(tags.get("Modality", ""), index)
                    entries.append(ArchiveEntry(name, instance, blob.digest, blob.size, blob.compressed_size))
    return entries


# ---------------------------------------------------------------------------- entries


def entry_chunks(
    zip_writer: ZipWriter, entry: ArchiveEntry, database: Database, storage: BlobStore
) -> Iterator[bytes]:
    """The bytes of one entry: its header, then its file in chunks (blocking I/O: run in a thread).

    Nothing at all when the instance was deleted since the archive was planned (Orthanc skips it too).
    """
    with database.read() as view:
        if view.resource(entry.instance) is None:
            return
    if entry.compressed_size is not None:  # decompressed whole: the file was stored whole in memory too
        try:
            data = storage.read(entry.blob)
        except FileNotFoundError:
            return
        _check_size(entry, len(data))
        yield zip_writer.local_header(entry.path, entry.size, zlib.crc32(data))
        yield data
        return
    try:
        file = open(storage.path_of(entry.digest), "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with file:
        if entry.size <= CHUNK_SIZE:
            data = file.read(entry.size + 1)
            _check_size(entry, len(data))
            yield zip_writer.local_header(entry.path, entry.size, zlib.crc32(data))
            yield data
            return
        crc, total = 0, 0
        while chunk := file.read(CHUNK_SIZE):
            crc = zlib.crc32(chunk, crc)
            total += len(chunk)
        _check_size(entry, total)
        file.seek(0)
        yield zip_writer.local_header(entry.path, entry.size, crc)
        while chunk := file.read(min(CHUNK_SIZE, entry.size - file.tell())):
            yield chunk


def _check_size(entry: ArchiveEntry, found: int) -> None:
    if found != entry.size:
        raise OrthancError(
            ErrorCode.CORRUPTED_FILE, f"The stored file of {entry.path} has {found} bytes, not {entry.size}"
        )


# ---------------------------------------------------------------------------- the job


class ArchiveState(msgspec.Struct, kw_only=True):
    """What an archive job saves: enough to plan and build the archive again after a restart."""

    resources: list[RawId]
    description: str = DESCRIPTION
    synchronous: bool = False
    output_name: str = ""
    instances_count: int = 0
    uncompressed_size: int = 0
    archive_size: int = 0


_state_decoder = msgspec.msgpack.Decoder(ArchiveState)


class ArchiveJob(Job):
    """Orthanc's ``Archive`` job: one step per instance, then the central directory.

    Subclasses lay out other archives of the same instances (DICOM media):
    they override :meth:`plan` and :meth:`closing_files`.
    """

    type_name = "Archive"

    def __init__(
        self,
        service: "ArchiveService",
        state: ArchiveState,
        entries: list[ArchiveEntry] | None,
        target: ZipTarget | None,
    ):
        self.service = service
        self.state = state
        self.entries = entries
        """The plan; ``None`` after a restart until the job runs again."""
        self.target = target
        self._zip: ZipWriter | None = None
        if entries is not None:
            self._count(entries)

    def _count(self, entries: list[ArchiveEntry]) -> None:
        self.state.instances_count = len(entries)
        self.state.uncompressed_size = sum(entry.size for entry in entries)

    @property
    def total_steps(self) -> int:
        return self.state.instances_count if self.entries is None else len(self.entries)

    async def start(self, steps_done: int) -> int:
        if self._zip is not None:
            return steps_done  # resumed after a pause: the archive is half written, go on
        if self.entries is None:
            self.entries = await self.plan()
            self._count(self.entries)
        if self.target is None:
            self.target = FileTarget(self.service.output_path(self.state.output_name))
        await self.target.open()
        self._zip = ZipWriter(time.time())
        self.state.archive_size = 0
        return 0

    async def run_step(self, index: int) -> None:
        assert self.entries is not None and self.target is not None and self._zip is not None
        chunks = entry_chunks(self._zip, self.entries[index], self.service.database, self.service.storage)
        await self.target.write_entry(chunks)
        self.state.archive_size = self._zip.offset

    async def plan(self) -> list[ArchiveEntry]:
        """The entries of the archive, planned again when the job runs after a restart."""
        return await self.service.plan(self.state.resources, skip_unknown=True)

    async def closing_files(self) -> list[tuple[str, bytes]]:
        """Files (name, bytes) written after the instances; none in an archive."""
        return []

    async def finish(self) -> None:
        assert self.target is not None and self._zip is not None
        for name, data in await self.closing_files():
            await self.target.write(self._zip.local_header(name, len(data), zlib.crc32(data)))
            await self.target.write(data)
        await self.target.write(self._zip.end())
        await self.target.close()
        self.state.archive_size = self._zip.offset
        self._zip = None
        if not self.state.synchronous:
            self.service.retain_outputs()

    async def abort(self) -> None:
        self._zip = None
        if self.target is not None:
            await self.target.discard()

    def content(self) -> dict[str, Any]:
        return {
            "ArchiveSize": str(self.state.archive_size),
            "ArchiveSizeMB": self.state.archive_size // MEGABYTE,
            "Description": self.state.description,
            "InstancesCount": self.state.instances_count,
            "UncompressedSize": str(self.state.uncompressed_size),
            "UncompressedSizeMB": self.state.uncompressed_size // MEGABYTE,
        }

    def save(self) -> bytes:
        return msgspec.msgpack.encode(self.state)

    def reset(self) -> None:
        raise OrthancError(
            ErrorCode.BAD_SEQUENCE_OF_CALLS, "Cannot resubmit the creation of an archive", http_status=500
        )

    def output(self, name: str) -> JobOutput | None:
        if name != "archive" or self.state.synchronous:
            return None
        path = self.service.output_path(self.state.output_name)
        return (
            JobOutput(path=path, media_type="application/zip", filename="archive.zip")
            if path.exists()
            else None
        )

    def discard(self) -> None:
        if not self.state.synchronous:
            self.service.output_path(self.state.output_name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- the service


class ArchiveService:
    """Plans archives, streams synchronous ones, submits asynchronous ones as jobs."""

    def __init__(
        self,
        database: Database,
        storage: BlobStore,
        engine: JobEngine,
        retained_outputs: int = RETAINED_OUTPUTS,
    ):
        self.database = database
        self.storage = storage
        self.engine = engine
        self.retained_outputs = retained_outputs
        self.outputs = storage.root / OUTPUT_FOLDER
        self.outputs.mkdir(parents=True, exist_ok=True)
        for partial in self.outputs.glob("*.part"):  # left by a crash; their jobs start again
            partial.unlink()
        engine.register(ArchiveJob.type_name, self._load)

    def _load(self, data: bytes) -> ArchiveJob:
        return ArchiveJob(self, _state_decoder.decode(data), entries=None, target=None)

    async def plan(self, resources: list[RawId], skip_unknown: bool = False) -> list[ArchiveEntry]:
        """The entries of an archive; ``Unknown resource`` if an ID is unknown (unless skipped)."""
        return await asyncio.to_thread(self._plan, resources, skip_unknown)

    def _plan(self, resources: list[RawId], skip_unknown: bool) -> list[ArchiveEntry]:
        with self.database.read() as view:
            return plan_archive(view, resources, skip_unknown)

    async def stream(self, resources: list[RawId], priority: int = 0) -> AsyncIterator[bytes]:
        """Start a synchronous archive job; return the ZIP's bytes as they are built.

        Unknown resources raise before anything is sent.
        """
        entries = await self.plan(resources)
        target = StreamTarget()
        job = ArchiveJob(self, ArchiveState(resources=resources, synchronous=True), entries, target)
        return self.run_streamed(job, target, priority)

    def run_streamed(self, job: ArchiveJob, target: StreamTarget, priority: int) -> AsyncIterator[bytes]:
        """Run a synchronous job writing to ``target`` now; the ZIP's bytes as they are built."""
        return self._relay(self.engine.run_now(job, priority), target)

    async def _relay(self, job_id: str, target: StreamTarget) -> AsyncIterator[bytes]:
        complete = False
        try:
            async for chunk in target.chunks():
                yield chunk
            complete = True
        finally:
            if not complete:
                target.abandon()
                self.engine.cancel_soon(job_id)

    async def submit(self, resources: list[RawId], priority: int = 0) -> str:
        """Queue an asynchronous archive job; return its ID."""
        entries = await self.plan(resources)
        state = ArchiveState(resources=resources, output_name=uuid.uuid4().hex)
        return await self.engine.submit(ArchiveJob(self, state, entries, target=None), priority)

    def output_path(self, output_name: str) -> Path:
        return self.outputs / f"{output_name}.zip"

    def retain_outputs(self) -> None:
        """Keep the latest ``retained_outputs`` archive files, delete older ones."""
        finished = sorted(self.outputs.glob("*.zip"), key=lambda path: path.stat().st_mtime_ns, reverse=True)
        for path in finished[self.retained_outputs :]:
            path.unlink(missing_ok=True)

    def remove_unreferenced_outputs(self) -> None:
        """Delete archive files no known job refers to (left by a crash). Run after the engine started."""
        referenced = set()
        for job_id in self.engine.job_ids():
            tracked = self.engine.get(job_id)
            if tracked is not None and isinstance(tracked.job, ArchiveJob):
                referenced.add(self.output_path(tracked.job.state.output_name))
        for path in self.outputs.glob("*.zip"):
            if path not in referenced:
                path.unlink(missing_ok=True)
