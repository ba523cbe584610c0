"""The blob store on a real folder: where blobs land, how they are written, what a write leaves behind."""

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


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed file", "named temporary file"])
def test_put_stores_the_bytes_under_their_digest_and_leaves_no_temporary_file(
    tmp_path: Path, unnamed: bool
) -> None:
    store = BlobStore(tmp_path)
    store._unnamed_files = unnamed and store._unnamed_files
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
        assert store._put_unnamed(data, folder, f"{folder}/{text}", flush=False) is False  # there already
    assert store.put(data) == first
    assert blob_path(tmp_path, data).stat().st_ino == inode
    assert blob_path(tmp_path, data).read_bytes() == data


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
    store = BlobStore(tmp_path)
    store._unnamed_files = unnamed and store._unnamed_files
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
    store = BlobStore(tmp_path)
    store._unnamed_files = unnamed and store._unnamed_files

    def full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(OrthancError) as raised:
        store.put(os.urandom(5000), flush=True)
    assert raised.value.code == ErrorCode.FULL_STORAGE
    assert store.digests() == []
    assert list(store.temporary.iterdir()) == []
