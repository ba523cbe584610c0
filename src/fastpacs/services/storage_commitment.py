"""Storage commitment, both roles, as Orthanc 1.10.1 offers it.

The DIMSE messages and the DICOM server's handlers are in :mod:`fastpacs.net.storage_commitment`.

As the archive (SCP): a modality's N-ACTION queues a ``StorageCommitmentScp``
job (it shows in ``/jobs`` as in Orthanc), which checks each referenced
instance against the index — stored, and with the same SOP class — and sends
the N-EVENT-REPORT to the modality registered with the caller's AET (over
DICOM TLS with its ``UseDicomTls``). A report that cannot be sent fails the job.

As the modality (SCU), the REST API:

- ``POST /modalities/{name}/storage-commitment`` sends the N-ACTION for the
  instances named (``DicomInstances`` as [class, instance] pairs or objects,
  ``Resources`` as Orthanc IDs of any level) and answers the transaction UID;
- ``GET /storage-commitment/{uid}``: the report, ``Pending`` until the
  peer's N-EVENT-REPORT arrives on the DICOM server;
- ``POST /storage-commitment/{uid}/remove`` deletes the committed instances
  here once the transaction succeeded.

Reports are kept in memory (as in Orthanc), the ``StorageCommitmentReportsSize``
most recently used ones.
"""

import asyncio
import logging
import threading
from collections import OrderedDict
from typing import Any

import msgspec

from fastpacs.config import Config
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.dicom.modification import new_uid
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.index.view import IndexView
from fastpacs.jobs.engine import JobEngine
from fastpacs.jobs.job import Job
from fastpacs.json_body import NotJsonError, json_object_body, read_json
from fastpacs.net.scu import DicomNetworkError, RemoteNode
from fastpacs.net.storage_commitment import (
    CLASS_INSTANCE_CONFLICT,
    FAILURE_DESCRIPTIONS,
    NO_SUCH_OBJECT_INSTANCE,
    CommitmentFailure,
    CommitmentItem,
    CommitmentResult,
    request_commitment,
    send_event_report,
)
from fastpacs.services.delete import DeleteService
from fastpacs.services.modalities import ModalityRegistry
from fastpacs.services.request_fields import boolean_field, integer_field

logger = logging.getLogger(__name__)

PENDING = "Pending"
UNKNOWN_FAILURE_REASON = "Unknown failure reason"
"""Orthanc 1.10.1's description of a reason PS3.4 does not define (observed)."""


