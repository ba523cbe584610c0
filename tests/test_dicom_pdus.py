"""The DICOM server's own PDU reading and C-STORE response encoding, against pynetdicom's (3.0.4).

fastpacs.net.pdus and fastpacs.net.dimse replace pynetdicom's generic code on
the path of every received instance: what they produce must be exactly what
pynetdicom's would be, and what they refuse must fall back to it.
"""

import socket
import threading
import tracemalloc
from collections.abc import Iterator
from io import BytesIO

import pytest
from pynetdicom import AE, dimse_messages, evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext

from fastpacs.net import pdus
from fastpacs.net.dimse import ServerDimseProvider, store_request, store_response_command
from fastpacs.net.pdus import ReceivedPData, receive

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _response(
    status: int,
    message_id: int = 7,
    sop_class: str | None = CT_IMAGE_STORAGE,
    sop_instance: str | None = "1.2.3",
) -> C_STORE:
    response = C_STORE()
    response.MessageID = message_id
    response.MessageIDBeingRespondedTo = message_id
    response.AffectedSOPClassUID = sop_class
    response.AffectedSOPInstanceUID = sop_instance
    response.Status = status
    return response


def _pynetdicom_command(response: C_STORE) -> bytes:
    """The command set pynetdicom sends for ``response`` (one fragment: its 0x03 header dropped)."""
    message = dimse_messages.C_STORE_RSP()
    message.primitive_to_message(response)
    (data,) = list(message.encode_msg(1, 0))
    ((_, value),) = data.presentation_data_value_list
    assert value[:1] == b"\x03"
    return value[1:]


@pytest.mark.parametrize(
    "response",
    [
        _response(0x0000),
        _response(0xA700, message_id=65535),
        _response(0xC000, message_id=1, sop_instance="1.2.840.113619.2.55.3.604688119.969.1268071029.320"),
        _response(0xB000, sop_instance="1.2.34"),  # even length: no padding
        _response(0x0000, sop_class=None),
        _response(0x0000, sop_instance=None),
    ],
)
def test_store_response_command_is_pynetdicoms(response: C_STORE) -> None:
    assert store_response_command(response) == _pynetdicom_command(response)


def test_store_response_with_an_error_comment_is_left_to_pynetdicom() -> None:
    response = _response(0xC000)
    response.ErrorComment = "cannot understand"
    assert store_response_command(response) is None


def test_store_request_is_left_to_pynetdicom() -> None:
    request = C_STORE()
    request.MessageID = 3
    request.AffectedSOPClassUID = CT_IMAGE_STORAGE
    request.AffectedSOPInstanceUID = "1.2.3"
    request.Priority = 2
    assert store_response_command(request) is None


def _sent(peer_maximum_pdu: int, sent_handlers: list | None = None) -> list[bytes]:
    """What :class:`ServerDimseProvider` gives the DUL for a C-STORE success on an acceptor association."""
    association = Association(AE(), MODE_ACCEPTOR)
    association.requestor.maximum_length = peer_maximum_pdu
    for handler in sent_handlers or []:
        association.bind(evt.EVT_DIMSE_SENT, handler)
    sent: list[P_DATA] = []
    association.dul.send_pdu = sent.append  # type: ignore[method-assign]
    ServerDimseProvider(association).send_msg(_response(0x0000), 5)
    encoded = []
    for data in sent:
        ((context_id, value),) = data.presentation_data_value_list
        assert context_id == 5
        encoded.append(value)
    return encoded


@pytest.mark.parametrize("peer_maximum_pdu", [0, 16384])
def test_provider_sends_a_store_response_in_one_pdv(peer_maximum_pdu: int) -> None:
    command = _pynetdicom_command(_response(0x0000))
    assert _sent(peer_maximum_pdu) == [b"\x03" + command]


def test_provider_fragments_as_pynetdicom_when_the_peer_takes_small_pdus() -> None:
    assert len(_sent(64)) > 1


