"""What a job type implements, and the states a job goes through.

A job is work done in steps. The engine runs the steps one after the other
in an asyncio task; pause and cancel take effect between two steps, and the
progress shown to clients is the number of steps done over the total. A
step does its blocking I/O with ``asyncio.to_thread`` and its CPU work in
the worker pool, like any other code of the server process.

A job type is a subclass of :class:`Job` with a ``type_name`` (Orthanc's
``Type``), registered with the engine together with a function that
rebuilds a job from the bytes of :meth:`Job.save`. For example::

    class EchoJob(Job):
        type_name = "Echo"

        def __init__(self, words: list[str]):
            self.words = words

        @property
        def total_steps(self) -> int:
            return len(self.words)

        async def run_step(self, index: int) -> None:
            await asyncio.sleep(0.1)  # one unit of work: send one instance, write one file...

        def content(self) -> dict[str, Any]:
            return {"Description": "REST API", "Words": len(self.words)}

        def save(self) -> bytes:
            return msgspec.msgpack.encode(self.words)

    engine.register(EchoJob.type_name, lambda data: EchoJob(msgspec.msgpack.decode(data)))
    job_id = await engine.submit(EchoJob(["a", "b"]), priority=0)

The engine keeps the number of steps done; after a restart a job resumes at
the step :meth:`Job.start` returns. :meth:`Job.save` should stay small (it is
written to the index at every change of state): keep bulky derived data in
memory and rebuild it in :meth:`Job.start` when it is missing.
"""

import time
from abc import ABC, abstractmethod
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from fastpacs.errors import ErrorCode, describe


class JobState(StrEnum):
    """Orthanc's job states."""

    PENDING = "Pending"
    RUNNING = "Running"
    PAUSED = "Paused"
    SUCCESS = "Success"
    FAILURE = "Failure"
    RETRY = "Retry"

    @property
    def is_finished(self) -> bool:
        return self in (JobState.SUCCESS, JobState.FAILURE)


class JobOutput(msgspec.Struct, frozen=True):
    """A file a finished job produced, served by ``GET /jobs/{id}/{name}``."""

    path: Path
    media_type: str
    filename: str


class RetryLaterError(Exception):
    """Raised by a step that cannot proceed now: the job goes to ``Retry`` and runs again later."""

    def __init__(self, seconds: float):
        super().__init__(f"retry in {seconds} s")
        self.seconds = seconds


class Job(ABC):
    """One job type's work. The engine owns the state; the job owns what its steps need."""

    type_name: ClassVar[str]
    """Orthanc's name of the job type (``"Archive"``, ``"ResourceModification"``...)."""

    @property
    @abstractmethod
    def total_steps(self) -> int:
        """How many steps the job has; 0 finishes it at once."""

    async def start(self, steps_done: int) -> int:
        """Prepare to run from ``steps_done`` (after a pause or a restart); return the step to run next.

        A job that cannot continue where it stopped (its partial output was
        lost with the process) prepares from scratch and returns 0.
        """
        return steps_done

    @abstractmethod
    async def run_step(self, index: int) -> None:
        """Do step ``index`` (0-based). Raise :class:`OrthancError` to fail the job with its code."""

    async def finish(self) -> None:  # noqa: B027 - optional hook
        """Complete the work after the last step (close an output file...)."""

    async def abort(self) -> None:  # noqa: B027 - optional hook
        """The job failed or was canceled: release what the steps held."""

    @abstractmethod
    def content(self) -> dict[str, Any]:
        """Orthanc's ``Content`` object of the job."""

    @abstractmethod
    def save(self) -> bytes:
        """The job's own state, as bytes its registered loader turns back into a job."""

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Prepare a resubmission: the job will run again from its first step.

        The default accepts; job types that cannot run twice raise :class:`OrthancError`.
        """

    def output(self, name: str) -> JobOutput | None:
        """The output called ``name`` once the job succeeded (``None``: no such output)."""
        return None

    def discard(self) -> None:  # noqa: B027 - optional hook
        """The job leaves the history: delete its outputs."""


def error_description(code: int) -> str:
    """Orthanc's ``ErrorDescription``: ``"Success"`` for 0, the error's text otherwise."""
    if code == 0:
        return "Success"
    try:
        return describe(ErrorCode(code))
    except ValueError:
        return "Internal error"


def job_timestamp(moment: float) -> str:
    """``YYYYMMDDTHHMMSS.ffffff`` in UTC, Orthanc's format for the times of jobs."""
    seconds = int(moment)
    micros = round((moment - seconds) * 1_000_000)
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{micros:06d}"
