"""Exports: resources sent to modalities (C-STORE), and their log (/exports).

``POST /modalities/{name}/store`` resolves the resources named, logs them
(when ``LogExportedResources`` is on) and sends their instances over one
association (:class:`ModalityStoreJob`, Orthanc's ``DicomModalityStore`` job).

The export log (:class:`ExportLog`) gets one entry per resource a store
request names (to a modality or a peer), at the level it was named, before
anything is sent: Orthanc logs even when the destination turns out to be
unknown. Entries live in the index; their sequence numbers keep growing
after ``DELETE /exports``.
"""

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from fastpacs.config import Config
from fastpacs.dicom.ids import Level, RawId, format_id, parse_id
from fastpacs.dicom.modification import new_uid
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.index.schema import Counter, pack_u64, unpack_u64
from fastpacs.index.updates import IndexUpdate, orthanc_timestamp
from fastpacs.index.view import IndexView
from fastpacs.index.writer import IndexWriter
from fastpacs.jobs.engine import JobEngine
from fastpacs.jobs.job import Job, JobState
from fastpacs.json_body import json_body
from fastpacs.net.scu import (
    DicomNetworkError,
    NoAcceptableContextError,
    RemoteNode,
    StoreAssociation,
    StoredInstance,
    is_store_success,
)
from fastpacs.services.modalities import ModalityRegistry
from fastpacs.services.request_fields import boolean_field, integer_field, is_synchronous
from fastpacs.services.resources import resource_path
from fastpacs.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

EXPORTS_DATABASE = "exports"

_UID_KEYWORDS = (
    # Which identifiers an entry carries, by level: the resource's own and its ancestors'.
    (Level.INSTANCE, "SOPInstanceUID"),
    (Level.SERIES, "SeriesInstanceUID"),
    (Level.STUDY, "StudyInstanceUID"),
    (Level.PATIENT, "PatientID"),
)


