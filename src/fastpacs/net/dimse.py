"""The DIMSE service provider of the server's associations: C-STORE requests and responses by hand.

pynetdicom (3.0.4) decodes every received command set into a pydicom
dataset, then copies it parameter by parameter into the request primitive
(about 0.25 ms per C-STORE, on the upper layer thread that reads the
socket); it encodes every response by filling a pydicom dataset and writing
it twice, to measure its group length and to send it (about 0.3 ms of the
association thread). A C-STORE request and its response are short fixed
lists of elements: :func:`store_request` and :func:`store_response_command`
read and write them directly, giving what pynetdicom gives
(tests/test_dicom_pdus.py compares both). Anything else goes through
pynetdicom: other messages, a C-STORE request with more elements (a C-MOVE
originator) or a command set split over several fragments, a response with
an error comment or an offending element, and every message of an
association whose ``EVT_DIMSE_RECV`` or ``EVT_DIMSE_SENT`` has handlers
(they take pynetdicom's message objects).
"""

import logging
import struct
from io import BytesIO
from typing import TYPE_CHECKING

from pynetdicom import _config, evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE, DimsePrimitiveType
from pynetdicom.pdu_primitives import P_DATA

if TYPE_CHECKING:
    from pynetdicom.association import Association

logger = logging.getLogger(__name__)

ELEMENT_HEADER = struct.Struct("<HHL")
"""Implicit VR little endian (the command set's encoding, PS3.7 6.3.1): group, element, length."""
UNSIGNED_SHORT = struct.Struct("<H")
UNSIGNED_LONG = struct.Struct("<L")
C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101
LAST_COMMAND_FRAGMENT = b"\x03"
"""Message control header of a PDV holding the whole command set (PS3.8 E.2)."""
PDV_OVERHEAD = 6
"""What pynetdicom keeps out of the peer's maximum PDU length for each fragment it sends."""
C_STORE_RQ = 0x0001
COMMAND = 0b01
LAST_FRAGMENT = 0b10
"""Bits of a PDV's message control header (PS3.8 E.2)."""
STORE_REQUEST_ELEMENTS = frozenset({0x0000, 0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000})
"""The command set of a C-STORE request without move originator (PS3.7 9.3.1.1), all required here."""


def _element(element: int, value: bytes) -> bytes:
    return ELEMENT_HEADER.pack(0x0000, element, len(value)) + value


def _uid(uid: str) -> bytes:
    """A UI value padded with NUL to an even length, as pydicom writes it."""
    encoded = uid.encode("ascii")
    return encoded + b"\0" if len(encoded) % 2 else encoded


def _number(value: bytes) -> int | None:
    """A US value as pydicom reads it, if it is one number."""
    return UNSIGNED_SHORT.unpack(value)[0] if len(value) == UNSIGNED_SHORT.size else None


def _read_uid(value: bytes) -> str | None:
    """A UI value as pydicom reads it (trailing NULs and spaces dropped), if it is one UID."""
    uid = value.decode("latin-1").rstrip("\0 ")
    return None if "\\" in uid else uid


def store_request(command: bytes | memoryview) -> C_STORE | None:
    """The C-STORE request primitive of an encoded command set, as pynetdicom would give it.

    ``None`` if ``command`` is not the command set of a C-STORE request with
    a data set made of exactly :data:`STORE_REQUEST_ELEMENTS` with single
    values that pynetdicom accepts.
    """
    values: dict[int, bytes] = {}
    offset, end = 0, len(command)
    while offset < end:
        if end - offset < ELEMENT_HEADER.size:
            return None
        group, element, length = ELEMENT_HEADER.unpack_from(command, offset)
        offset += ELEMENT_HEADER.size
        if group or element not in STORE_REQUEST_ELEMENTS or element in values or offset + length > end:
            return None
        values[element] = bytes(command[offset : offset + length])
        offset += length
    if values.keys() != STORE_REQUEST_ELEMENTS or _number(values[0x0100]) != C_STORE_RQ:
        return None
    message_id, priority, data_set_type = (_number(values[element]) for element in (0x0110, 0x0700, 0x0800))
    sop_class, sop_instance = _read_uid(values[0x0002]), _read_uid(values[0x1000])
    if None in (message_id, priority, data_set_type, sop_class, sop_instance) or data_set_type == NO_DATA_SET:
        return None
    request = C_STORE()
    try:
        request.AffectedSOPClassUID = sop_class
        request.MessageID = message_id
        request.Priority = priority
        request.AffectedSOPInstanceUID = sop_instance
    except (TypeError, ValueError):  # pynetdicom's own decoding says what is wrong
        return None
    request.DataSet = BytesIO()
    return request


