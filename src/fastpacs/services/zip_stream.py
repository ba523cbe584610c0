"""Writing ZIP archives front to back, to a file or to an HTTP client, as they are built.

:class:`ZipWriter` produces the bytes of a ZIP of *stored* entries without
ever seeking back: each entry's CRC-32 and size are known before its local
header is written, so the headers are complete (no data descriptors) and a
streaming reader can read the archive too. The central directory is
written last, from what the writer remembers of each entry; ZIP64 records
appear only where sizes, offsets or the number of entries need them.

A :class:`ZipTarget` is where the bytes go: a :class:`FileTarget` (the
output of an asynchronous job, made durable before it takes its final
name) or a :class:`StreamTarget` (a synchronous answer, a few chunks ahead
of the client at most). Archives (:mod:`fastpacs.services.archive`) and
DICOM media (:mod:`fastpacs.services.media`) are both written this way.
"""

import asyncio
import os
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

import msgspec

from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.storage.blobs import fsync_directory

STREAM_QUEUE_CHUNKS = 2
"""Chunks a synchronous archive may build ahead of a slow client."""


# ---------------------------------------------------------------------------- the format

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
_END_OF_CENTRAL_DIRECTORY = struct.Struct("<IHHHHIIH")
_ZIP64_END_OF_CENTRAL_DIRECTORY = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_EXTRA_FIELD_HEADER = struct.Struct("<HH")
_LOCAL_SIGNATURE = 0x04034B50
_CENTRAL_SIGNATURE = 0x02014B50
_END_SIGNATURE = 0x06054B50
_ZIP64_END_SIGNATURE = 0x06064B50
_ZIP64_LOCATOR_SIGNATURE = 0x07064B50
_ZIP64_EXTRA_ID = 0x0001
_UTF8_FLAG = 0x0800
_VERSION = 20
_VERSION_ZIP64 = 45
_LIMIT_32 = 0xFFFFFFFF
_LIMIT_16 = 0xFFFF


class _CentralEntry(msgspec.Struct, array_like=True):
    name: bytes
    flags: int
    crc: int
    size: int
    offset: int


