"""Group flush: one flush of the blob store serves every caller waiting for one.

A blob must be durable before the index references it. The files the
workers store themselves (a ZIP upload's, a modification job's, converted
files) are written unflushed, and the server flushes them here, on a thread
of its own, while the index writer commits earlier batches: the two disk
waits overlap. (A single upload's file is flushed by the thread that writes
it: :meth:`BlobStore.put` with ``flush``.)

Callers arriving while a flush runs wait for it to end and then share the
next, which flushes all their blobs together (one journal commit for the
group instead of one per blob). The flushing thread starts that next flush
itself as soon as the previous one ends, and wakes each event loop once for
all the callers a flush served: the event loop, busy with requests, is not a
step between two flushes.
"""

import asyncio
import threading
import time
from collections.abc import Callable

from fastpacs.storage.blobs import BlobStore

_Waiter = tuple[tuple[bytes, ...], asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class GroupFlush:
    """Flushes written blobs to disk, one flush at a time for all callers."""

    def __init__(self, storage: BlobStore, observe: Callable[[int, float], None] | None = None):
        """``observe``: told the number of files and the seconds of every flush (on the flushing thread)."""
        self.storage = storage
        self.observe = observe
        self._lock = threading.Lock()
        self._flushing = False
        """Whether a thread is running flushes (it stops when nobody waits)."""
        self._waiting: list[_Waiter] = []
        """The callers the next flush serves."""

    async def flush(self, *digests: bytes) -> None:
        """Return once the blobs named are durable; ``OSError``/``OrthancError`` if they cannot be."""
        await self.begin(*digests)

    def begin(self, *digests: bytes) -> "asyncio.Future[None]":
        """:meth:`flush`, started now and awaited later, so that the caller works while it runs.

        A caller may end up not awaiting it (the file it flushes for was refused): its
        failure is then retrieved here, not reported as an exception nobody retrieved.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(retrieve_failure)
        with self._lock:
            self._waiting.append((digests, loop, future))
            idle, self._flushing = not self._flushing, True
        if idle:
            loop.run_in_executor(None, self._run)
        return future

    def _run(self) -> None:
        """Flush as long as callers wait, then stop (on a thread of the executor)."""
        while True:
            with self._lock:
                served, self._waiting = self._waiting, []
                if not served:
                    self._flushing = False
                    return
            failure: Exception | None = None
            files = {digest for digests, _, _ in served for digest in digests}
            started = time.perf_counter()
            try:
                self.storage.sync(files)
            except Exception as error:  # noqa: BLE001 - handed to the waiting callers, which re-raise it
                failure = error
            else:
                if self.observe is not None:
                    self.observe(len(files), time.perf_counter() - started)
            _wake(served, failure)


def _wake(served: list[_Waiter], failure: BaseException | None) -> None:
    """Settle the futures of the callers a flush served, with one wake-up of each event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for _, loop, future in served:
        by_loop.setdefault(loop, []).append(future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, futures, failure)
        except RuntimeError:  # the loop was closed meanwhile (shutdown): nobody waits any more
            continue


def _settle(futures: list["asyncio.Future[None]"], failure: BaseException | None) -> None:
    for future in futures:
        if future.done():  # cancelled by its caller
            continue
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)


def retrieve_failure(task: "asyncio.Future[object]") -> None:
    """Done-callback of a task that may end up not awaited: its failure is not reported as unretrieved."""
    if not task.cancelled():
        task.exception()
