"""A content-addressed blob store: a file's SHA-256 names it.

Layout: ``<root>/<aa>/<bb>/<sha256 hex>`` where ``aa`` and ``bb`` are the
first two bytes of the digest, plus ``<root>/tmp/`` for files being written.
A blob is written to an unnamed file (``O_TMPFILE``) and linked into place;
where the file system cannot, to a named temporary file renamed into place
(the unnamed file spares a name's creation, a rename and a random name per
blob, and a crash leaves nothing of it). A blob is not durable until it is
flushed: the data of its file and the folders that name it, by
:meth:`BlobStore.put` itself (``flush``, an upload's file) or later by
:meth:`BlobStore.sync`. A blob is referenced by the index only once its
flush has succeeded, and the start-up repair removes unreferenced blobs: a
crash in between leaves nothing half-written in use. The flush names its files
rather than flushing the whole file system (``syncfs``), which would also
wait for every other process's dirty data: 150 ms instead of 1 ms for a
512 KB blob here, with 100 MB of another program's writes pending.
Identical bytes are stored once; a blob is never rewritten.

Large blobs are written around the page cache (``O_DIRECT``, from an aligned
buffer): a 512 KB file written through the cache took here 0.8-1.2 ms of CPU
and 1.4-1.8 ms before its flush returned, nearly all of it the kernel taking
fresh pages for the cache as it grows; written directly, 0.2 ms and 0.6-0.9 ms.
A stored file is seldom read again soon, and caching it would push out what
is; one its writer is about to read back is written through the cache
(``cached``), and so is every blob where the file system refuses direct writes.

The store knows nothing of references: the index counts them and tells the
store when a blob can go. It is safe to use from several processes.

A write that fails removes its temporary file at once; a full disk is
Orthanc's "The file storage is full" (507), and the store serves again as
soon as space returns.

With Orthanc's ``StorageCompression``, new blobs are stored in Orthanc's
"zlib with size" form (:func:`compress`): the content's size as 8 bytes
little-endian, then a zlib stream at zlib's default level (6), which gives
the same bytes (and so the same ``compressed-md5``) as Orthanc for the same
file; empty content stays empty. The digest names the stored bytes, and the
:class:`StoredBlob` kept in the index says whether they are compressed: a
reader asks :meth:`BlobStore.read` for the content, never the file itself,
unless the blob is uncompressed. Compression and decompression run where the
store is called (a thread, or a worker process), never on the event loop.
"""

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from fastpacs.errors import ErrorCode, OrthancError

TEMPORARY_FOLDER = "tmp"
_LIBC = ctypes.CDLL(None, use_errno=True)
"""For ``linkat(2)`` with ``AT_SYMLINK_FOLLOW`` and ``sync_file_range(2)``, which the os module does not
offer (``os.link`` calls ``link(2)``, which cannot name an unnamed file through ``/proc/self/fd``)."""
_LIBC.sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
_SYNC_FILE_RANGE_WRITE = 2
_FILES_PER_SYNC_STEP = 64
"""Files :meth:`BlobStore.sync` holds open at once (a ZIP upload's flush names thousands)."""
_DIRECT_MIN_SIZE = 64 * 1024
"""Blobs from this size are written with ``O_DIRECT``; smaller ones cost less through the cache."""
_DIRECT_BLOCK = 4096
"""What a direct write's buffer address, file offset and length are multiples of: the largest
logical block size of disks (the file's last block is padded, then the file cut to its size)."""
_DIRECT_CHUNK = 1024 * 1024
"""Bytes copied to the aligned buffer and written at a time."""
_aligned_buffers = threading.local()
_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_UNNAMED_FILES = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
"""What ``open`` with ``O_TMPFILE`` raises where the kernel or the file system lacks it."""
_UUID_VARIANT_DIGITS = "89ab"
ZLIB_LEVEL = 6
"""zlib's default level, Orthanc's: the stored bytes are Orthanc's for the same content."""
_CONTENT_SIZE = struct.Struct("<Q")
_MAX_ZLIB_RATIO = 1032
"""Deflate cannot shrink data more than this: a size prefix beyond it is damage, not a size to allocate."""


