"""The group flush of ingest: callers share flushes of all their blobs, and none is served by a flush
that began before it."""

import asyncio
import gc
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from fastpacs.storage.blobs import BlobStore
from fastpacs.storage.flush import GroupFlush


class GatedStore(BlobStore):
    """A real store whose flushes are counted, and wait for the test to let them finish."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.flushes = 0
        self.flushed: list[set[bytes]] = []
        """The blobs each flush was asked for."""
        self.gate = threading.Event()
        self.failure: OSError | None = None

    def sync(self, digests: Iterable[bytes]) -> None:
        self.flushes += 1
        self.flushed.append(set(digests))
        self.gate.wait(10)
        if self.failure is not None:
            raise self.failure
        super().sync(self.flushed[-1])


async def until(condition, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def test_callers_waiting_together_share_one_flush(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    group = GroupFlush(store)

    first_blob = store.put(b"first")
    late_blobs = [store.put(f"late {number}".encode()) for number in range(5)]

    async def scenario() -> None:
        first = asyncio.create_task(group.flush(first_blob.digest))
        await until(lambda: store.flushes == 1)
        # These arrive while the first flush runs: it did not name their blobs.
        late = [asyncio.create_task(group.flush(blob.digest)) for blob in late_blobs]
        await asyncio.sleep(0.01)
        store.gate.set()
        await first
        await asyncio.gather(*late)

    asyncio.run(scenario())
    assert store.flushed == [{first_blob.digest}, {blob.digest for blob in late_blobs}]


def test_a_caller_arriving_during_a_flush_waits_for_the_next(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    group = GroupFlush(store)

    async def scenario() -> None:
        first = asyncio.create_task(group.flush())
        await until(lambda: store.flushes == 1)
        late = asyncio.create_task(group.flush())
        await asyncio.sleep(0.01)
        assert not late.done()
        store.gate.set()
        await first
        await late

    asyncio.run(scenario())
    assert store.flushes == 2


def test_a_failed_flush_fails_its_callers_and_the_next_one_retries(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    store.failure = OSError(5, "Input/output error")
    store.gate.set()
    group = GroupFlush(store)

    async def scenario() -> None:
        with pytest.raises(OSError):
            await group.flush()
        store.failure = None
        await group.flush()

    asyncio.run(scenario())
    assert store.flushes == 2


def test_a_flush_begun_early_covers_what_was_written_before(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    group = GroupFlush(store)

    async def scenario() -> None:
        flushed = group.begin()
        await until(lambda: store.flushes == 1)
        assert not flushed.done()
        store.gate.set()
        await flushed

    asyncio.run(scenario())
    assert store.flushes == 1


def test_a_failed_flush_begun_and_never_awaited_is_not_reported_unretrieved(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    store.failure = OSError(5, "Input/output error")
    store.gate.set()
    group = GroupFlush(store)
    unretrieved: list[dict] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unretrieved.append(context))
        flushed = group.begin()
        await until(flushed.done)
        del flushed
        gc.collect()

    asyncio.run(scenario())
    assert unretrieved == []


def test_the_next_flush_starts_while_the_event_loop_is_busy(tmp_path: Path) -> None:
    """The flushing thread starts the flush that late callers wait for as soon as the previous one ends,
    without a turn of the event loop (busy with requests under load)."""
    store = GatedStore(tmp_path)
    group = GroupFlush(store)

    async def scenario() -> None:
        first = group.begin()
        await until(lambda: store.flushes == 1)
        late = group.begin()
        store.gate.set()
        deadline = time.monotonic() + 5
        while store.flushes < 2 and time.monotonic() < deadline:
            time.sleep(0.001)  # blocks the event loop
        assert store.flushes == 2
        await first
        await late

    asyncio.run(scenario())
    assert store.flushes == 2
