"""C-FIND, C-MOVE and C-GET SCP: patient-root and study-root queries and retrievals from the index.

The handlers are pynetdicom generators run on the association's thread.
Matching and answers come from :class:`fastpacs.services.queries.LocalQueryRetrieve`.

Statuses:

- C-FIND: Pending (0xFF00) per answer, then Success; 0xC000 (unable to
  process, as Orthanc) for an identifier without a valid level or with a
  key that cannot be matched (a wildcard on a date...); Cancel (0xFE00)
  when the caller cancels, and after the answers when LimitFindResults or
  LimitFindInstances cut them (as Orthanc marks them incomplete).
- C-MOVE: 0xA801 when the destination AET is not a registered modality or
  cannot be reached (over DICOM TLS when its ``UseDicomTls`` is set) —
  Orthanc 1.10.1 answers 0xC000 there, but pynetdicom answers 0xA801 by
  itself when its association with the destination fails;
  pynetdicom runs the C-STORE sub-operations over one association with the
  destination and answers Success, 0xB000 (some sub-operations failed) or
  0xA702 (all failed).
- C-GET: the same sub-operations, sent back on the caller's association.
- A retrieve Orthanc 1.10.1 refuses (an unknown level, a wildcard, an
  identifier naming nothing; for C-GET also no level, or any listed value
  naming nothing: :meth:`LocalQueryRetrieve.instances_to_retrieve`) is
  refused with 0xC000 and nothing sent (:func:`_refusal`).
- A caller not allowed to make the request: the association is aborted.

Sub-operations decode each file (pynetdicom sends datasets); a file whose
transfer syntax the peer did not accept is transcoded to an uncompressed one
it did (Orthanc's transcoding, :func:`fastpacs.net.scu.dataset_to_send`; not
when the peer modality's AllowTranscoding is off), and counts as a failed
sub-operation when that is not possible.
"""

import logging
from collections.abc import Callable, Iterator
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import StoragePresentationContexts, build_context, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

from fastpacs.errors import OrthancError
from fastpacs.net.association import caller_of, is_refused
from fastpacs.net.datasets import dataset_of, identifier_keys
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

PENDING = 0xFF00
CANCEL = 0xFE00
UNABLE_TO_PROCESS = 0xC000


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
            yield None, None
            return
        _, destination = destinations[0]
        try:
            node = self.registry.node(destination)
            tls = tls_arguments(node)
        except (OrthancError, DicomNetworkError) as error:  # DICOM TLS not configured, its files unusable
            logger.warning("C-MOVE refused: %s", error)
            yield None, None
            return
        try:
            instances = self.local.instances_to_retrieve(identifier_keys(event.identifier))
        except QueryError as error:
            logger.warning("C-MOVE refused: %s", error)
            contexts = [build_context(Verification), *StoragePresentationContexts]
            address = {"ae_title": destination.aet, "contexts": contexts, "tls_args": tls}
            yield destination.host, destination.port, address
            yield from _refusal()
            return
        store_association: list[Association] = []

        def established(sub_event: evt.Event) -> None:
            store_association.append(sub_event.assoc)

        yield (
            destination.host,
            destination.port,
            {
                "ae_title": destination.aet,
                "contexts": storage_contexts(instances, node.preferred_transfer_syntax),
                "max_pdu": 0,
                "tls_args": tls,
                "evt_handlers": [*NO_DELAY_HANDLERS, (evt.EVT_ESTABLISHED, established)],
            },
        )
        yield from _sub_operations(
            event,
            instances,
            lambda: accepted_pairs(store_association[0]) if store_association else set(),
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
            yield from _refusal()
            return
        caller = caller_of(event.assoc)
        transcode = all(modality.allow_transcoding for _, modality in self.registry.by_aet(caller.aet))
        yield from _sub_operations(
            event,
            instances,
            lambda: accepted_pairs(event.assoc, as_scu=True),
            transcode=transcode,
            peer_aet=caller.aet,
            preferred=self.registry.config.dicom_scu_preferred_transfer_syntax,
        )


def _refusal() -> Iterator[Any]:
    """Orthanc's refusal of a retrieve (0xC000, nothing sent), as closely as pynetdicom allows.

    pynetdicom (3.0.4) takes a handler's final status only after it yielded
    the number of sub-operations (and, for C-MOVE, after it associated with
    the destination, and answers 0xA801 if it cannot: :meth:`QueryRetrieveScp.move`
    proposes Verification and pynetdicom's common storage contexts, so that
    any storage SCP accepts the association, and sends no C-STORE on it);
    zero sub-operations would make it answer Success. So one sub-operation
    is announced, then refused: the answer is 0xC000 with 0 completed and 0
    warning sub-operations, as Orthanc's, but 1 failed where Orthanc says 0,
    and an empty Failed SOP Instance UID List where Orthanc sends no identifier.
    """
    yield 1
    yield UNABLE_TO_PROCESS, None


def _sub_operations(
    event: evt.Event,
    instances: list[StoredInstance],
    accepted: Callable[[], set[tuple[str, str]]],
    *,
    transcode: bool,
    peer_aet: str,
    preferred: str,
) -> Iterator[Any]:
    """The number of C-STORE sub-operations, then one dataset per instance (pynetdicom sends them).

    An instance the peer cannot receive (no acceptable transfer syntax), or
    deleted since the retrieve listed it (its file gone), is given to
    pynetdicom as :func:`_unsendable`: a failed sub-operation.
    """
    yield len(instances)
    for instance in instances:
        if event.is_cancelled:
            yield CANCEL, None
            return
        assert instance.path is not None
        try:
            dataset = dataset_to_send(instance, accepted(), transcode, peer_aet, preferred=preferred)
            if dataset is None:
                dataset = dcmread(instance.path)
        except DicomNetworkError as error:
            logger.warning("C-STORE sub-operation of %s failed: %s", instance.sop_instance_uid, error)
            dataset = _unsendable(instance)
        except FileNotFoundError:
            logger.warning("C-STORE sub-operation of %s: deleted meanwhile", instance.sop_instance_uid)
            dataset = _unsendable(instance)
        yield PENDING, dataset


def _unsendable(instance: StoredInstance) -> Dataset:
    """A stand-in for an instance that cannot be sent, naming it: a failed sub-operation.

    pynetdicom's ``send_c_store`` refuses a dataset without a Transfer Syntax
    UID in its file meta (AttributeError) before sending anything; the SCP then
    counts the sub-operation failed, one fewer remaining, and lists its SOP
    Instance UID in the Failed SOP Instance UID List. (A non-dataset would be
    counted failed too, but listed as an empty UID and left among the remaining.)
    """
    stand_in = Dataset()
    stand_in.SOPClassUID = instance.sop_class_uid
    stand_in.SOPInstanceUID = instance.sop_instance_uid
    return stand_in
