"""The fast lane's answers carry what the router's do: lengths, types, the file as stored, metrics, ETags."""

import hashlib

import httpx
import pytest

from fastpacs.testing import ServerProcess
from tests.conftest import pydicom_file


@pytest.fixture(scope="module")
def instance(server: ServerProcess) -> tuple[str, bytes]:
    data = pydicom_file("CT_small.dcm").read_bytes()
    answer = httpx.post(f"{server.base_url}/instances", content=data)
    assert answer.status_code == 200
    return answer.json()["ID"], data


def test_file_has_its_length_type_and_name(client: httpx.Client, instance: tuple[str, bytes]) -> None:
    instance_id, data = instance
    answer = client.get(f"/instances/{instance_id}/file", headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200
    assert answer.content == data
    assert answer.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in answer.headers
    assert "content-encoding" not in answer.headers  # DICOM files are sent as stored
    assert answer.headers["content-type"] == "application/dicom"
    file_uuid = client.get(f"/instances/{instance_id}").json()["FileUuid"]
    assert answer.headers["content-disposition"] == f'filename="{file_uuid}.dcm"'
    assert hashlib.sha256(answer.content).hexdigest() == hashlib.sha256(data).hexdigest()


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
