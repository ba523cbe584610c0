"""The functions that run inside the worker processes.

Each worker holds its own :class:`BlobStore` on the shared storage folder,
set up once by :func:`initialize`. Tasks take and return plain bytes and
msgspec structs, never pydicom objects, so that little crosses the process
boundary.
"""

import contextlib
import ctypes
import io
import mmap
import os
import signal
import time
import zipfile
import zlib

import msgspec

from fastpacs.dicom.dictionary import UserDictionary
from fastpacs.dicom.dictionary import install as install_dictionary
from fastpacs.dicom.parse import InstanceSummary, summarize
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.imaging.native import FileBytes
from fastpacs.imaging.warmup import warm_worker
from fastpacs.malloc import keep_file_buffers
from fastpacs.storage.blobs import BlobStore, StoredBlob

_storage: BlobStore | None = None

ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
"""A first local file header, or the end record of an empty archive."""
BAD_ZIP = "Cannot open ZIP archive from memory buffer"
DAMAGED_ARCHIVE = (zipfile.BadZipFile, ValueError, NotImplementedError)
"""A central directory zipfile cannot read (ValueError: names not UTF-8 although flagged so;
NotImplementedError: a version of the format it does not know)."""
DAMAGED_ENTRY = (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError, zlib.error)
"""An entry that cannot be inflated; it is skipped as Orthanc skips what it cannot read."""
DICOM_MAGIC_OFFSET = 128
MAPPED_MIN_SIZE = 256 * 1024
"""Blobs from this size are mapped by :func:`read_blob_writeable`, smaller ones read (copying them costs
little). Python's ``mmap`` keeps a duplicate of the file's descriptor, so this bounds the descriptors
a worker's cache of parsed files holds (``fastpacs.pool.images.PARSED_FILES_BUDGET`` / this)."""


class ParsedFile(msgspec.Struct, array_like=True):
    """A file checked, summarized and stored by a worker (a file of a ZIP archive, a modified
    instance), to be flushed and indexed (:meth:`fastpacs.services.ingest.IngestService.ingest_stored`)."""

    summary: InstanceSummary
    blob: StoredBlob
    store_seconds: float = 0.0
    """Time the worker took to store the bytes (for the storage metrics)."""
    until_pixel_data: StoredBlob | None = None
    """The bytes before its PixelData, stored with ``StorageCompression`` (see
    :meth:`BlobStore.put_until_pixel_data`)."""

    @property
    def digests(self) -> list[bytes]:
        """The blobs written for the file."""
        return [self.blob.digest] + ([] if self.until_pixel_data is None else [self.until_pixel_data.digest])


class StoreInterruptedError(Exception):
    """A task stored some files, then could not store the next one (a full disk, say).

    The blobs it had written are referenced by nothing yet; the worker cannot
    remove them itself (an upload of the same bytes may be indexing one), so
    the server releases them through the index writer (:attr:`digests`) and
    answers :attr:`error`, as for the failure of a single store.
    """

    def __init__(self, error: OSError | OrthancError, digests: list[bytes]):
        super().__init__(error, digests)
        self.error = error
        self.digests = digests


def initialize(storage: BlobStore, dictionary: UserDictionary) -> None:
    """Worker start-up: die with the server, keep the memory of the files it handles for the next ones,
    read tags with its dictionary, take its storage (a copy of the server's store: same folder, same
    compression), warm the Numba kernels."""
    global _storage  # noqa: PLW0603 - the worker's one storage handle, set once at start
    _end_with_parent()
    keep_file_buffers()
    install_dictionary(dictionary)
    _storage = storage
    # Loads the kernels prepare_kernel_cache() compiled, so that no request compiles. The fork server has
    # done so already (fastpacs.pool.preload), which leaves milliseconds of work here; but multiprocessing
    # ignores a preload that fails to import, and then each worker loads them itself.
    warm_worker()