class StoredBlob(msgspec.Struct, array_like=True, frozen=True):
    """Where a blob is and what it holds.

    Records written before compression existed have no ``compressed_size``:
    they read as uncompressed (no migration).
    """

    digest: bytes
    """SHA-256 of the stored bytes (32 bytes)."""
    size: int
    """Size of the content (Orthanc's ``UncompressedSize``)."""
    compressed_size: int | None = None
    """Size of the stored bytes when they are the content compressed (Orthanc's ``ZlibWithSize``),
    ``None`` when they are the content itself."""

    @property
    def compressed(self) -> bool:
        return self.compressed_size is not None

    @property
    def stored_size(self) -> int:
        """Bytes on disk (Orthanc's ``CompressedSize``, which is the size itself when uncompressed)."""
        return self.size if self.compressed_size is None else self.compressed_size

    @property
    def uuid(self) -> str:
        """A stable UUID derived from the digest, shown as Orthanc's ``FileUuid``.

        The first 16 bytes of the digest as a version-4 UUID, as ``uuid.UUID(bytes=..., version=4)``
        gives it: the version digit is 4, and the two top bits of byte 8 are the RFC 4122 variant
        (10), which leaves the first hex digit of that byte one of 8, 9, a, b. Formatted from the
        hex text directly, this runs on every GET of an instance or its file (4 times cheaper
        than building a ``uuid.UUID``).
        """
        text = self.digest[:16].hex()
        variant = _UUID_VARIANT_DIGITS[self.digest[8] >> 4 & 3]
        return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{variant}{text[17:20]}-{text[20:32]}"


