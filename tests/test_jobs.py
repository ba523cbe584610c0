"""The job engine: states, actions, priorities, history and persistence.

The engine is driven in-process, with the real LMDB index and index writer
in a temporary folder and a job type defined here (:class:`GatedJob`, whose
steps wait for the test to open a gate), so that every state can be held as
long as a test needs. The REST side of /jobs (status codes, bodies) is
tested against a real server with Archive jobs in test_archive.py.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.jobs.engine import JobEngine, TrackedJob
from fastpacs.jobs.job import Job, JobState, RetryLaterError
from fastpacs.jobs.persistence import load_jobs
from fastpacs.storage.blobs import BlobStore

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Gate:
    """Lets the steps of gated jobs through one at a time, or all at once."""

    def __init__(self) -> None:
        self.permits = asyncio.Semaphore(0)
        self.open_wide = False
        self.waiting = 0

    async def pass_through(self) -> None:
        if self.open_wide:
            return
        self.waiting += 1
        try:
            await self.permits.acquire()
        finally:
            self.waiting -= 1

    def allow(self, steps: int = 1) -> None:
        for _ in range(steps):
            self.permits.release()

    def open(self) -> None:
        self.open_wide = True
        self.allow(1000)


class GatedParams(msgspec.Struct):
    steps: int
    fail_at: int | None = None
    retry_at: int | None = None
    crash_at: int | None = None
    resubmittable: bool = True


class GatedJob(Job):
    """A test job: each step waits for the gate, then records its index."""

    type_name = "GatedTest"

    def __init__(self, params: GatedParams, gate: Gate, log: list[int]):
        self.params = params
        self.gate = gate
        self.log = log
        self.aborted = False
        self.discarded = False
        self.retried = False

    @property
    def total_steps(self) -> int:
        return self.params.steps

    async def run_step(self, index: int) -> None:
        await self.gate.pass_through()
        if index == self.params.fail_at:
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, f"step {index} failed")
        if index == self.params.crash_at:
            raise ValueError("a bug")
        if index == self.params.retry_at and not self.retried:
            self.retried = True
            raise RetryLaterError(0.05)
        self.log.append(index)

    async def abort(self) -> None:
        self.aborted = True

    def content(self) -> dict[str, Any]:
        return {"Description": "test", "Steps": self.params.steps}

    def save(self) -> bytes:
        return msgspec.msgpack.encode(self.params)

    def reset(self) -> None:
        if not self.params.resubmittable:
            raise OrthancError(ErrorCode.BAD_SEQUENCE_OF_CALLS, "cannot run twice", http_status=500)
        self.log.clear()

    def discard(self) -> None:
        self.discarded = True


class Harness:
    """An engine on a real index, and the jobs it ran."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.gate = Gate()
        self.logs: dict[str, list[int]] = {}
        self.database: Database | None = None
        self.writer: IndexWriter | None = None
        self.engine: JobEngine | None = None

    async def start(
        self, concurrent_jobs: int = 1, history_size: int = 10, save_jobs: bool = True
    ) -> JobEngine:
        self.database = Database(self.folder, 1)
        self.writer = IndexWriter(self.database, BlobStore(self.folder / "storage"))
        self.writer.start()
        self.engine = JobEngine(self.database, self.writer, concurrent_jobs, history_size, save_jobs)
        self.engine.register(GatedJob.type_name, self._load)
        await self.engine.start()
        return self.engine

    async def stop(self) -> None:
        assert self.engine is not None and self.writer is not None and self.database is not None
        await self.engine.stop()
        await asyncio.to_thread(self.writer.stop)
        self.database.close()
        self.engine = None

    def _load(self, data: bytes) -> GatedJob:
        return GatedJob(msgspec.msgpack.decode(data, type=GatedParams), self.gate, [])

    def job(self, steps: int, **options: Any) -> GatedJob:
        return GatedJob(GatedParams(steps=steps, **options), self.gate, [])

    async def submit(self, steps: int, priority: int = 0, **options: Any) -> str:
        assert self.engine is not None
        job = self.job(steps, **options)
        job_id = await self.engine.submit(job, priority)
        self.logs[job_id] = job.log
        return job_id

    def tracked(self, job_id: str) -> TrackedJob:
        assert self.engine is not None
        found = self.engine.get(job_id)
        assert found is not None
        return found

    def state(self, job_id: str) -> JobState:
        return self.tracked(job_id).state

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                await asyncio.sleep(0.005)

    async def until_state(self, job_id: str, state: JobState) -> None:
        await self.until(lambda: self.state(job_id) == state)

    async def until_waiting(self, count: int = 1) -> None:
        """Until ``count`` steps wait at the gate (their jobs are Running, mid-step)."""
        await self.until(lambda: self.gate.waiting >= count)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    if harness.engine is not None:
        harness.gate.open()
        await harness.stop()


