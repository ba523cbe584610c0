"""Modifications of many instances in steps: the jobs ResourceModification, SplitStudy and MergeStudy.

The three are one kind of work: modify stored instances in the worker pool,
a batch per step (spread over the workers, a few instances per round trip, each
worker storing the new files itself), index them through the ingest pipeline,
record where modified resources come from, and delete the sources at the end
unless ``KeepSource``. They differ in what they change (a :class:`Modification`
built from the request) and in the ``Content`` they answer, which is Orthanc's:

- ResourceModification: ``Description``, ``FailedInstancesCount``, ``ID``,
  ``InstancesCount``, ``IsAnonymization``, ``Path``, ``PatientID`` (the
  Orthanc ID of the new parent patient), ``Type``, and ``Transcode`` when asked;
  for /tools/bulk-modify and bulk-anonymize, ``Resources`` (every resource the
  new instances belong to: ``ID``, ``Path``, ``Type``) instead of the four
  about one resource;
- SplitStudy: ``TargetStudy``, ``TargetStudyUID``;
- MergeStudy: ``TargetStudy``.

A :class:`RunState` is all a job saves: the sources, the modification (with
the key of its UID mapping, so that a job resumed after a restart maps every
UID as before and stores nothing twice) and what came out so far.
"""

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ClassVar

import msgspec

from fastpacs.dicom.ids import Level, RawId, format_id
from fastpacs.dicom.modification import Modification
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.index.updates import IndexUpdate, IngestOutcome, delete_resource
from fastpacs.index.writer import IndexWriter
from fastpacs.jobs.job import Job
from fastpacs.pool.modify import TranscodeTarget, modify_and_store
from fastpacs.pool.pool import WorkerPool
from fastpacs.pool.tasks import ParsedFile, StoreInterruptedError
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin
from fastpacs.services.resources import resource_path
from fastpacs.storage.blobs import StoredBlob

INSTANCES_PER_WORKER = 12
"""Instances a step gives each worker to modify."""
INSTANCES_PER_TASK = 3
"""Instances a worker modifies per round trip (see :meth:`ModificationWork.modify_batch`)."""
DESCRIPTION = "REST API"


class SourceInstance(msgspec.Struct, frozen=True, array_like=True):
    """An instance to modify: its IDs (patient, study, series, instance) and its stored file."""

    ids: tuple[RawId, RawId, RawId, RawId]
    blob: StoredBlob | bytes
    """Its blob; the bare digest of an uncompressed file in a job saved before files could be
    stored compressed."""