class ExportedResource(msgspec.Struct, array_like=True):
    """One entry of the export log."""

    level: int
    resource: RawId
    remote_modality: str
    date: str
    identifiers: dict[str, str]
    """PatientID and the UIDs of the resource and its ancestors, by keyword."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ExportedResource)


def _identifiers(view: IndexView, level: Level, rid: RawId) -> dict[str, str]:
    found: dict[str, str] = {}
    current: RawId | None = rid
    while current is not None:
        record = view.resource(current)
        if record is None:
            break
        keyword = Level(record.level).identifier_keyword
        found[keyword] = record.main_tags.get(keyword, "")
        current = record.parent
    return {keyword: found.get(keyword, "") for lowest, keyword in _UID_KEYWORDS if lowest <= level}


def log_exports(
    update: IndexUpdate, resources: list[tuple[Level, RawId]], remote: str, moment: float
) -> None:
    """Append one entry per resource (resources that vanished meanwhile are skipped)."""
    date = orthanc_timestamp(moment)
    for level, rid in resources:
        if update.resource_at(rid, level) is None:
            continue
        entry = ExportedResource(int(level), rid, remote, date, _identifiers(update, level, rid))
        seq = update.add_counter(Counter.LAST_EXPORT, 1)
        update.txn.put(pack_u64(seq), _encoder.encode(entry), db=update.dbs[EXPORTS_DATABASE], append=True)


def clear_exports(update: IndexUpdate) -> None:
    update.txn.drop(update.dbs[EXPORTS_DATABASE], delete=False)


def entry_json(seq: int, entry: ExportedResource) -> dict[str, Any]:
    level = Level(entry.level)
    return {
        "Date": entry.date,
        "ID": format_id(entry.resource),
        "Path": resource_path(level, entry.resource),
        "RemoteModality": entry.remote_modality,
        "ResourceType": level.type_name,
        "Seq": seq,
        **entry.identifiers,
    }


class ExportLog:
    """Reads and writes the export log."""

    def __init__(self, database: Database, writer: IndexWriter, enabled: bool):
        self.database = database
        self.writer = writer
        self.enabled = enabled

    async def log(self, resources: list[tuple[Level, RawId]], remote: str) -> None:
        if self.enabled and resources:
            moment = time.time()
            await self.writer.run(lambda update: log_exports(update, resources, remote, moment))

    def entries(self, since: int, limit: int, last_only: bool) -> dict[str, Any]:
        """Orthanc's ``{"Done": ..., "Exports": [...], "Last": ...}``.

        Without ``?last``, ``Last`` is the sequence number of the last entry
        given, or ``since`` when there is none (Orthanc's guess).
        """
        with self.database.read() as view:
            cursor = view.txn.cursor(db=view.dbs[EXPORTS_DATABASE])
            if last_only:
                found = [(unpack_u64(cursor.key()), _decoder.decode(cursor.value()))] if cursor.last() else []
                done, last = True, found[-1][0] if found else 0
            else:
                found = []
                if cursor.set_range(pack_u64(since + 1)):
                    for key, value in cursor:
                        found.append((unpack_u64(key), _decoder.decode(value)))
                        if len(found) > limit:
                            break
                done = len(found) <= limit
                found = found[:limit]
                last = found[-1][0] if found else since
        return {"Done": done, "Exports": [entry_json(seq, entry) for seq, entry in found], "Last": last}

    async def clear(self) -> None:
        await self.writer.run(clear_exports)


# --- C-STORE to a modality -----------------------------------------------------------------------


@dataclass
class StoreRequest:
    """A ``POST /modalities/{name}/store`` body, as Orthanc 1.10.1 reads it."""

    resources: list[str]
    synchronous: bool = True
    priority: int = 0
    permissive: bool = False
    local_aet: str | None = None
    timeout: int | None = None
    move_originator: tuple[str, int] | None = None
    storage_commitment: bool = False
    """Ask the modality for storage commitment of the instances sent (asynchronous stores: by the job)."""


def _store_error(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def parse_store_request(body: bytes) -> StoreRequest:
    """The resources to send and the options; a bare ID (not JSON) is one resource."""
    text = body.decode("utf-8", errors="replace").strip()
    if parse_id(text) is not None:
        return StoreRequest(resources=[text])
    document = json_body(body, details="Must provide a JSON value")
    if isinstance(document, str):
        document = [document]
    if isinstance(document, list):
        document = {"Resources": document}
    if not isinstance(document, dict):
        raise _store_error("Must provide a JSON object, or a JSON array of strings")
    if "Resources" not in document:
        raise _store_error('Missing field in JSON: "Resources"')
    resources = document["Resources"]
    if not isinstance(resources, list):
        raise _store_error('JSON field "Resources" must contain an array')
    if not all(isinstance(item, str) for item in resources):
        raise _store_error("Resources to be exported must be specified as a JSON array of strings")
    request = StoreRequest(resources=[item.strip() for item in resources])
    request.synchronous = is_synchronous(document)
    request.priority = integer_field(document, "Priority", 0)
    request.permissive = boolean_field(document, "Permissive", False)
    if isinstance(document.get("LocalAet"), str):
        request.local_aet = document["LocalAet"]
    if "Timeout" in document:
        request.timeout = integer_field(document, "Timeout", 0)
    if isinstance(document.get("MoveOriginatorAet"), str):
        request.move_originator = (
            document["MoveOriginatorAet"],
            integer_field(document, "MoveOriginatorID", 0),
        )
    return request


def stored_instances(view: IndexView, storage: BlobStore, level: Level, rid: RawId) -> list[StoredInstance]:
    """The instances below a resource (itself for an instance), in the order Orthanc sends them."""
    found = []
    for instance in view.descendants_last_first(rid, level, Level.INSTANCE):
        record = view.resource_at(instance, Level.INSTANCE)
        if record is None or record.blob is None:
            continue
        sop_class = view.metadata_value(instance, SYSTEM_METADATA["SopClassUid"])
        syntax = view.metadata_value(instance, SYSTEM_METADATA["TransferSyntax"])
        found.append(
            StoredInstance(
                path=storage.path_of(record.blob.digest),
                sop_class_uid=sop_class.value if sop_class is not None else "",
                sop_instance_uid=record.main_tags.get("SOPInstanceUID", ""),
                transfer_syntax=syntax.value if syntax is not None else "",
                compressed=record.blob.compressed,
            )
        )
    return found


class StoreJobState(msgspec.Struct, array_like=True):
    """What a store job saves: where to send, what, and how it went so far."""

    node: RemoteNode
    instances: list[RawId]
    parents: list[str]
    permissive: bool = False
    move_originator: tuple[str, int] | None = None
    failed: int = 0
    commitment_uid: str | None = None
    """The storage commitment transaction asked for once the instances are sent (``StorageCommitment``)."""
    sent: list[tuple[str, str]] = msgspec.field(default_factory=list)
    """(SOP Class UID, SOP Instance UID) of the instances sent, for the storage commitment request."""


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(StoreJobState)

InstanceResolver = Callable[[list[RawId]], list[StoredInstance | None]]
"""Finds the files of instances by ID (``None`` for an instance deleted since)."""
CommitmentRequester = Callable[[RemoteNode, str, list[tuple[str, str]]], Awaitable[None]]
"""Sends a storage commitment request (node, transaction UID, instances) and records its report."""


class ModalityStoreJob(Job):
    """Sends instances to a modality over one association: Orthanc's ``DicomModalityStore`` job.

    One step per instance. The association opens at the first step run (again
    after a pause or a restart) and closes when the job ends; a broken one is
    opened again at the next step. Without ``Permissive`` the first failure
    fails the job; with it failures are counted and the job goes on. With
    ``StorageCommitment``, the instances sent are submitted to the modality's
    storage commitment once the last is sent (as Orthanc: a job that failed
    asks for nothing, but shows its transaction UID).
    """

    type_name = "DicomModalityStore"

    def __init__(
        self, state: StoreJobState, resolve: InstanceResolver, commit: CommitmentRequester | None = None
    ):
        self.state = state
        self.resolve = resolve
        self.commit = commit
        self._instances: list[StoredInstance | None] | None = None
        self._association: StoreAssociation | None = None

    @property
    def total_steps(self) -> int:
        return len(self.state.instances)

    async def start(self, steps_done: int) -> int:
        await self._close()
        if self._instances is None:
            self._instances = await asyncio.to_thread(self.resolve, self.state.instances)
        return steps_done

    async def run_step(self, index: int) -> None:
        assert self._instances is not None
        instance = self._instances[index]
        deleted = f"Instance {format_id(self.state.instances[index])} was deleted"
        if instance is None:
            self._fail(ErrorCode.UNKNOWN_RESOURCE, deleted)
            return
        node = self.state.node
        try:
            if self._association is None:
                remaining = [item for item in self._instances[index:] if item is not None]
                self._association = await asyncio.to_thread(StoreAssociation, node, remaining)
            status = await asyncio.to_thread(self._association.send, instance, self.state.move_originator)
        except NoAcceptableContextError as error:
            self._fail(ErrorCode.NO_PRESENTATION_CONTEXT, str(error))
            return
        except DicomNetworkError as error:
            await self._close()
            self._fail(ErrorCode.NETWORK_PROTOCOL, str(error))
            return
        except FileNotFoundError:  # deleted since the job started: its file went before anything was sent
            self._fail(ErrorCode.UNKNOWN_RESOURCE, deleted)
            return
        if not is_store_success(status):
            self._fail(
                ErrorCode.NETWORK_PROTOCOL,
                f'C-STORE SCU to AET "{node.aet}" has failed with DIMSE status 0x{status:04X}',
            )
        elif self.state.commitment_uid is not None:
            self.state.sent.append((instance.sop_class_uid, instance.sop_instance_uid))

    def _fail(self, code: ErrorCode, details: str) -> None:
        if not self.state.permissive:
            raise OrthancError(code, details)
        logger.warning("store to %s: %s", self.state.node.aet, details)
        self.state.failed += 1

    async def _close(self) -> None:
        association, self._association = self._association, None
        if association is not None:
            await asyncio.to_thread(association.close)

    async def finish(self) -> None:
        await self._close()
        if self.state.commitment_uid is not None and self.commit is not None:
            await self.commit(self.state.node, self.state.commitment_uid, self.state.sent)

    async def abort(self) -> None:
        await self._close()

    def reset(self) -> None:
        self.state.failed = 0
        self.state.sent = []

    def content(self) -> dict[str, Any]:
        state = self.state
        content: dict[str, Any] = {
            "Description": "REST API",
            "FailedInstancesCount": state.failed,
            "InstancesCount": len(state.instances),
            "LocalAet": state.node.local_aet,
            "RemoteAet": state.node.aet,
        }
        if state.parents:
            content["ParentResources"] = state.parents
        if state.move_originator is not None:
            content["MoveOriginatorAET"], content["MoveOriginatorID"] = state.move_originator
        if state.commitment_uid is not None:
            content["StorageCommitmentTransactionUID"] = state.commitment_uid
        return content

    def save(self) -> bytes:
        return _state_encoder.encode(self.state)


async def run_synchronously(engine: JobEngine, job: Job, priority: int) -> dict[str, Any]:
    """Run a job now and answer its content; its failure becomes the request's error, as in Orthanc."""
    tracked = await engine.wait(engine.run_now(job, priority))
    if tracked.state == JobState.FAILURE:
        raise OrthancError(ErrorCode(tracked.error_code), tracked.error_details or None)
    return job.content()


class ModalityExports:
    """``POST /modalities/{name}/store``: resolves the resources, logs the export, sends them in a job."""

    def __init__(
        self,
        config: Config,
        database: Database,
        storage: BlobStore,
        *,
        registry: ModalityRegistry,
        log: ExportLog,
        engine: JobEngine,
    ):
        self.config = config
        self.database = database
        self.storage = storage
        self.registry = registry
        self.log = log
        self.engine = engine
        self.commit: CommitmentRequester | None = None
        """Sends the storage commitment requests of asynchronous stores (set once that service exists)."""
        engine.register(ModalityStoreJob.type_name, self._load)

    def _load(self, data: bytes) -> ModalityStoreJob:
        return ModalityStoreJob(_state_decoder.decode(data), self._resolve, self._commit)

    async def _commit(self, node: RemoteNode, transaction_uid: str, sent: list[tuple[str, str]]) -> None:
        if self.commit is None:
            raise OrthancError(ErrorCode.BAD_SEQUENCE_OF_CALLS, "Storage commitment is not available")
        await self.commit(node, transaction_uid, sent)

    def _resolve(self, instances: list[RawId]) -> list[StoredInstance | None]:
        with self.database.read() as view:
            found = [stored_instances(view, self.storage, Level.INSTANCE, rid) for rid in instances]
        return [files[0] if files else None for files in found]

    async def prepare(self, name: str, request: StoreRequest) -> ModalityStoreJob:
        """The store job for a request, its export logged first (even to an unknown modality, as Orthanc)."""
        named: list[tuple[Level, RawId]] = []
        instances: list[RawId] = []
        for text in request.resources:
            rid = parse_id(text)
            if rid is None:
                raise _store_error(f"This string is not a valid Orthanc identifier: {text}")
            with self.database.read() as view:
                record = view.resource(rid)
                if record is None:
                    await self.log.log(named, name)
                    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
                level = Level(record.level)
                instances.extend(view.descendants_last_first(rid, level, Level.INSTANCE))
            named.append((level, rid))
        await self.log.log(named, name)
        modality = self.registry.require(name)
        state = StoreJobState(
            node=self.registry.node(modality, request.local_aet, request.timeout),
            instances=instances,
            parents=sorted({format_id(rid) for _, rid in named}),
            permissive=request.permissive,
            move_originator=request.move_originator,
            commitment_uid=new_uid() if request.storage_commitment and not request.synchronous else None,
        )
        return ModalityStoreJob(state, self._resolve, self._commit)

    async def store(self, name: str, request: StoreRequest) -> dict[str, Any]:
        """Store synchronously (the job's content) or queue the job (its ID and path)."""
        job = await self.prepare(name, request)
        if request.synchronous:
            return await run_synchronously(self.engine, job, request.priority)
        job_id = await self.engine.submit(job, request.priority)
        return {"ID": job_id, "Path": f"/jobs/{job_id}"}

    async def store_straight(self, name: str, data: bytes) -> dict[str, str]:
        """C-STORE a DICOM file given in the request, without storing it here."""
        modality = self.registry.require(name)
        return await asyncio.to_thread(_store_straight, self.registry.node(modality), data)


def _store_straight(node: RemoteNode, data: bytes) -> dict[str, str]:
    try:
        dataset = dcmread(io.BytesIO(data))
        sop_class, sop_instance = str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)
        syntax = str(dataset.file_meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError) as error:
        raise _store_error(f"Cannot parse an invalid DICOM file (size: {len(data)} bytes)") from error
    instance = StoredInstance(
        path=None, sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax=syntax
    )
    association = StoreAssociation(node, [instance])
    try:
        status = association.send(instance, dataset=dataset)
    except DicomNetworkError as error:
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error
    finally:
        association.close()
    if not is_store_success(status):
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL,
            f'C-STORE SCU to AET "{node.aet}" has failed with DIMSE status 0x{status:04X}',
        )
    return {"SOPClassUID": sop_class, "SOPInstanceUID": sop_instance}
