"""Storage Commitment Push Model (PS3.4 Annex J): the DIMSE messages, both roles.

A modality that sent instances asks an archive to commit to keep them: an
N-ACTION request (action type 1) on the Storage Commitment Push Model SOP
class, its well-known instance, with a Transaction UID and the Referenced SOP
Sequence (class and instance UIDs). The archive answers the N-ACTION at once,
checks the instances, and later sends an N-EVENT-REPORT on a new association
to the modality: event type 1 when all are stored, 2 when some failed (the
Failed SOP Sequence, each with its Failure Reason).

fastpacs plays both roles, as Orthanc 1.10.1 does:

- as the archive (SCP), :class:`StorageCommitmentScp` handles the N-ACTION
  of a modality allowed to (``AllowNAction``; no ``DicomAlwaysAllow*`` option
  covers it, a caller not allowed has its association aborted, as Orthanc
  does) and hands the transaction to the service, whose job checks the index
  and calls :func:`send_event_report`;
- as the modality (SCU), :func:`request_commitment` sends the N-ACTION, and
  :class:`StorageCommitmentScp` receives the N-EVENT-REPORT of a peer allowed
  to send it (``AllowEventReport``).

The associations fastpacs opens for the N-EVENT-REPORT propose the SCP role
for the SOP class (SCP/SCU role selection), as Orthanc does; the DICOM
server accepts both roles.
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

import msgspec
from pydicom.dataset import Dataset
from pynetdicom import build_context, build_role, evt

from fastpacs.net.association import caller_of, is_refused
from fastpacs.net.scu import DicomNetworkError, RemoteNode, open_association
from fastpacs.net.transfer_syntaxes import UNCOMPRESSED
from fastpacs.services.modalities import DicomRequest, ModalityRegistry

logger = logging.getLogger(__name__)

STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
"""The well-known SOP instance of the Push Model (PS3.4 J.3.2)."""
REQUEST_STORAGE_COMMITMENT = 1
"""The one action type of the N-ACTION (PS3.4 J.3.2.1)."""
ALL_SUCCEEDED = 1
SOME_FAILED = 2
"""Event types of the N-EVENT-REPORT (PS3.4 J.3.3)."""

NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
"""Failure reasons (PS3.4 J.3.3.1.1) for an instance not stored and one stored with another SOP class."""
FAILURE_DESCRIPTIONS = {
    # The meanings PS3.4 Table J.3-2 gives, which Orthanc 1.10.1 shows in /storage-commitment/{uid}.
    0x0110: "A general failure in processing the operation was encountered",
    NO_SUCH_OBJECT_INSTANCE: (
        "One or more of the elements in the Referenced SOP Instance Sequence was not available"
    ),
    0x0213: "The SCP does not currently have enough resources to store the requested SOP Instance(s)",
    0x0122: (
        "Storage Commitment has been requested for a SOP Instance with a SOP Class "
        "that is not supported by the SCP"
    ),
    CLASS_INSTANCE_CONFLICT: (
        "The SOP Class of an element in the Referenced SOP Instance Sequence did not correspond "
        "to the SOP class registered for this SOP Instance at the SCP"
    ),
    0x0131: "The Transaction UID of the Storage Commitment Request is already in use",
}

SUCCESS = 0x0000
NOT_AUTHORIZED = 0x0124
NO_SUCH_ACTION_TYPE = 0x0123
NO_SUCH_EVENT_TYPE = 0x0113
NO_SUCH_SOP_INSTANCE = 0x0112
NO_SUCH_SOP_CLASS = 0x0118
INVALID_ARGUMENT = 0x0115
"""N-ACTION and N-EVENT-REPORT response statuses (PS3.7 C). Orthanc 1.10.1 answers no valid status
to a malformed N-ACTION (observed); fastpacs answers these."""


class CommitmentItem(NamedTuple):
    """One instance of a transaction: (SOP Class UID, SOP Instance UID)."""

    sop_class_uid: str
    sop_instance_uid: str


class CommitmentFailure(NamedTuple):
    sop_class_uid: str
    sop_instance_uid: str
    reason: int


class CommitmentResult(msgspec.Struct, array_like=True):
    """What the archive found for a transaction: the instances committed and those that failed."""

    success: list[CommitmentItem]
    failures: list[CommitmentFailure]


def _referenced(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def action_information(transaction_uid: str, items: list[CommitmentItem]) -> Dataset:
    """The dataset of the N-ACTION request."""
    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    dataset.ReferencedSOPSequence = [_referenced(*item) for item in items]
    return dataset


def event_information(transaction_uid: str, result: CommitmentResult) -> tuple[int, Dataset]:
    """The event type and dataset of the N-EVENT-REPORT request."""
    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    if result.failures:
        failed = []
        for sop_class_uid, sop_instance_uid, reason in result.failures:
            item = _referenced(sop_class_uid, sop_instance_uid)
            item.FailureReason = reason
            failed.append(item)
        dataset.FailedSOPSequence = failed
    dataset.ReferencedSOPSequence = [_referenced(*item) for item in result.success]
    return (SOME_FAILED if result.failures else ALL_SUCCEEDED), dataset


class MalformedRequestError(ValueError):
    """A dataset without what Annex J requires."""


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    if value is None or not str(value).strip():
        raise MalformedRequestError(f"missing {keyword}")
    return str(value).strip()


def _items(dataset: Dataset, keyword: str) -> list[Dataset]:
    return list(dataset.get(keyword) or [])


def read_action(dataset: Dataset | None) -> tuple[str, list[CommitmentItem]]:
    """Transaction UID and referenced instances of an N-ACTION request."""
    if dataset is None:
        raise MalformedRequestError("no action information")
    items = [
        CommitmentItem(_text(item, "ReferencedSOPClassUID"), _text(item, "ReferencedSOPInstanceUID"))
        for item in _items(dataset, "ReferencedSOPSequence")
    ]
    return _text(dataset, "TransactionUID"), items


def read_event(dataset: Dataset | None) -> tuple[str, CommitmentResult]:
    """Transaction UID and result of an N-EVENT-REPORT request."""
    if dataset is None:
        raise MalformedRequestError("no event information")
    success = [
        CommitmentItem(_text(item, "ReferencedSOPClassUID"), _text(item, "ReferencedSOPInstanceUID"))
        for item in _items(dataset, "ReferencedSOPSequence")
    ]
    failures = [
        CommitmentFailure(
            _text(item, "ReferencedSOPClassUID"),
            _text(item, "ReferencedSOPInstanceUID"),
            int(item.get("FailureReason", 0x0110)),
        )
        for item in _items(dataset, "FailedSOPSequence")
    ]
    return _text(dataset, "TransactionUID"), CommitmentResult(success, failures)


# --- SCU: the associations fastpacs opens ---------------------------------------------------------


def request_commitment(node: RemoteNode, transaction_uid: str, items: list[CommitmentItem]) -> None:
    """Send the N-ACTION of a transaction; :class:`DicomNetworkError` unless the peer answers Success."""
    context = build_context(STORAGE_COMMITMENT_PUSH_MODEL, list(UNCOMPRESSED))
    assoc = open_association(node, [context])
    try:
        status, _ = assoc.send_n_action(
            action_information(transaction_uid, items),
            REQUEST_STORAGE_COMMITMENT,
            STORAGE_COMMITMENT_PUSH_MODEL,
            STORAGE_COMMITMENT_INSTANCE,
        )
    finally:
        if assoc.is_established:
            assoc.release()
    _check(node, "N-ACTION", status.get("Status") if status else None)


def send_event_report(node: RemoteNode, transaction_uid: str, result: CommitmentResult) -> None:
    """Send the N-EVENT-REPORT of a transaction on a new association, as the SCP of the SOP class."""
    context = build_context(STORAGE_COMMITMENT_PUSH_MODEL, list(UNCOMPRESSED))
    role = build_role(STORAGE_COMMITMENT_PUSH_MODEL, scu_role=False, scp_role=True)
    assoc = open_association(node, [context], ext_neg=[role])
    event_type, dataset = event_information(transaction_uid, result)
    try:
        status = assoc.send_n_event_report(
            dataset, event_type, STORAGE_COMMITMENT_PUSH_MODEL, STORAGE_COMMITMENT_INSTANCE
        )[0]
    finally:
        if assoc.is_established:
            assoc.release()
    _check(node, "N-EVENT-REPORT", status.get("Status") if status else None)


def _check(node: RemoteNode, service: str, code: int | None) -> None:
    """Orthanc 1.10.1's errors (observed): no answer, or an answer other than Success."""
    if code is None:
        raise DicomNetworkError(
            f"Storage commitment - Unable to read {service} response from AET: {node.aet}"
        )
    if code != SUCCESS:
        raise DicomNetworkError(
            f"Storage commitment - The request cannot be handled by remote AET: {node.aet}"
        )