# ---------------------------------------------------------------------------- success and JSON


async def test_a_job_runs_its_steps_and_succeeds(harness: Harness) -> None:
    engine = await harness.start()
    harness.gate.open()
    job_id = await harness.submit(3)
    await engine.wait(job_id)
    tracked = harness.tracked(job_id)
    assert harness.logs[job_id] == [0, 1, 2]
    answer = tracked.to_json()
    assert answer["State"] == "Success"
    assert answer["Progress"] == 100
    assert answer["ErrorCode"] == 0
    assert answer["ErrorDescription"] == "Success"
    assert answer["ErrorDetails"] == ""
    assert answer["Type"] == "GatedTest"
    assert answer["Content"] == {"Description": "test", "Steps": 3}
    assert answer["ID"] == job_id
    assert answer["Priority"] == 0
    assert answer["CompletionTime"] >= answer["CreationTime"]
    assert len(answer["CreationTime"]) == len("20261127T165355.849818")
    assert isinstance(answer["EffectiveRuntime"], float)


async def test_a_job_without_steps_succeeds_at_once(harness: Harness) -> None:
    engine = await harness.start()
    job_id = await harness.submit(0)
    await engine.wait(job_id)
    assert harness.tracked(job_id).to_json()["Progress"] == 100


async def test_progress_counts_steps_and_running_jobs_have_no_completion_time(harness: Harness) -> None:
    await harness.start()
    job_id = await harness.submit(4)
    harness.gate.allow(1)
    await harness.until(lambda: harness.tracked(job_id).steps_done == 1)
    answer = harness.tracked(job_id).to_json()
    assert answer["State"] == "Running"
    assert answer["Progress"] == 25
    assert "CompletionTime" not in answer


async def test_higher_priority_runs_first(harness: Harness) -> None:
    engine = await harness.start(concurrent_jobs=1)
    blocker = await harness.submit(1)
    await harness.until_waiting()
    low = await harness.submit(1, priority=-1)
    normal = await harness.submit(1, priority=0)
    high = await harness.submit(1, priority=5)
    harness.gate.open()
    for job_id in (blocker, low, normal, high):
        await engine.wait(job_id)
    order = sorted((low, normal, high), key=lambda job_id: harness.tracked(job_id).finished_order)
    assert order == [high, normal, low]


async def test_concurrent_jobs_run_together(harness: Harness) -> None:
    await harness.start(concurrent_jobs=2)
    first = await harness.submit(1)
    second = await harness.submit(1)
    third = await harness.submit(1)
    await harness.until_waiting(2)
    assert [harness.state(job_id) for job_id in (first, second, third)] == [
        JobState.RUNNING,
        JobState.RUNNING,
        JobState.PENDING,
    ]


# ---------------------------------------------------------------------------- actions, state by state


async def test_pending_job_pause_resume_cancel(harness: Harness) -> None:
    engine = await harness.start(concurrent_jobs=1)
    await harness.submit(1)
    await harness.until_waiting()
    job_id = await harness.submit(1)
    assert harness.state(job_id) == JobState.PENDING
    assert not await engine.resume(job_id)
    assert not await engine.resubmit(job_id)
    assert await engine.pause(job_id)
    assert harness.state(job_id) == JobState.PAUSED
    assert await engine.pause(job_id)
    assert harness.state(job_id) == JobState.PAUSED
    assert not await engine.resubmit(job_id)
    assert await engine.resume(job_id)
    assert harness.state(job_id) == JobState.PENDING
    assert await engine.cancel(job_id)
    tracked = harness.tracked(job_id)
    assert tracked.state == JobState.FAILURE
    assert tracked.to_json()["ErrorCode"] == 37
    assert tracked.to_json()["ErrorDescription"] == "This job was canceled"
    assert "CompletionTime" in tracked.to_json()
    assert tracked.job.aborted
    assert harness.logs[job_id] == []


