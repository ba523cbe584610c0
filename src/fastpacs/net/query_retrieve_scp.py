"""C-FIND, C-MOVE and C-GET SCP: patient-root and study-root queries and retrievals from the index.

The handlers are pynetdicom generators run on the association's thread.
Matching and answers come from :class:`fastpacs.services.queries.LocalQueryRetrieve`.

Statuses:

- C-FIND: Pending (0xFF00) per answer, then Success; 0xA900 (identifier
  does not match SOP class) for an identifier without a valid level or with
  a key that cannot be matched (a wildcard on a date...); Cancel (0xFE00)
  when the caller cancels.
- C-MOVE: 0xA801 when the destination AET is not a registered modality or
  cannot be reached; pynetdicom runs the C-STORE sub-operations over one
  association with the destination and answers Success, 0xB000 (some
  sub-operations failed) or 0xA702 (all failed).
- C-GET: the same sub-operations, sent back on the caller's association.
- A caller not allowed to make the request: the association is aborted.

Sub-operations decode each file (pynetdicom sends datasets here, converting
them to a transfer syntax the peer accepted when they are uncompressed).
"""

import logging
from collections.abc import Iterator
from typing import Any

from pydicom import dcmread
from pynetdicom import evt

from fastpacs.net.association import is_refused
from fastpacs.net.datasets import dataset_of, identifier_keys
from fastpacs.net.scu import StoredInstance, storage_contexts
from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.services.modalities import DicomRequest, ModalityRegistry
from fastpacs.services.queries import LocalQueryRetrieve, QueryError

logger = logging.getLogger(__name__)

PENDING = 0xFF00
CANCEL = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900


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
            answers = self.local.find(keys)
        except QueryError as error:
            logger.warning("C-FIND identifier refused: %s", error)
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        for answer in answers:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, dataset_of(answer)

    def move(self, event: evt.Event) -> Iterator[Any]:
        if is_refused(event, self.registry, DicomRequest.MOVE):
            return
        destinations = self.registry.by_aet(event.move_destination or "")
        if not destinations:
            logger.warning("C-MOVE refused: unknown destination AET %r", event.move_destination)
            yield None, None
            return
        _, destination = destinations[0]
        instances = self._instances(event)
        yield (
            destination.host,
            destination.port,
            {
                "ae_title": destination.aet,
                "contexts": storage_contexts(instances),
                "max_pdu": 0,
                "evt_handlers": NO_DELAY_HANDLERS,
            },
        )
        yield from self._sub_operations(event, instances)

    def get(self, event: evt.Event) -> Iterator[Any]:
        if is_refused(event, self.registry, DicomRequest.GET):
            return
        yield from self._sub_operations(event, self._instances(event))

    def _instances(self, event: evt.Event) -> list[StoredInstance]:
        try:
            return self.local.instances_to_retrieve(identifier_keys(event.identifier))
        except QueryError as error:
            logger.warning("retrieve identifier refused: %s", error)
            return []

    @staticmethod
    def _sub_operations(event: evt.Event, instances: list[StoredInstance]) -> Iterator[Any]:
        yield len(instances)
        for instance in instances:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, dcmread(instance.path)
