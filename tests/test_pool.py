"""The worker pool: answers, failures, big messages, more tasks than workers, cancellation, a worker's end
and its replacement (in the pool alone, and in a running server)."""

import asyncio
import operator
import os
import select
import signal
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import httpx
import pytest
from benchmarks.procstats import session_processes

from fastpacs.pool.pool import PRELOAD_MODULE, RemoteTracebackError, WorkerFunction, WorkerPool
from fastpacs.storage.blobs import BlobStore
from fastpacs.testing import ServerProcess
from tests.conftest import pydicom_file


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    started = WorkerPool(2, BlobStore(tmp_path_factory.mktemp("pool")))
    started.warm_up()
    yield started
    started.close()


def test_a_task_answers_and_a_failure_raises_with_the_worker_traceback(pool: WorkerPool) -> None:
    async def scenario() -> None:
        assert await pool.run(operator.add, 2, 3) == 5
        with pytest.raises(ZeroDivisionError) as raised:
            await pool.run(operator.truediv, 1, 0)
        assert isinstance(raised.value.__cause__, RemoteTracebackError)
        assert "ZeroDivisionError" in str(raised.value.__cause__)

    asyncio.run(scenario())


def test_big_tasks_and_answers_cross_whole(pool: WorkerPool) -> None:
    payload = os.urandom(9_000_000)

    async def scenario() -> None:
        assert await pool.run(bytes, payload) == payload
        assert await pool.run(bytes, 20_000_000) == bytes(20_000_000)

    asyncio.run(scenario())


def test_more_tasks_than_workers_wait_their_turn(pool: WorkerPool) -> None:
    async def scenario() -> list[int]:
        return await asyncio.gather(*(pool.run(operator.mul, number, number) for number in range(40)))

    assert asyncio.run(scenario()) == [number * number for number in range(40)]
    assert pool.queued == 0


def test_a_cancelled_caller_leaves_the_pool_working(pool: WorkerPool) -> None:
    async def scenario() -> None:
        sleepers = [asyncio.create_task(pool.run(time.sleep, 0.3)) for _ in range(4)]
        await asyncio.sleep(0.05)
        for sleeper in sleepers:
            sleeper.cancel()
        assert await pool.run(operator.add, 1, 1) == 2
        # The sleepers already running still answer: each frees its worker and leaves the count.
        async with asyncio.timeout(5):
            while pool.queued:
                await asyncio.sleep(0.01)

    asyncio.run(scenario())


def test_a_worker_that_dies_fails_its_task_and_is_replaced(tmp_path: Path) -> None:
    """The task that ended its worker fails (it would end the next one too); the pool starts another
    worker in its place and keeps its size, even when every worker has died."""
    pool = WorkerPool(2, BlobStore(tmp_path))
    try:
        pool.warm_up()
        first = {worker.process.pid for worker in pool._workers}

        async def scenario() -> None:
            for _ in range(3):
                with pytest.raises(BrokenProcessPool):
                    await pool.run(os._exit, 3)
                assert await asyncio.gather(*(pool.run(operator.add, 1, n) for n in range(4))) == [1, 2, 3, 4]

        asyncio.run(scenario())
        assert len(pool._workers) == 2 and all(worker.alive for worker in pool._workers)
        assert not first & {worker.process.pid for worker in pool._workers}
        assert pool.queued == 0
    finally:
        pool.close()


def test_the_waiting_tasks_fail_when_no_worker_can_replace_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = WorkerPool(1, BlobStore(tmp_path))
    try:
        pool.warm_up()

        def no_fork_server() -> None:
            raise OSError("the fork server cannot be reached")

        monkeypatch.setattr(pool, "_new_worker", no_fork_server)

        async def scenario() -> None:
            ending = pool.submit(os._exit, 3)
            waiting = pool.submit(operator.add, 1, 2)
            async with asyncio.timeout(10):
                for task in (ending, waiting):
                    with pytest.raises(BrokenProcessPool):
                        await task

        asyncio.run(scenario())
        assert pool.queued == 0
    finally:
        pool.close()


