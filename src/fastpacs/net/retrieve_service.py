"""fastpacs's Query/Retrieve service class: C-GET and C-MOVE sequenced as Orthanc 1.10.1 sequences them.

pynetdicom's ``QueryRetrieveServiceClass`` (3.0.4) decides things Orthanc
decides otherwise: it takes a handler's final status only after one
sub-operation was announced (and, for C-MOVE, after it associated with the
destination), answers 0xA801 by itself when the destination cannot be
reached, adds a Failed SOP Instance UID List to every failure, warning and
cancel, and ends with a last pending response and a Remaining count.
:class:`RetrieveServiceClass` keeps its C-FIND and its DIMSE primitives
(``C_GET``, ``C_MOVE``, ``send_c_store``, ``ApplicationEntity.associate``)
and replaces the sequencing of C-GET and C-MOVE.

The handler protocol (``EVT_C_GET`` and ``EVT_C_MOVE`` handlers are generators):

1. The handler yields the number of C-STORE sub-operations, or a
   :class:`Refusal` (the retrieve is answered with its status at once).
2. C-MOVE only: it yields the :class:`Destination`, or a :class:`Refusal`.
   The service associates with it, and the ``yield`` evaluates to that
   association (its accepted contexts say what the destination can receive).
3. For each sub-operation: the ``Dataset`` to send, or an :class:`Unsendable`
   naming an instance that cannot be sent (no acceptable presentation
   context, file deleted meanwhile), a failed sub-operation.

The service, not the handler, looks for a C-CANCEL before each sub-operation
(and stops asking the handler for more when the association is being
released or aborted).

Answers, as measured on Orthanc 1.10.1 (tests/differential/test_retrieve_refusals_vs_orthanc.py):

- No final response carries a data set (no Failed SOP Instance UID List),
  nor a Number of Remaining Sub-operations, except a Cancel's.
- A refusal: one response, its status (0xC000) and zero counts; nothing sent,
  no association with a C-MOVE destination.
- C-GET: a pending response after each sub-operation, then Success, 0xB000
  (some failed) or 0xA702 (all failed). A C-STORE the caller refuses (or,
  as Orthanc sends it anyway, one whose SCP role it did not accept) is a failed
  sub-operation and the retrieve goes on; an instance that cannot be sent (no
  presentation context for its SOP class, no transfer syntax it can be
  transcoded to) ends it: 0xC000 with the counts so far, it among the failed;
  so does one deleted since the retrieve listed it, not counted.
- C-MOVE: the destination is associated with once the sub-operations are
  counted; one that cannot be associated with is 0xC000 with zero counts. A
  pending response after each sub-operation but the last, whose response is
  the final one. The first failed sub-operation ends the retrieve: 0xC000 with
  zero counts (Orthanc stops at the C-STORE error and forgets its counts).
- C-CANCEL: 0xFE00 with the counts and the Remaining ones.
"""

import logging
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import QueryRetrieveServiceClass, attempt
from pynetdicom.status import code_to_category

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
UNABLE_TO_PROCESS = 0xC000
SUB_OPERATIONS_FAILED = 0xB000
"""Warning: the sub-operations are complete, one or more failed."""
UNABLE_TO_PERFORM_SUB_OPERATIONS = 0xA702
"""Failure: every sub-operation failed."""
MAX_SUB_OPERATIONS = 0xFFFF
"""The counts are US values: more sub-operations cannot be reported."""
TOO_MANY_GET, TOO_MANY_MOVE = 0xC416, 0xC516
"""pynetdicom's statuses for more than :data:`MAX_SUB_OPERATIONS`."""


@dataclass(frozen=True)
class Refusal:
    """A retrieve refused before any sub-operation: a final response with this status and zero counts."""

    status: int = UNABLE_TO_PROCESS


