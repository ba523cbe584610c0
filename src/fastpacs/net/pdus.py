"""Reading PDUs off an association socket: each PDU in few system calls, P-DATA-TF without copies.

pynetdicom (3.0.4) reads a PDU 4096 bytes per ``recv`` call into a
``bytearray`` grown piece by piece, copies it whole twice more (``bytes``,
then the slice after the header), then once more per presentation data
value, and builds an item object per value: for a 512 KB CT image, 128
system calls and four copies before the DIMSE layer copies it again into
the message's dataset. Here a PDU is received into one buffer of its
announced length, and the values of a P-DATA-TF PDU are views of that
buffer, which the DIMSE layer copies once into the message.
"""

import socket
import struct
from ssl import SSLSocket

from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

PDU_HEADER = struct.Struct(">BBL")
"""PDU type, reserved byte, length of what follows (PS3.8 9.3.1)."""
PDV_HEADER = struct.Struct(">LB")
"""Item length (the context ID and the value), presentation context ID (PS3.8 9.3.5.1)."""
P_DATA_TF_TYPE = 0x04
PDU_TYPES = frozenset(range(0x01, 0x08))
FIRST_BUFFER = 4 * 1024 * 1024
"""Bytes a PDU's buffer holds at first; a PDU as long as that (most are) is received in place."""


def receive(connection: socket.socket | SSLSocket, length: int) -> memoryview:
    """``length`` bytes from ``connection``, fewer only if the peer closed it first.

    Blocks until they are all there; a time-out or a broken connection raises
    ``OSError``. The buffer grows with what arrives (doubling, from
    :data:`FIRST_BUFFER`), never to the length a peer merely announces: a PDU
    header can announce 4 GB.
    """
    buffer = bytearray(min(length, FIRST_BUFFER))
    received = 0
    while received < length:
        if received == len(buffer):
            buffer.extend(bytes(min(len(buffer), length - received)))
        with memoryview(buffer) as whole:
            count = connection.recv_into(whole[received:])
        if not count:
            break
        received += count
    return memoryview(buffer)[:received] if received < length else memoryview(buffer)


class ReceivedPData(P_DATA_TF):
    """A received P-DATA-TF PDU whose presentation data values are views of the received bytes.

    It is what pynetdicom's upper layer state machine takes from
    ``_recv_pdu`` and converts with :meth:`to_primitive` (actions DT-2 and
    AR-7). It does not fill ``presentation_data_value_items``, which only
    the handlers of ``EVT_PDU_RECV`` would read: the upper layer decodes the
    PDU as pynetdicom does when such a handler is bound.
    """

    def __init__(self, body: memoryview):
        """Split ``body`` (the PDU after its 6-byte header); ``ValueError`` if its items overrun it."""
        super().__init__()
        values: list[tuple[int, bytes]] = []
        offset, end = 0, len(body)
        while offset < end:
            if end - offset < PDV_HEADER.size:
                raise ValueError("a presentation data value item overruns its P-DATA-TF PDU")
            item_length, context_id = PDV_HEADER.unpack_from(body, offset)
            value_end = offset + 4 + item_length
            if item_length < 1 or value_end > end:
                raise ValueError("a presentation data value item overruns its P-DATA-TF PDU")
            # A view is what decode_msg needs (value[0], value[1:] written to its BytesIO); typed as
            # pynetdicom's bytes.
            values.append((context_id, body[offset + PDV_HEADER.size : value_end]))  # type: ignore[arg-type]
            offset = value_end
        self._values = values

    def to_primitive(self) -> P_DATA:
        primitive = P_DATA()
        primitive.presentation_data_value_list = []  # the setter checks lists of [int, bytes] only
        primitive.presentation_data_value_list.extend(self._values)
        return primitive
