"""Jobs saved in the index (``SaveJobs``), so that they survive a restart.

One record per job in the ``jobs`` database, keyed by the job's ID (its
UUID text), written through the index writer at every change of state and
at most once a second while a job runs. The record holds what the engine
knows (state, priority, times, steps done, error) and the job type's own
state as opaque bytes (:meth:`fastpacs.jobs.job.Job.save`).
"""

import msgspec

from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate

JOBS_DATABASE = "jobs"


class JobRecord(msgspec.Struct, array_like=True):
    """One job as saved in the index."""

    type_name: str
    priority: int
    state: str
    creation_time: float
    """Seconds since the epoch."""
    completion_time: float | None
    runtime: float
    """Seconds spent running (Orthanc's EffectiveRuntime)."""
    steps_done: int
    error_code: int
    error_details: str
    finished_order: int
    """Position in the history of finished jobs (0 while the job is not finished)."""
    payload: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(JobRecord)


def encode_record(record: JobRecord) -> bytes:
    return _encoder.encode(record)


def put_job(update: IndexUpdate, job_id: str, encoded: bytes) -> None:
    update.txn.put(job_id.encode(), encoded, db=update.dbs[JOBS_DATABASE])


def delete_job(update: IndexUpdate, job_id: str) -> None:
    update.txn.delete(job_id.encode(), db=update.dbs[JOBS_DATABASE])


def delete_all_jobs(update: IndexUpdate) -> None:
    update.txn.drop(update.dbs[JOBS_DATABASE], delete=False)


def load_jobs(database: Database) -> list[tuple[str, JobRecord | None]]:
    """Every saved job; ``None`` for a record that cannot be decoded."""
    found: list[tuple[str, JobRecord | None]] = []
    with database.read() as view:
        for key, value in view.txn.cursor(db=view.dbs[JOBS_DATABASE]):
            try:
                record: JobRecord | None = _decoder.decode(value)
            except msgspec.DecodeError:
                record = None
            found.append((bytes(key).decode(), record))
    return found