class RunState(msgspec.Struct, kw_only=True):
    """What a modification job saves: what to do, to what, and what came out so far."""

    sources: list[SourceInstance]
    modification: Modification
    origin: Origin
    keep_source: bool
    step_size: int
    provenance: str | None = None
    """``ModifiedFrom`` or ``AnonymizedFrom`` (split and merge record nothing)."""
    transcode: str | None = None
    level: int = Level.INSTANCE
    """ResourceModification: the level of the resource modified (and of the answer)."""
    target_study_uid: str = ""
    """SplitStudy: the StudyInstanceUID of the new study."""
    target_study: RawId = b""
    """MergeStudy: the study the resources are merged into."""
    bulk: bool = False
    """ResourceModification of /tools/bulk-modify or bulk-anonymize (answers ``Resources``)."""
    refusal: tuple[int, str] | None = None
    """ResourceModification: the error code and details every instance is refused with (the rules of
    the level, which Orthanc's job checks: the job of an asynchronous request fails with them)."""
    permissive: bool = False
    """``Permissive``: an instance that cannot be modified (its file is gone) is counted as failed and
    the job goes on; without it, the job fails with Orthanc's -1 "Internal error"."""
    outcomes: list[IngestOutcome] = msgspec.field(default_factory=list)
    failed: int = 0
    processed: list[RawId] = msgspec.field(default_factory=list)
    """The sources modified (deleted at the end unless kept)."""

    @property
    def total_steps(self) -> int:
        return -(-len(self.sources) // self.step_size)

    @property
    def first(self) -> IngestOutcome | None:
        return self.outcomes[0] if self.outcomes else None

    def counts(self) -> dict[str, Any]:
        return {
            "Description": DESCRIPTION,
            "FailedInstancesCount": self.failed,
            "InstancesCount": len(self.sources),
        }


_STATE_DECODER = msgspec.msgpack.Decoder(RunState)


class ModificationWork:
    """Runs the steps of a :class:`RunState` with the server's pool, ingest pipeline and index."""

    def __init__(
        self,
        pool: WorkerPool,
        writer: IndexWriter,
        ingest: IngestService,
        default_encoding: DefaultEncoding,
        lossy_quality: int,
    ):
        self.pool = pool
        self.writer = writer
        self.ingest = ingest
        self.default_encoding = default_encoding
        self.lossy_quality = lossy_quality
        """``DicomLossyTranscodingQuality``: the IJG quality of JPEG baseline written by ``Transcode``."""
        self._releasing: set[asyncio.Future[None]] = set()

    async def run_step(self, state: RunState, step: int, lookahead: "Lookahead") -> None:
        """Store one batch, modified while the previous one was being stored (see :class:`Lookahead`)."""
        files = await lookahead.take(step, lambda: self.modify_batch(state, step))
        if step + 1 < state.total_steps:
            lookahead.start(step + 1, self.modify_batch(state, step + 1))
        await self.store_batch(state, step, files)

    async def modify_batch(self, state: RunState, step: int) -> list[ParsedFile | None]:
        """The modified files of one batch, stored, a few per round trip, one round trip per worker at a time.

        Work dropped (canceled, or failed in another lane) releases the blobs
        the workers stored for it, now or once their round trip ends.

        The ingest of the batch before queues its header parses on the same workers: behind a
        round trip of a dozen instances they waited about as long as the whole batch took to
        modify, and the ingest with them (about half the time of each step).
        """
        batch = state.sources[step * state.step_size : (step + 1) * state.step_size]
        files: list[ParsedFile | None] = [None] * len(batch)
        chunks = iter(
            [
                range(start, min(start + INSTANCES_PER_TASK, len(batch)))
                for start in range(0, len(batch), INSTANCES_PER_TASK)
            ]
        )

        async def lane() -> None:
            for chunk in chunks:  # shared by the lanes: each takes the next chunk when its own is done
                running = asyncio.ensure_future(
                    self.pool.run(
                        modify_and_store,
                        state.modification,
                        [batch[index].blob for index in chunk],
                        self.default_encoding.name,
                        self.transcode_target(state.transcode),
                    )
                )
                try:
                    modified = await asyncio.shield(running)
                except asyncio.CancelledError:  # the blobs the worker is storing are nobody's
                    running.add_done_callback(self._release_when_done)
                    raise
                except StoreInterruptedError as interrupted:
                    self.release_digests(interrupted.digests)
                    raise interrupted.error from interrupted
                for index, parsed in zip(chunk, modified, strict=True):
                    files[index] = parsed

        lanes = [asyncio.ensure_future(lane()) for _ in range(self.pool.processes)]
        try:
            await asyncio.gather(*lanes)
        except BaseException:
            for running_lane in lanes:  # a canceled lane stores nothing more in files
                running_lane.cancel()
            self.release(files)
            raise
        return files

    def transcode_target(self, transfer_syntax: str | None) -> TranscodeTarget | None:
        """What a ``Transcode`` of ``transfer_syntax`` (if any) writes."""
        return None if transfer_syntax is None else TranscodeTarget(transfer_syntax, self.lossy_quality)

    def release(self, files: Iterable[ParsedFile | None]) -> None:
        """Release, in the background, the blobs of modified files that will not be indexed (removed
        unless an instance references the same bytes; left to the start-up repair if the server stops)."""
        self.release_digests([digest for parsed in files if parsed is not None for digest in parsed.digests])

    def release_digests(self, digests: list[bytes]) -> None:
        """:meth:`release`, of blobs named by their digests."""
        if not digests:
            return
        releasing = asyncio.ensure_future(
            self.writer.run(lambda update: update.released_blobs.update(digests))
        )
        self._releasing.add(releasing)
        releasing.add_done_callback(self._released)

    def _released(self, releasing: "asyncio.Future[None]") -> None:
        self._releasing.discard(releasing)
        if not releasing.cancelled():
            releasing.exception()  # retrieved: a writer stopped meanwhile leaves the blobs to the repair

    def _release_when_done(self, running: "asyncio.Future[list[ParsedFile | None]]") -> None:
        if running.cancelled():
            return
        failure = running.exception()
        if failure is None:
            self.release(running.result())
        elif isinstance(failure, StoreInterruptedError):
            self.release_digests(failure.digests)

    async def store_batch(self, state: RunState, step: int, files: list[ParsedFile | None]) -> None:
        """Index the modified files through the ingest pipeline and record where they come from."""
        batch = state.sources[step * state.step_size : (step + 1) * state.step_size]
        stored = [(source, parsed) for source, parsed in zip(batch, files, strict=True) if parsed is not None]
        state.failed += len(batch) - len(stored)
        if len(stored) < len(batch) and not state.permissive:
            self.release(files)
            raise OrthancError(ErrorCode.INTERNAL_ERROR)
        outcomes = await self.ingest.ingest_stored([parsed for _, parsed in stored], state.origin)
        pairs = [(source, outcome) for (source, _), outcome in zip(stored, outcomes, strict=True)]
        refused = [source for source, outcome in pairs if _refused(source, outcome)]
        pairs = [(source, outcome) for source, outcome in pairs if outcome.status == "Success"]
        if state.provenance is not None:
            name = state.provenance
            await self.writer.run(lambda update: _record_provenance(update, name, pairs))
        state.outcomes.extend(outcome for _, outcome in pairs)
        state.processed.extend(source.ids[Level.INSTANCE] for source, _ in pairs)
        if refused:
            instance = format_id(refused[0].ids[Level.INSTANCE])
            raise OrthancError(
                ErrorCode.CANNOT_STORE_INSTANCE, f"Error while storing a modified instance {instance}"
            )

    async def finish(self, state: RunState) -> None:
        """Delete the sources, unless kept (never one the result is stored as)."""
        if state.keep_source:
            return
        created = {outcome.ids[Level.INSTANCE] for outcome in state.outcomes}
        doomed = [rid for rid in state.processed if rid not in created]
        await self.writer.run(lambda update: _delete_instances(update, doomed))

    async def complete(self, state: RunState) -> None:
        """Every step, then the end: a request answered without a job."""
        lookahead = Lookahead(self.release)
        for step in range(state.total_steps):
            await self.run_step(state, step, lookahead)
        await self.finish(state)


class Lookahead:
    """The modification of the next batch, started while the current one is stored.

    The work started ahead has no effect but the blobs it stores, none of
    them indexed: when the job is paused, canceled or restarted the work is
    dropped and its blobs released (``release``).
    """

    def __init__(self, release: Callable[[list[ParsedFile | None]], None]) -> None:
        self.release = release
        self.step: int | None = None
        self.task: asyncio.Task | None = None

    def start(self, step: int, work: Coroutine[Any, Any, list[ParsedFile | None]]) -> None:
        self.drop()
        self.step, self.task = step, asyncio.ensure_future(work)

    async def take(
        self, step: int, work: Callable[[], Awaitable[list[ParsedFile | None]]]
    ) -> list[ParsedFile | None]:
        """The batch modified ahead when it is this one, else modified now."""
        if self.step == step and self.task is not None:
            task, self.step, self.task = self.task, None, None
            return await task
        self.drop()
        return await work()

    def drop(self) -> None:
        if self.task is not None:
            if not self.task.done():
                self.task.cancel()
            elif not self.task.cancelled() and self.task.exception() is None:  # an error nobody waits for
                self.release(self.task.result())
        self.step, self.task = None, None


def _refused(source: SourceInstance, outcome: IngestOutcome) -> bool:
    """Whether a modified instance was not stored: filtered out, or the source itself (every UID kept,
    the same instance, which is not overwritten). The modification did not happen: the job fails, as
    Orthanc's, rather than answer a success. (An instance of another ID already there was stored by this
    very job before a restart: resumed, it goes on.)"""
    if outcome.status == "FilteredOut":
        return True
    return outcome.status == "AlreadyStored" and outcome.ids[Level.INSTANCE] == source.ids[Level.INSTANCE]


def _record_provenance(
    update: IndexUpdate, name: str, pairs: list[tuple[SourceInstance, IngestOutcome]]
) -> None:
    """``ModifiedFrom``/``AnonymizedFrom`` on the new instance, and on each of its parents whose ID differs
    from its source's (as Orthanc)."""
    kind = SYSTEM_METADATA[name]
    for source, outcome in pairs:
        for level in Level:
            new, old = outcome.ids[level], format_id(source.ids[level])
            if (new != source.ids[level] or level == Level.INSTANCE) and update.resource(new) is not None:
                current = update.metadata_value(new, kind)
                if current is None or current.value != old:
                    update.set_metadata(new, {name: old})


def _delete_instances(update: IndexUpdate, instances: list[RawId]) -> None:
    for rid in instances:
        if update.resource_at(rid, Level.INSTANCE) is not None:
            delete_resource(update, Level.INSTANCE, rid)


class ModificationJob(Job):
    """A :class:`RunState` run by the job engine."""

    type_name: ClassVar[str]

    def __init__(self, work: ModificationWork, state: RunState):
        self.work = work
        self.state = state
        self.lookahead = Lookahead(work.release)

    @property
    def total_steps(self) -> int:
        return self.state.total_steps

    async def run_step(self, index: int) -> None:
        if self.state.refusal is not None:
            code, details = self.state.refusal
            raise OrthancError(ErrorCode(code), details)
        await self.work.run_step(self.state, index, self.lookahead)

    async def finish(self) -> None:
        await self.work.finish(self.state)

    async def abort(self) -> None:
        self.lookahead.drop()

    def save(self) -> bytes:
        return msgspec.msgpack.encode(self.state)

    def reset(self) -> None:
        """A resubmitted job runs again from its first step (with the same UIDs: nothing is stored twice)."""
        self.state.outcomes.clear()
        self.state.processed.clear()
        self.state.failed = 0

    @classmethod
    def loader(cls, work: ModificationWork):
        return lambda data: cls(work, _STATE_DECODER.decode(data))


class ResourceModificationJob(ModificationJob):
    type_name = "ResourceModification"

    def content(self) -> dict[str, Any]:
        state = self.state
        level = Level(state.level)
        content = state.counts() | {"IsAnonymization": state.provenance == "AnonymizedFrom"}
        if state.bulk:
            content["Resources"] = _resources_made(state.outcomes)
        elif state.first is not None:
            rid = state.first.ids[level]
            content |= {
                "ID": format_id(rid),
                "Path": resource_path(level, rid),
                "PatientID": format_id(state.first.ids[Level.PATIENT]),
                "Type": level.type_name,
            }
        if state.transcode is not None:
            content["Transcode"] = state.transcode
        return content


def _resources_made(outcomes: list[IngestOutcome]) -> list[dict[str, str]]:
    """The instances stored and their parents, as Orthanc lists them: instances first, by ID in each level."""
    return [
        {"ID": format_id(rid), "Path": resource_path(level, rid), "Type": level.type_name}
        for level in reversed(Level)
        for rid in sorted({outcome.ids[level] for outcome in outcomes})
    ]


class SplitStudyJob(ModificationJob):
    type_name = "SplitStudy"

    def content(self) -> dict[str, Any]:
        content = self.state.counts() | {"TargetStudyUID": self.state.target_study_uid}
        if self.state.first is not None:
            content["TargetStudy"] = format_id(self.state.first.ids[Level.STUDY])
        return content


class MergeStudyJob(ModificationJob):
    type_name = "MergeStudy"

    def content(self) -> dict[str, Any]:
        return self.state.counts() | {"TargetStudy": format_id(self.state.target_study)}


JOB_TYPES: tuple[type[ModificationJob], ...] = (ResourceModificationJob, SplitStudyJob, MergeStudyJob)
