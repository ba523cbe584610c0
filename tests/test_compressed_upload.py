"""Uploads sent with Content-Encoding: gzip (Orthanc peers with "Compress": true) are inflated."""

import gzip
from collections.abc import Iterator

import httpx
import pytest

from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

CT_ID = "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(tmp_path_factory.mktemp("gzip"), {"MaximumUploadSize": 1}).start()
    yield process
    process.stop()


def test_gzip_bodies_are_inflated_and_bounded(small_limit_server: ServerProcess) -> None:
    data = pydicom_file("CT_small.dcm").read_bytes()
    with httpx.Client(base_url=small_limit_server.base_url, timeout=60) as http:
        answer = http.post("/instances", content=gzip.compress(data), headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ID"] == CT_ID
        assert http.get(f"/instances/{CT_ID}/file").content == data
        # Not gzip after all: refused as a file that is not DICOM, nothing stored.
        broken = http.post("/instances", content=b"\x1f\x8bnot gzip", headers={"Content-Encoding": "gzip"})
        assert broken.status_code == 400
        # A bomb: 64 MB of zeros in 64 KB; the 1 MB upload limit applies to the inflated bytes.
        # The server answers 413 before it has read everything, and says it closes the connection.
        bomb = gzip.compress(bytes(64 * 1024 * 1024))
        for _ in range(5):
            refused = http.post("/instances", content=bomb, headers={"Content-Encoding": "gzip"})
            assert (refused.status_code, refused.json()["HttpStatus"]) == (413, 413)
            assert refused.headers["connection"] == "close"
        assert http.get("/statistics").json()["CountInstances"] == 1
