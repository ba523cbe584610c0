"""``fastpacs ingest PATH...``: bulk import of folders, ZIP archives and DICOMDIR trees.

Two destinations:

- a running server (``--url``, by default ``http://127.0.0.1:8042``): every
  file is one ``POST /instances``, several at a time (``--jobs``), on
  keep-alive connections; credentials can be given in the URL
  (``http://user:password@host:8042``);
- a stopped store (``--store DIR``, or the store of ``--config FILE``):
  the files go through the server's own ingest pipeline in this process,
  with the store locked meanwhile; a server running on it makes the command
  fail at once rather than race it.

What is imported: every file below a folder (DICOMDIR index files aside),
every entry of a ZIP archive (recognized by its content, whatever its name),
and, for a DICOMDIR given by name, the files its records reference. Files
are read one after the other by the main thread and uploaded concurrently.

A progress line on stderr (when it is a terminal) shows files/s, MB/s and
the time left. The summary counts imported, already stored and rejected
files and lists each rejected file with the reason. Exit status: 0 when
every file was stored, 1 when some were rejected, 2 when the import could
not run (server unreachable, store in use, nothing to import).
"""

import argparse
import asyncio
import base64
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import msgspec
import pydicom
from pydicom.errors import InvalidDicomError

from fastpacs.config import Config, ConfigurationError, load_config
from fastpacs.errors import OrthancError, describe
from fastpacs.imaging.warmup import prepare_kernel_cache
from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.pool.pool import WorkerPool
from fastpacs.pool.tasks import is_zip
from fastpacs.services.consistency import repair_storage
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin, ingest_transcoding
from fastpacs.storage.blobs import BlobStore
from fastpacs.storage.lock import StoreInUseError, StoreLock

DEFAULT_URL = "http://127.0.0.1:8042"
DEFAULT_JOBS = 8
HTTP_TIMEOUT = 300.0
BUSY_PATIENCE = 600.0
"""Seconds a file is offered again to a server answering 503 (busy) before it counts as rejected."""
ZIP_PROBE_SIZE = 132
"""Bytes read to tell a ZIP archive from a DICOM file (whose preamble may start like one)."""
DICOMDIR = "DICOMDIR"
MEGABYTE = 1024 * 1024

EXIT_OK, EXIT_REJECTED, EXIT_FAILED = 0, 1, 2

SUCCESS, ALREADY_STORED = "Success", "AlreadyStored"


class IngestAbortedError(Exception):
    """The import cannot go on (server unreachable, store in use); the message says why."""


# ---------------------------------------------------------------- what to import


@dataclass(frozen=True)
class Item:
    """One file to import: a file on disk, or an entry of a ZIP archive."""

    path: Path
    size: int
    entry: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path}!{self.entry}" if self.entry is not None else str(self.path)


@dataclass
class Discovery:
    items: list[Item] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """Files named or referenced that cannot be imported: (name, reason)."""
    skipped_dicomdirs: int = 0


def discover(paths: Iterable[Path]) -> Discovery:
    """Every file to import below ``paths``, each once, in a stable order."""
    found = Discovery()
    seen: set[tuple[Path, str | None]] = set()

    def add(item: Item) -> None:
        key = (item.path.resolve(), item.entry)
        if key not in seen:
            seen.add(key)
            found.items.append(item)

    for path in paths:
        if path.is_dir():
            for root, folders, files in os.walk(path):
                folders.sort()
                for name in sorted(files):
                    if name.upper() == DICOMDIR:
                        found.skipped_dicomdirs += 1  # its files are in the tree being walked
                        continue
                    _add_file(Path(root) / name, add, found)
        elif path.name.upper() == DICOMDIR and path.is_file():
            for referenced in _dicomdir_references(path, found):
                _add_file(referenced, add, found)
        elif path.is_file():
            _add_file(path, add, found)
        else:
            found.problems.append((str(path), "no such file or folder"))
    return found


def _add_file(path: Path, add, found: Discovery) -> None:
    try:
        with path.open("rb") as stream:
            head = stream.read(ZIP_PROBE_SIZE)
        size = path.stat().st_size
    except OSError as error:
        found.problems.append((str(path), f"cannot read: {error.strerror or error}"))
        return
    if not is_zip(head):
        add(Item(path, size))
        return
    try:
        with zipfile.ZipFile(path) as archive:
            entries = [entry for entry in archive.infolist() if not entry.is_dir()]
    except (zipfile.BadZipFile, OSError) as error:
        found.problems.append((str(path), f"unreadable ZIP archive: {error}"))
        return
    for entry in entries:
        add(Item(path, entry.file_size, entry.filename))