def _bad_request(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def _unknown_transaction(transaction_uid: str) -> OrthancError:
    return OrthancError(
        ErrorCode.INEXISTENT_ITEM, f"No storage commitment transaction with UID: {transaction_uid}"
    )


# --- the index ------------------------------------------------------------------------------------


def _stored_instance(view: IndexView, sop_instance_uid: str) -> RawId | None:
    for level, rid in view.lookup(sop_instance_uid):
        if level == Level.INSTANCE:
            return rid
    return None


def check_instances(view: IndexView, items: list[CommitmentItem]) -> CommitmentResult:
    """Which instances are stored here with the SOP class given (PS3.4 J.3.3.1.1's failure reasons)."""
    result = CommitmentResult(success=[], failures=[])
    for item in items:
        rid = _stored_instance(view, item.sop_instance_uid)
        sop_class = view.metadata_value(rid, SYSTEM_METADATA["SopClassUid"]) if rid is not None else None
        if rid is None:
            result.failures.append(CommitmentFailure(*item, NO_SUCH_OBJECT_INSTANCE))
        elif sop_class is None or sop_class.value != item.sop_class_uid:
            result.failures.append(CommitmentFailure(*item, CLASS_INSTANCE_CONFLICT))
        else:
            result.success.append(item)
    return result


def _instances_of(view: IndexView, rid: RawId) -> list[CommitmentItem]:
    record = view.resource(rid)
    if record is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
    found = []
    for instance in view.descendants_last_first(rid, Level(record.level), Level.INSTANCE):
        sop_class = view.metadata_value(instance, SYSTEM_METADATA["SopClassUid"])
        stored = view.resource_at(instance, Level.INSTANCE)
        if stored is not None:
            found.append(
                CommitmentItem(
                    sop_class.value if sop_class is not None else "",
                    stored.main_tags.get("SOPInstanceUID", ""),
                )
            )
    return found


# --- the REST request -----------------------------------------------------------------------------


class CommitmentRequest(msgspec.Struct):
    """A ``POST /modalities/{name}/storage-commitment`` body."""

    instances: list[CommitmentItem]
    resources: list[RawId]
    timeout: int | None


def _instance_entry(entry: Any) -> CommitmentItem:
    if isinstance(entry, list):
        if len(entry) != 2 or not all(isinstance(value, str) for value in entry):
            raise _bad_request(
                "An instance entry must provide an array with 2 strings: SOP Class UID and SOP Instance UID"
            )
        return CommitmentItem(entry[0], entry[1])
    if isinstance(entry, dict):
        sop_class, sop_instance = entry.get("SOPClassUID"), entry.get("SOPInstanceUID")
        if not isinstance(sop_class, str) or not isinstance(sop_instance, str):
            raise _bad_request(  # Orthanc's text, typo and missing quote included
                "An instance entry must provide an object with 2 string fiels: "
                '"SOPClassUID" and "SOPInstanceUID'
            )
        return CommitmentItem(sop_class, sop_instance)
    raise _bad_request("JSON array or object is expected to specify one DICOM instance")


def parse_commitment_request(body: bytes) -> CommitmentRequest:
    """The instances and resources to ask a commitment for, with Orthanc 1.10.1's errors (observed)."""
    document = json_object_body(body, details="Must provide a JSON object with a list of resources")
    if "DicomInstances" not in document and "Resources" not in document:
        raise _bad_request(
            "Empty storage commitment request, one of these fields is mandatory: "
            '"Resources" or "DicomInstances"'
        )
    instances = document.get("DicomInstances", [])
    if not isinstance(instances, list):
        raise _bad_request('The "DicomInstances" field must provide an array of DICOM instances')
    resources = document.get("Resources", [])
    if not isinstance(resources, list) or not all(isinstance(item, str) for item in resources):
        raise _bad_request('The "Resources" field must provide an array of Orthanc resources')
    parsed = []
    for text in resources:
        rid = parse_id(text.strip())
        if rid is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        parsed.append(rid)
    return CommitmentRequest(
        instances=[_instance_entry(entry) for entry in instances],
        resources=parsed,
        timeout=integer_field(document, "Timeout", None),
    )


def wants_storage_commitment(body: bytes) -> bool:
    """Whether a ``POST /modalities/{name}/store`` body asks for a commitment (``"StorageCommitment"``)."""
    try:
        document = read_json(body)
    except NotJsonError:  # a bare resource ID
        return False
    return isinstance(document, dict) and boolean_field(document, "StorageCommitment", False)


# --- the reports of the transactions fastpacs requested (SCU) ------------------------------------


class CommitmentReport(msgspec.Struct):
    remote_aet: str
    result: CommitmentResult | None = None
    """``None`` until the peer's N-EVENT-REPORT arrives."""

    @property
    def status(self) -> str:
        if self.result is None:
            return PENDING
        return "Failure" if self.result.failures else "Success"

    def to_json(self) -> dict[str, Any]:
        """Orthanc's JSON of ``GET /storage-commitment/{uid}`` (observed shapes)."""
        report: dict[str, Any] = {"RemoteAET": self.remote_aet, "Status": self.status}
        if self.result is not None:
            report["Success"] = [
                {"SOPClassUID": sop_class, "SOPInstanceUID": sop_instance}
                for sop_class, sop_instance in self.result.success
            ]
            report["Failures"] = [
                {
                    "Description": FAILURE_DESCRIPTIONS.get(reason, UNKNOWN_FAILURE_REASON),
                    "FailureReason": reason,
                    "SOPClassUID": sop_class,
                    "SOPInstanceUID": sop_instance,
                }
                for sop_class, sop_instance, reason in self.result.failures
            ]
        return report


class CommitmentReports:
    """The reports, the ``size`` most recently used kept; filled from the DICOM server's threads."""

    def __init__(self, size: int):
        self.size = max(size, 1)
        self._reports: OrderedDict[str, CommitmentReport] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, transaction_uid: str, report: CommitmentReport) -> None:
        with self._lock:
            self._reports[transaction_uid] = report
            self._reports.move_to_end(transaction_uid)
            while len(self._reports) > self.size:
                self._reports.popitem(last=False)

    def get(self, transaction_uid: str) -> CommitmentReport | None:
        with self._lock:
            report = self._reports.get(transaction_uid)
            if report is not None:
                self._reports.move_to_end(transaction_uid)
            return report

    def fill(self, remote_aet: str, transaction_uid: str, result: CommitmentResult) -> None:
        """The peer's N-EVENT-REPORT for a transaction fastpacs requested (others are ignored)."""
        with self._lock:
            report = self._reports.get(transaction_uid)
            if report is None:
                logger.warning(
                    "storage commitment report from %r for an unknown transaction %s",
                    remote_aet,
                    transaction_uid,
                )
                return
            report.result = result
            self._reports.move_to_end(transaction_uid)


# --- the SCP's job -------------------------------------------------------------------------------


class ScpJobState(msgspec.Struct, array_like=True):
    transaction_uid: str
    remote_aet: str
    remote_host: str
    called_aet: str
    items: list[CommitmentItem]


class StorageCommitmentScpJob(Job):
    """Check the instances of a modality's transaction and send it the N-EVENT-REPORT (one step)."""

    type_name = "StorageCommitmentScp"

    def __init__(self, state: ScpJobState, service: "StorageCommitmentService"):
        self.state = state
        self.service = service

    @property
    def total_steps(self) -> int:
        return 1

    async def run_step(self, index: int) -> None:
        await self.service.answer(self.state)

    def content(self) -> dict[str, Any]:
        return {
            "CalledAet": self.state.called_aet,
            "Description": "",
            "RemoteAet": self.state.remote_aet,
            "TransactionUid": self.state.transaction_uid,
        }

    def save(self) -> bytes:
        return msgspec.msgpack.encode(self.state)


