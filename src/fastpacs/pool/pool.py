"""The worker pool, started once with the server.

Processes are forked from multiprocessing's fork server, a process of its
own that has loaded what they need (:mod:`fastpacs.pool.preload`): forking
the server itself, which already runs threads and LMDB, is unsafe, and
spawning each worker from scratch made each import and load everything
again. They live as long as the server; one that ends (a crash in a
decoder, the kernel's OOM killer) is replaced by a new one. The event loop
awaits their results; a task that fails raises its exception in the caller.

Each worker has a pipe of its own in each direction, and the event loop
reads and writes them itself (non-blocking, as other sockets), one task per
worker at a time. ``ProcessPoolExecutor`` moved every task through two
threads of its own (a manager and a queue feeder) and back: about 0.2 ms of
the server's CPU and 0.5 ms of latency per task, and two more threads
taking the GIL from the event loop; here a task costs one pickle and one
write, and its answer one read. A worker's first message says it has
started (:data:`STARTED`): no lock or semaphore is shared with it, so a
server killed with SIGKILL leaves nothing behind in ``/dev/shm``.
"""

import asyncio
import contextlib
import fcntl
import importlib
import logging
import multiprocessing
import os
import pickle
import select
import struct
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from fastpacs.dicom.dictionary import UserDictionary
from fastpacs.pool import tasks
from fastpacs.storage.blobs import BlobStore

T = TypeVar("T")

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")
"""Every message on a pipe: its length, then the pickle."""
PIPE_SIZE = 1 << 20
"""Pipe buffer asked for, so that a task and most answers fit in one write."""
FIRST_READ = 1 << 16
"""Bytes asked for by the first read of an answer (most fit); the rest, if any, is read by its length.
A read of a megabyte cost about 0.1 ms whatever came: the allocation of its buffer."""
STARTUP_POLL_SECONDS = 0.2
PRELOAD_MODULE = "fastpacs.pool.preload"
STARTED = _HEADER.pack(0)
"""A worker's first message, once it has started: an empty one (no answer is empty)."""


@dataclass(frozen=True)
class WorkerFunction:
    """A function of a module only the workers import, named rather than imported.

    ``pool.run(WorkerFunction("fastpacs.pool.images", "render_frame"), ...)`` runs
    ``render_frame`` in a worker, which imports its module, without the server
    process importing it (and the Numba kernels and decoders it pulls in).
    """

    module: str
    name: str

    def __call__(self, *args: object) -> object:
        return getattr(importlib.import_module(self.module), self.name)(*args)


def default_size() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class RemoteTracebackError(Exception):
    """The traceback of a task's exception in its worker, set as that exception's cause."""

    def __str__(self) -> str:
        return str(self.args[0])