# --- the DICOM server's handlers --------------------------------------------------------------------

CommitmentRequested = Callable[[str, str, str, str, list[CommitmentItem]], Coroutine[Any, Any, Any]]
"""(remote AET, remote host, called AET, transaction UID, items) → queue the SCP's job."""
EventReported = Callable[[str, str, CommitmentResult], None]
"""(remote AET, transaction UID, result) → fill the report of a transaction fastpacs requested."""


class StorageCommitmentScp:
    """The ``EVT_N_ACTION`` and ``EVT_N_EVENT_REPORT`` handlers (on the association's thread)."""

    def __init__(
        self,
        registry: ModalityRegistry,
        loop: asyncio.AbstractEventLoop,
        requested: CommitmentRequested,
        reported: EventReported,
    ):
        self.registry = registry
        self.loop = loop
        self.requested = requested
        self.reported = reported

    def n_action(self, event: evt.Event) -> tuple[int, Dataset | None]:
        if is_refused(event, self.registry, DicomRequest.N_ACTION):
            return NOT_AUTHORIZED, None
        request = event.request
        if str(request.RequestedSOPClassUID) != STORAGE_COMMITMENT_PUSH_MODEL:
            return NO_SUCH_SOP_CLASS, None
        if str(request.RequestedSOPInstanceUID) != STORAGE_COMMITMENT_INSTANCE:
            return NO_SUCH_SOP_INSTANCE, None
        if event.action_type != REQUEST_STORAGE_COMMITMENT:
            return NO_SUCH_ACTION_TYPE, None
        try:
            transaction_uid, items = read_action(event.action_information)
        except (ValueError, TypeError) as error:  # MalformedRequestError, or values of the wrong VR
            logger.warning("storage commitment request refused: %s", error)
            return INVALID_ARGUMENT, None
        caller = caller_of(event.assoc)
        # Queued before answering; the job runs on the event loop and opens its own association.
        asyncio.run_coroutine_threadsafe(
            self.requested(caller.aet, caller.host, caller.called_aet, transaction_uid, items), self.loop
        ).result()
        return SUCCESS, None

    def n_event_report(self, event: evt.Event) -> tuple[int, Dataset | None]:
        if is_refused(event, self.registry, DicomRequest.EVENT_REPORT):
            return NOT_AUTHORIZED, None
        if event.event_type not in (ALL_SUCCEEDED, SOME_FAILED):
            return NO_SUCH_EVENT_TYPE, None
        try:
            transaction_uid, result = read_event(event.event_information)
        except (ValueError, TypeError) as error:  # MalformedRequestError, or values of the wrong VR
            logger.warning("storage commitment report refused: %s", error)
            return INVALID_ARGUMENT, None
        self.reported(caller_of(event.assoc).aet, transaction_uid, result)
        return SUCCESS, None