def test_tasks_sent_to_workers_killed_while_idle_run_on_their_replacements(tmp_path: Path) -> None:
    """A worker that ended while idle (the OOM killer, an operator's kill) never read the task sent to
    it: the task runs on another worker instead of failing."""
    pool = WorkerPool(2, BlobStore(tmp_path))
    try:
        pool.warm_up()
        for worker in pool._workers:
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join()

        async def scenario() -> list[int]:
            return await asyncio.gather(*(pool.run(operator.mul, n, 3) for n in range(6)))

        assert asyncio.run(scenario()) == [0, 3, 6, 9, 12, 15]
        assert all(worker.alive for worker in pool._workers)
        assert pool.queued == 0
    finally:
        pool.close()


def test_submitted_tasks_run_while_the_caller_goes_on_and_are_all_accounted(pool: WorkerPool) -> None:
    """Futures of :meth:`WorkerPool.submit`, some given up while they wait: every one is settled and
    the count of queued tasks comes back to zero (workers handed task after task, then left idle)."""

    async def scenario() -> list[int]:
        futures = [pool.submit(operator.mul, number, 2) for number in range(30)]
        assert pool.queued == 30
        for future in futures[20:25]:
            future.cancel()
        results = [await future for future in futures[:20] + futures[25:]]
        await pool.run(operator.add, 0, 0)  # its turn comes after every cancelled one's
        return results

    assert asyncio.run(scenario()) == [number * 2 for number in list(range(20)) + list(range(25, 30))]
    assert pool.queued == 0


def test_a_pool_used_without_warming_up_reads_each_workers_start_before_its_answer(tmp_path: Path) -> None:
    """The offline ingest submits at once: a worker's start message and its first answer may come
    in one read, or the answer may wait behind it."""
    pool = WorkerPool(2, BlobStore(tmp_path))
    try:

        async def scenario() -> list[int]:
            return await asyncio.gather(*(pool.run(operator.add, number, 1) for number in range(6)))

        assert asyncio.run(scenario()) == list(range(1, 7))
    finally:
        pool.close()


def test_the_workers_share_no_named_semaphore_that_a_killed_server_would_leave_in_dev_shm(
    pool: WorkerPool,
) -> None:
    """Semaphores of ``multiprocessing`` are files of /dev/shm, unlinked by its resource tracker at
    exit: a server killed with SIGKILL would leave them behind. The workers map none."""
    for worker in pool._workers:
        maps = Path(f"/proc/{worker.process.pid}/maps").read_text()
        assert [line for line in maps.splitlines() if "/dev/shm/" in line and "(deleted)" not in line] == []


def test_the_workers_are_forked_from_a_fork_server_that_loaded_their_modules(pool: WorkerPool) -> None:
    """Spawned, each worker imported its modules and loaded the kernels again (about 1.2 s of CPU);
    forked from the fork server, they start with them loaded and share their pages."""

    async def parents() -> list[int]:
        return await asyncio.gather(*(pool.run(WorkerFunction("os", "getppid")) for _ in range(4)))

    (fork_server,) = set(asyncio.run(parents()))
    assert fork_server != os.getpid()
    command = Path(f"/proc/{fork_server}/cmdline").read_bytes().decode()
    assert "multiprocessing.forkserver" in command and PRELOAD_MODULE in command


def _pool_workers(server: ServerProcess) -> list[int]:
    """PIDs of a server's pool workers: the children of its fork server."""
    assert server.process is not None
    for process in session_processes(server.process.pid):
        if b"multiprocessing.forkserver" in Path(f"/proc/{process.pid}/cmdline").read_bytes():
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            if children:
                return sorted(int(child) for child in children)
    return []


def test_a_server_whose_workers_were_killed_goes_on_with_new_ones(
    server: ServerProcess, client: httpx.Client
) -> None:
    killed = _pool_workers(server)
    assert killed
    for pid in killed:  # each gone (its pipes closed) before the requests
        descriptor = os.pidfd_open(pid)
        signal.pidfd_send_signal(descriptor, signal.SIGKILL)
        assert select.select([descriptor], [], [], 30)[0]
        os.close(descriptor)
    upload = client.post("/instances", content=pydicom_file("CT_small.dcm").read_bytes())
    assert upload.status_code == 200
    assert client.get(f"/instances/{upload.json()['ID']}/preview").status_code == 200
    replacements = _pool_workers(server)
    assert len(replacements) == len(killed) and not set(replacements) & set(killed)
    assert server.log_path.read_text().count("ended (exit code -9): starting another") == len(killed)
