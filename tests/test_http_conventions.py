"""The request body as the application reads it through the HTTP conventions (``api/http_conventions.py``)."""

import asyncio
import gzip
import io
import json
import socket

import pydicom
import pytest
from litestar.types import Message, Receive, Scope, Send

from fastpacs.api.http_conventions import HttpConventions
from fastpacs.testing import ServerProcess
from tests.conftest import dicom_variant

DISCONNECT: Message = {"type": "http.disconnect"}


def _granian_messages(body: bytes, pieces: int) -> list[Message]:
    """What Granian hands on for a body: its pieces, each with ``more_body``, then an empty end."""
    size = -(-len(body) // pieces) if body else 0
    messages: list[Message] = [
        {"type": "http.request", "body": body[start : start + size], "more_body": True}
        for start in range(0, len(body), size or 1)
    ]
    return [*messages, {"type": "http.request", "body": b"", "more_body": False}, DISCONNECT]


def _read_through_conventions(headers: list[tuple[bytes, bytes]], messages: list[Message]) -> list[Message]:
    """The messages an application behind the conventions reads, up to the disconnection."""
    queue = list(messages)
    seen: list[Message] = []

    async def receive() -> Message:
        return queue.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError(f"nothing is answered here: {message}")

    async def application(scope: Scope, app_receive: Receive, app_send: Send) -> None:
        while len(seen) < len(messages) and (not seen or seen[-1]["type"] != "http.disconnect"):
            seen.append(await app_receive())

    scope = {"type": "http", "method": "POST", "path": "/tools/find", "headers": headers}
    asyncio.run(HttpConventions(application, compression_enabled=True)(scope, receive, send))
    return seen


@pytest.mark.parametrize("pieces", [1, 3])
def test_a_body_of_announced_length_ends_with_its_last_byte(pieces: int) -> None:
    body = b'{"Level":"Study","Query":{}}'
    seen = _read_through_conventions(
        [(b"content-length", str(len(body)).encode())], _granian_messages(body, pieces)
    )
    *body_messages, disconnect = seen
    assert b"".join(message["body"] for message in body_messages) == body
    assert [message["more_body"] for message in body_messages] == [True] * (pieces - 1) + [False]
    assert disconnect == DISCONNECT  # Granian's empty end is not handed on


def test_a_chunked_body_is_handed_on_as_it_comes() -> None:
    body = b"0123456789"
    messages = _granian_messages(body, 2)
    seen = _read_through_conventions([(b"transfer-encoding", b"chunked")], messages)
    assert seen == messages


def test_a_gzip_body_ends_at_the_last_byte_of_its_encoded_length() -> None:
    body = b"inflated " * 1000
    encoded = gzip.compress(body)
    seen = _read_through_conventions(
        [(b"content-length", str(len(encoded)).encode()), (b"content-encoding", b"gzip")],
        _granian_messages(encoded, 2),
    )
    *body_messages, disconnect = seen
    assert b"".join(message["body"] for message in body_messages) == body
    assert not body_messages[-1]["more_body"]
    assert disconnect == DISCONNECT


def _http_answer(connection: socket.socket) -> tuple[bytes, bytes]:
    """The head and body of one answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return head, body


def test_posts_of_every_kind_keep_the_connection(shared_server: ServerProcess) -> None:
    """An upload, a find, a routed POST, a gzip upload, on one connection: all answered, none closing it."""
    instance = dicom_variant(patient_id="body-end", study="71", series="71", instance="71")
    uid = pydicom.dcmread(io.BytesIO(instance), stop_before_pixels=True).SOPInstanceUID
    find = json.dumps({"Level": "Instance", "Query": {"SOPInstanceUID": uid}}).encode()
    requests = [
        ("/instances", instance),
        ("/tools/find", find),
        ("/tools/lookup", uid.encode()),
        ("/instances", gzip.compress(instance), b"Content-Encoding: gzip\r\n"),
    ]
    with socket.create_connection(("127.0.0.1", shared_server.http_port), timeout=30) as connection:
        answers = []
        for path, body, *extra in requests:
            head = f"POST {path} HTTP/1.1\r\nHost: fastpacs\r\nContent-Length: {len(body)}\r\n".encode()
            connection.sendall(head + b"".join(extra) + b"\r\n" + body)
            answers.append(_http_answer(connection))
    for head, _ in answers:
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"connection: close" not in head.lower()
    upload, found, looked_up, gzip_upload = (json.loads(body) for _, body in answers)
    assert found == [upload["ID"]]
    assert [item["ID"] for item in looked_up] == [upload["ID"]]
    assert (gzip_upload["ID"], gzip_upload["Status"]) == (upload["ID"], "AlreadyStored")