def _dicomdir_references(dicomdir: Path, found: Discovery) -> list[Path]:
    """The files a DICOMDIR's records reference (ReferencedFileID, relative to its folder)."""
    try:
        directory = pydicom.dcmread(dicomdir)
    except (InvalidDicomError, OSError, ValueError) as error:
        found.problems.append((str(dicomdir), f"unreadable DICOMDIR: {error}"))
        return []
    references = []
    for record in directory.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if file_id is None:
            continue
        components = [file_id] if isinstance(file_id, str) else [str(part) for part in file_id]
        path = _resolve_case_insensitive(dicomdir.parent, components)
        if path is None:
            found.problems.append(
                (str(dicomdir.parent.joinpath(*components)), "referenced by the DICOMDIR but missing")
            )
        else:
            references.append(path)
    return references


def _resolve_case_insensitive(folder: Path, components: list[str]) -> Path | None:
    """``folder/components...``, matching names without regard to case (media often changes it)."""
    path = folder
    for component in components:
        exact = path / component
        if exact.exists():
            path = exact
            continue
        try:
            matches = [entry for entry in path.iterdir() if entry.name.upper() == component.upper()]
        except OSError:
            return None
        if not matches:
            return None
        path = matches[0]
    return path if path.is_file() else None


def read_items(items: Iterable[Item]) -> Iterator[tuple[Item, bytes | None, str]]:
    """Each item with its bytes, or None and why it could not be read; archives stay open across entries."""
    archive: zipfile.ZipFile | None = None
    archive_path: Path | None = None
    try:
        for item in items:
            try:
                if item.entry is None:
                    yield item, item.path.read_bytes(), ""
                    continue
                if archive_path != item.path:
                    if archive is not None:
                        archive.close()
                    archive, archive_path = zipfile.ZipFile(item.path), item.path
                yield item, archive.read(item.entry), ""
            except OSError as error:
                yield item, None, f"cannot read: {error.strerror or error}"
            except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError) as error:
                yield item, None, f"unreadable ZIP entry: {error}"
    finally:
        if archive is not None:
            archive.close()


# ---------------------------------------------------------------- progress and summary


