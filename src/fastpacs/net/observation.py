"""Metrics and the log line of the associations the DICOM server accepts.

Each association is followed from its connection to its close: it counts in
``fastpacs_dicom_associations_active`` while open, and once closed it is
counted by outcome (released, aborted, rejected), timed, and logged in one
line (callers, outcome, operations served). Each DIMSE request served is
timed by its service (``fastpacs_dicom_operation_duration_seconds``, and
Orthanc's ``orthanc_find|move|get_scp_duration_ms``).

Handlers run on the association's thread; each association touches only
its own record.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association

from fastpacs.metrics import ServerMetrics
from fastpacs.net.association import caller_of


@dataclass
class _AssociationRecord:
    started: float
    accepted: bool = False
    outcome: str = "aborted"
    """Until it is released or rejected, an association that ends is aborted."""
    operations: int = 0


class AssociationObserver:
    """Follows the server's associations for :class:`ServerMetrics`."""

    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics
        self._records: dict[int, _AssociationRecord] = {}

    @property
    def handlers(self) -> list[tuple[Any, Callable[[evt.Event], None]]]:
        """The association events to bind on the server."""
        return [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._ended("rejected")),
            (evt.EVT_RELEASED, self._ended("released")),
            (evt.EVT_ABORTED, self._ended("aborted")),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]

    def timed(self, operation: str, handler: Callable[[evt.Event], Any]) -> Callable[[evt.Event], Any]:
        """``handler`` (C-ECHO, C-STORE: answers a status) timed as ``operation``."""

        def timed_handler(event: evt.Event) -> Any:
            started = time.perf_counter()
            try:
                return handler(event)
            finally:
                self._served(event.assoc, operation, time.perf_counter() - started)

        return timed_handler

    def timed_generator(
        self, operation: str, handler: Callable[[evt.Event], Iterator[Any]]
    ) -> Callable[[evt.Event], Iterator[Any]]:
        """``handler`` (C-FIND, C-MOVE, C-GET: yields its answers) timed until its last answer."""

        def timed_handler(event: evt.Event) -> Iterator[Any]:
            started = time.perf_counter()
            try:
                yield from handler(event)
            finally:
                self._served(event.assoc, operation, time.perf_counter() - started)

        return timed_handler

    def _served(self, assoc: Association, operation: str, seconds: float) -> None:
        self.metrics.observe_dicom_operation(operation, seconds)
        record = self._records.get(id(assoc))
        if record is not None:
            record.operations += 1

    def _on_open(self, event: evt.Event) -> None:
        self._records[id(event.assoc)] = _AssociationRecord(started=time.monotonic())

    def _on_accepted(self, event: evt.Event) -> None:
        record = self._records.get(id(event.assoc))
        if record is not None:
            record.accepted = True
            self.metrics.association_opened()

    def _ended(self, outcome: str) -> Callable[[evt.Event], None]:
        def on_end(event: evt.Event) -> None:
            record = self._records.get(id(event.assoc))
            if record is not None:
                record.outcome = outcome

        return on_end

    def _on_close(self, event: evt.Event) -> None:
        record = self._records.pop(id(event.assoc), None)
        if record is None or not (record.accepted or record.outcome == "rejected"):
            return  # a connection that never asked for an association
        caller = caller_of(event.assoc)
        self.metrics.association_closed(
            time.monotonic() - record.started,
            record.outcome,
            calling_aet=caller.aet,
            called_aet=caller.called_aet,
            remote=caller.host,
            operations=record.operations,
        )
