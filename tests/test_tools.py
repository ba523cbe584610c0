"""/tools of a running fastpacs, and the HTTP conventions in front of every route.

Answers are compared with Orthanc's in
tests/differential/test_api_rest_vs_orthanc.py; these tests cover what that
comparison cannot: the server stopping and restarting itself, compression
thresholds, the OpenAPI document.
"""

import gzip
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

CT_INSTANCE = "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"
CT_PATIENT = "fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718"
CT_STUDY = "8a8cf898-ca27c490-d0c7058c-929d0581-2bbf104d"


@pytest.fixture(scope="module")
def ct(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        assert http.post("/instances", content=pydicom_file("CT_small.dcm").read_bytes()).status_code == 200


def test_clocks_and_uids(client: httpx.Client) -> None:
    assert re.fullmatch(r"\d{8}T\d{6}", client.get("/tools/now").text)
    assert re.fullmatch(r"\d{8}T\d{6}", client.get("/tools/now-local").text)
    assert re.fullmatch(r"[0-9a-f-]{36}", client.get("/tools/generate-uid", params={"level": "patient"}).text)
    uids = {client.get("/tools/generate-uid", params={"level": "series"}).text for _ in range(3)}
    assert len(uids) == 3 and all(re.fullmatch(r"2\.25\.\d+", uid) and len(uid) <= 64 for uid in uids)
    assert client.get("/tools/generate-uid").status_code == 404
    assert "Storage" in client.get("/tools/dicom-conformance").text


def test_tools_lists_what_is_served(client: httpx.Client) -> None:
    listed = client.get("/tools").json()
    assert {"bulk-content", "bulk-delete", "now", "log-level-http", "find", "lookup"} <= set(listed)
    for name in ("now", "generate-uid?level=study", "log-level", "dicom-conformance"):
        assert client.get(f"/tools/{name}").status_code == 200


def test_log_levels(client: httpx.Client) -> None:
    assert client.get("/tools/log-level").text == "default"
    assert client.put("/tools/log-level-dicom", content=b"trace").status_code == 200
    assert client.get("/tools/log-level").text == "trace"
    assert client.get("/tools/log-level-http").text == "default"
    refused = client.put("/tools/log-level", content=b"loud")
    assert (refused.status_code, refused.json()["OrthancStatus"]) == (400, 3)
    assert client.put("/tools/log-level", content=b"default").status_code == 200
    assert client.get("/tools/log-level-dicom").text == "default"


def test_bulk_content_and_delete(client: httpx.Client, ct: None) -> None:
    mr = client.post("/instances", content=pydicom_file("MR_small.dcm").read_bytes()).json()
    content = client.post(
        "/tools/bulk-content", json={"Resources": [CT_STUDY, mr["ID"], "nonexistent"], "Level": "Patient"}
    ).json()
    assert [item["ID"] for item in content] == sorted([CT_PATIENT, mr["ParentPatient"]])
    assert all(item["Metadata"]["LastUpdate"] == item["LastUpdate"] for item in content)
    instances = client.post(
        "/tools/bulk-content", json={"Resources": [CT_PATIENT], "Level": "Instance"}
    ).json()
    assert [item["ID"] for item in instances] == [CT_INSTANCE]
    assert instances[0]["Metadata"]["Origin"] == "RestApi"
    bad = client.post("/tools/bulk-content", json={"Resources": "x"})
    assert (bad.status_code, bad.json()["Details"]) == (400, "List of strings expected in field: Resources")
    assert client.post("/tools/bulk-content", json={"Resources": [], "Level": "Foo"}).status_code == 400

    deleted = client.post(
        "/tools/bulk-delete", json={"Resources": [mr["ParentStudy"], mr["ID"], "nonexistent"]}
    )
    assert deleted.status_code == 200
    assert client.get(f"/patients/{mr['ParentPatient']}").status_code == 404
    assert client.get(f"/patients/{CT_PATIENT}").status_code == 200


def test_method_override(client: httpx.Client, ct: None) -> None:
    protected = f"/patients/{CT_PATIENT}/protected"
    assert client.post(protected, content=b"1", headers={"X-HTTP-Method-Override": "put"}).status_code == 200
    assert client.get(protected).text == "1"
    assert client.post(protected, content=b"0", headers={"X-HTTP-Method-Override": "PUT"}).status_code == 200
    assert client.get(protected).text == "0"
    refused = client.post(protected, headers={"X-HTTP-Method-Override": "GET"})
    assert (refused.status_code, refused.content) == (400, b"")


def test_compression(client: httpx.Client, ct: None) -> None:
    tags = f"/instances/{CT_INSTANCE}/tags"
    plain = client.get(tags, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    with client.stream("GET", tags, headers={"Accept-Encoding": "gzip"}) as compressed:
        raw = b"".join(compressed.iter_raw())
        assert compressed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == plain.content and len(raw) < len(plain.content) / 3
    small = client.get(f"/instances/{CT_INSTANCE}", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers, "one TCP segment: not worth compressing"
    refused = client.get(tags, headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
    with client.stream("GET", "/nonexistent/" + "x" * 2000, headers={"Accept-Encoding": "gzip"}) as error:
        assert error.status_code == 404


def test_root_redirect_and_openapi(client: httpx.Client) -> None:
    root = client.get("/", follow_redirects=False)
    assert (root.status_code, root.headers["location"]) == (301, "app/explorer.html")
    assert "fastpacs" in client.get("/", follow_redirects=True).text
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path in ("/instances/{resource_id}/attachments/{name}/md5", "/tools/bulk-delete", "/system"):
        assert path in paths
    assert "post" in paths["/instances"]


def test_reset_and_shutdown_are_refused_by_default(client: httpx.Client) -> None:
    assert client.post("/tools/reset").status_code == 403
    assert client.post("/tools/shutdown").status_code == 403
    assert client.get("/system").status_code == 200


@pytest.fixture(scope="module")
def controllable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(
        tmp_path_factory.mktemp("lifecycle"), {"RestApiResetEnabled": True, "RestApiShutdownEnabled": True}
    ).start()
    yield process
    process.kill()


def _wait(check, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_reset_restarts_and_shutdown_stops(controllable: ServerProcess) -> None:
    with httpx.Client(base_url=controllable.base_url, timeout=30) as http:
        http.post("/instances", content=pydicom_file("CT_small.dcm").read_bytes())
        assert http.post("/tools/reset").json() == {}

        def answers_after_restart() -> bool:
            try:
                return http.get("/statistics").json()["CountInstances"] == 1
            except httpx.HTTPError:
                return False

        time.sleep(1)
        assert _wait(answers_after_restart), controllable.log_tail()
        assert "restart requested" in controllable.log_path.read_text()
        assert http.post("/tools/shutdown").json() == {}
    assert controllable.process is not None
    controllable.process.wait(60)
    assert controllable.process.returncode is not None
