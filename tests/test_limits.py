"""Limits that keep one client from holding the server: request timeouts and bounded ingest queues.

One server with a short ``HttpRequestTimeout`` (3 s), a small
``MaximumPendingIngestSize`` (1 MB) and ``MaximumUploadSize`` (1 MB), one
worker process:

- a client trickling its body at a few bytes a second holds its share of the
  pending uploads only until it is cut off (408), then uploads pass again;
- a client trickling its headers is disconnected by Granian;
- C-STOREs from many associations at once beyond the pending limit are
  refused with 0xA700 (out of resources) rather than queued without bound,
  and succeed when sent again; create-dicom calls are bounded the same way
  (503 with Retry-After);
- a body over ``MaximumUploadSize`` is answered 413 with Orthanc's error
  JSON (and ``Connection: close``: the rest of the body is left unread),
  whether its length is declared or it comes in chunks; one just under the
  limit is judged as DICOM, not by its size.

Zip bombs against ``MaximumUploadSize`` are in tests/test_fuzz.py.
"""

import base64
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.sop_class import CTImageStorage

from fastpacs.net.scu import leave_answers_to_requests
from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import Figures, pydicom_file
from tests.reliability_helpers import InstanceMaker, instance_id

pytestmark = pytest.mark.slow

TIMEOUT = 3
UPLOAD_LIMIT = 1024 * 1024
"""``MaximumUploadSize``: 1 MB."""
ASSOCIATIONS = 8
REFUSALS = 20
"""Bodies over the upload limit sent one after the other (half declared, half chunked)."""
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    options = {
        "HttpRequestTimeout": TIMEOUT,
        "MaximumPendingIngestSize": 1,
        "MaximumUploadSize": UPLOAD_LIMIT // (1024 * 1024),
        "WorkerProcesses": 1,
    }
    process = fastpacs_server(tmp_path_factory.mktemp("limits"), options).start()
    yield process
    process.stop()