async def test_paused_job_cancel(harness: Harness) -> None:
    engine = await harness.start(concurrent_jobs=1)
    await harness.submit(1)
    await harness.until_waiting()
    job_id = await harness.submit(1)
    await engine.pause(job_id)
    assert await engine.cancel(job_id)
    assert harness.state(job_id) == JobState.FAILURE
    assert harness.tracked(job_id).error_code == ErrorCode.CANCELED_JOB


async def test_running_job_pauses_after_its_step_and_resumes_where_it_stopped(harness: Harness) -> None:
    engine = await harness.start()
    job_id = await harness.submit(4)
    harness.gate.allow(1)
    await harness.until(lambda: harness.logs[job_id] == [0])
    await harness.until_waiting()
    assert not await engine.resume(job_id)  # running, no pause asked: nothing to resume
    assert not await engine.resubmit(job_id)
    assert await engine.pause(job_id)
    assert harness.state(job_id) == JobState.RUNNING  # the current step is not interrupted
    harness.gate.allow(1)
    await harness.until_state(job_id, JobState.PAUSED)
    paused = harness.tracked(job_id).to_json()
    assert paused["Progress"] == 50
    assert "CompletionTime" not in paused
    runtime = paused["EffectiveRuntime"]
    await asyncio.sleep(0.05)
    assert harness.tracked(job_id).to_json()["EffectiveRuntime"] == runtime  # paused time does not count
    assert await engine.resume(job_id)
    harness.gate.open()
    await engine.wait(job_id)
    assert harness.logs[job_id] == [0, 1, 2, 3]
    assert harness.state(job_id) == JobState.SUCCESS


async def test_pause_then_resume_before_the_step_ends_keeps_running(harness: Harness) -> None:
    engine = await harness.start()
    job_id = await harness.submit(2)
    await harness.until_waiting()
    await engine.pause(job_id)
    assert await engine.resume(job_id)
    harness.gate.open()
    await engine.wait(job_id)
    assert harness.state(job_id) == JobState.SUCCESS


async def test_running_job_cancel_takes_effect_after_its_step(harness: Harness) -> None:
    engine = await harness.start()
    job_id = await harness.submit(3)
    await harness.until_waiting()
    assert await engine.cancel(job_id)
    assert harness.state(job_id) == JobState.RUNNING
    harness.gate.allow(1)
    await engine.wait(job_id)
    tracked = harness.tracked(job_id)
    assert tracked.state == JobState.FAILURE
    assert tracked.error_code == ErrorCode.CANCELED_JOB
    assert harness.logs[job_id] == [0]
    assert tracked.job.aborted
    assert tracked.to_json()["Progress"] == 33


async def test_finished_jobs_accept_pause_and_cancel_and_refuse_resume_and_resubmit(harness: Harness) -> None:
    engine = await harness.start()
    harness.gate.open()
    job_id = await harness.submit(1)
    await engine.wait(job_id)
    before = harness.tracked(job_id).to_json()
    assert await engine.pause(job_id)
    assert await engine.cancel(job_id)
    assert not await engine.resume(job_id)
    assert not await engine.resubmit(job_id)
    after = harness.tracked(job_id).to_json()
    del before["Timestamp"], after["Timestamp"]
    assert after == before


async def test_failed_job_resubmit_runs_again_from_the_first_step(harness: Harness) -> None:
    engine = await harness.start()
    harness.gate.open()
    job_id = await harness.submit(3, fail_at=1)
    await engine.wait(job_id)
    tracked = harness.tracked(job_id)
    assert tracked.state == JobState.FAILURE
    answer = tracked.to_json()
    assert answer["ErrorCode"] == 9
    assert answer["ErrorDescription"] == "Error in the network protocol"
    assert answer["ErrorDetails"] == "step 1 failed"
    assert not await engine.resume(job_id)
    assert await engine.pause(job_id) and await engine.cancel(job_id)
    assert harness.state(job_id) == JobState.FAILURE

    tracked.job.params.fail_at = None
    assert await engine.resubmit(job_id)
    await engine.wait(job_id)
    answer = harness.tracked(job_id).to_json()
    assert answer["State"] == "Success"
    assert answer["ErrorCode"] == 0
    assert answer["ErrorDetails"] == ""
    assert harness.logs[job_id] == [0, 1, 2]