def test_provider_leaves_messages_to_pynetdicom_when_sent_messages_are_observed() -> None:
    seen: list[evt.Event] = []
    assert _sent(0, [seen.append])
    assert seen and isinstance(seen[0].message, dimse_messages.C_STORE_RSP)


def _request(
    data_set: bytes | None = b"\x08\x00\x18\x00" + bytes(range(256)) * 64,
    sop_instance: str = "1.2.826.0.1.3680043.8.498.1234567",
    move_originator: str | None = None,
) -> C_STORE:
    request = C_STORE()
    request.MessageID = 12
    request.AffectedSOPClassUID = CT_IMAGE_STORAGE
    request.AffectedSOPInstanceUID = sop_instance
    request.Priority = 1
    if move_originator is not None:
        request.MoveOriginatorApplicationEntityTitle = move_originator
        request.MoveOriginatorMessageID = 3
    request.DataSet = None if data_set is None else BytesIO(data_set)
    return request


def _encoded(request: C_STORE | C_ECHO, maximum_pdu: int = 0, context_id: int = 3) -> list[P_DATA]:
    message = dimse_messages.C_STORE_RQ() if isinstance(request, C_STORE) else dimse_messages.C_ECHO_RQ()
    message.primitive_to_message(request)
    return list(message.encode_msg(context_id, maximum_pdu))


def _merged(primitives: list[P_DATA]) -> list[P_DATA]:
    """The same PDVs in one P-DATA (as one PDU holding the command and the data set)."""
    data = P_DATA()
    data.presentation_data_value_list = []
    for primitive in primitives:
        data.presentation_data_value_list.extend(primitive.presentation_data_value_list)
    return [data]


def _acceptor() -> Association:
    association = Association(AE(), MODE_ACCEPTOR)
    context = PresentationContext()
    context.context_id = 3
    context.abstract_syntax = CT_IMAGE_STORAGE
    context.transfer_syntax = ["1.2.840.10008.1.2.1"]
    association._accepted_cx = {3: context}
    return association


def _received(provider_class: type[DIMSEServiceProvider], primitives: list[P_DATA]) -> tuple:
    provider = provider_class(_acceptor())
    for primitive in primitives:
        provider.receive_primitive(primitive)
    context_id, message = provider.msg_queue.get(block=False)
    assert provider.msg_queue.empty() and provider.message is None
    fields = [
        "MessageID",
        "AffectedSOPClassUID",
        "AffectedSOPInstanceUID",
        "Priority",
        "MoveOriginatorApplicationEntityTitle",
        "MoveOriginatorMessageID",
    ]
    data_set = getattr(message, "DataSet", None)
    return (
        type(message),
        context_id,
        message._context_id,
        [getattr(message, field, None) for field in fields],
        None if data_set is None else data_set.getvalue(),
    )


@pytest.mark.parametrize(
    "primitives",
    [
        _encoded(_request()),
        _encoded(_request(), maximum_pdu=4096),  # the data set in several fragments
        _merged(_encoded(_request(), maximum_pdu=4096)),
        _encoded(_request(sop_instance="1.2.3")),  # odd length: padded, unpadded when read
        _encoded(_request(), maximum_pdu=40),  # the command set in several fragments: pynetdicom's
        _encoded(_request(move_originator="MOVESCU")),  # more elements: pynetdicom's
        _encoded(_request(data_set=None)),  # no data set: pynetdicom's
        _encoded(C_ECHO()),
    ],
)
def test_provider_receives_what_pynetdicom_receives(primitives: list[P_DATA]) -> None:
    assert _received(ServerDimseProvider, primitives) == _received(DIMSEServiceProvider, primitives)


def test_provider_reads_a_store_request_itself() -> None:
    provider = ServerDimseProvider(_acceptor())
    command, *data_set = _encoded(_request(), maximum_pdu=4096)
    provider.receive_primitive(command)
    assert provider.message is None and provider._request is not None  # not pynetdicom's message
    for primitive in data_set:
        provider.receive_primitive(primitive)
    assert provider.msg_queue.qsize() == 1


