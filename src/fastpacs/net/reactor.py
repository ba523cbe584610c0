"""Event-driven association threads for the DICOM server, instead of pynetdicom's polling ones.

pynetdicom (3.0.4) runs two threads per association, and both poll: the
upper layer (DUL) thread sleeps 1 ms whenever neither its socket nor its
queue has work, and the association thread sleeps 1 ms between two looks at
its queues. Each step of a C-STORE (a PDU received, the request handed to
the handler, the answer handed back for sending) waits out such a sleep,
and every open association wakes both threads about a thousand times a
second: 8 idle associations cost the server about a third of a core.

Here both threads block until there is work instead:

- the DUL thread waits in ``poll`` on its socket and on a wake-up socket pair,
  written to whenever another thread gives it a primitive to send (or an
  event, or kills it);
- the association thread waits on an event set whenever the DUL gives it a
  DIMSE message or a primitive (release, abort), or when it is killed.

The waits are capped (:data:`TIMER_CHECK_SECONDS`) so that the timers
pynetdicom checks in its loops (ARTIM, network timeout) still fire. Apart
from the waits and the order of the steps of a release (marked released before the
answer is sent), the loops are pynetdicom's own, step for step.

The association socket asks ``poll``, not ``select``, whether data waits
(:class:`_PolledSocket`). Three more departures from pynetdicom, each on the
path of every C-STORE:

- the DUL reads each PDU with :func:`fastpacs.net.pdus.receive` (one buffer
  of the PDU's length instead of 4096-byte reads) and hands P-DATA-TF PDUs on
  as :class:`~fastpacs.net.pdus.ReceivedPData` (views, no copies);
- the association's DIMSE provider is :class:`~fastpacs.net.dimse.ServerDimseProvider`
  (C-STORE requests read and responses written without pydicom);
- the server never calls ``gc.collect``, which pynetdicom's server does
  every 60th turn of its accept loop (every 60 associations, or every 30 s
  when idle): a full collection of the whole server process, every thread
  stopped meanwhile. Ended associations are reclaimed by the collector's
  ordinary generations like any other cyclic garbage.

And C-GET and C-MOVE requests are served by fastpacs's own service class,
:class:`~fastpacs.net.retrieve_service.RetrieveServiceClass`, which answers them as Orthanc 1.10.1 does.
"""

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from typing import Any, cast

from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from fastpacs.net.dimse import ServerDimseProvider
from fastpacs.net.pdus import P_DATA_TF_TYPE, PDU_HEADER, PDU_TYPES, ReceivedPData, receive
from fastpacs.net.retrieve_service import RetrieveServiceClass

logger = logging.getLogger(__name__)

TIMER_CHECK_SECONDS = 0.05
"""Longest wait of an idle association thread: how late an expired timer or a kill may be seen."""


class _WakingQueue(queue.Queue[Any]):
    """A queue that calls ``wake`` after each ``put`` (made by another thread than ``owner``)."""

    def __init__(self, wake: Callable[[], None], owner: threading.Thread | None = None):
        super().__init__()
        self._wake = wake
        self._owner = owner

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        if self._owner is None or threading.current_thread() is not self._owner:
            self._wake()