async def test_canceled_job_can_be_resubmitted(harness: Harness) -> None:
    engine = await harness.start(concurrent_jobs=1)
    await harness.submit(1)
    await harness.until_waiting()
    job_id = await harness.submit(2)
    await engine.cancel(job_id)
    assert await engine.resubmit(job_id)
    harness.gate.open()
    await engine.wait(job_id)
    assert harness.state(job_id) == JobState.SUCCESS


async def test_a_job_type_can_refuse_resubmission(harness: Harness) -> None:
    engine = await harness.start()
    harness.gate.open()
    job_id = await harness.submit(2, fail_at=0, resubmittable=False)
    await engine.wait(job_id)
    with pytest.raises(OrthancError) as raised:
        await engine.resubmit(job_id)
    assert raised.value.http_status == 500
    assert harness.state(job_id) == JobState.FAILURE


async def test_a_bug_in_a_step_fails_the_job_with_an_internal_error(harness: Harness) -> None:
    engine = await harness.start()
    harness.gate.open()
    job_id = await harness.submit(2, crash_at=1)
    await engine.wait(job_id)
    answer = harness.tracked(job_id).to_json()
    assert (answer["State"], answer["ErrorCode"], answer["ErrorDetails"]) == ("Failure", -1, "a bug")
    other = await harness.submit(1)  # the runner survived
    await engine.wait(other)
    assert harness.state(other) == JobState.SUCCESS


async def test_retry_state_then_success(harness: Harness) -> None:
    engine = await harness.start()
    job_id = await harness.submit(2, retry_at=1)
    harness.gate.allow(2)
    await harness.until_state(job_id, JobState.RETRY)
    harness.gate.open()
    await engine.wait(job_id)
    assert harness.state(job_id) == JobState.SUCCESS
    assert harness.logs[job_id] == [0, 1]


async def test_retry_state_pause_and_cancel(harness: Harness) -> None:
    engine = await harness.start()
    job_id = await harness.submit(2, retry_at=0)
    harness.gate.allow(1)
    await harness.until_state(job_id, JobState.RETRY)
    assert await engine.pause(job_id)
    assert harness.state(job_id) == JobState.PAUSED
    await asyncio.sleep(0.1)  # the retry delay passes: still paused
    assert harness.state(job_id) == JobState.PAUSED
    assert await engine.cancel(job_id)
    assert harness.state(job_id) == JobState.FAILURE


async def test_unknown_job(harness: Harness) -> None:
    engine = await harness.start()
    assert engine.get("nosuchjob") is None
    for action in (engine.pause, engine.resume, engine.cancel, engine.resubmit):
        assert not await action("nosuchjob")
    assert engine.output("nosuchjob", "archive") is None


# ---------------------------------------------------------------------------- synchronous jobs


async def test_run_now_skips_the_queue_and_is_saved_once_finished(harness: Harness) -> None:
    engine = await harness.start(concurrent_jobs=1)
    blocker = await harness.submit(1)
    await harness.until_waiting()
    job = harness.job(1)
    job_id = engine.run_now(job)
    await harness.until_waiting(2)  # running although the only runner is busy
    assert harness.state(job_id) == JobState.RUNNING
    saved = {saved_id for saved_id, _ in load_jobs(harness.database)}
    assert blocker in saved and job_id not in saved
    harness.gate.allow(1)
    await harness.until(lambda: len(job.log) == 1 or harness.logs[blocker] == [0])
    harness.gate.open()
    await engine.wait(job_id)
    assert job_id in {saved_id for saved_id, _ in load_jobs(harness.database)}


# ---------------------------------------------------------------------------- history


async def test_history_keeps_the_last_finished_jobs(harness: Harness) -> None:
    engine = await harness.start(history_size=2)
    harness.gate.open()
    ids = []
    for _ in range(4):
        job_id = await harness.submit(1)
        await engine.wait(job_id)
        ids.append(job_id)
    assert engine.job_ids() == sorted(ids[2:])
    saved = {saved_id for saved_id, _ in load_jobs(harness.database)}
    assert saved == set(ids[2:])
    assert engine.get(ids[0]) is None