class WorkerPool:
    """A fixed number of worker processes sharing the blob storage."""

    def __init__(self, processes: int, storage: BlobStore, dictionary: UserDictionary | None = None):
        """``storage``: the server's blob store (each worker gets a copy, stores and reads as it does);
        ``dictionary``: the user dictionary the workers read files with (the server's own)."""
        self.processes = processes or default_size()
        self._storage = storage
        self._dictionary = dictionary or UserDictionary()
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([PRELOAD_MODULE])
        self._workers = [self._new_worker() for _ in range(self.processes)]
        self._idle: deque[_Worker] = deque(self._workers)
        self._waiting: deque[tuple[bytes, asyncio.Future[Any]]] = deque()
        self.queued = 0
        """Tasks submitted and not answered yet (waiting for a worker or running; one its caller
        gave up while it waited counts until its turn comes)."""

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function(*args)`` in a worker and await its result."""
        return await self.submit(function, *args)

    def submit(self, function: Callable[..., T], *args: object) -> asyncio.Future[T]:
        """Start ``function(*args)`` in a worker (or queue it): the future of its result.

        For a caller that awaits the result later and meanwhile does other
        work (the ingest writes the blob while its header is parsed), without
        a task of its own around :meth:`run`.
        """
        if not any(worker.alive for worker in self._workers):
            raise BrokenProcessPool("every worker process has ended")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.queued += 1
        self._waiting.append((pickle.dumps((function, args), pickle.HIGHEST_PROTOCOL), future))
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        while self._idle and self._waiting:
            payload, future = self._waiting.popleft()
            if future.done():  # a caller cancelled while waiting gives its turn
                self.queued -= 1
            else:
                self._idle.popleft().start(payload, future)

    def _new_worker(self) -> "_Worker":
        return _Worker(self._context, self._storage, self._dictionary, self._worker_free, self._undelivered)

    def _worker_free(self, worker: "_Worker") -> None:
        self.queued -= 1  # the task it answered
        if worker.alive:
            self._idle.append(worker)
        else:
            self._worker_ended(worker)
        self._dispatch()

    def _worker_ended(self, worker: "_Worker") -> None:
        """Replace a worker that ended after its start; with no worker left, fail the tasks waiting."""
        if worker.started:
            self._replace(worker)
        if not any(other.alive for other in self._workers):
            while self._waiting:
                _, future = self._waiting.popleft()
                self.queued -= 1
                if not future.done():
                    future.set_exception(BrokenProcessPool("every worker process has ended"))

    def _replace(self, ended: "_Worker") -> None:
        """Start a worker in place of ``ended`` (not of one that could not start: it would only fail
        again)."""
        process = ended.process
        logger.warning(
            "worker process %d ended (exit code %s): starting another", process.pid, process.exitcode
        )
        try:
            replacement = self._new_worker()
        except (OSError, EOFError):  # EOFError: the fork server ended while forking it
            logger.exception("no worker process could be started in place of process %d", process.pid)
            return
        self._workers[self._workers.index(ended)] = replacement
        self._idle.append(replacement)

    def _undelivered(self, payload: bytes, future: asyncio.Future[Any]) -> None:
        """Give back, first in line, a task whose worker ended before reading it (it never ran)."""
        self.queued += 1  # counted again until a worker answers it
        self._waiting.appendleft((payload, future))

    def warm_up(self) -> None:
        """Wait until every process has started and warmed up, so that no request pays for it."""
        for worker in self._workers:
            worker.wait_ready()

    def close(self) -> None:
        """Let every worker finish its task and end (called once the event loop runs no more tasks)."""
        for worker in self._workers:
            worker.close()


class _Worker:
    """One worker process and the parent's ends of its two pipes, driven by the event loop."""

    def __init__(
        self,
        context: Any,
        storage: BlobStore,
        dictionary: UserDictionary,
        on_free: Callable[["_Worker"], None],
        on_undelivered: Callable[[bytes, asyncio.Future[Any]], None],
    ):
        """``on_free``: called once the worker's task is settled (the worker may have ended);
        ``on_undelivered``: called instead of settling the task when the worker ended before reading it."""
        task_source, self._tasks = context.Pipe(duplex=False)
        self._answers, answer_sink = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_serve, args=(task_source, answer_sink, storage, dictionary), daemon=True
        )
        self.process.start()
        task_source.close()  # the worker holds these now; closed here, its end shows as end of file
        answer_sink.close()
        for connection in (self._tasks, self._answers):
            with contextlib.suppress(OSError):  # a smaller pipe only costs more wake-ups
                fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            os.set_blocking(connection.fileno(), False)
        self._on_free = on_free
        self._on_undelivered = on_undelivered
        self.alive = True
        self.started = False
        """Whether the worker's :data:`STARTED` message was read (by :meth:`wait_ready`, or else
        ahead of its first answer)."""
        self._future: asyncio.Future[Any] | None = None
        self._payload = b""
        """The task being sent, kept until the worker has read it all."""
        self._undelivered = False
        """Whether the worker ended before it read the whole task (a write found no reader)."""
        self._unsent: list[memoryview] = []
        self._received = bytearray()
        self._watcher: asyncio.AbstractEventLoop | None = None
        """The event loop watching the answer pipe: from a task's start until the worker is left
        idle (a worker handed its next task at once stays watched, as under load)."""
        self._writing = False

    def start(self, payload: bytes, future: asyncio.Future[Any]) -> None:
        """Send one task; its answer (or the worker's end) settles ``future``."""
        self._future, self._payload = future, payload
        loop = future.get_loop()
        if self._watcher is not loop:
            loop.add_reader(self._answers.fileno(), self._readable)
            self._watcher = loop
        self._unsent = [memoryview(_HEADER.pack(len(payload))), memoryview(payload)]
        self._writable()
        if self._unsent and not self._writing:
            loop.add_writer(self._tasks.fileno(), self._writable)
            self._writing = True

    def _writable(self) -> None:
        try:
            written = os.writev(self._tasks.fileno(), self._unsent)
        except BlockingIOError:
            return
        except BrokenPipeError:  # the worker ended: its answer pipe reports it to _readable
            self._undelivered = True
            written = sum(len(buffer) for buffer in self._unsent)
        self._unsent = _after(self._unsent, written)
        if not self._unsent and not self._undelivered:
            self._payload = b""
        if not self._unsent and self._writing and self._future is not None:
            self._future.get_loop().remove_writer(self._tasks.fileno())
            self._writing = False

    def _readable(self) -> None:
        descriptor = self._answers.fileno()
        while (missing := self._missing()) > 0:
            try:
                chunk = os.read(descriptor, missing)
            except BlockingIOError:
                return
            if not chunk:
                self._ended()
                return
            self._received += chunk
        if not self.started:  # the worker's first message; its first answer may follow it
            self._take_started_message()
            self._readable()
            return
        answer = memoryview(self._received)[_HEADER.size :]
        try:
            succeeded, value, remote_traceback = pickle.loads(answer)
        except (pickle.UnpicklingError, TypeError, AttributeError, ImportError) as error:
            succeeded, value, remote_traceback = False, error, None
        answer.release()
        self._finish(succeeded, value, remote_traceback)

    def _take_started_message(self) -> None:
        del self._received[: len(STARTED)]
        self.started = True

    def _missing(self) -> int:
        """Bytes of the answer still to read (:data:`FIRST_READ` while its length is unknown)."""
        if len(self._received) < _HEADER.size:
            return FIRST_READ
        return _HEADER.size + _HEADER.unpack_from(self._received)[0] - len(self._received)

    def _finish(self, succeeded: bool, value: Any, remote_traceback: str | None) -> None:
        future, self._future = self._future, None
        assert future is not None
        loop = future.get_loop()
        if self._writing:
            loop.remove_writer(self._tasks.fileno())
            self._writing = False
        self._received = bytearray()
        if self._undelivered and not future.done():
            self._on_undelivered(self._payload, future)
        elif not future.done():
            if succeeded:
                future.set_result(value)
            else:
                if remote_traceback is not None:
                    value.__cause__ = RemoteTracebackError(remote_traceback)
                future.set_exception(value)
        self._on_free(self)
        if self._future is None:  # no task was waiting for it
            loop.remove_reader(self._answers.fileno())
            self._watcher = None

    def _ended(self) -> None:
        self.alive = False
        self.process.join(1)
        error = BrokenProcessPool(f"a worker process ended abruptly (exit code {self.process.exitcode})")
        self._finish(False, error, None)
        self._tasks.close()
        self._answers.close()

    def wait_ready(self) -> None:
        """Block until the worker has started (before any task is given to it)."""
        descriptor = self._answers.fileno()
        while len(self._received) < len(STARTED):
            if not select.select([descriptor], [], [], STARTUP_POLL_SECONDS)[0]:
                if not self.process.is_alive():
                    raise BrokenProcessPool("a worker process failed to start")
                continue
            chunk = os.read(descriptor, len(STARTED) - len(self._received))
            if not chunk:  # the worker closed its pipe: it ended
                raise BrokenProcessPool("a worker process failed to start")
            self._received += chunk
        self._take_started_message()

    def close(self) -> None:
        self._tasks.close()  # end of file: the worker ends once its task is answered
        self.process.join()
        self._answers.close()
        self.alive = False


