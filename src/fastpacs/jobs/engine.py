"""The job engine: a priority queue of jobs run by ``ConcurrentJobs`` asyncio tasks.

Everything here runs on the event loop of the server process, so the
engine's state needs no lock: actions from the REST API, runners and
timers take turns. Jobs are kept in memory (the active ones and the last
``JobsHistorySize`` finished ones), which is what /jobs answers from, and
saved in the index when ``SaveJobs`` is on.

Transitions, as Orthanc 1.10.1 makes them (``—``: refused with an empty 400)::

    state      pause               resume      cancel                  resubmit
    Pending    → Paused            —           → Failure (canceled)    —
    Retry      → Paused            —           → Failure (canceled)    —
    Running    → Paused after the  —           → Failure (canceled)    —
               current step                    after the current step
    Paused     unchanged           → Pending   → Failure (canceled)    —
    Success    unchanged           —           unchanged               —
    Failure    unchanged           —           unchanged               → Pending (from the first step)

(A resume accepted for a running job withdraws a pause that has not yet taken effect.)

A job run synchronously (:meth:`JobEngine.run_now`: the synchronous form of
an operation, answered when the job ends) starts at once instead of waiting
in the queue, and is saved only once it has finished: a client waiting for
it cannot survive a restart.
"""

import asyncio
import heapq
import itertools
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import lmdb

from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.jobs.job import Job, JobOutput, JobState, RetryLaterError, error_description, job_timestamp
from fastpacs.jobs.persistence import (
    JobRecord,
    delete_all_jobs,
    delete_job,
    encode_record,
    load_jobs,
    put_job,
)

logger = logging.getLogger(__name__)

JobLoader = Callable[[bytes], Job]
"""Rebuilds a job of one type from the bytes its :meth:`Job.save` returned."""
JobListener = Callable[[str, str], None]
"""Hears ``(event, job ID)``, the event being ``submitted``, ``success`` or ``failure`` (Lua's OnJob*)."""

CHECKPOINT_SECONDS = 1.0
"""How often the progress of a running job is saved."""