def test_store_request_reads_the_command_set_alone() -> None:
    command = _encoded(_request())[0].presentation_data_value_list[0][1]
    request = store_request(command[1:])
    assert request is not None
    assert (request.MessageID, request.Priority) == (12, 1)
    assert (request.AffectedSOPClassUID, request.AffectedSOPInstanceUID) == (
        CT_IMAGE_STORAGE,
        "1.2.826.0.1.3680043.8.498.1234567",
    )


@pytest.mark.parametrize("cut", [1, 9, 20])
def test_store_request_refuses_a_truncated_command_set(cut: int) -> None:
    command = _encoded(_request())[0].presentation_data_value_list[0][1]
    assert store_request(command[1:-cut]) is None


def test_command_fragment_within_a_data_set_is_an_invalid_pdu() -> None:
    association = _acceptor()
    provider = ServerDimseProvider(association)
    first, *rest = _encoded(_request(), maximum_pdu=4096)
    provider.receive_primitive(first)
    provider.receive_primitive(rest[0])
    provider.receive_primitive(first)
    assert provider.msg_queue.empty()
    assert association.dul.event_queue.get(block=False) == "Evt19"


def _p_data_tf(values: list[tuple[int, bytes]]) -> bytes:
    data = P_DATA()
    data.presentation_data_value_list = []
    data.presentation_data_value_list.extend(values)
    return P_DATA_TF(data).encode()


@pytest.mark.parametrize(
    "values",
    [
        [(1, b"\x03" + b"command")],
        [(3, b"\x00" + bytes(range(256)) * 512)],
        [(1, b"\x03" + b"c" * 101), (1, b"\x02" + b"dataset")],
        [(5, b"\x02")],
    ],
)
def test_received_p_data_gives_the_primitive_pynetdicom_decodes(values: list[tuple[int, bytes]]) -> None:
    encoded = _p_data_tf(values)
    reference = P_DATA_TF()
    reference.decode(encoded)
    received = ReceivedPData(memoryview(bytearray(encoded))[6:]).to_primitive()
    expected = reference.to_primitive().presentation_data_value_list
    assert [(context, bytes(value)) for context, value in received.presentation_data_value_list] == expected


@pytest.mark.parametrize("body", [b"\x00\x00\x00\x09\x01abc", b"\x00\x00\x00\x00\x01", b"\x00\x00"])
def test_received_p_data_refuses_items_overrunning_the_pdu(body: bytes) -> None:
    with pytest.raises(ValueError):
        ReceivedPData(memoryview(body))


@pytest.fixture
def connected() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    with left, right:
        yield left, right


def test_receive_waits_for_every_byte(connected: tuple[socket.socket, socket.socket]) -> None:
    reader, writer = connected
    payload = bytes(range(256)) * 4096  # 1 MB: more than a socket buffer holds at once
    sender = threading.Thread(target=writer.sendall, args=(payload,))
    sender.start()
    assert bytes(receive(reader, len(payload))) == payload
    sender.join()


def test_receive_stops_short_when_the_peer_closes(connected: tuple[socket.socket, socket.socket]) -> None:
    reader, writer = connected
    writer.sendall(b"abc")
    writer.shutdown(socket.SHUT_WR)
    assert bytes(receive(reader, 6)) == b"abc"


def test_receive_grows_its_buffer_past_the_first(
    connected: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pdus, "FIRST_BUFFER", 1000)
    reader, writer = connected
    payload = bytes(range(256)) * 1000
    sender = threading.Thread(target=writer.sendall, args=(payload,))
    sender.start()
    assert bytes(receive(reader, len(payload))) == payload
    sender.join()


def test_receive_never_allocates_what_a_header_merely_announces(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = connected
    writer.sendall(b"x" * 100)
    writer.shutdown(socket.SHUT_WR)
    tracemalloc.start()
    try:
        assert bytes(receive(reader, 2**32 - 1)) == b"x" * 100
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * pdus.FIRST_BUFFER