@dataclass(frozen=True)
class Destination:
    """Where a C-MOVE sends its sub-operations: ``association`` holds ``ApplicationEntity.associate``'s
    other keyword arguments (presentation contexts, TLS, event handlers)."""

    ae_title: str
    host: str
    port: int
    association: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unsendable:
    """An instance that cannot be sent: a failed sub-operation, nothing sent.

    ``gone``: its file was deleted since the retrieve listed it (rather than
    the peer being unable to receive it).
    """

    sop_class_uid: str
    sop_instance_uid: str
    gone: bool = False


SubOperation = Dataset | Unsendable
Retrieve = C_GET | C_MOVE


@dataclass
class _Counts:
    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0

    def count(self, store_status: int | None) -> None:
        """One sub-operation done, by the C-STORE status it got (``None``: it could not be sent)."""
        category = code_to_category(store_status) if store_status is not None else "Failure"
        self.remaining -= 1
        if category == "Success":
            self.completed += 1
        elif category == "Warning":
            self.warning += 1
        else:
            self.failed += 1


class RetrieveServiceClass(QueryRetrieveServiceClass):
    """pynetdicom's Query/Retrieve service class with Orthanc 1.10.1's C-GET and C-MOVE sequences."""

    def _get_scp(self, req: C_GET, context: PresentationContext) -> None:
        cx_id = cast(int, context.context_id)
        handler = self._handler(evt.EVT_C_GET, req, context)
        if handler is None:
            return
        with closing(handler):
            total = self._next_yield(handler, req, cx_id, 0xC413, "the number of sub-operations")
            if total is None or self._answered_before_sub_operations(req, cx_id, total, TOO_MANY_GET):
                return
            self._get_sub_operations(handler, req, cx_id, total)

    def _get_sub_operations(self, handler: Iterator[Any], req: C_GET, cx_id: int, total: int) -> None:
        counts = _Counts(remaining=total)
        for sub_operation in self._sub_operations(handler, req, cx_id, counts):
            if isinstance(sub_operation, Dataset):
                counts.count(self._store(self.assoc, sub_operation, req, total - counts.remaining))
            elif sub_operation.gone:
                logger.warning("C-GET ended: %s was deleted meanwhile", sub_operation.sop_instance_uid)
                self._respond(req, cx_id, UNABLE_TO_PROCESS, counts)  # as Orthanc: not counted failed
                return
            else:
                counts.count(None)
                if not self._storage_role_refused(sub_operation.sop_class_uid):
                    logger.warning("C-GET ended: %s cannot be sent", sub_operation.sop_instance_uid)
                    self._respond(req, cx_id, UNABLE_TO_PROCESS, counts)
                    return
            self._respond(req, cx_id, PENDING, counts, remaining=True)
        if counts.remaining == 0 and self.assoc.is_established:
            self._respond(req, cx_id, _final_status(total, counts), counts)

    def _storage_role_refused(self, sop_class_uid: str) -> bool:
        """Whether the C-GET caller accepted presentation contexts for ``sop_class_uid``, but the SCP
        role on none of them: Orthanc sends the C-STORE all the same, the caller refuses it."""
        contexts = [cx for cx in self.assoc.accepted_contexts if cx.abstract_syntax == sop_class_uid]
        return bool(contexts) and not any(cx.as_scu for cx in contexts)

    def _move_scp(self, req: C_MOVE, context: PresentationContext) -> None:
        cx_id = cast(int, context.context_id)
        handler = self._handler(evt.EVT_C_MOVE, req, context)
        if handler is None:
            return
        with closing(handler):
            total = self._next_yield(handler, req, cx_id, 0xC513, "the number of sub-operations")
            if total is None or self._answered_before_sub_operations(req, cx_id, total, TOO_MANY_MOVE):
                return
            destination = self._next_yield(handler, req, cx_id, 0xC514, "the destination")
            if destination is None or self._refused(req, cx_id, destination):
                return
            store_assoc = self._associate(req, cx_id, cast(Destination, destination))
            if store_assoc is None:
                return
            try:
                self._move_sub_operations(handler, req, cx_id, total, store_assoc)
            finally:
                store_assoc.release()

    def _move_sub_operations(
        self, handler: Iterator[Any], req: C_MOVE, cx_id: int, total: int, store_assoc: Association
    ) -> None:
        counts = _Counts(remaining=total)
        for sub_operation in self._sub_operations(handler, req, cx_id, counts, reply=store_assoc):
            store_status = (
                None
                if isinstance(sub_operation, Unsendable)
                else self._store(store_assoc, sub_operation, req, total - counts.remaining)
            )
            counts.count(store_status)
            if counts.failed:
                logger.warning("C-MOVE to %s ended by a failed sub-operation", req.MoveDestination)
                self._respond(req, cx_id, UNABLE_TO_PROCESS, _Counts(remaining=0))
                return
            if counts.remaining:
                self._respond(req, cx_id, PENDING, counts, remaining=True)
        if counts.remaining == 0 and self.assoc.is_established:
            self._respond(req, cx_id, _final_status(total, counts), counts)

    def _respond(
        self,
        req: Retrieve,
        cx_id: int,
        status: int,
        counts: _Counts | None = None,
        *,
        remaining: bool = False,
    ) -> None:
        """Send a response: ``status``, the counts if given (with the Remaining ones if ``remaining``)."""
        response = _response(req, counts, remaining=remaining)
        response.Status = status
        self.dimse.send_msg(response, cx_id)

    def _handler(
        self, event: evt.InterventionEvent, req: Retrieve, context: PresentationContext
    ) -> Iterator[Any] | None:
        """The handler's generator (``None`` when it failed or ended the association: answered already)."""
        cx_id = cast(int, context.context_id)
        with attempt(_response(req), self.dimse, cx_id, self.assoc) as ctx:
            ctx.error_msg = f"Exception in handler bound to 'evt.{event.name}'"
            ctx.error_status = 0xC411 if isinstance(req, C_GET) else 0xC511
            generator = evt.trigger(
                self.assoc,
                event,
                {"request": req, "context": context.as_tuple, "_is_cancelled": self.is_cancelled},
            )
        if not ctx.success or not self.assoc.is_established:
            return None
        return cast(Iterator[Any], generator)

    def _next_yield(
        self, handler: Iterator[Any], req: Retrieve, cx_id: int, error_status: int, expected: str
    ) -> Any:
        """The handler's next yield (``None`` when it failed or ended the association: answered already)."""
        with attempt(_response(req), self.dimse, cx_id) as ctx:
            ctx.error_msg = f"The {req.msg_type} handler did not yield {expected}"
            ctx.error_status = error_status
            answer = next(handler)
        if not ctx.success or not self.assoc.is_established:
            return None
        return answer

    def _answered_before_sub_operations(self, req: Retrieve, cx_id: int, total: Any, too_many: int) -> bool:
        """Answer a refusal, no sub-operations (Success) or too many; ``False`` when there is work to do."""
        if self._refused(req, cx_id, total):
            return True
        if total == 0:
            self._respond(req, cx_id, SUCCESS, _Counts(remaining=0))
            return True
        if total > MAX_SUB_OPERATIONS:
            logger.error("%s: %d sub-operations, more than the counts can hold", req.msg_type, total)
            self._respond(req, cx_id, too_many)
            return True
        return False

    def _refused(self, req: Retrieve, cx_id: int, answer: Any) -> bool:
        if not isinstance(answer, Refusal):
            return False
        self._respond(req, cx_id, answer.status, _Counts(remaining=0))
        return True

    def _associate(self, req: C_MOVE, cx_id: int, destination: Destination) -> Association | None:
        """The association with the C-MOVE destination, or ``None`` when there is none: then the
        C-MOVE is answered as Orthanc answers it, 0xC000 with zero counts."""
        with attempt(_response(req, _Counts(remaining=0)), self.dimse, cx_id) as ctx:
            ctx.error_msg = f"C-MOVE: association with {destination.ae_title} failed"
            ctx.error_status = UNABLE_TO_PROCESS
            store_assoc = self.ae.associate(
                destination.host, destination.port, ae_title=destination.ae_title, **destination.association
            )
        if not ctx.success:
            return None
        if store_assoc.is_established:
            return store_assoc
        logger.warning(
            "C-MOVE: no association with %s at %s:%d",
            destination.ae_title,
            destination.host,
            destination.port,
        )
        if store_assoc.dul.socket is not None:
            store_assoc.dul.socket.close()  # as pynetdicom: a refused association leaves its socket open
        self._respond(req, cx_id, UNABLE_TO_PROCESS, _Counts(remaining=0))
        return None

    def _sub_operations(
        self,
        handler: Iterator[Any],
        req: Retrieve,
        cx_id: int,
        counts: _Counts,
        reply: Association | None = None,
    ) -> Iterator[SubOperation]:
        """The handler's sub-operations, until the announced number, a C-CANCEL or the association's end.

        ``reply`` is sent into the handler with the first request for a
        sub-operation (the C-MOVE destination's association); a cancel is
        answered here.
        """
        while counts.remaining:
            if self.assoc.acse.is_aborted() or self.assoc.acse.is_release_requested():
                logger.warning("%s ended: the association is being released or aborted", req.msg_type)
                return
            if self.is_cancelled(cast(int, req.MessageID)):
                logger.info("%s cancelled by the peer (C-CANCEL)", req.msg_type)
                self._respond(req, cx_id, CANCEL, counts, remaining=True)
                return
            try:
                sub_operation = handler.send(reply)
            except StopIteration:
                logger.error("The %s handler yielded fewer sub-operations than it announced", req.msg_type)
                self._respond(req, cx_id, UNABLE_TO_PROCESS, counts)
                return
            reply = None
            yield sub_operation

    def _store(self, assoc: Association, dataset: Dataset, req: Retrieve, index: int) -> int | None:
        """The C-STORE sub-operation number ``index`` (from 0): its status, ``None`` when none came back.

        Its Message ID follows the request's, as pynetdicom numbers them; a
        C-MOVE's names the C-MOVE's originator (this AE and the request's ID).
        """
        number = cast(int, req.MessageID)
        message_id = (number + index) % 0xFFFF + 1
        move = (
            {"originator_aet": self.ae.ae_title, "originator_id": number} if isinstance(req, C_MOVE) else {}
        )
        try:
            status = assoc.send_c_store(dataset, msg_id=message_id, **move)
        except (RuntimeError, AttributeError, ValueError) as error:  # send_c_store's refusals (documented)
            logger.warning("C-STORE sub-operation of %s failed: %s", dataset.get("SOPInstanceUID"), error)
            return None
        return cast(int | None, status.get("Status"))


def _final_status(total: int, counts: _Counts) -> int:
    if not counts.failed and not counts.warning:
        return SUCCESS
    return UNABLE_TO_PERFORM_SUB_OPERATIONS if counts.failed == total else SUB_OPERATIONS_FAILED


def _response(req: Retrieve, counts: _Counts | None = None, *, remaining: bool = False) -> Retrieve:
    """A response to ``req``, its status not set, with ``counts`` if given (Remaining if ``remaining``)."""
    response = C_GET() if isinstance(req, C_GET) else C_MOVE()
    response.MessageID = req.MessageID
    response.MessageIDBeingRespondedTo = req.MessageID
    response.AffectedSOPClassUID = req.AffectedSOPClassUID
    if counts is not None:
        if remaining:
            response.NumberOfRemainingSuboperations = counts.remaining
        response.NumberOfCompletedSuboperations = counts.completed
        response.NumberOfFailedSuboperations = counts.failed
        response.NumberOfWarningSuboperations = counts.warning
    return response