class BlobStore:
    """Files under one root folder, named by their SHA-256."""

    def __init__(self, root: Path, compression: bool = False):
        self.root = root
        self.compression = compression
        """Whether :meth:`put` compresses what it stores (Orthanc's ``StorageCompression``)."""
        self.temporary = root / TEMPORARY_FOLDER
        self.temporary.mkdir(parents=True, exist_ok=True)
        self._root = str(root)
        self._temporary = str(self.temporary)
        self._named_folders: set[str] = set()
        """Folders whose names this store made durable: folders are never removed, and a blob's flush
        needs to flush its folder's name only once (at most 65,536 + 256 entries)."""
        self._unnamed_files = hasattr(os, "O_TMPFILE")
        """Whether blobs are written as unnamed files (until the file system refuses one)."""
        self._direct_writes = hasattr(os, "O_DIRECT")
        """Whether large blobs are written around the page cache (until the file system refuses it)."""

    def path_of(self, digest: bytes) -> Path:
        text = digest.hex()
        return self.root / text[0:2] / text[2:4] / text

    def exists(self, digest: bytes) -> bool:
        """Whether a blob is stored (a string path: the index writer asks for every new instance)."""
        text = digest.hex()
        return os.path.exists(f"{self._root}/{text[0:2]}/{text[2:4]}/{text}")

    def put(
        self, data: bytes, compression: bool | None = None, *, flush: bool = False, cached: bool = False
    ) -> StoredBlob:
        """Store ``data`` (if not already there), compressed if ``compression`` (by default the
        store's setting), and return its address.

        ``flush``: the blob is durable when this returns (its data, then its folder), flushed by
        the calling thread, as an upload of one file wants: the uploads' flushes then run side by
        side on their threads, and the kernel joins their journal commits. Else :meth:`sync` makes
        it durable later (the files a worker stores, which the server flushes together).

        ``cached``: written through the page cache whatever its size, for a caller that is about
        to read the blob back (a worker summarizing a file from its whole content, or converting
        it): read from the disk instead, a 512 KB file cost that worker more than the direct
        write saved.

        Paths are plain strings and the two folder levels are created only when a rename finds them
        missing: this runs for every ingest, on a thread of the server process, and pathlib's
        objects and a ``mkdir`` per call cost more than the write's own system calls.
        """
        if self.compression if compression is None else compression:
            stored = compress(data)
            blob = StoredBlob(hashlib.sha256(stored).digest(), len(data), len(stored))
            self._put_stored(stored, blob.digest, flush, cached)
            return blob
        blob = StoredBlob(digest=hashlib.sha256(data).digest(), size=len(data))
        self._put_stored(data, blob.digest, flush, cached)
        return blob

    def put_until_pixel_data(
        self, data: bytes, pixel_data_offset: int | None, *, flush: bool = False
    ) -> StoredBlob | None:
        """With compression, store the file's bytes before its PixelData (Orthanc's
        ``dicom-until-pixel-data`` attachment, which it writes only then); else, or for a file
        without pixel data, nothing."""
        if not self.compression or not pixel_data_offset:
            return None
        return self.put(data[:pixel_data_offset], flush=flush)

    def _put_stored(self, data: bytes, digest: bytes, flush: bool, cached: bool) -> None:
        """Write the bytes named ``digest`` unless they are there already (flushed if ``flush``;
        through the page cache if ``cached`` or small)."""
        text = digest.hex()
        folder = f"{self._root}/{text[0:2]}/{text[2:4]}"
        final = f"{folder}/{text}"
        if os.path.exists(final):
            if flush:  # another writer's, maybe not flushed yet
                self.sync([digest])
            return
        direct = not cached and len(data) >= _DIRECT_MIN_SIZE
        if self._unnamed_files:
            linked = self._put_unnamed(data, folder, final, flush, direct)
            if linked is not None:
                if flush and linked:
                    with full_disk_as_full_storage():
                        self._flush_folder(folder)
                elif flush:  # the same bytes, another writer's: maybe not flushed yet
                    self.sync([digest])
                return
        temporary = f"{self._temporary}/{text}.{os.getpid()}.{uuid.uuid4().hex}"
        with full_disk_as_full_storage():
            try:
                self._write_new(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, data, flush, direct)
                try:
                    os.replace(temporary, final)
                except FileNotFoundError:  # the first blob of its folder
                    os.makedirs(folder, exist_ok=True)
                    os.replace(temporary, final)
            except OSError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise
            if flush:
                self._flush_folder(folder)

    def _put_unnamed(self, data: bytes, folder: str, final: str, flush: bool, direct: bool) -> bool | None:
        """Write ``data`` to an unnamed file of the store (flushed if ``flush``, with ``O_DIRECT``
        if ``direct`` and the file system allows) and link it as
        ``final``: True; False if the same bytes were linked there meanwhile; ``None`` (and unnamed
        files no more) where the system offers none, or cannot link one."""
        try:
            descriptor, direct = self._open_new(self._temporary, os.O_WRONLY | os.O_TMPFILE, direct)
        except OSError as error:
            if error.errno not in _NO_UNNAMED_FILES:
                raise
            self._unnamed_files = False
            return None
        try:
            with full_disk_as_full_storage():
                self._write_open(descriptor, direct, data)
                if flush:
                    os.fdatasync(descriptor)
                source = f"/proc/self/fd/{descriptor}".encode()
                code = _link(source, final)
                if code == errno.ENOENT and not os.path.isdir(folder):  # the first blob of its folder
                    os.makedirs(folder, exist_ok=True)
                    code = _link(source, final)
        finally:
            os.close(descriptor)  # an unlinked file vanishes with its descriptor
        if code in (0, errno.EEXIST):
            return code == 0
        if code in DISK_FULL:
            raise OrthancError(ErrorCode.FULL_STORAGE, os.strerror(code))
        if code == errno.ENOENT:  # no /proc to name the file by
            self._unnamed_files = False
            return None
        raise OSError(code, os.strerror(code), final)

    def _open_new(self, path: str, flags: int, direct: bool) -> tuple[int, bool]:
        """Open a new file, with ``O_DIRECT`` if ``direct`` and the file system allows; also say
        whether it is direct."""
        if not (direct and self._direct_writes):
            return os.open(path, flags, 0o644), False
        try:
            return os.open(path, flags | os.O_DIRECT, 0o644), True
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
        if flags & os.O_CREAT:  # the kernel creates a named file before it refuses O_DIRECT
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        descriptor = os.open(path, flags, 0o644)  # EINVAL again: the other flags were refused
        self._direct_writes = False
        return descriptor, False

    def _write_open(self, descriptor: int, direct: bool, data: bytes) -> None:
        """Write ``data`` to a new file :meth:`_open_new` opened; a direct write the file system
        refuses (its blocks are larger than :data:`_DIRECT_BLOCK`) is done again through the cache."""
        if direct:
            try:
                _write_direct(descriptor, data)
                return
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
            self._direct_writes = False
            fcntl.fcntl(descriptor, fcntl.F_SETFL, fcntl.fcntl(descriptor, fcntl.F_GETFL) & ~os.O_DIRECT)
            os.ftruncate(descriptor, 0)
            os.lseek(descriptor, 0, os.SEEK_SET)
        _write_all(descriptor, data)

    def _write_new(self, path: str, flags: int, data: bytes, flush: bool, direct: bool) -> None:
        """Write ``data`` to a new file named ``path`` (flushed if ``flush``, direct if ``direct`` and
        the file system allows)."""
        descriptor, direct = self._open_new(path, flags, direct)
        try:
            self._write_open(descriptor, direct, data)
            if flush:
                os.fdatasync(descriptor)
        finally:
            os.close(descriptor)

    def sync(self, digests: Iterable[bytes]) -> None:
        """Make these blobs durable: their files' data, their names in their folders, and those
        folders' names in theirs (a folder is created by the first blob it holds, by whichever
        process wrote that blob).

        A blob removed meanwhile (by a concurrent delete of the same bytes) is
        skipped: whoever references it next finds it missing. Writeback of every
        file starts before the first is waited for, so that the disk writes them
        together and one journal commit covers them all; the folders' flushes
        that follow find that commit done, and cost a cache flush of the disk
        each, which is why a folder's own name is flushed only the first time.
        """
        ordered = list(digests)
        for start in range(0, len(ordered), _FILES_PER_SYNC_STEP):
            self._sync_files(ordered[start : start + _FILES_PER_SYNC_STEP])

    def _sync_files(self, digests: list[bytes]) -> None:
        descriptors: list[int] = []
        folders: set[str] = set()
        with full_disk_as_full_storage():
            try:
                for digest in digests:
                    text = digest.hex()
                    folder = f"{self._root}/{text[0:2]}/{text[2:4]}"
                    path = f"{folder}/{text}"
                    try:
                        descriptor = os.open(path, os.O_RDONLY)
                    except FileNotFoundError:
                        continue
                    descriptors.append(descriptor)
                    folders.add(folder)
                    if _LIBC.sync_file_range(descriptor, 0, 0, _SYNC_FILE_RANGE_WRITE) != 0:
                        code = ctypes.get_errno()
                        raise OSError(code, os.strerror(code), path)
                for descriptor in descriptors:
                    os.fdatasync(descriptor)
            finally:
                for descriptor in descriptors:
                    os.close(descriptor)
            for folder in folders:
                self._flush_folder(folder)

    def _flush_folder(self, folder: str) -> None:
        """Make the names in a blob folder durable, and the folder's own name the first time."""
        fsync_directory(folder)
        if folder in self._named_folders:
            return
        parent = os.path.dirname(folder)
        fsync_directory(parent)
        if parent not in self._named_folders:
            fsync_directory(self._root)
        self._named_folders.update((folder, parent))

    def read(self, blob: StoredBlob) -> bytes:
        """The content of a blob (decompressed if stored so); ``FileNotFoundError`` if it is not stored."""
        stored = self.read_stored(blob.digest)
        return stored if blob.compressed_size is None else decompress(stored)

    def read_zlib_stream(self, blob: StoredBlob) -> bytes | None:
        """The zlib stream of a compressed blob (what HTTP calls ``deflate``): its stored bytes without
        the size prefix; ``None`` for a blob stored uncompressed or empty."""
        if blob.compressed_size is None or blob.size == 0:
            return None
        return self.read_stored(blob.digest)[_CONTENT_SIZE.size :]

    def read_stored(self, digest: bytes) -> bytes:
        """The bytes of a blob as stored; ``FileNotFoundError`` if it is not stored."""
        return self.path_of(digest).read_bytes()

    def remove(self, digest: bytes) -> None:
        """Forget a blob (the caller made sure nothing refers to it any more)."""
        self.path_of(digest).unlink(missing_ok=True)

    def digests(self) -> list[tuple[bytes, float]]:
        """Every stored blob with its modification time (for the start-up consistency check)."""
        found: list[tuple[bytes, float]] = []
        for first in self.root.iterdir():
            if len(first.name) != 2 or not first.is_dir():
                continue
            for second in first.iterdir():
                for entry in os.scandir(second):
                    try:
                        found.append((bytes.fromhex(entry.name), entry.stat().st_mtime))
                    except ValueError:
                        continue
        return found

    def remove_temporary_files(self) -> int:
        """Delete files left half-written by a crash; return how many there were."""
        count = 0
        for entry in os.scandir(self.temporary):
            os.unlink(entry.path)
            count += 1
        return count