class Progress:
    """A one-line progress display on a terminal; silent otherwise."""

    INTERVAL = 0.1

    def __init__(self, total_files: int, total_bytes: int, stream: TextIO, enabled: bool):
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self.stream = stream
        self.enabled = enabled
        self.started = time.monotonic()
        self._shown = 0.0
        self._width = 0

    def advance(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        now = time.monotonic()
        if self.enabled and (now - self._shown >= self.INTERVAL or self.files == self.total_files):
            self._shown = now
            self._show(now - self.started)

    def _show(self, elapsed: float) -> None:
        rate_files = self.files / elapsed if elapsed > 0 else 0.0
        rate_bytes = self.bytes / elapsed if elapsed > 0 else 0.0
        if rate_bytes > 0 and self.total_bytes:
            remaining = (self.total_bytes - self.bytes) / rate_bytes
        else:
            remaining = (self.total_files - self.files) / rate_files if rate_files > 0 else 0.0
        percent = 100.0 * self.files / self.total_files if self.total_files else 100.0
        line = (
            f"{self.files}/{self.total_files} files {percent:5.1f}%  {rate_files:,.0f} files/s  "
            f"{rate_bytes / MEGABYTE:,.1f} MB/s  ETA {_duration(remaining)}"
        )
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def finish(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class Report:
    imported: int = 0
    already_stored: int = 0
    bytes: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stored(self, status: str, size: int) -> None:
        with self._lock:
            if status == ALREADY_STORED:
                self.already_stored += 1
            else:
                self.imported += 1
            self.bytes += size

    def reject(self, name: str, reason: str) -> None:
        with self._lock:
            self.rejected.append((name, reason))

    def print(self, stream: TextIO, seconds: float, skipped_dicomdirs: int) -> None:
        total = self.imported + self.already_stored + len(self.rejected)
        rate = total / seconds if seconds > 0 else 0.0
        stream.write(
            f"{total} files in {seconds:.1f} s ({rate:,.0f} files/s, "
            f"{self.bytes / MEGABYTE / seconds if seconds > 0 else 0.0:,.1f} MB/s): "
            f"{self.imported} imported, {self.already_stored} already stored, {len(self.rejected)} rejected\n"
        )
        if skipped_dicomdirs:
            stream.write(f"{skipped_dicomdirs} DICOMDIR index files skipped (not images)\n")
        if self.rejected:
            stream.write("Rejected files:\n")
            for name, reason in sorted(self.rejected):
                stream.write(f"  {name}: {reason}\n")


# ---------------------------------------------------------------- into a running server


class ServerUploader:
    """POST /instances on one keep-alive connection per thread."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise IngestAbortedError(f"not an http:// or https:// URL: {url}")
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Content-Type": "application/dicom"}
        if parts.username is not None:
            username, password = (
                urllib.parse.unquote(parts.username),
                urllib.parse.unquote(parts.password or ""),
            )
            credentials = f"{username}:{password}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            connection = self._local.connection = kind(self.host, self.port, timeout=HTTP_TIMEOUT)
        return connection

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes, str | None]:
        """Status, body and Retry-After of one request; a broken keep-alive connection is reopened
        once, then the failure is fatal.

        A server may answer before it has read the whole body (503 when busy, 413) and close the
        connection: sending the rest then fails with a broken pipe, but its answer is there to read.
        """
        for attempt in range(2):
            connection = self._connection()
            try:
                with suppress(BrokenPipeError):  # answered early: its answer is read below
                    connection.request(method, self.prefix + path, body=body, headers=self.headers)
                response = connection.getresponse()
                return response.status, response.read(), response.getheader("Retry-After")
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self._local.connection = None
                if attempt == 1:
                    raise IngestAbortedError(f"cannot reach {self.url}: {error}") from error
        raise AssertionError("unreachable")

    def check(self) -> None:
        status, _, _ = self._request("GET", "/system", None)
        if status == 401:
            raise IngestAbortedError(
                f"{self.url} needs credentials: give them in the URL (http://user:pw@...)"
            )
        if status != 200:
            raise IngestAbortedError(
                f"{self.url}/system answered HTTP {status}: not a fastpacs or Orthanc server?"
            )

    def store(self, data: bytes) -> tuple[str | None, str]:
        """``(status, "")`` when stored, ``(None, reason)`` when the server refused the file.

        A server busy storing other uploads answers 503: the file is sent again
        after the Retry-After it gives, for up to :data:`BUSY_PATIENCE` seconds.
        """
        deadline = time.monotonic() + BUSY_PATIENCE
        status, body, retry_after = self._request("POST", "/instances", data)
        while status == 503 and time.monotonic() < deadline:
            time.sleep(_seconds(retry_after))
            status, body, retry_after = self._request("POST", "/instances", data)
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            answer = None
        if status == 200 and isinstance(answer, dict):
            return answer.get("Status", SUCCESS), ""
        if isinstance(answer, dict) and "Message" in answer:
            details = answer.get("Details")
            return None, f"{answer['Message']}: {details}" if details else answer["Message"]
        return None, f"HTTP {status}"


def _seconds(retry_after: str | None) -> float:
    """A Retry-After in seconds (its date form is not used by fastpacs), within 0.1-30 s."""
    try:
        return min(30.0, max(0.1, float(retry_after or 1)))
    except ValueError:
        return 1.0


def ingest_over_http(items: list[Item], uploader: ServerUploader, jobs: int, progress: Progress) -> Report:
    report = Report()
    pending: dict[Future, Item] = {}

    def collect(done: Iterable[Future]) -> None:
        for future in done:
            item = pending.pop(future)
            status, reason = future.result()  # re-raises IngestAbortedError
            if status is None:
                report.reject(item.name, reason)
            else:
                report.stored(status, item.size)
            progress.advance(item.size)

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="upload") as executor:
        try:
            for item, data, reason in read_items(items):
                if data is None:
                    report.reject(item.name, reason)
                    progress.advance(item.size)
                    continue
                while len(pending) >= 2 * jobs:
                    collect(wait(pending, return_when=FIRST_COMPLETED).done)
                pending[executor.submit(uploader.store, data)] = item
            collect(list(pending))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return report


# ---------------------------------------------------------------- into a stopped store


@asynccontextmanager
async def opened_store(config: Config) -> AsyncIterator[IngestService]:
    """The ingest pipeline on a stopped server's store, as the server starts it, and nothing else.

    Only what storing files needs runs: no job engine (it would resume the server's saved jobs),
    no DICOM server, no stability monitor (the server marks the new resources stable later).
    """
    lock = StoreLock(config.index_path, config.storage_path)
    try:
        lock.acquire()
    except StoreInUseError as error:
        raise IngestAbortedError(f"{error}: stop the server, or import through it with --url") from error
    try:
        storage = BlobStore(config.storage_path, compression=config.storage_compression)
        database = Database(config.index_path, config.index_map_size)
        await asyncio.to_thread(repair_storage, database, storage)
        writer = IndexWriter(database, storage)
        writer.start()
        try:
            await asyncio.to_thread(prepare_kernel_cache)  # the workers load the compiled kernels
            pool = WorkerPool(config.worker_processes, storage, config.user_dictionary)
            try:
                encoding = DefaultEncoding(config.default_encoding)
                yield IngestService(
                    pool,
                    writer,
                    encoding,
                    config.maximum_upload_size * MEGABYTE,
                    transcoding=ingest_transcoding(config),
                )
            finally:
                await asyncio.to_thread(pool.close)
        finally:
            await asyncio.to_thread(writer.stop)
            database.close()
    finally:
        lock.release()


async def ingest_into_store(items: list[Item], config: Config, jobs: int, progress: Progress) -> Report:
    async with opened_store(config) as pipeline:
        return await _store_all(items, pipeline, jobs, progress)


async def _store_all(items: list[Item], pipeline: IngestService, jobs: int, progress: Progress) -> Report:
    report = Report()
    origin = Origin(kind="Unknown")  # not received over a network: Orthanc's value for other origins
    slots = asyncio.Semaphore(jobs)
    running: set[asyncio.Task] = set()

    async def store(item: Item, data: bytes) -> None:
        try:
            outcome = await pipeline.ingest(data, origin)
        except OrthancError as error:
            reason = describe(error.code)
            report.reject(item.name, f"{reason}: {error.details}" if error.details else reason)
        else:
            report.stored(outcome.status, item.size)
        finally:
            slots.release()
            progress.advance(item.size)

    try:
        reader = read_items(items)
        while (read := await asyncio.to_thread(next, reader, None)) is not None:
            item, data, reason = read
            if data is None:
                report.reject(item.name, reason)
                progress.advance(item.size)
                continue
            await slots.acquire()
            task = asyncio.create_task(store(item, data))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return report


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files, folders, ZIPs, DICOMDIRs")
    destination = parser.add_mutually_exclusive_group()
    destination.add_argument("--url", help=f"a running server (default {DEFAULT_URL})")
    destination.add_argument("--store", type=Path, help="a stopped server's storage folder (index included)")
    parser.add_argument("--config", help="a stopped server's configuration: import into its store")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="files stored at the same time")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def _store_config(arguments: argparse.Namespace) -> Config | None:
    """The configuration of the store to write to, or None to go through a server."""
    if arguments.store is None and arguments.config is None:
        return None
    config = load_config(arguments.config)
    if arguments.store is not None:
        folder = str(arguments.store)
        config = msgspec.structs.replace(config, storage_directory=folder, index_directory=folder)
    return config


def run(arguments: argparse.Namespace) -> int:
    """``fastpacs ingest``; returns the exit status."""
    if arguments.jobs < 1:
        print("fastpacs ingest: --jobs must be at least 1", file=sys.stderr)
        return EXIT_FAILED
    if arguments.url is not None and arguments.config is not None:
        print("fastpacs ingest: give --url or --config, not both", file=sys.stderr)
        return EXIT_FAILED
    try:
        config = _store_config(arguments)
    except ConfigurationError as error:
        print(f"fastpacs ingest: {error}", file=sys.stderr)
        return EXIT_FAILED
    found = discover(arguments.paths)
    if not found.items and not found.problems:
        print("fastpacs ingest: no file to import", file=sys.stderr)
        return EXIT_FAILED
    progress = Progress(
        len(found.items),
        sum(item.size for item in found.items),
        sys.stderr,
        enabled=not arguments.quiet and sys.stderr.isatty(),
    )
    started = time.monotonic()
    try:
        if config is None:
            uploader = ServerUploader(arguments.url or DEFAULT_URL)
            uploader.check()
            report = ingest_over_http(found.items, uploader, arguments.jobs, progress)
        else:
            report = asyncio.run(ingest_into_store(found.items, config, arguments.jobs, progress))
    except IngestAbortedError as error:
        progress.finish()
        print(f"fastpacs ingest: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        progress.finish()
        print("fastpacs ingest: interrupted", file=sys.stderr)
        return EXIT_FAILED
    progress.finish()
    for name, reason in found.problems:
        report.reject(name, reason)
    report.print(sys.stdout, time.monotonic() - started, found.skipped_dicomdirs)
    return EXIT_REJECTED if report.rejected else EXIT_OK