class _EventDrivenDul(DULServiceProvider):
    """pynetdicom's DUL, waiting on its socket and a wake-up socket pair instead of sleeping."""

    def __init__(self, assoc: Association, wake_association: Callable[[], None]):
        super().__init__(assoc)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self.to_provider_queue = _WakingQueue(self.wake)
        self.event_queue = _WakingQueue(self.wake, owner=self)
        self.to_user_queue = _WakingQueue(wake_association)
        self._wake_association = wake_association

    def wake(self) -> None:
        # OSError: the buffer is full (the thread will wake anyway), or closed (the thread has ended)
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def stop_dul(self) -> bool:
        """pynetdicom's: end the thread once the connection is closed (``Sta1``), woken at once."""
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self.wake()
        self.join()
        return True

    def _wait(self) -> None:
        """Until the socket has data, another thread gives work, or a timer may have expired.

        ``poll`` rather than ``select``, which refuses descriptors above 1023. A socket closed
        meanwhile ends the wait at once (POLLNVAL); the loop then sees it closed.
        """
        connection = self.socket.socket if self.socket is not None else None
        if isinstance(connection, ssl.SSLSocket) and connection.pending():
            return  # decrypted data already read off the socket: poll would not see it
        waited = select.poll()
        waited.register(self._wake_read, select.POLLIN)
        if connection is not None and connection.fileno() >= 0:
            waited.register(connection, select.POLLIN)
        woken = self._wake_read.fileno()
        if any(descriptor == woken for descriptor, _ in waited.poll(TIMER_CHECK_SECONDS * 1000)):
            with contextlib.suppress(BlockingIOError):
                while self._wake_read.recv(4096):
                    pass

    def _read_pdu_data(self) -> None:
        """pynetdicom's ``DULServiceProvider._read_pdu_data`` (the same events, the same log lines),
        reading with :func:`receive`, a P-DATA-TF PDU made a :class:`ReceivedPData`.

        pynetdicom's own decoding stays for the other PDUs, and for P-DATA-TF
        whenever ``EVT_DATA_RECV`` or ``EVT_PDU_RECV`` has handlers (they take
        the PDU as pynetdicom builds it).
        """
        connection = cast(AssociationSocket, self.socket).socket
        assert connection is not None
        try:
            header = receive(connection, PDU_HEADER.size)
            pdu_type, _, length = PDU_HEADER.unpack(header)
        except struct.error:  # the connection closed before a whole header came
            self.event_queue.put("Evt17")
            return
        except OSError:
            logger.exception("DICOM connection closed before the entire PDU was received")
            self.event_queue.put("Evt17")
            return
        if pdu_type not in PDU_TYPES:
            logger.error("Unknown PDU type received '0x%02X'", pdu_type)
            self.event_queue.put("Evt19")
            return
        try:
            body = receive(connection, length)
        except OSError:
            logger.exception("DICOM connection closed before the entire PDU was received")
            self.event_queue.put("Evt17")
            return
        if len(body) != length:
            logger.error("The received PDU is shorter than expected (%d of %d bytes)", len(body), length)
            self.event_queue.put("Evt17")
            return
        observed = self.assoc.get_handlers(evt.EVT_DATA_RECV) or self.assoc.get_handlers(evt.EVT_PDU_RECV)
        try:
            if pdu_type == P_DATA_TF_TYPE and not observed:
                pdu: Any = ReceivedPData(body)
                event = "Evt10"
            else:
                pdu, event = self._decode_pdu(bytearray(header) + body)
        except Exception:  # as pynetdicom: a PDU that cannot be decoded is an invalid PDU (Evt19), logged
            logger.exception("Unable to decode the received PDU data")
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def run_reactor(self) -> None:
        try:
            self._run_reactor()
        finally:
            self._wake_read.close()
            self._wake_write.close()
            self._wake_association()

    def _run_reactor(self) -> None:
        """pynetdicom's ``DULServiceProvider.run_reactor``, with :meth:`_wait` instead of its sleep."""
        self._idle_timer.start()
        self.socket = cast(AssociationSocket, self.socket)
        idle = False
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                idle = True
            if idle:
                self._wait()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception:  # as pynetdicom: whatever fails here (a PDU it cannot take) aborts, logged
                logger.exception("DICOM upper layer failed: association aborted")
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                self.socket.send(abort_pdu.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                idle = True
                continue
            self.state_machine.do_action(event)
            idle = False


class _EventDrivenAssociation(Association):
    """pynetdicom's acceptor association, waiting for its queues instead of polling them."""

    def __init__(self, ae: ApplicationEntity):
        super().__init__(ae, MODE_ACCEPTOR)
        self._wakeup = threading.Event()
        self.dul = _EventDrivenDul(self, self._wakeup.set)
        # The timeout setters gave their values to the DUL replaced above (its ARTIM and idle timers).
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout
        self.dimse = ServerDimseProvider(self)
        self.dimse.msg_queue = _WakingQueue(self._wakeup.set)

    def kill(self) -> None:
        self._wakeup.set()
        super().kill()

    def _serve_request(self, msg: Any, context_id: int) -> None:
        """pynetdicom's ``Association._serve_request``, C-GET and C-MOVE served by fastpacs's
        :class:`~fastpacs.net.retrieve_service.RetrieveServiceClass` (Orthanc's answers).

        Other requests, and any C-GET or C-MOVE pynetdicom would not serve
        (during a release, on a context not accepted, malformed), take pynetdicom's path.
        """
        context = self._accepted_cx.get(context_id)
        if (
            not isinstance(msg, C_GET | C_MOVE)
            or self._sent_release
            or context is None
            or not msg.is_valid_request
        ):
            super()._serve_request(msg, context_id)
            return
        self.dimse.cancel_req = {}  # C-CANCELs received before this request
        self._is_paused = True  # as pynetdicom: the service sends requests (C-STOREs) of its own
        try:
            RetrieveServiceClass(self).SCP(msg, context)
        except Exception:  # as pynetdicom: a service that fails aborts the association, logged
            logger.exception("%s service failed: association aborted", msg.msg_type)
            self.abort()
            return
        self._is_paused = False
        self.dimse.cancel_req = {}

    def _run_reactor(self) -> None:
        """pynetdicom's ``Association._run_reactor``, waiting on :attr:`_wakeup` instead of sleeping.

        The event is cleared before the queues are looked at, so work given
        after the look sets it again and the next wait returns at once.
        """
        self._is_paused = False
        served = False
        while not self._kill:
            if not served:
                self._wakeup.wait(TIMER_CHECK_SECONDS)
            self._wakeup.clear()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self.dimse.get_msg(block=False)
            served = msg is not None
            if msg:
                self._serve_request(msg, cast(int, context_id))

            if self.is_established and self.acse.is_release_requested():
                # Released before the answer goes out (pynetdicom: after): the peer closes the
                # connection as soon as it has the answer, and EVT_CONN_CLOSE, triggered by the
                # DUL thread, must find the association released, not aborted.
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.acse.send_release(is_response=True)
                self.kill()
                return

            if self.acse.is_aborted():
                self.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                logger.warning("DICOM network timeout reached: association %s", self.network_timeout_response)
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


class _PolledSocket(AssociationSocket):
    """pynetdicom's association socket, asking ``poll`` rather than ``select`` whether data waits.

    ``select`` raises for a descriptor above 1023, which pynetdicom's
    ``ready`` takes for a closed connection (Evt17): in a server holding many
    files and connections, a live association would be dropped.
    """

    @property
    def ready(self) -> bool:
        connection = self.socket
        if connection is None or self._is_connected is False:
            return False
        if isinstance(connection, ssl.SSLSocket) and connection.pending():
            return True  # decrypted data already read off the socket
        try:
            polled = select.poll()
            polled.register(connection, select.POLLIN)
            return bool(polled.poll(0))
        except (OSError, ValueError):  # as pynetdicom: a closed socket is a closed connection
            self.event_queue.put("Evt17")
            return False


class EventDrivenRequestHandler(RequestHandler):
    """The server's request handler: pynetdicom's, creating event-driven associations.

    On a DICOM TLS server, it first completes the TLS handshake of the
    connection, on the connection's own thread (see :class:`_ServerWithoutCollections`).
    """

    def handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket) and not self._handshake(self.request):
            return
        super().handle()

    def _handshake(self, connection: ssl.SSLSocket) -> bool:
        """The TLS handshake, within the ACSE timeout; a failed one is logged and closes the connection."""
        timeout = connection.gettimeout()
        connection.settimeout(self.ae.acse_timeout)
        try:
            connection.do_handshake()
        except OSError as error:  # ssl.SSLError (a certificate refused...), a time-out, a reset
            logger.warning("DICOM TLS connection from %s refused: %s", self.client_address[0], error)
            with contextlib.suppress(OSError):
                connection.close()
            return False
        connection.settimeout(timeout)
        return True

    def _create_association(self) -> Association:
        """pynetdicom's ``RequestHandler._create_association`` with the classes above."""
        assoc = _EventDrivenAssociation(self.ae)
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        assoc.set_socket(_PolledSocket(assoc, client_socket=self.request))

        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = deepcopy(self.server.contexts)
        assoc.requestor.address_info = self.remote

        for event, handlers in self.server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler, arguments in cast(list, handlers):
                    assoc.bind(event, handler, arguments)
        return assoc


class _ServerWithoutCollections(ThreadedAssociationServer):
    """pynetdicom's threaded server, without its periodic ``gc.collect``, leaving TLS handshakes to
    the connections' threads.

    pynetdicom makes the handshake of an accepted TLS connection in the
    server's accept loop, with no time-out: a caller that connects and sends
    nothing would hold every other caller at the door.
    """

    def service_actions(self) -> None:
        pass

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        connection, address = cast(socket.socket, self.socket).accept()
        if self.ssl_context is not None:
            connection = self.ssl_context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address


class EventDrivenAE(ApplicationEntity):
    """An AE whose servers accept associations with :class:`EventDrivenRequestHandler`.

    Its non-blocking servers (``start_server(block=False)``) are :class:`_ServerWithoutCollections`.
    """

    def make_server(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("server_class") is ThreadedAssociationServer:
            kwargs["server_class"] = _ServerWithoutCollections
        return super().make_server(*args, request_handler=EventDrivenRequestHandler, **kwargs)
