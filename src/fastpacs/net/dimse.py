"""The DIMSE service provider of the server's associations: C-STORE responses encoded by hand.

pynetdicom (3.0.4) encodes every DIMSE message by filling a pydicom dataset
with the primitive's parameters and writing it twice (once to measure the
command group length, once to send it): about 0.3 ms of the association
thread per C-STORE, a large share of what answering costs. A C-STORE
response is a fixed list of a few elements, written here directly, byte for
byte what pynetdicom writes (tests/test_dicom_pdus.py compares both). A
response carrying more than that (an error comment, an offending element),
any other message, or an association whose ``EVT_DIMSE_SENT`` has handlers
(they take pynetdicom's message object) goes through pynetdicom's encoder.
"""

import struct

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE, DimsePrimitiveType
from pynetdicom.pdu_primitives import P_DATA

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


def _element(element: int, value: bytes) -> bytes:
    return ELEMENT_HEADER.pack(0x0000, element, len(value)) + value


def _uid(uid: str) -> bytes:
    """A UI value padded with NUL to an even length, as pydicom writes it."""
    encoded = uid.encode("ascii")
    return encoded + b"\0" if len(encoded) % 2 else encoded


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
    """pynetdicom's DIMSE service provider; C-STORE responses encoded by :func:`store_response_command`."""

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