def trickle(server: ServerProcess, head: bytes, body: bytes, interval: float) -> tuple[bytes, float]:
    """Send ``head`` then ``body`` a byte at a time; return what the server answered and when."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as connection:
        connection.sendall(head)
        for byte in body:
            try:
                connection.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            connection.settimeout(interval)
            try:
                answer = connection.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                answer = b""
            return answer, time.monotonic() - started
        connection.settimeout(30)
        try:
            answer = connection.recv(65536)
        except ConnectionResetError:
            answer = b""
    return answer, time.monotonic() - started


def test_a_body_sent_a_byte_at_a_time_is_cut_off_and_frees_its_admission(
    limited: ServerProcess, figures: Figures
) -> None:
    declared = 1_040_000  # within the 1 MB pending limit, with no room left for a 39 KB CT
    head = (
        f"POST /instances HTTP/1.1\r\nHost: localhost\r\nContent-Length: {declared}\r\n"
        "Content-Type: application/dicom\r\n\r\n"
    ).encode()
    outcome: dict[str, tuple[bytes, float]] = {}
    slow = threading.Thread(
        target=lambda: outcome.setdefault("slow", trickle(limited, head, b"\0" * declared, 0.2))
    )
    slow.start()
    time.sleep(1)
    ct = pydicom_file("CT_small.dcm").read_bytes()
    with httpx.Client(base_url=limited.base_url, timeout=30) as http:
        while_held = http.post("/instances", content=ct)
        slow.join(TIMEOUT * 5)
        assert not slow.is_alive(), "the slow body was never cut off"
        after = http.post("/instances", content=ct)
    answer, seconds = outcome["slow"]
    status_line = answer.split(b"\r\n", 1)[0]
    figures.add(
        "slow body",
        f"{status_line!r} after {seconds:.1f} s (HttpRequestTimeout {TIMEOUT} s); "
        f"an upload meanwhile: {while_held.status_code}, after: {after.status_code}",
    )
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert TIMEOUT <= seconds < TIMEOUT + 3
    assert while_held.status_code == 503  # the slow client held the whole pending budget...
    assert after.status_code == 200  # ...until it was cut off


def test_headers_sent_a_byte_at_a_time_are_cut_off(limited: ServerProcess, figures: Figures) -> None:
    head = b"GET /system HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"x" * 200
    answer, seconds = trickle(limited, b"", head, 0.2)
    figures.add("slow headers", f"connection closed after {seconds:.1f} s, answer {answer[:40]!r}")
    assert not answer.startswith(b"HTTP/1.1 200")
    assert seconds < TIMEOUT + 3


def test_c_stores_beyond_the_pending_limit_are_refused_then_land(
    limited: ServerProcess, figures: Figures
) -> None:
    maker = InstanceMaker()
    datasets = [
        [large_dataset(maker, association, n) for n in range(3)] for association in range(ASSOCIATIONS)
    ]

    def send(batch: list) -> list[int]:
        ae = AE(ae_title="BUSY")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        assoc = ae.associate(
            "127.0.0.1",
            limited.dicom_port,
            [build_context(CTImageStorage, ExplicitVRLittleEndian)],
            ae_title=limited.aet,
            evt_handlers=NO_DELAY_HANDLERS,
        )
        assert assoc.is_established
        leave_answers_to_requests(assoc)
        try:
            return [int(assoc.send_c_store(dataset).Status) for dataset in batch]
        finally:
            assoc.release()

    with ThreadPoolExecutor(ASSOCIATIONS) as threads:
        statuses = list(threads.map(send, datasets))
    flat = [status for batch in statuses for status in batch]
    figures.add(
        "C-STORE burst",
        f"{ASSOCIATIONS} associations: {flat.count(0)} stored, {flat.count(0xA700)} refused",
    )
    assert set(flat) <= {0x0000, 0xA700}
    assert 0xA700 in flat and 0x0000 in flat, flat
    refused = [
        dataset
        for batch, answers in zip(datasets, statuses, strict=True)
        for dataset, status in zip(batch, answers, strict=True)
        if status == 0xA700
    ]
    assert send(refused) == [0x0000] * len(refused)
    with httpx.Client(base_url=limited.base_url, timeout=30) as http:
        for batch in datasets:
            for dataset in batch:
                assert http.get(f"/instances/{instance_id(dataset)}").status_code == 200


def test_create_dicom_beyond_the_pending_limit_is_refused_with_retry_after(
    limited: ServerProcess, figures: Figures
) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 2400  # about 600 KB
    bodies = [
        {"Tags": {"PatientID": f"CREATE{n}", "PatientName": "LIMITS"}, "Content": data_uri(pdf, n)}
        for n in range(12)
    ]
    with (
        httpx.Client(base_url=limited.base_url, timeout=60) as http,
        ThreadPoolExecutor(len(bodies)) as threads,
    ):
        answers = list(threads.map(lambda body: http.post("/tools/create-dicom", json=body), bodies))
        statuses = [answer.status_code for answer in answers]
        figures.add(
            "create-dicom burst", f"{statuses.count(200)} created, {statuses.count(503)} refused (503)"
        )
        assert set(statuses) <= {200, 503}
        assert 503 in statuses and 200 in statuses, statuses
        for body, answer in zip(bodies, answers, strict=True):
            if answer.status_code == 503:
                assert answer.headers["retry-after"] == "1"
                assert http.post("/tools/create-dicom", json=body).status_code == 200


def test_a_body_over_the_upload_limit_is_answered_413(limited: ServerProcess, figures: Figures) -> None:
    """Every refusal is answered (none is a dropped connection), and the server keeps serving.

    The refusal comes before the body is read to its end: the answer says ``Connection: close``,
    as Granian closes the connection after it, so that the client's next request takes a new one.
    """
    too_large, just_under = bytes(2 * UPLOAD_LIMIT), bytes(UPLOAD_LIMIT - 1024)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is met while reading
        for _ in range(2 * UPLOAD_LIMIT // CHUNK):
            yield bytes(CHUNK)

    ct = pydicom_file("CT_small.dcm").read_bytes()
    with httpx.Client(base_url=limited.base_url, timeout=30) as http:
        refused = http.post("/instances", content=too_large)
        assert refused.status_code == 413
        assert refused.headers["connection"] == "close"
        assert (
            refused.json().items()
            >= {
                "HttpError": "Request Entity Too Large",
                "HttpStatus": 413,
                "Message": "Bad request",
                "Method": "POST",
                "OrthancError": "Bad request",
                "OrthancStatus": 8,
                "Uri": "/instances",
            }.items()
        )
        statuses = [
            http.post("/instances", content=too_large if number % 2 else chunks()).status_code
            for number in range(REFUSALS)
        ]
        assert statuses == [413] * REFUSALS
        under = http.post("/instances", content=just_under)
        assert (under.status_code, under.json()["OrthancStatus"]) == (400, 15)  # Bad file format
        assert "connection" not in under.headers  # read to its end: the connection is kept
        assert http.post("/instances", content=ct).status_code == 200
        assert http.get("/system").status_code == 200
    figures.add(
        "upload limit",
        f"{REFUSALS + 1} bodies of {len(too_large)} bytes (limit {UPLOAD_LIMIT}) all answered 413; "
        f"{len(just_under)} bytes: {under.status_code}",
    )


def data_uri(content: bytes, salt: int) -> str:
    return "data:application/pdf;base64," + base64.b64encode(content + str(salt).encode()).decode()


def large_dataset(maker: InstanceMaker, association: int, number: int):
    """A CT of about 512 KB: two of them exceed the 1 MB pending limit."""
    dataset = maker.dataset(f"BUSY{association}", 0, number)
    dataset.Rows = dataset.Columns = 512
    dataset.PixelData = bytes(512 * 512 * 2)
    return dataset


def test_a_find_body_sent_a_byte_at_a_time_is_cut_off(limited: ServerProcess) -> None:
    """The fast lane reads /tools/find bodies under the same deadline as the router."""
    body = b'{"Level": "Study", "Query": {}}' + b" " * 2000
    head = (
        f"POST /tools/find HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    answer, seconds = trickle(limited, head, body, 0.2)
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 408 Request Timeout"
    assert TIMEOUT <= seconds < TIMEOUT + 3
