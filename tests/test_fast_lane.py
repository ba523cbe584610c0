"""The fast lane's answers carry what the router's do: lengths, types, the file as stored, metrics, ETags."""

import io
import threading
import zipfile

import httpx
import pydicom
import pytest

from fastpacs.api.fast_lane import MAX_READ_FILE
from fastpacs.testing import ServerProcess
from tests.conftest import dicom_variant, pydicom_file, stored_blobs


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


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'{"Level": "\xff\xfe"}', 400, "Bad request"),  # read as Orthanc reads it: no "Query"
        (b'{"Level": "Study", "Query": {"PatientName": "\xc3"}}', 200, None),
        (b"[" * 5000, 400, "Bad request"),  # not JSON for fastpacs (Orthanc crashes)
    ],
    ids=["invalid-utf8-level", "invalid-utf8-value", "nested-too-deep"],
)
def test_a_find_body_msgspec_cannot_decode_is_answered_as_by_the_router(
    client: httpx.Client, body: bytes, status: int, error: str | None
) -> None:
    answer = client.post("/tools/find", content=body)
    assert answer.status_code == status, answer.text
    if error is not None:
        assert answer.json()["OrthancError"] == error


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


def _requests_counted(client: httpx.Client, status: int) -> float:
    """POST /instances requests counted with ``status`` (0 before the first)."""
    for line in client.get("/tools/metrics-prometheus").text.splitlines():
        if (
            line.startswith("fastpacs_http_request_duration_seconds_count")
            and 'route="/instances"' in line
            and 'method="POST"' in line
            and f'status="{status}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_an_upload_answers_as_the_router_does(client: httpx.Client) -> None:
    """A plain upload is stored by the lane; as a form or in chunks (the router's), the same file gets
    the same answer (already stored), with the same headers, and is counted under the same route."""
    data = dicom_variant(instance="lane1")
    before = _requests_counted(client, 200)
    lane = client.post("/instances", content=data, headers={"Accept-Encoding": "identity"})
    form = client.post(
        "/instances",
        files={"file": ("a.dcm", data, "application/dicom")},
        headers={"Accept-Encoding": "identity"},
    )
    chunked = client.post(
        "/instances", content=iter([data[:1000], data[1000:]]), headers={"Accept-Encoding": "identity"}
    )
    assert lane.status_code == form.status_code == chunked.status_code == 200
    assert lane.json()["Status"] == "Success"
    assert {**lane.json(), "Status": "AlreadyStored"} == form.json() == chunked.json()
    assert lane.headers["content-type"] == form.headers["content-type"] == "application/json; charset=utf-8"
    assert lane.headers["content-length"] == str(len(lane.content))
    instance = lane.json()["ID"]
    assert client.get(f"/instances/{instance}/file").content == data
    assert client.get(f"/instances/{instance}/metadata/RemoteIP").text == "127.0.0.1"
    assert client.get(f"/instances/{instance}/metadata/Origin").text == "RestApi"
    assert _requests_counted(client, 200) == before + 3


def test_a_zip_upload_answers_its_instances(client: httpx.Client) -> None:
    files = [dicom_variant(instance=f"lanezip{number}") for number in range(2)]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        for number, data in enumerate(files):
            writer.writestr(f"{number}.dcm", data)
    answer = client.post("/instances", content=archive.getvalue())
    assert answer.status_code == 200
    assert [item["Status"] for item in answer.json()] == ["Success", "Success"]


def test_a_refused_upload_is_answered_as_the_router_does_and_stores_nothing(
    server: ServerProcess, client: httpx.Client
) -> None:
    """The lane answers a refused file with the router's own error handler: the same body as for the
    same bytes sent in chunks (the router's), counted once, nothing stored."""
    blobs = stored_blobs(server.directory / "storage")
    instances = client.get("/instances").json()
    before = _requests_counted(client, 400)
    data = dicom_variant(instance="lanebad")[:-100]  # its pixels cut short
    lane = client.post("/instances", content=data)
    routed = client.post("/instances", content=iter([data]))
    assert lane.status_code == routed.status_code == 400
    assert lane.json() == routed.json()
    assert lane.json()["OrthancStatus"] == 15  # Bad file format
    assert "connection" not in lane.headers  # the body was read to its end: the connection is kept
    assert _requests_counted(client, 400) == before + 2
    assert stored_blobs(server.directory / "storage") == blobs
    assert client.get("/instances").json() == instances


def test_resources_and_listings_follow_every_write(client: httpx.Client) -> None:
    """Answers the lane gives again from its cache are those of the index as it is now."""
    first = client.post(
        "/instances", content=dicom_variant(patient_id="cache", study="81", series="1", instance="1")
    )
    study_id = first.json()["ParentStudy"]
    instance_id = first.json()["ID"]
    for _ in range(2):  # the second answers from the cache
        study = client.get(f"/studies/{study_id}").json()
        listed = client.get("/studies").json()
        instance_json = client.get(f"/instances/{instance_id}").json()
    assert len(study["Series"]) == 1 and study_id in listed
    second = client.post(
        "/instances", content=dicom_variant(patient_id="cache", study="81", series="2", instance="2")
    )
    assert len(client.get(f"/studies/{study_id}").json()["Series"]) == 2
    assert client.post(f"/instances/{instance_id}/attachments/dicom/compress").status_code == 200
    assert client.get(f"/instances/{instance_id}").json()["FileUuid"] != instance_json["FileUuid"]
    assert client.delete(f"/instances/{second.json()['ID']}").status_code == 200
    assert len(client.get(f"/studies/{study_id}").json()["Series"]) == 1
    assert client.delete(f"/studies/{study_id}").status_code == 200
    assert client.get(f"/studies/{study_id}").status_code == 404
    assert study_id not in client.get("/studies").json()


def test_answers_read_while_a_write_commits_are_not_given_after_it(server: ServerProcess) -> None:
    """Readers polling a study while its series are uploaded: each upload, once answered, is seen.

    LMDB makes a commit visible to new readers only after its meta page is flushed to disk; an
    answer read meanwhile (the old state) must not be kept for the new version of the index.
    """
    first = httpx.post(
        f"{server.base_url}/instances", content=dicom_variant(patient_id="polled", study="82", series="0")
    ).json()
    study_path = f"/studies/{first['ParentStudy']}"
    uploaded = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as poller:
            while not uploaded.is_set():
                poller.get(study_path)

    pollers = [threading.Thread(target=poll) for _ in range(3)]
    for poller in pollers:
        poller.start()
    stale = []
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            for series in range(1, 41):
                data = dicom_variant(
                    patient_id="polled", study="82", series=str(series), instance=str(series)
                )
                assert client.post("/instances", content=data).status_code == 200
                seen = len(client.get(study_path).json()["Series"])
                if seen != series + 1:
                    stale.append((series + 1, seen))
    finally:
        uploaded.set()
        for poller in pollers:
            poller.join()
    assert stale == []
