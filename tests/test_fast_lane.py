"""The fast lane's answers carry what the router's do: lengths, types, the file as stored, metrics, ETags."""

import io

import httpx
import pydicom
import pytest

from fastpacs.api.fast_lane import MAX_READ_FILE
from fastpacs.testing import ServerProcess
from tests.conftest import pydicom_file


@pytest.fixture(scope="module")
def instance(server: ServerProcess) -> tuple[str, bytes]:
    data = pydicom_file("CT_small.dcm").read_bytes()
    answer = httpx.post(f"{server.base_url}/instances", content=data)
    assert answer.status_code == 200
    return answer.json()["ID"], data


@pytest.mark.parametrize("large", [False, True], ids=["read", "pathsend"])
def test_file_has_its_length_type_and_name(
    client: httpx.Client, instance: tuple[str, bytes], large: bool
) -> None:
    instance_id, data = instance
    if large:  # above MAX_READ_FILE: sent from its path by the server
        data = _large_file()
        instance_id = client.post("/instances", content=data).json()["ID"]
    answer = client.get(f"/instances/{instance_id}/file", headers={"Accept-Encoding": "identity"})
    assert answer.status_code == 200
    assert answer.content == data
    assert answer.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in answer.headers
    assert answer.headers["content-type"] == "application/dicom"
    file_uuid = client.get(f"/instances/{instance_id}").json()["FileUuid"]
    assert answer.headers["content-disposition"] == f'filename="{file_uuid}.dcm"'
    gzipped = client.get(f"/instances/{instance_id}/file", headers={"Accept-Encoding": "gzip"})
    assert gzipped.content == data
    assert "content-encoding" not in gzipped.headers  # as stored (test_answers_sent_as_they_are)


def _large_file() -> bytes:
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.SOPInstanceUID = pydicom.uid.generate_uid()
    dataset.Rows = dataset.Columns = 1100
    dataset.PixelData = bytes(1100 * 1100 * 2)
    assert len(dataset.PixelData) > MAX_READ_FILE
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return output.getvalue()


def test_json_answers_have_their_length(client: httpx.Client, instance: tuple[str, bytes]) -> None:
    instance_id, _ = instance
    for path in (f"/instances/{instance_id}", f"/instances/{instance_id}/tags?simplify", "/instances"):
        answer = client.get(path, headers={"Accept-Encoding": "identity"})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        assert answer.headers["content-length"] == str(len(answer.content))


def test_unknown_and_unhandled_requests_go_to_the_router(
    client: httpx.Client, instance: tuple[str, bytes]
) -> None:
    instance_id, _ = instance
    missing = "00000000-00000000-00000000-00000000-00000000"
    assert client.get(f"/instances/{missing}/file").status_code == 404
    assert client.get(f"/instances/{missing}").status_code == 404
    assert client.get(f"/instances/{instance_id}?short").json()["MainDicomTags"]["0008,0018"]
    overridden = client.get(f"/instances/{instance_id}/file", headers={"X-HTTP-Method-Override": "PATCH"})
    assert overridden.status_code == 400


def test_lane_answers_are_counted_under_the_route_names(
    client: httpx.Client, instance: tuple[str, bytes]
) -> None:
    instance_id, _ = instance
    for _ in range(3):
        assert client.get(f"/instances/{instance_id}/file").status_code == 200
    text = client.get("/tools/metrics-prometheus").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("fastpacs_http_request_duration_seconds_count")
        and 'route="/instances/{resource_id}/file"' in line
        and 'status="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
