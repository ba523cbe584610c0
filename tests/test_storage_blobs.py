"""The blob store on a real folder: where blobs land, how they are written, what a write leaves behind."""

import errno
import hashlib
import os
import uuid
import zlib
from pathlib import Path

import msgspec
import pytest

from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.storage import blobs as blobs_module
from fastpacs.storage.blobs import BlobStore, StoredBlob


def blob_path(root: Path, data: bytes) -> Path:
    text = hashlib.sha256(data).hexdigest()
    return root / text[0:2] / text[2:4] / text


def store_writing(root: Path, unnamed: bool) -> BlobStore:
    """A store writing unnamed files (where the system allows them) or named temporary files."""
    store = BlobStore(root)
    store._unnamed_files = unnamed and store._unnamed_files
    return store


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed file", "named temporary file"])
def test_put_stores_the_bytes_under_their_digest_and_leaves_no_temporary_file(
    tmp_path: Path, unnamed: bool
) -> None:
    store = store_writing(tmp_path, unnamed)
    files = [os.urandom(300_000), b"", b"small"]

    blobs = [store.put(data) for data in files]
    store.sync(blob.digest for blob in blobs)

    for data, blob in zip(files, blobs, strict=True):
        assert (blob.digest, blob.size) == (hashlib.sha256(data).digest(), len(data))
        assert blob_path(tmp_path, data).read_bytes() == data
        assert store.read(blob) == data
        assert oct(blob_path(tmp_path, data).stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    assert list(store.temporary.iterdir()) == []
    assert sorted(digest for digest, _ in store.digests()) == sorted(blob.digest for blob in blobs)


def test_the_store_writes_unnamed_files_where_the_system_allows(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(b"probe")
    assert store._unnamed_files == (hasattr(os, "O_TMPFILE") and Path("/proc/self/fd").is_dir())


def test_identical_bytes_linked_again_keep_the_first_file(tmp_path: Path) -> None:
    """Two writers of the same bytes (threads, or a worker process): the second link finds the blob."""
    store = BlobStore(tmp_path)
    data = os.urandom(10_000)
    first = store.put(data)
    text = first.digest.hex()
    folder = f"{tmp_path}/{text[0:2]}/{text[2:4]}"
    inode = blob_path(tmp_path, data).stat().st_ino
    if store._unnamed_files:
        assert store._put_unnamed(data, folder, f"{folder}/{text}", flush=False, direct=False) is False
    assert store.put(data) == first
    assert blob_path(tmp_path, data).stat().st_ino == inode
    assert blob_path(tmp_path, data).read_bytes() == data


class OpenSpy:
    """Records the flags of the files the store opens for writing, by the size of the data."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse_direct: bool = False):
        self.flags: list[int] = []
        real_open = os.open

        def spied_open(path: str, flags: int, mode: int = 0o777) -> int:
            if not flags & os.O_WRONLY:
                return real_open(path, flags, mode)
            self.flags.append(flags)
            descriptor = real_open(path, flags, mode)
            if refuse_direct and flags & os.O_DIRECT:  # as Linux does: a named file is created first
                os.close(descriptor)
                raise OSError(errno.EINVAL, "Invalid argument", path)
            return descriptor

        monkeypatch.setattr(os, "open", spied_open)

    def direct(self) -> list[bool]:
        return [bool(flags & os.O_DIRECT) for flags in self.flags]


SIZES_AROUND_DIRECT_BLOCKS = [
    blobs_module._DIRECT_MIN_SIZE - 1,
    blobs_module._DIRECT_MIN_SIZE,
    100_001,
    blobs_module._DIRECT_CHUNK,
    blobs_module._DIRECT_CHUNK + 1,
    5 * blobs_module._DIRECT_CHUNK // 2 + 7,
]


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed file", "named temporary file"])
@pytest.mark.parametrize("flush", [True, False], ids=["flushed", "flushed later"])
def test_large_blobs_are_written_around_the_page_cache_whatever_their_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool, flush: bool
) -> None:
    """From 64 KB, O_DIRECT from an aligned buffer, the last block padded and cut off again; the
    bytes read back are the bytes given, as long as the content and no longer."""
    store = store_writing(tmp_path, unnamed)
    spy = OpenSpy(monkeypatch)
    files = [os.urandom(size) for size in SIZES_AROUND_DIRECT_BLOCKS]

    blobs = [store.put(data, flush=flush) for data in files]

    assert store._direct_writes
    assert spy.direct() == [len(data) >= blobs_module._DIRECT_MIN_SIZE for data in files]
    for data, blob in zip(files, blobs, strict=True):
        assert blob_path(tmp_path, data).stat().st_size == len(data)
        assert store.read(blob) == data
    assert list(store.temporary.iterdir()) == []


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed file", "named temporary file"])
def test_a_blob_asked_for_cached_is_written_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    """For a caller about to read it back (a worker summarizing or converting an upload)."""
    store = store_writing(tmp_path, unnamed)
    spy = OpenSpy(monkeypatch)
    data = os.urandom(300_000)
    blob = store.put(data, flush=True, cached=True)
    assert spy.direct() == [False]
    assert store.read(blob) == data
    assert store._direct_writes


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed file", "named temporary file"])
def test_a_file_system_without_direct_writes_gets_them_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    """Refused when the file is opened (EINVAL): opened again without; refused by the write (blocks
    larger than the buffer's alignment): the file written again through the cache. Either way the
    store writes through the cache from then on."""
    data = os.urandom(300_000)
    refused_open = store_writing(tmp_path / "refused open", unnamed)
    spy = OpenSpy(monkeypatch, refuse_direct=True)
    blob = refused_open.put(data, flush=True)
    assert spy.direct() == [True, False]
    assert (refused_open.read(blob), refused_open._direct_writes) == (data, False)
    assert list(refused_open.temporary.iterdir()) == []

    monkeypatch.undo()
    refused_write = store_writing(tmp_path / "refused write", unnamed)
    real_write_direct = blobs_module._write_direct

    def longer_then_refused(descriptor: int, content: bytes) -> None:
        real_write_direct(descriptor, bytes(len(content) + 5000))
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(blobs_module, "_write_direct", longer_then_refused)
    spy = OpenSpy(monkeypatch)
    blob = refused_write.put(data, flush=True)
    assert (refused_write.read(blob), refused_write._direct_writes) == (data, False)
    refused_write.put(os.urandom(300_000))
    assert spy.direct() == [True, False]
    assert list(refused_write.temporary.iterdir()) == []


def test_compressed_blobs_hold_the_size_then_a_zlib_stream(tmp_path: Path) -> None:
    """StorageCompression's form (Orthanc's): 8 bytes little-endian of content size, then zlib at level 6."""
    store = BlobStore(tmp_path, compression=True)
    data = bytes(5000) + os.urandom(500)
    blob = store.put(data)
    stored = store.path_of(blob.digest).read_bytes()
    assert stored == len(data).to_bytes(8, "little") + zlib.compress(data, 6)
    assert (blob.digest, blob.size, blob.compressed_size) == (
        hashlib.sha256(stored).digest(),
        len(data),
        len(stored),
    )
    assert (blob.compressed, blob.stored_size) == (True, len(stored))
    assert store.read(blob) == data
    assert store.read_stored(blob.digest) == stored
    assert store.put(data, compression=False) == StoredBlob(hashlib.sha256(data).digest(), len(data))
    empty = store.put(b"")
    assert (empty.compressed_size, store.read(empty)) == (0, b"")
    damaged = store.put(b"not zlib at all", compression=False)
    with pytest.raises(OrthancError):
        store.read(StoredBlob(damaged.digest, 15, 15))


def test_records_older_than_compression_read_as_uncompressed() -> None:
    digest = hashlib.sha256(b"x").digest()
    old = msgspec.msgpack.encode([digest, 1])
    blob = msgspec.msgpack.decode(old, type=StoredBlob)
    assert (blob.compressed, blob.stored_size) == (False, 1)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_file_uuid_is_the_digest_as_a_version_4_uuid() -> None:
    """FileUuid is formatted by hand (it is on every GET of an instance): the same text as the uuid
    module's, for every value of the bits the version and variant overwrite."""
    digests = [hashlib.sha256(bytes([n])).digest() for n in range(256)]
    digests += [bytes([n]) * 32 for n in range(256)]
    for digest in digests:
        expected = str(uuid.UUID(bytes=digest[:16], version=4))
        assert StoredBlob(digest=digest, size=0).uuid == expected


class FlushSpy:
    """Records what a store's flush asks the kernel to make durable: the files (by inode) whose data
    it waits for, and the folders it flushes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.files: list[int] = []
        self.folders: list[str] = []
        fdatasync, fsync_directory = os.fdatasync, blobs_module.fsync_directory

        def spied_fdatasync(descriptor: int) -> None:
            self.files.append(os.fstat(descriptor).st_ino)
            fdatasync(descriptor)

        def spied_fsync_directory(path: str | Path) -> None:
            self.folders.append(str(path))
            fsync_directory(path)

        monkeypatch.setattr(os, "fdatasync", spied_fdatasync)
        monkeypatch.setattr(blobs_module, "fsync_directory", spied_fsync_directory)


def test_sync_flushes_the_data_of_each_blob_named_and_the_folders_that_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path)
    files = [os.urandom(1000) for _ in range(blobs_module._FILES_PER_SYNC_STEP + 5)]
    written = [store.put(data) for data in files]
    store.put(b"written, not named")
    spy = FlushSpy(monkeypatch)

    store.sync(blob.digest for blob in written)

    assert sorted(spy.files) == sorted(blob_path(tmp_path, data).stat().st_ino for data in files)
    assert blob_path(tmp_path, b"written, not named").stat().st_ino not in spy.files
    folders = {blob_path(tmp_path, data).parent for data in files}
    named = folders | {folder.parent for folder in folders} | {tmp_path}
    assert sorted(set(spy.folders)) == sorted(str(folder) for folder in named)

    spy.files.clear()
    spy.folders.clear()
    again = files[:3] + [os.urandom(1000) for _ in range(3)]
    store.sync(store.put(data).digest for data in again)
    assert sorted(spy.files) == sorted(blob_path(tmp_path, data).stat().st_ino for data in again)
    # A folder's name, once flushed, is not flushed again: only new folders' parents are.
    folders_again = {blob_path(tmp_path, data).parent for data in again}
    new_folders = folders_again - folders
    expected = folders_again | {folder.parent for folder in new_folders}
    if any(folder.parent not in {known.parent for known in folders} for folder in new_folders):
        expected.add(tmp_path)
    assert set(spy.folders) == {str(folder) for folder in expected}


def test_sync_skips_a_blob_removed_meanwhile(tmp_path: Path) -> None:
    """A concurrent delete of the same bytes may remove a blob before its flush: the index writer
    finds it missing when it is referenced, and the other blobs of the flush are flushed."""
    store = BlobStore(tmp_path)
    kept, removed = store.put(b"kept"), store.put(b"removed")
    store.remove(removed.digest)
    store.sync([removed.digest, kept.digest])
    assert store.read(kept) == b"kept"


def test_sync_on_a_full_disk_is_full_storage_and_closes_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path)
    blobs = [store.put(os.urandom(100)) for _ in range(3)]
    before = set(os.listdir("/proc/self/fd"))

    def full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(OrthancError) as raised:
        store.sync(blob.digest for blob in blobs)
    assert raised.value.code == ErrorCode.FULL_STORAGE
    assert set(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed file", "named temporary file"])
def test_a_put_with_flush_returns_a_durable_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    """Its data, then its folder, whose own name is flushed the first time; bytes stored already by
    another writer (maybe not flushed yet) are flushed too."""
    store = store_writing(tmp_path, unnamed)
    spy = FlushSpy(monkeypatch)
    data = os.urandom(5000)

    store.put(data, flush=True)

    folder = blob_path(tmp_path, data).parent
    assert spy.files == [blob_path(tmp_path, data).stat().st_ino]
    assert spy.folders == [str(folder), str(folder.parent), str(tmp_path)]

    spy.files.clear()
    spy.folders.clear()
    store.put(data, flush=True)
    assert spy.files == [blob_path(tmp_path, data).stat().st_ino]
    assert spy.folders == [str(folder)]


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed file", "named temporary file"])
def test_a_put_whose_flush_fails_leaves_no_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    store = store_writing(tmp_path, unnamed)

    def full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(OrthancError) as raised:
        store.put(os.urandom(5000), flush=True)
    assert raised.value.code == ErrorCode.FULL_STORAGE
    assert store.digests() == []
    assert list(store.temporary.iterdir()) == []
