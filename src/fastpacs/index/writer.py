"""The index writer: one thread, one write transaction per batch (group commit).

LMDB allows one writer at a time, and every commit costs an fsync. The
writer takes every operation queued while the previous commit was running
and applies them all in one transaction, each in a nested transaction of
its own so that a failing operation is rolled back alone. Callers await
their operation's result; it is delivered only after the commit is
durable. Blobs released by a batch are removed from storage after the
commit, by this same thread, so that no operation can reference a blob
while it is being removed. A commit refused for want of space (disk or
LMDB map full) fails its operations with Orthanc's "The file storage is
full" (507); the next batch tries again.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import lmdb

from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate
from fastpacs.metrics import DISABLED_METRICS, ServerMetrics
from fastpacs.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[IndexUpdate], Any]

MAX_BATCH = 512


class _Request:
    __slots__ = ("future", "loop", "operation")

    def __init__(self, operation: Operation, loop: asyncio.AbstractEventLoop, future: asyncio.Future):
        self.operation = operation
        self.loop = loop
        self.future = future


def _deliver(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _deliver_all(deliveries: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, result, error in deliveries:
        _deliver(future, result, error)


def _commit_failure(error: Exception) -> Exception:
    """What the operations of a failed commit raise: no space left is Orthanc's "storage full"."""
    if isinstance(error, lmdb.DiskError | lmdb.MapFullError):
        return OrthancError(ErrorCode.FULL_STORAGE, str(error))
    return error


class WriterStoppedError(RuntimeError):
    """An operation was submitted after the writer stopped (server shutting down)."""


class IndexWriter:
    """Runs write operations on the index from any coroutine, batching their commits."""

    def __init__(self, database: Database, storage: BlobStore, metrics: ServerMetrics = DISABLED_METRICS):
        self.database = database
        self.storage = storage
        self.metrics = metrics
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
        self.batches = 0
        self.operations = 0
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the queued operations, then stop the thread; later operations are refused."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join()

    async def run(self, operation: Callable[[IndexUpdate], T]) -> T:
        """Apply one operation in the next batch; return its result once committed.

        :class:`WriterStoppedError` once the writer is stopping (it would never run).
        """
        if self._stopping:
            raise WriterStoppedError("the index writer is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Request(operation, loop, future))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    stopping = True
                    break
                batch.append(request)
            self._commit(batch)

    def _commit(self, batch: list[_Request]) -> None:
        env, dbs = self.database.env, self.database.dbs
        outcomes: list[tuple[_Request, Any, BaseException | None]] = []
        released: set[bytes] = set()
        new_blobs: set[bytes] = set()
        started = time.perf_counter()
        try:
            with env.begin(write=True) as txn:
                for request in batch:
                    nested = env.begin(write=True, parent=txn)
                    update = IndexUpdate(nested, dbs, self.storage.exists)
                    try:
                        result = request.operation(update)
                    except Exception as error:  # noqa: BLE001 - handed to the awaiting caller, which re-raises it
                        nested.abort()
                        outcomes.append((request, None, error))
                        continue
                    nested.commit()
                    released |= update.released_blobs
                    new_blobs |= update.new_blobs
                    outcomes.append((request, result, None))
                if released:
                    released = self._still_released(IndexUpdate(txn, dbs, self.storage.exists), released)
                if new_blobs:  # blobs are written unflushed; flush them all before they are referenced
                    flush_started = time.perf_counter()
                    self.storage.sync(new_blobs)
                    self.metrics.observe_storage_flush(len(new_blobs), time.perf_counter() - flush_started)
        except (lmdb.Error, OSError, OrthancError) as error:
            logger.exception("index commit failed")
            failure = _commit_failure(error)
            outcomes = [(request, None, failure) for request in batch]
            # Referenced first by this undone batch, the new blobs are referenced by nothing. Their
            # flush may have failed, leaving data not on disk that a later flush of the same files
            # would not report: they go, and the same bytes are written anew when stored again.
            released = new_blobs
        self.batches += 1
        self.operations += len(batch)
        self.metrics.observe_index_commit(len(batch), time.perf_counter() - started)
        self._remove_blobs(released)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, BaseException | None]]] = {}
        for request, result, error in outcomes:
            by_loop.setdefault(request.loop, []).append((request.future, result, error))
        for loop, deliveries in by_loop.items():  # one wake-up of each loop for the whole batch
            loop.call_soon_threadsafe(_deliver_all, deliveries)

    @staticmethod
    def _still_released(update: IndexUpdate, candidates: set[bytes]) -> set[bytes]:
        """Of the blobs released, those that no operation of the batch referenced again."""
        return {digest for digest in candidates if update.blob_references(digest) == 0}

    def _remove_blobs(self, digests: set[bytes]) -> None:
        """Remove the blobs nothing refers to any more. One that cannot be removed is logged and
        left for the start-up check, which removes unreferenced blobs: the failure must not end this
        thread, which every write of the server waits on."""
        for digest in digests:
            started = time.perf_counter()
            try:
                self.storage.remove(digest)
            except OSError:
                logger.exception("could not remove the unreferenced blob %s", digest.hex())
                continue
            self.metrics.observe_storage_remove(time.perf_counter() - started)
