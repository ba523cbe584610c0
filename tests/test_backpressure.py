"""Uploads beyond MaximumPendingIngestSize are turned away with 503 and Retry-After, nothing is lost."""

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

UPLOADS = 24


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    options = {"MaximumPendingIngestSize": 1, "WorkerProcesses": 1}
    process = fastpacs_server(tmp_path_factory.mktemp("busy"), options).start()
    yield process
    process.stop()


def large_instances(count: int) -> list[bytes]:
    """CT files of about 512 KB each (one 512×512 16-bit frame), all different."""
    template = dcmread(pydicom_file("CT_small.dcm"))
    files = []
    for index in range(count):
        template.SOPInstanceUID = generate_uid()
        template.Rows = template.Columns = 512
        template.PixelData = numpy.full((512, 512), index, dtype=numpy.int16).tobytes()
        buffer = io.BytesIO()
        template.save_as(buffer)
        files.append(buffer.getvalue())
    return files


def _post(http: httpx.Client, data: bytes) -> httpx.Response | None:
    """The answer; ``None`` when the server refused before reading the body and closed the
    connection under the client's feet (it may, for a 503: the body is never wanted)."""
    try:
        return http.post("/instances", content=data)
    except httpx.RemoteProtocolError:
        return None


def test_burst_beyond_the_pending_limit(busy_server: ServerProcess) -> None:
    files = large_instances(UPLOADS)
    with (
        httpx.Client(base_url=busy_server.base_url, timeout=60) as http,
        ThreadPoolExecutor(UPLOADS) as threads,
    ):
        answers = list(threads.map(lambda data: _post(http, data), files))
        statuses = [answer.status_code if answer is not None else 503 for answer in answers]
        assert set(statuses) <= {200, 503}
        assert 200 in statuses and 503 in statuses, statuses
        for answer in answers:
            if answer is not None and answer.status_code == 503:
                assert answer.headers["retry-after"] == "1"
                assert answer.json()["HttpStatus"] == 503
        # What was refused goes through when retried, one at a time.
        for data, status in zip(files, statuses, strict=True):
            if status == 503:
                assert http.post("/instances", content=data).status_code == 200
        assert http.get("/statistics").json()["CountInstances"] == UPLOADS