@contextlib.contextmanager
def full_disk_as_full_storage() -> Iterator[None]:
    """A full disk (or quota) met inside is Orthanc's "The file storage is full" (507)."""
    try:
        yield
    except OSError as error:
        if error.errno in DISK_FULL:
            raise OrthancError(ErrorCode.FULL_STORAGE, str(error)) from error
        raise


def compress(data: bytes) -> bytes:
    """Orthanc's "zlib with size" form: the size as 8 bytes little-endian, then the zlib stream
    (nothing at all for empty content)."""
    if not data:
        return b""
    return _CONTENT_SIZE.pack(len(data)) + zlib.compress(data, ZLIB_LEVEL)


def decompress(stored: bytes) -> bytes:
    """The content of bytes :func:`compress` made; :class:`OrthancError` if they are damaged."""
    if not stored:
        return b""
    try:
        if len(stored) < _CONTENT_SIZE.size:
            raise zlib.error("shorter than its size prefix")
        (size,) = _CONTENT_SIZE.unpack_from(stored)
        if size > _MAX_ZLIB_RATIO * len(stored):
            raise zlib.error(f"a size prefix of {size} bytes for {len(stored)} stored bytes")
        data = zlib.decompress(memoryview(stored)[_CONTENT_SIZE.size :], bufsize=max(size, 1))
    except zlib.error as error:
        raise OrthancError(ErrorCode.CORRUPTED_FILE, f"Cannot uncompress a stored file: {error}") from error
    if len(data) != size:
        raise OrthancError(ErrorCode.CORRUPTED_FILE, "A stored file does not uncompress to its size")
    return data


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _write_direct(descriptor: int, data: bytes) -> None:
    """Write ``data`` through a descriptor opened with ``O_DIRECT``: copied piece by piece to an
    aligned buffer, the last block padded with zeros, then the file cut back to the data's size."""
    buffer = _aligned_buffer()
    view = memoryview(data)
    for start in range(0, len(view), _DIRECT_CHUNK):
        piece = view[start : start + _DIRECT_CHUNK]
        end = len(piece)
        padded = -(-end // _DIRECT_BLOCK) * _DIRECT_BLOCK
        buffer[:end] = piece
        buffer[end:padded] = bytes(padded - end)
        with memoryview(buffer) as whole:
            _write_all(descriptor, whole[:padded])
    os.ftruncate(descriptor, len(data))


def _aligned_buffer() -> mmap.mmap:
    """This thread's buffer for direct writes (an anonymous mapping: page-aligned), kept for its next."""
    buffer: mmap.mmap | None = getattr(_aligned_buffers, "buffer", None)
    if buffer is None:
        buffer = _aligned_buffers.buffer = mmap.mmap(-1, _DIRECT_CHUNK)
    return buffer


def _link(source: bytes, target: str) -> int:
    """``linkat`` following ``source`` (a ``/proc/self/fd`` entry) to its file: 0, or the errno."""
    if _LIBC.linkat(_AT_FDCWD, source, _AT_FDCWD, target.encode(), _AT_SYMLINK_FOLLOW) == 0:
        return 0
    return ctypes.get_errno()


def fsync_directory(path: str | Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