_state_decoder = msgspec.msgpack.Decoder(ScpJobState)


class StorageCommitmentService:
    """Both roles: the SCP's jobs, the SCU's requests and reports."""

    def __init__(
        self,
        config: Config,
        database: Database,
        *,
        registry: ModalityRegistry,
        engine: JobEngine,
        deletes: DeleteService,
    ):
        self.config = config
        self.database = database
        self.registry = registry
        self.engine = engine
        self.deletes = deletes
        self.reports = CommitmentReports(config.storage_commitment_reports_size)
        engine.register(StorageCommitmentScpJob.type_name, self._load)

    def _load(self, data: bytes) -> StorageCommitmentScpJob:
        return StorageCommitmentScpJob(_state_decoder.decode(data), self)

    # --- SCP

    async def requested(
        self,
        remote_aet: str,
        remote_host: str,
        called_aet: str,
        transaction_uid: str,
        items: list[CommitmentItem],
    ) -> str:
        """A modality's N-ACTION: queue the job that answers it; its ID."""
        state = ScpJobState(transaction_uid, remote_aet, remote_host, called_aet, items)
        return await self.engine.submit(StorageCommitmentScpJob(state, self))

    def check(self, items: list[CommitmentItem]) -> CommitmentResult:
        with self.database.read() as view:
            return check_instances(view, items)

    async def answer(self, state: ScpJobState) -> None:
        """Check the instances and send the N-EVENT-REPORT to the calling modality."""
        result = await asyncio.to_thread(self.check, state.items)
        modality = self.registry.modality_of_caller(state.remote_aet, state.remote_host)
        if modality is None:
            raise OrthancError(
                ErrorCode.INEXISTENT_ITEM,
                f"Storage commitment - unknown modality for AET {state.remote_aet!r}, cannot send the report",
            )
        node = self.registry.node(modality)
        try:
            await asyncio.to_thread(send_event_report, node, state.transaction_uid, result)
        except DicomNetworkError as error:
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error

    # --- SCU

    def _items(self, request: CommitmentRequest) -> list[CommitmentItem]:
        items = []
        with self.database.read() as view:
            for rid in request.resources:
                items.extend(_instances_of(view, rid))
        return items + request.instances  # in Orthanc's order (observed)

    async def request_resources(self, name: str, resources: list[str], timeout: int | None) -> str:
        """Ask the modality to commit to the instances of these resources (after a store); the
        transaction UID."""
        rids = [rid for rid in (parse_id(text) for text in resources) if rid is not None]
        answer = await self.request(name, CommitmentRequest(instances=[], resources=rids, timeout=timeout))
        return answer["ID"]

    async def request(self, name: str, request: CommitmentRequest) -> dict[str, str]:
        """Send the N-ACTION for the instances named to modality ``name``; the transaction's ID and path."""
        modality = self.registry.require(name)
        items = await asyncio.to_thread(self._items, request)  # a Python loop over every instance
        node = self.registry.node(modality, timeout=request.timeout)
        transaction_uid = new_uid()
        self.reports.add(transaction_uid, CommitmentReport(remote_aet=modality.aet))
        try:
            await asyncio.to_thread(request_commitment, node, transaction_uid, items)
        except DicomNetworkError as error:
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error
        return {"ID": transaction_uid, "Path": f"/storage-commitment/{transaction_uid}"}

    async def request_sent(self, node: RemoteNode, transaction_uid: str, sent: list[tuple[str, str]]) -> None:
        """The request of an asynchronous store job for the instances it sent (its transaction UID given)."""
        self.reports.add(transaction_uid, CommitmentReport(remote_aet=node.aet))
        items = [CommitmentItem(sop_class, sop_instance) for sop_class, sop_instance in sent]
        try:
            await asyncio.to_thread(request_commitment, node, transaction_uid, items)
        except DicomNetworkError as error:
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error

    def received(self, remote_aet: str, transaction_uid: str, result: CommitmentResult) -> None:
        """The N-EVENT-REPORT of a peer (on a DICOM server thread)."""
        self.reports.fill(remote_aet, transaction_uid, result)

    def report(self, transaction_uid: str) -> dict[str, Any]:
        report = self.reports.get(transaction_uid)
        if report is None:
            raise _unknown_transaction(transaction_uid)
        return report.to_json()

    async def remove(self, transaction_uid: str) -> None:
        """Delete here the instances the peer committed to (a transaction that succeeded only)."""
        report = self.reports.get(transaction_uid)
        if report is None:
            raise _unknown_transaction(transaction_uid)
        if report.result is None or report.result.failures:
            raise OrthancError(
                ErrorCode.BAD_SEQUENCE_OF_CALLS,
                "Cannot remove DICOM instances after failure in storage commitment transaction: "
                + transaction_uid,
                http_status=500,
            )
        for _, sop_instance_uid in report.result.success:
            with self.database.read() as view:
                rid = _stored_instance(view, sop_instance_uid)
            if rid is not None:
                try:
                    await self.deletes.delete(Level.INSTANCE, rid)
                except KeyError:  # deleted meanwhile
                    continue