_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """Ask Linux to end this worker when its parent dies, however it dies (SIGKILL, a failed start):
    an idle worker would otherwise wait on its task queue forever, orphaned. The parent is the pool's
    fork server, which ends when the server process does (its pipe from the server closes)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def store(data: bytes) -> StoredBlob:
    """Write ``data`` as a blob of the storage, not yet flushed."""
    assert _storage is not None, "worker not initialized"
    return _storage.put(data)  # ingest flushes the storage before the index references it


def store_parsed(data: bytes, summary: InstanceSummary, stored: list[ParsedFile]) -> ParsedFile:
    """Store a summarized file and add it to ``stored``, what the task has stored so far; if the
    store fails after others, :class:`StoreInterruptedError` names those for the server to release."""
    assert _storage is not None, "worker not initialized"
    started = time.perf_counter()
    written = [digest for parsed in stored for digest in parsed.digests]
    try:
        blob = store(data)
        written.append(blob.digest)  # the file's, if the write of its bytes before pixel data fails
        until_pixel_data = _storage.put_until_pixel_data(data, summary.pixel_data_offset)
    except (OSError, OrthancError) as error:
        if not written:
            raise
        raise StoreInterruptedError(error, written) from error
    parsed = ParsedFile(summary, blob, time.perf_counter() - started, until_pixel_data)
    stored.append(parsed)
    return parsed


def read_blob(blob: StoredBlob) -> bytes:
    """The content of a stored blob, read (and decompressed) by the worker itself (only its index
    entry crosses processes)."""
    assert _storage is not None, "worker not initialized"
    return _storage.read(blob)


def read_uncompressed_blob(digest: bytes) -> bytes:
    """A blob known by its digest alone, which names an uncompressed one (in records older than
    compression)."""
    assert _storage is not None, "worker not initialized"
    return _storage.read_stored(digest)


def read_blob_writeable(blob: StoredBlob) -> FileBytes:
    """A stored blob as a buffer of its own, whose arrays (pixels) are writeable without a copy.

    A large uncompressed blob is mapped copy-on-write rather than read: the pixels are used where the
    page cache holds them (copying a 512 KB slice was a quarter of a worker's time per uncached
    render). Blobs are written once and linked into place, never changed, so a mapping stays whole.
    """
    assert _storage is not None, "worker not initialized"
    if blob.compressed:
        return bytearray(_storage.read(blob))
    digest = blob.digest
    with _storage.path_of(digest).open("rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        if size >= MAPPED_MIN_SIZE:
            with contextlib.suppress(OSError):  # a file system that cannot map files (some FUSE ones)
                return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
        data = bytearray(size)
        view = memoryview(data)
        received = 0
        while received < len(data):
            count = file.readinto(view[received:])
            if not count:  # a blob is written once and linked into place: never shorter
                raise OSError(f"blob {digest.hex()} ended before its size")
            received += count
    return data


def is_zip(data: bytes) -> bool:
    """A ZIP archive, not a DICOM file whose preamble happens to start like one."""
    return data.startswith(ZIP_SIGNATURES) and data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] != b"DICM"


def summarize_blob(blob: StoredBlob, default_encoding: str) -> InstanceSummary:
    """Check and summarize a file the server has just stored, read here from the storage.

    ``FileNotFoundError`` if a concurrent delete of the same bytes removed it meanwhile.
    """
    return summarize(read_blob(blob), default_encoding)


def parse_and_store_zip(data: bytes, default_encoding: str, max_expanded_size: int) -> list[ParsedFile]:
    """Every DICOM file of a ZIP archive, stored; other entries are skipped, as Orthanc does."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except DAMAGED_ARCHIVE as error:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, BAD_ZIP) from error
    if not archive.infolist():  # Orthanc's reader refuses an archive without entries too
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, BAD_ZIP)
    expanded = sum(entry.file_size for entry in archive.infolist())
    if expanded > max_expanded_size:
        raise OrthancError(ErrorCode.BAD_REQUEST, "The ZIP archive expands beyond the maximum upload size")
    parsed = []
    for entry in archive.infolist():
        if entry.is_dir():
            continue
        try:
            content = archive.read(entry)
        except DAMAGED_ENTRY:
            continue
        try:
            summary = summarize(content, default_encoding)
        except OrthancError:
            continue
        store_parsed(content, summary, parsed)
    return parsed