@dataclass(eq=False)
class TrackedJob:
    """A job and what the engine knows about it."""

    id: str
    job: Job
    priority: int
    state: JobState
    creation_time: float
    synchronous: bool = False
    completion_time: float | None = None
    runtime: float = 0.0
    steps_done: int = 0
    error_code: int = 0
    error_details: str = ""
    finished_order: int = 0
    pause_requested: bool = False
    cancel_requested: bool = False
    running_since: float | None = None
    """``time.monotonic()`` when the current run began (``None`` when not running)."""
    queue_token: int = 0
    """Identifies the job's current entry in the queue (older entries are stale)."""
    retry_timer: asyncio.TimerHandle | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def progress(self) -> int:
        if self.state == JobState.SUCCESS:
            return 100
        total = self.job.total_steps
        return 0 if total <= 0 else min(100, self.steps_done * 100 // total)

    def effective_runtime(self) -> float:
        running = 0.0 if self.running_since is None else time.monotonic() - self.running_since
        return round(self.runtime + running, 3)

    def to_json(self) -> dict[str, Any]:
        """Orthanc's JSON of ``GET /jobs/{id}``."""
        answer: dict[str, Any] = {
            "Content": self.job.content(),
            "CreationTime": job_timestamp(self.creation_time),
            "EffectiveRuntime": self.effective_runtime(),
            "ErrorCode": self.error_code,
            "ErrorDescription": error_description(self.error_code),
            "ErrorDetails": self.error_details,
            "ID": self.id,
            "Priority": self.priority,
            "Progress": self.progress(),
            "State": self.state.value,
            "Timestamp": job_timestamp(time.time()),
            "Type": self.job.type_name,
        }
        if self.completion_time is not None:
            answer["CompletionTime"] = job_timestamp(self.completion_time)
        return answer

    def record(self) -> JobRecord:
        return JobRecord(
            type_name=self.job.type_name,
            priority=self.priority,
            state=self.state.value,
            creation_time=self.creation_time,
            completion_time=self.completion_time,
            runtime=self.effective_runtime(),
            steps_done=self.steps_done,
            error_code=self.error_code,
            error_details=self.error_details,
            finished_order=self.finished_order,
            payload=self.job.save(),
        )

    def start_clock(self) -> None:
        self.running_since = time.monotonic()

    def stop_clock(self) -> None:
        if self.running_since is not None:
            self.runtime += time.monotonic() - self.running_since
            self.running_since = None


class JobEngine:
    """Runs jobs, answers the /jobs actions, keeps the history, saves jobs in the index."""

    def __init__(
        self,
        database: Database,
        writer: IndexWriter,
        concurrent_jobs: int,
        history_size: int,
        save_jobs: bool,
    ):
        self.database = database
        self.writer = writer
        self.concurrent_jobs = concurrent_jobs or os.cpu_count() or 1
        self.history_size = history_size
        self.save_jobs = save_jobs
        self._loaders: dict[str, JobLoader] = {}
        self._jobs: dict[str, TrackedJob] = {}
        self._queue: list[tuple[int, int, int, TrackedJob]] = []
        self._queue_order = itertools.count()
        self._history: deque[TrackedJob] = deque()
        self._finished_order = 0
        self._work_available = asyncio.Event()
        self._runners: list[asyncio.Task] = []
        self._tasks: set[asyncio.Task] = set()
        """Synchronous jobs and deferred actions, kept referenced until they end."""
        self.listeners: list[JobListener] = []

    # ------------------------------------------------------------------ life cycle

    def register(self, type_name: str, loader: JobLoader) -> None:
        """Declare a job type, so that its saved jobs can be loaded at start-up."""
        self._loaders[type_name] = loader

    async def start(self) -> None:
        """Load the saved jobs (or forget them, without ``SaveJobs``) and start the runners."""
        if self.save_jobs:
            await self._load()
        else:
            await self.writer.run(delete_all_jobs)
        for number in range(self.concurrent_jobs):
            self._runners.append(asyncio.create_task(self._runner(), name=f"job-runner-{number}"))

    async def stop(self) -> None:
        """Stop the runners; running jobs are saved as pending and resume at the next start."""
        for task in (*self._runners, *self._tasks):
            task.cancel()
        await asyncio.gather(*self._runners, *self._tasks, return_exceptions=True)
        self._runners.clear()
        for tracked in self._jobs.values():
            if tracked.retry_timer is not None:
                tracked.retry_timer.cancel()

    async def _load(self) -> None:
        finished: list[TrackedJob] = []
        for job_id, record in await asyncio.to_thread(load_jobs, self.database):
            tracked = self._restore(job_id, record)
            if tracked is None:
                continue
            self._jobs[job_id] = tracked
            if tracked.state.is_finished:
                finished.append(tracked)
            elif tracked.state == JobState.PENDING:
                self._enqueue(tracked)
        finished.sort(key=lambda tracked: tracked.finished_order)
        for tracked in finished:
            self._history.append(tracked)
            self._finished_order = max(self._finished_order, tracked.finished_order)
        await self._trim_history()
        active = len(self._jobs) - len(self._history)
        logger.info("jobs loaded: %d active, %d finished", active, len(self._history))

    def _restore(self, job_id: str, record: JobRecord | None) -> TrackedJob | None:
        if record is None:
            logger.warning("job %s: unreadable saved record, ignored", job_id)
            return None
        loader = self._loaders.get(record.type_name)
        if loader is None:
            logger.warning("job %s: no job type %r in this server, ignored", job_id, record.type_name)
            return None
        try:
            job = loader(record.payload)
        except Exception:  # one bad saved job must not keep the server from starting
            logger.exception("job %s: cannot load its saved state, ignored", job_id)
            return None
        state = JobState(record.state)
        if state in (JobState.RUNNING, JobState.RETRY):
            state = JobState.PENDING
        tracked = TrackedJob(
            id=job_id,
            job=job,
            priority=record.priority,
            state=state,
            creation_time=record.creation_time,
            completion_time=record.completion_time,
            runtime=record.runtime,
            steps_done=record.steps_done,
            error_code=record.error_code,
            error_details=record.error_details,
            finished_order=record.finished_order,
        )
        if state.is_finished:
            tracked.finished.set()
        return tracked

    # ------------------------------------------------------------------ submitting

    async def submit(self, job: Job, priority: int = 0) -> str:
        """Queue a job; return its ID once it is saved."""
        tracked = self._track(job, priority, synchronous=False)
        await self._save(tracked)
        self._enqueue(tracked)
        return tracked.id

    def run_now(self, job: Job, priority: int = 0) -> str:
        """Start a job at once, outside the queue, for a client that waits for its end."""
        tracked = self._track(job, priority, synchronous=True)
        self._spawn(self._execute(tracked))
        return tracked.id

    async def wait(self, job_id: str) -> TrackedJob:
        """Wait until a job has finished (``KeyError`` if unknown)."""
        tracked = self._jobs[job_id]
        await tracked.finished.wait()
        return tracked

    def _track(self, job: Job, priority: int, synchronous: bool) -> TrackedJob:
        tracked = TrackedJob(
            id=str(uuid.uuid4()),
            job=job,
            priority=priority,
            state=JobState.PENDING,
            creation_time=time.time(),
            synchronous=synchronous,
        )
        self._jobs[tracked.id] = tracked
        self._notify("submitted", tracked)
        return tracked

    def _notify(self, event: str, tracked: TrackedJob) -> None:
        for listener in self.listeners:
            listener(event, tracked.id)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ reading

    def get(self, job_id: str) -> TrackedJob | None:
        return self._jobs.get(job_id)

    def job_ids(self) -> list[str]:
        """IDs of the active jobs and of the finished ones in the history, sorted (as Orthanc lists them)."""
        return sorted(self._jobs)

    def output(self, job_id: str, name: str) -> JobOutput | None:
        tracked = self._jobs.get(job_id)
        if tracked is None or tracked.state != JobState.SUCCESS:
            return None
        return tracked.job.output(name)

    # ------------------------------------------------------------------ actions

    async def pause(self, job_id: str) -> bool:
        tracked = self._jobs.get(job_id)
        if tracked is None:
            return False
        if tracked.state == JobState.RUNNING:
            tracked.pause_requested = True
        elif tracked.state in (JobState.PENDING, JobState.RETRY):
            self._cancel_retry(tracked)
            tracked.state = JobState.PAUSED
            await self._save(tracked)
        return True

    async def resume(self, job_id: str) -> bool:
        tracked = self._jobs.get(job_id)
        if tracked is None:
            return False
        if tracked.state == JobState.RUNNING and tracked.pause_requested:
            tracked.pause_requested = False
            return True
        if tracked.state != JobState.PAUSED:
            return False
        tracked.state = JobState.PENDING
        await self._save(tracked)
        self._enqueue(tracked)
        return True

    async def cancel(self, job_id: str) -> bool:
        tracked = self._jobs.get(job_id)
        if tracked is None:
            return False
        if tracked.state == JobState.RUNNING:
            tracked.cancel_requested = True
        elif not tracked.state.is_finished:
            self._cancel_retry(tracked)
            tracked.queue_token += 1  # no runner may take it while it is being canceled
            await self._fail(tracked, ErrorCode.CANCELED_JOB, "")
        return True

    def cancel_soon(self, job_id: str) -> None:
        """Cancel from code that cannot wait (a stream whose client went away)."""
        self._spawn(self.cancel(job_id))

    async def resubmit(self, job_id: str) -> bool:
        """Run a failed job again from its first step; the job type may refuse (OrthancError)."""
        tracked = self._jobs.get(job_id)
        if tracked is None or tracked.state != JobState.FAILURE:
            return False
        tracked.job.reset()
        self._history.remove(tracked)
        tracked.state = JobState.PENDING
        tracked.steps_done = 0
        tracked.runtime = 0.0
        tracked.error_code = 0
        tracked.error_details = ""
        tracked.completion_time = None
        tracked.finished_order = 0
        tracked.pause_requested = tracked.cancel_requested = False
        tracked.finished = asyncio.Event()
        await self._save(tracked)
        self._enqueue(tracked)
        return True

    # ------------------------------------------------------------------ running

    def _enqueue(self, tracked: TrackedJob) -> None:
        tracked.queue_token += 1
        entry = (-tracked.priority, next(self._queue_order), tracked.queue_token, tracked)
        heapq.heappush(self._queue, entry)
        self._work_available.set()

    async def _next_pending(self) -> TrackedJob:
        while True:
            while self._queue:
                _, _, token, tracked = heapq.heappop(self._queue)
                if token == tracked.queue_token and tracked.state == JobState.PENDING:
                    return tracked
            self._work_available.clear()
            await self._work_available.wait()

    async def _runner(self) -> None:
        while True:
            tracked = await self._next_pending()
            try:
                await self._execute(tracked)
            except lmdb.Error:
                logger.exception("job %s: cannot save its state", tracked.id)

    async def _execute(self, tracked: TrackedJob) -> None:
        """Run a job's steps until it ends, is paused, fails or the engine stops."""
        job = tracked.job
        tracked.state = JobState.RUNNING
        tracked.start_clock()
        await self._save(tracked)
        try:
            tracked.steps_done = await job.start(tracked.steps_done)
            saved_at = time.monotonic()
            while True:
                if tracked.cancel_requested:
                    raise OrthancError(ErrorCode.CANCELED_JOB)
                if tracked.pause_requested:
                    await self._pause_now(tracked)
                    return
                if tracked.steps_done >= job.total_steps:
                    break
                await job.run_step(tracked.steps_done)
                tracked.steps_done += 1
                if time.monotonic() - saved_at >= CHECKPOINT_SECONDS:
                    await self._save(tracked)
                    saved_at = time.monotonic()
            await job.finish()
        except asyncio.CancelledError:
            await self._interrupted(tracked)
            raise
        except RetryLaterError as retry:
            await self._retry(tracked, retry.seconds)
        except OrthancError as error:
            await self._fail(tracked, error.code, error.details or "")
        except Exception as error:  # a job's bug fails that job, not the engine
            logger.exception("job %s (%s) failed", tracked.id, job.type_name)
            await self._fail(tracked, ErrorCode.INTERNAL_ERROR, str(error))
        else:
            await self._finish(tracked, JobState.SUCCESS)

    async def _pause_now(self, tracked: TrackedJob) -> None:
        tracked.stop_clock()
        tracked.pause_requested = False
        tracked.state = JobState.PAUSED
        await self._save(tracked)

    async def _interrupted(self, tracked: TrackedJob) -> None:
        """The engine is stopping in the middle of a job: it will resume at the next start."""
        tracked.stop_clock()
        tracked.state = JobState.PENDING
        await self._save(tracked)

    async def _retry(self, tracked: TrackedJob, seconds: float) -> None:
        tracked.stop_clock()
        tracked.state = JobState.RETRY
        await self._save(tracked)
        loop = asyncio.get_running_loop()
        tracked.retry_timer = loop.call_later(seconds, self._retry_due, tracked)

    def _retry_due(self, tracked: TrackedJob) -> None:
        tracked.retry_timer = None
        if tracked.state == JobState.RETRY:
            tracked.state = JobState.PENDING
            self._enqueue(tracked)

    @staticmethod
    def _cancel_retry(tracked: TrackedJob) -> None:
        if tracked.retry_timer is not None:
            tracked.retry_timer.cancel()
            tracked.retry_timer = None

    async def _fail(self, tracked: TrackedJob, code: int, details: str) -> None:
        try:
            await tracked.job.abort()
        except Exception:  # the failure is recorded whatever the clean-up does
            logger.exception("job %s: clean-up after failure failed", tracked.id)
        tracked.error_code = int(code)
        tracked.error_details = details
        await self._finish(tracked, JobState.FAILURE)

    async def _finish(self, tracked: TrackedJob, state: JobState) -> None:
        tracked.stop_clock()
        tracked.state = state
        tracked.pause_requested = tracked.cancel_requested = False
        tracked.completion_time = time.time()
        self._finished_order += 1
        tracked.finished_order = self._finished_order
        self._history.append(tracked)
        await self._save(tracked)
        await self._trim_history()
        tracked.finished.set()
        self._notify("success" if state == JobState.SUCCESS else "failure", tracked)

    async def _trim_history(self) -> None:
        while len(self._history) > self.history_size:
            dropped = self._history.popleft()
            del self._jobs[dropped.id]
            dropped.job.discard()
            if self.save_jobs:
                await self.writer.run(partial(delete_job, job_id=dropped.id))

    async def _save(self, tracked: TrackedJob) -> None:
        """Save a job in the index (a synchronous job only once it has finished)."""
        if self.save_jobs and (not tracked.synchronous or tracked.state.is_finished):
            encoded = encode_record(tracked.record())
            await self.writer.run(partial(put_job, job_id=tracked.id, encoded=encoded))