async def test_history_never_drops_active_jobs(harness: Harness) -> None:
    engine = await harness.start(concurrent_jobs=1, history_size=1)
    running = await harness.submit(1)
    await harness.until_waiting()
    pending = await harness.submit(1)
    paused = await harness.submit(1)
    await engine.pause(paused)
    finished = []
    for _ in range(3):
        job_id = engine.run_now(harness.job(0))
        await engine.wait(job_id)
        finished.append(job_id)
    assert engine.job_ids() == sorted([running, pending, paused, finished[-1]])


async def test_dropped_jobs_are_discarded(harness: Harness) -> None:
    engine = await harness.start(history_size=1)
    harness.gate.open()
    first = await harness.submit(1)
    await engine.wait(first)
    job = harness.tracked(first).job
    second = await harness.submit(1)
    await engine.wait(second)
    assert job.discarded
    assert not harness.tracked(second).job.discarded


# ---------------------------------------------------------------------------- persistence


async def test_restart_resumes_pending_and_running_jobs_and_keeps_the_rest(harness: Harness) -> None:
    engine = await harness.start(concurrent_jobs=1)
    harness.gate.open()
    done = await harness.submit(1)
    failed = await harness.submit(1, fail_at=0)
    await engine.wait(failed)
    harness.gate = Gate()  # the jobs submitted from now on wait for this one
    running = await harness.submit(5)
    harness.gate.allow(2)
    await harness.until(lambda: harness.tracked(running).steps_done == 2)
    await harness.until_waiting()
    pending = await harness.submit(2, priority=3)
    paused = await harness.submit(2)
    await engine.pause(paused)
    before = {job_id: harness.tracked(job_id).to_json() for job_id in (done, failed)}
    await harness.stop()

    harness.gate = Gate()
    engine = await harness.start(concurrent_jobs=1)
    assert engine.job_ids() == sorted([done, failed, running, pending, paused])
    for job_id, answer in before.items():
        restored = harness.tracked(job_id).to_json()
        del answer["Timestamp"], restored["Timestamp"]
        assert restored == answer
    assert harness.state(paused) == JobState.PAUSED
    harness.gate.open()
    await engine.wait(pending)
    await engine.wait(running)
    assert harness.tracked(running).job.log == [2, 3, 4]  # resumed where it stopped
    assert harness.tracked(pending).job.log == [0, 1]
    assert harness.tracked(pending).finished_order < harness.tracked(running).finished_order  # priority
    assert harness.state(paused) == JobState.PAUSED
    await engine.resume(paused)
    await engine.wait(paused)
    assert harness.state(paused) == JobState.SUCCESS


async def test_restart_after_a_crash_resumes_from_the_last_checkpoint(harness: Harness) -> None:
    await harness.start()
    job_id = await harness.submit(3)
    await harness.until_waiting()
    assert {saved_id: record.state for saved_id, record in load_jobs(harness.database)} == {job_id: "Running"}
    # A crash: the engine disappears without saving anything more.
    harness.engine.save_jobs = False
    await harness.stop()

    harness.gate = Gate()
    engine = await harness.start()
    harness.gate.open()
    await engine.wait(job_id)
    assert harness.tracked(job_id).job.log == [0, 1, 2]
    assert harness.state(job_id) == JobState.SUCCESS


async def test_without_save_jobs_nothing_is_kept(harness: Harness) -> None:
    await harness.start(save_jobs=True)
    await harness.submit(2)
    await harness.until_waiting()
    await harness.stop()
    engine = await harness.start(save_jobs=False)
    assert engine.job_ids() == []
    assert load_jobs(harness.database) == []
    harness.gate.open()
    job_id = await harness.submit(1)
    await engine.wait(job_id)
    assert load_jobs(harness.database) == []


async def test_a_saved_job_of_an_unknown_type_is_ignored(harness: Harness, tmp_path: Path) -> None:
    await harness.start()
    job_id = await harness.submit(1)
    await harness.until_waiting()
    await harness.stop()
    harness.database = Database(tmp_path, 1)
    harness.writer = IndexWriter(harness.database, BlobStore(tmp_path / "storage"))
    harness.writer.start()
    engine = JobEngine(harness.database, harness.writer, 1, 10, True)
    await engine.start()  # no loader registered for GatedTest
    harness.engine = engine
    assert engine.get(job_id) is None
    assert [saved_id for saved_id, _ in load_jobs(harness.database)] == [job_id]  # kept on disk
