"""Group flush: one ``syncfs`` of the blob store serves every ingest waiting for one.

An instance's blob must be durable before the index references it. The
index writer can flush in its commit (:meth:`BlobStore.sync` before the
transaction), but then the flush and the LMDB commit run one after the
other on the writer thread, and they are most of its time. Ingest flushes
its blob here first instead, on a thread of its own, while the writer
commits the previous batch: the two disk waits overlap.

A caller needs a flush that *started* after its blob was written; one that
was already running may have missed it. So callers arriving while a flush
runs wait for it to end and then share the next one.
"""

import asyncio

from fastpacs.storage.blobs import BlobStore


class GroupFlush:
    """Flushes the store's written blobs to disk, one flush at a time for all callers."""

    def __init__(self, storage: BlobStore):
        self.storage = storage
        self._started = 0
        """Number of the latest flush started."""
        self._completed = 0
        """Number of the latest flush that succeeded."""
        self._running: asyncio.Future[None] | None = None

    async def flush(self) -> None:
        """Return once every blob written before this call is durable; ``OSError``/``OrthancError`` if not."""
        needed = self._started + 1
        while self._completed < needed:
            if self._running is None or self._running.done():
                self._started += 1
                self._running = asyncio.ensure_future(self._sync(self._started))
            await asyncio.shield(self._running)

    def begin(self) -> "asyncio.Task[None]":
        """:meth:`flush`, started now and awaited later, so that the caller works while it runs.

        A caller may end up not awaiting it (the file it flushes for was refused): its
        failure is then retrieved here, not reported as an exception nobody retrieved.
        """
        task = asyncio.ensure_future(self.flush())
        task.add_done_callback(retrieve_failure)
        return task

    async def _sync(self, number: int) -> None:
        await asyncio.to_thread(self.storage.sync)
        self._completed = max(self._completed, number)


def retrieve_failure(task: "asyncio.Future[object]") -> None:
    """Done-callback of a task that may end up not awaited: its failure is not reported as unretrieved."""
    if not task.cancelled():
        task.exception()