class ZipWriter:
    """The bytes of a ZIP archive of stored entries, produced front to back without seeking.

    The caller writes exactly ``size`` bytes of data after each local header.
    ZIP64 records are used where sizes, offsets or the entry count need them
    (always with ``force_zip64``).
    """

    def __init__(self, moment: float, force_zip64: bool = False):
        local = time.localtime(moment)
        year = min(max(local.tm_year, 1980), 2107)
        self._dos_date = ((year - 1980) << 9) | (local.tm_mon << 5) | local.tm_mday
        self._dos_time = (local.tm_hour << 11) | (local.tm_min << 5) | (local.tm_sec // 2)
        self._force_zip64 = force_zip64
        self._entries: list[_CentralEntry] = []
        self.offset = 0
        """Bytes of the archive produced so far."""

    def local_header(self, name: str, size: int, crc: int) -> bytes:
        """The header of the next entry; its ``size`` bytes of data must follow."""
        encoded = name.encode("utf-8")
        flags = 0 if name.isascii() else _UTF8_FLAG
        zip64 = self._force_zip64 or size >= _LIMIT_32
        extra = _zip64_extra([size, size]) if zip64 else b""
        header = _LOCAL_HEADER.pack(
            _LOCAL_SIGNATURE,
            _VERSION_ZIP64 if zip64 else _VERSION,
            flags,
            0,  # stored
            self._dos_time,
            self._dos_date,
            crc,
            _LIMIT_32 if zip64 else size,
            _LIMIT_32 if zip64 else size,
            len(encoded),
            len(extra),
        )
        self._entries.append(_CentralEntry(name=encoded, flags=flags, crc=crc, size=size, offset=self.offset))
        self.offset += len(header) + len(encoded) + len(extra) + size
        return header + encoded + extra

    def end(self) -> bytes:
        """The central directory and end records that close the archive."""
        directory_offset = self.offset
        directory = b"".join(self._central_header(entry) for entry in self._entries)
        count = len(self._entries)
        tail = b""
        if (
            self._force_zip64
            or count >= _LIMIT_16
            or len(directory) >= _LIMIT_32
            or directory_offset >= _LIMIT_32
        ):
            zip64_end_offset = directory_offset + len(directory)
            tail = _ZIP64_END_OF_CENTRAL_DIRECTORY.pack(
                _ZIP64_END_SIGNATURE,
                _ZIP64_END_OF_CENTRAL_DIRECTORY.size - 12,
                _VERSION_ZIP64,
                _VERSION_ZIP64,
                0,
                0,
                count,
                count,
                len(directory),
                directory_offset,
            ) + _ZIP64_LOCATOR.pack(_ZIP64_LOCATOR_SIGNATURE, 0, zip64_end_offset, 1)
        end = _END_OF_CENTRAL_DIRECTORY.pack(
            _END_SIGNATURE,
            0,
            0,
            min(count, _LIMIT_16),
            min(count, _LIMIT_16),
            min(len(directory), _LIMIT_32),
            min(directory_offset, _LIMIT_32),
            0,
        )
        data = directory + tail + end
        self.offset += len(data)
        return data

    def _central_header(self, entry: _CentralEntry) -> bytes:
        large_size = self._force_zip64 or entry.size >= _LIMIT_32
        large_offset = self._force_zip64 or entry.offset >= _LIMIT_32
        wide = ([entry.size, entry.size] if large_size else []) + ([entry.offset] if large_offset else [])
        extra = _zip64_extra(wide) if wide else b""
        version = _VERSION_ZIP64 if wide else _VERSION
        header = _CENTRAL_HEADER.pack(
            _CENTRAL_SIGNATURE,
            version,
            version,
            entry.flags,
            0,
            self._dos_time,
            self._dos_date,
            entry.crc,
            _LIMIT_32 if large_size else entry.size,
            _LIMIT_32 if large_size else entry.size,
            len(entry.name),
            len(extra),
            0,
            0,
            0,
            0,
            _LIMIT_32 if large_offset else entry.offset,
        )
        return header + entry.name + extra


def _zip64_extra(values: list[int]) -> bytes:
    return _EXTRA_FIELD_HEADER.pack(_ZIP64_EXTRA_ID, 8 * len(values)) + struct.pack(
        f"<{len(values)}Q", *values
    )


# ---------------------------------------------------------------------------- targets


class ZipTarget(Protocol):
    """Where a ZIP is written."""

    async def open(self) -> None: ...

    async def write_entry(self, chunks: Iterator[bytes]) -> None:
        """Write the chunks of an entry (a blocking iterator: drive it from a thread)."""

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def discard(self) -> None:
        """The archive will not be completed: release and remove what was written."""


class FileTarget:
    """An archive file, written as ``<name>.part`` and renamed once complete."""

    def __init__(self, path: Path):
        self.path = path
        self.partial = path.with_suffix(".part")
        self._file = None

    async def open(self) -> None:
        self._file = await asyncio.to_thread(open, self.partial, "wb")

    async def write_entry(self, chunks: Iterator[bytes]) -> None:
        await asyncio.to_thread(self._write_all, chunks)

    def _write_all(self, chunks: Iterator[bytes]) -> None:
        for chunk in chunks:
            self._file.write(chunk)

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._file.write, data)

    async def close(self) -> None:
        await asyncio.to_thread(self._close_and_rename)

    def _close_and_rename(self) -> None:
        """Make the file durable, then give it its name: a finished archive survives a power loss."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self.partial.replace(self.path)
        fsync_directory(self.path.parent)

    async def discard(self) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None
        self.partial.unlink(missing_ok=True)


class _End:
    """Marks the end of a streamed archive."""


_END = _End()


class StreamTarget:
    """An archive sent to an HTTP client as it is built, a few chunks ahead at most."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | _End | OrthancError] = asyncio.Queue(STREAM_QUEUE_CHUNKS)
        self._abandoned = False

    async def open(self) -> None:
        pass

    async def write_entry(self, chunks: Iterator[bytes]) -> None:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await self._put(chunk)

    async def write(self, data: bytes) -> None:
        await self._put(data)

    async def close(self) -> None:
        await self._put(_END)

    async def discard(self) -> None:
        if not self._abandoned:
            await self._put(OrthancError(ErrorCode.CANCELED_JOB, "The archive was not completed"))

    async def _put(self, item: bytes | _End | OrthancError) -> None:
        if self._abandoned:
            raise OrthancError(ErrorCode.CANCELED_JOB, "The client closed the connection")
        await self._queue.put(item)

    def abandon(self) -> None:
        """The client went away: unblock the writer and refuse further chunks."""
        self._abandoned = True
        while not self._queue.empty():
            self._queue.get_nowait()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The archive's bytes as they are produced; raises if the archive is not completed."""
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, OrthancError):
                raise item
            yield item