def store_response_command(response: C_STORE) -> bytes | None:
    """The encoded command set of a C-STORE response, ``None`` if it is not one of status and UIDs only."""
    if (
        response.MessageIDBeingRespondedTo is None
        or response.Status is None
        or response.ErrorComment is not None
        or response.OffendingElement is not None
    ):
        return None
    try:
        sop_class = response.AffectedSOPClassUID
        sop_instance = response.AffectedSOPInstanceUID
        elements = [
            b"" if sop_class is None else _element(0x0002, _uid(sop_class)),
            _element(0x0100, UNSIGNED_SHORT.pack(C_STORE_RSP)),
            _element(0x0120, UNSIGNED_SHORT.pack(response.MessageIDBeingRespondedTo)),
            _element(0x0800, UNSIGNED_SHORT.pack(NO_DATA_SET)),
            _element(0x0900, UNSIGNED_SHORT.pack(response.Status)),
            b"" if sop_instance is None else _element(0x1000, _uid(sop_instance)),
        ]
    except (UnicodeEncodeError, struct.error):
        return None  # what pydicom would write (or refuse) is left to it
    body = b"".join(elements)
    return _element(0x0000, UNSIGNED_LONG.pack(len(body))) + body


class ServerDimseProvider(DIMSEServiceProvider):
    """pynetdicom's DIMSE service provider, C-STORE requests read by :func:`store_request` and their
    responses written by :func:`store_response_command`."""

    def __init__(self, assoc: "Association"):
        super().__init__(assoc)
        self._request: C_STORE | None = None
        """The C-STORE request whose data set is being received, outside pynetdicom's ``message``."""

    def receive_primitive(self, primitive: P_DATA) -> None:
        """pynetdicom's, except for a C-STORE request whose command set comes whole in one PDV."""
        values = primitive.presentation_data_value_list
        if self._request is None:
            if self.message is not None or _config.STORE_RECV_CHUNKED_DATASET:
                super().receive_primitive(primitive)
                return
            if not values or values[0][1][0] & (COMMAND | LAST_FRAGMENT) != COMMAND | LAST_FRAGMENT:
                super().receive_primitive(primitive)
                return
            context_id, command = values[0]
            request = None if self.assoc.get_handlers(evt.EVT_DIMSE_RECV) else store_request(command[1:])
            if request is None:
                super().receive_primitive(primitive)
                return
            request._context_id = context_id
            self._request = request
            values = values[1:]
        self._receive_data_set(values)

    def _receive_data_set(self, values: list[tuple[int, bytes]]) -> None:
        """Add data set fragments to :attr:`_request`; queue it for the association once whole.

        A command fragment instead ends the association (an invalid PDU), where
        pynetdicom would take it for a new command set over the one it holds.
        """
        request = self._request
        assert request is not None and request.DataSet is not None
        for _, value in values:
            header = value[0]
            if header & COMMAND:
                logger.error("DICOM command fragment received in the data set of a C-STORE request")
                self._request = None
                self.dul.event_queue.put("Evt19")
                return
            request.DataSet.write(value[1:])
            if header & LAST_FRAGMENT:
                self._request = None
                self.msg_queue.put((request._context_id, request))
                return

    def send_msg(self, primitive: DimsePrimitiveType, context_id: int) -> None:
        if isinstance(primitive, C_STORE) and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            command = store_response_command(primitive)
            maximum = self.maximum_pdu_size
            if command is not None and (not maximum or len(command) <= maximum - PDV_OVERHEAD):
                data = P_DATA()
                data.presentation_data_value_list = []  # the setter checks lists of [int, bytes] only
                data.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + command))
                self.dul.send_pdu(data)
                return
        super().send_msg(primitive, context_id)
