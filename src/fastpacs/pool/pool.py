"""The worker pool, started once with the server.

Processes are started with ``spawn`` (forking a process that already runs
threads, LMDB or LLVM is unsafe) and live as long as the server. The event
loop awaits their results; a task that fails raises its exception in the
caller.
"""

import asyncio
import importlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from fastpacs.pool import tasks

T = TypeVar("T")


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


class WorkerPool:
    """A fixed set of worker processes sharing the blob storage."""

    def __init__(self, processes: int, storage_root: str):
        self.processes = processes or default_size()
        self._executor = ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=tasks.initialize,
            initargs=(storage_root,),
        )
        self.queued = 0
        # Spawn every process now, from this (the server's main) thread: a worker ends when the
        # thread that started it ends (tasks.initialize), so no short-lived thread may start one.
        self._started = [self._executor.submit(os.getpid) for _ in range(self.processes)]

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function(*args)`` in a worker and await its result."""
        loop = asyncio.get_running_loop()
        self.queued += 1
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        finally:
            self.queued -= 1

    def warm_up(self) -> None:
        """Wait until every process has started and warmed up, so that no request pays for it."""
        for future in self._started:
            future.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
