"""C-FIND, C-MOVE and C-GET SCP: patient-root and study-root queries and retrievals from the index.

The handlers are generators run on the association's thread: C-FIND's by
pynetdicom's Query/Retrieve service class, C-MOVE's and C-GET's by fastpacs's
:class:`~fastpacs.net.retrieve_service.RetrieveServiceClass`, whose module
describes what they yield and how the answers are sequenced (as Orthanc 1.10.1).
Matching and answers come from :class:`fastpacs.services.queries.LocalQueryRetrieve`.

Statuses:

- C-FIND: Pending (0xFF00) per answer, then Success; 0xC000 (unable to
  process, as Orthanc) for an identifier without a valid level or with a
  key that cannot be matched (a wildcard on a date...); Cancel (0xFE00)
  when the caller cancels, and after the answers when LimitFindResults or
  LimitFindInstances cut them (as Orthanc marks them incomplete).
- C-MOVE and C-GET: a :class:`~fastpacs.net.retrieve_service.Refusal`
  (0xC000, nothing sent, no association with a C-MOVE destination) for a
  retrieve Orthanc 1.10.1 refuses: an unknown level, a wildcard, an
  identifier naming nothing; for C-GET also no level, or any listed value
  naming nothing (:meth:`LocalQueryRetrieve.instances_to_retrieve`); for
  C-MOVE a destination AET that is not a registered modality, or whose DICOM
  TLS set-up is unusable.
- C-MOVE: the sub-operations go over one association with the destination
  (over DICOM TLS when its ``UseDicomTls`` is set).
- C-GET: the sub-operations are sent back on the caller's association.
- A caller not allowed to make the request: the association is aborted.

Sub-operations decode each file (pynetdicom sends datasets); a file whose
transfer syntax the peer did not accept is transcoded to an uncompressed one
it did (Orthanc's transcoding, :func:`fastpacs.net.scu.dataset_to_send`; not
when the peer modality's AllowTranscoding is off), and is
:class:`~fastpacs.net.retrieve_service.Unsendable` (a failed sub-operation)
when that is not possible.
"""

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import evt

from fastpacs.errors import OrthancError
from fastpacs.net.association import caller_of, is_refused
from fastpacs.net.datasets import dataset_of, identifier_keys
from fastpacs.net.retrieve_service import (
    CANCEL,
    PENDING,
    UNABLE_TO_PROCESS,
    Destination,
    Refusal,
    Unsendable,
)
from fastpacs.net.scu import (
    DicomNetworkError,
    StoredInstance,
    accepted_pairs,
    dataset_to_send,
    storage_contexts,
    tls_arguments,
)
from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.services.modalities import DicomRequest, ModalityRegistry
from fastpacs.services.queries import LocalQueryRetrieve, QueryError

logger = logging.getLogger(__name__)


class QueryRetrieveScp:
    """The ``EVT_C_FIND``, ``EVT_C_MOVE`` and ``EVT_C_GET`` handlers."""

    def __init__(self, registry: ModalityRegistry, local: LocalQueryRetrieve):
        self.registry = registry
        self.local = local

    def find(self, event: evt.Event) -> Iterator[tuple[int, Any]]:
        if is_refused(event, self.registry, DicomRequest.FIND):
            return
        keys = identifier_keys(event.identifier)
        try:
            answers, complete = self.local.find(keys)
        except QueryError as error:
            logger.warning("C-FIND identifier refused: %s", error)
            yield UNABLE_TO_PROCESS, None
            return
        for answer in answers:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, dataset_of(answer)
        if not complete:
            yield CANCEL, None  # Orthanc's end of answers the find limits cut

    def move(self, event: evt.Event) -> Iterator[Any]:
        if is_refused(event, self.registry, DicomRequest.MOVE):
            return
        destinations = self.registry.by_aet(event.move_destination or "")
        if not destinations:
            logger.warning("C-MOVE refused: unknown destination AET %r", event.move_destination)
            yield Refusal()
            return
        _, destination = destinations[0]
        try:
            node = self.registry.node(destination)
            tls = tls_arguments(node)
        except (OrthancError, DicomNetworkError) as error:  # DICOM TLS not configured, its files unusable
            logger.warning("C-MOVE refused: %s", error)
            yield Refusal()
            return
        try:
            instances = self.local.instances_to_retrieve(identifier_keys(event.identifier))
        except QueryError as error:
            logger.warning("C-MOVE refused: %s", error)
            yield Refusal()
            return
        yield len(instances)
        store_association = yield Destination(
            destination.aet,
            destination.host,
            destination.port,
            {
                "contexts": storage_contexts(instances, node.preferred_transfer_syntax),
                "max_pdu": 0,
                "tls_args": tls,
                "evt_handlers": NO_DELAY_HANDLERS,
            },
        )
        yield from _sub_operations(
            instances,
            accepted_pairs(store_association),
            transcode=node.transcode,
            peer_aet=node.aet,
            preferred=node.preferred_transfer_syntax,
        )

    def get(self, event: evt.Event) -> Iterator[Any]:
        if is_refused(event, self.registry, DicomRequest.GET):
            return
        try:
            instances = self.local.instances_to_retrieve(identifier_keys(event.identifier), every_value=True)
        except QueryError as error:
            logger.warning("C-GET refused: %s", error)
            yield Refusal()
            return
        caller = caller_of(event.assoc)
        transcode = all(modality.allow_transcoding for _, modality in self.registry.by_aet(caller.aet))
        yield len(instances)
        yield from _sub_operations(
            instances,
            accepted_pairs(event.assoc, as_scu=True),
            transcode=transcode,
            peer_aet=caller.aet,
            preferred=self.registry.config.dicom_scu_preferred_transfer_syntax,
        )


def _sub_operations(
    instances: list[StoredInstance],
    accepted: set[tuple[str, str]],
    *,
    transcode: bool,
    peer_aet: str,
    preferred: str,
) -> Iterator[Dataset | Unsendable]:
    """One dataset to send per instance, or an :class:`Unsendable` for an instance the peer cannot
    receive (no acceptable transfer syntax) or deleted since the retrieve listed it (its file gone)."""
    for instance in instances:
        yield _sub_operation(instance, accepted, transcode, peer_aet, preferred)


def _sub_operation(
    instance: StoredInstance, accepted: set[tuple[str, str]], transcode: bool, peer_aet: str, preferred: str
) -> Dataset | Unsendable:
    assert instance.path is not None
    unsendable = Unsendable(instance.sop_class_uid, instance.sop_instance_uid)
    try:
        dataset = dataset_to_send(instance, accepted, transcode, peer_aet, preferred=preferred)
        if dataset is not None:
            return dataset
        sendable = instance.sendable()
        return sendable if isinstance(sendable, Dataset) else dcmread(sendable)
    except DicomNetworkError as error:
        logger.warning("C-STORE sub-operation of %s failed: %s", instance.sop_instance_uid, error)
        return unsendable
    except FileNotFoundError:
        logger.warning("C-STORE sub-operation of %s: deleted meanwhile", instance.sop_instance_uid)
        return replace(unsendable, gone=True)