def _serve(
    tasks_in: Connection, answers_out: Connection, storage: BlobStore, dictionary: UserDictionary
) -> None:
    """A worker's life: start up, say so, then run the tasks read from the pipe until its end of file."""
    tasks.initialize(storage, dictionary)
    source, sink = tasks_in.fileno(), answers_out.fileno()
    os.write(sink, STARTED)
    while (payload := _read_message(source)) is not None:
        function, args = pickle.loads(payload)
        try:
            answer = (True, function(*args), None)
        except Exception as error:  # noqa: BLE001 - handed to the awaiting caller, which re-raises it
            answer = (False, error, traceback.format_exc())
        _write_message(sink, _pickled_answer(answer))


def _pickled_answer(answer: tuple[bool, Any, str | None]) -> bytes:
    try:
        return pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        failure = RuntimeError(f"the worker's answer cannot be sent back: {error!r}")
        return pickle.dumps((False, failure, traceback.format_exc()), pickle.HIGHEST_PROTOCOL)


def _read_message(descriptor: int) -> bytearray | None:
    """The next message of a blocking pipe; ``None`` at its end."""
    header = _read_exactly(descriptor, _HEADER.size)
    if header is None:
        return None
    return _read_exactly(descriptor, _HEADER.unpack(header)[0])


def _read_exactly(descriptor: int, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = os.readv(descriptor, [view[received:]])
        if count == 0:
            return None
        received += count
    return buffer


def _write_message(descriptor: int, payload: bytes) -> None:
    unsent = [memoryview(_HEADER.pack(len(payload))), memoryview(payload)]
    while unsent:
        unsent = _after(unsent, os.writev(descriptor, unsent))


def _after(buffers: list[memoryview], written: int) -> list[memoryview]:
    """What remains of ``buffers`` once ``written`` bytes of them are sent (the header and the
    payload go out together without being joined: a join copied every message, megabytes for a batch
    of modified files)."""
    remaining = list(buffers)
    while remaining and written >= len(remaining[0]):
        written -= len(remaining.pop(0))
    if remaining and written:
        remaining[0] = remaining[0][written:]
    return remaining
