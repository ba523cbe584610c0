"""Orthanc peers, fastpacs against the reference Orthanc 1.10.1.

Both servers get the same files and the same peers, so that their answers
can be compared as they are: the peer ``target`` of both is the reference
Orthanc itself (Orthanc stores to itself, as the capture of its behaviour
did; fastpacs stores to Orthanc), other peers point at closed ports.
Compared:

- PUT /peers (object and array forms, certificates, every refused body),
  GET /peers[?expand], /peers/{name}, /configuration, DELETE;
- POST /peers/target/store in each form and with each option, the errors
  of malformed requests, store-straight, /peers/target/system (both pass on
  Orthanc's /system), and the /exports they log;
- stores to a peer that is down: the synchronous error and the failed
  job, whose ID and times vary by nature (their format is checked);
- the order in which a peer receives the instances of a store (an HTTP
  server standing for the peer notes them).
"""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from fastpacs.testing import free_port
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import shuffled_study, test_file
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
JOB_TIMEOUT = 30.0
UNKNOWN_ID = "00000000-00000000-00000000-00000000-00000000"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    """Both servers, logging exports as in the capture of Orthanc's behaviour."""
    options = {**COMMON_OPTIONS, "LogExportedResources": True}
    servers = ServerPair.start(tmp_path_factory.mktemp("differential-peers"), options)
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict[str, str]]:
    """File name → Orthanc's upload answer (both servers hold the same files)."""
    answers = {}
    for name in FILES:
        orthanc, fastpacs = pair.send(
            Call(f"upload {name}", "POST", "/instances", body=test_file(name).read_bytes())
        )
        assert (orthanc.status, fastpacs.status) == (200, 200), name
        answers[name] = orthanc.json
    return answers


def _put(name: str, label: str, body: Any) -> Call:
    return Call(
        f"peer-put-{label}", "PUT", f"/peers/{name}", body=httpx.Request("PUT", "/", json=body).content
    )


def _store(label: str, body: bytes | str, peer: str = "target") -> Call:
    content = body.encode() if isinstance(body, str) else body
    return Call(f"peer-store-{label}", "POST", f"/peers/{peer}/store", body=content)


def test_peer_configuration(pair: ServerPair, tmp_path: Path) -> None:
    certificate = tmp_path / "client.pem"
    certificate.write_text("not checked before use\n")
    closed = "http://127.0.0.1:9"
    check = pair.checker()
    check.compare_all(
        [
            get("peers-empty", "/peers"),
            get("peers-empty-expand", "/peers", expand=""),
            _put("target", "target", {"Url": pair.orthanc.base_url}),
            _put(
                "full",
                "full",
                {
                    "Url": f"{closed}/base",
                    "Username": "u",
                    "Password": "p",
                    "HttpHeaders": {"B": "2", "A": "1"},
                    "Timeout": 5,
                },
            ),
            _put("array", "array", [closed, "u", "p"]),
            _put("short", "array-short", [closed]),
            _put("user", "username-only", {"Url": closed, "Username": "u"}),
            _put(
                "cert",
                "certificate",
                {
                    "Url": "https://127.0.0.1:9",
                    "CertificateFile": str(certificate),
                    "CertificateKeyFile": str(certificate),
                    "CertificateKeyPassword": "x",
                },
            ),
            _put("certonly", "certificate-without-key", {"Url": closed, "CertificateFile": str(certificate)}),
            _put(
                "keyonly", "key-without-certificate", {"Url": closed, "CertificateKeyFile": str(certificate)}
            ),
            _put("pkcs", "pkcs11", {"Url": closed, "Pkcs11": True}),
            _put("noscheme", "no-scheme", {"Url": "host:1"}),
            _put("props", "user-property", {"Url": closed, "Other": "value"}),
            _put("bad", "no-url", {}),
            _put("bad", "empty-url", {"Url": ""}),
            _put("bad", "url-not-string", {"Url": 5}),
            _put("bad", "ftp", {"Url": "ftp://host"}),
            _put("bad", "upper-case-scheme", {"Url": "HTTP://host"}),
            _put("bad", "leading-space", {"Url": " http://host"}),
            _put("bad", "array-of-two", [closed, "u"]),
            _put("bad", "array-of-four", [closed, "u", "p", "x"]),
            _put("bad", "string", closed),
            _put("bad", "password-without-username", {"Url": closed, "Password": "p"}),
            _put("bad", "username-not-string", {"Url": closed, "Username": 5}),
            _put("bad", "negative-timeout", {"Url": closed, "Timeout": -1}),
            _put("bad", "timeout-string", {"Url": closed, "Timeout": "3"}),
            _put("bad", "headers-list", {"Url": closed, "HttpHeaders": ["a"]}),
            _put("bad", "header-not-string", {"Url": closed, "HttpHeaders": {"a": 1}}),
            _put("bad", "pkcs11-not-boolean", {"Url": closed, "Pkcs11": "x"}),
            _put("bad", "missing-certificate", {"Url": closed, "CertificateFile": "/nonexistent.pem"}),
            _put(
                "bad",
                "missing-key",
                {
                    "Url": closed,
                    "CertificateFile": str(certificate),
                    "CertificateKeyFile": "/nonexistent.key",
                },
            ),
            Call("peer-put-not-json", "PUT", "/peers/bad", body=b"garbage"),
            get("peers", "/peers"),
            get("peers-expand", "/peers", expand=""),
            get("peer-full", "/peers/full"),
            *(
                get(f"peer-{name}-configuration", f"/peers/{name}/configuration")
                for name in (
                    "full",
                    "array",
                    "short",
                    "user",
                    "cert",
                    "certonly",
                    "keyonly",
                    "pkcs",
                    "noscheme",
                )
            ),
            get("peer-user-property-configuration", "/peers/props/configuration"),
            get("peer-unknown", "/peers/nosuch"),
            get("peer-unknown-configuration", "/peers/nosuch/configuration"),
            get("peer-unknown-system", "/peers/nosuch/system"),
            Call("peer-delete", "DELETE", "/peers/array"),
            Call("peer-delete-again", "DELETE", "/peers/array"),
            Call("peer-delete-unknown", "DELETE", "/peers/nosuch"),
            get("peers-after-delete", "/peers"),
        ]
    )
    check.verdict()


def test_store_to_peer_and_exports(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    ct, mr, rtplan = (stored[name] for name in FILES)
    pair.send(_put("target", "target", {"Url": pair.orthanc.base_url}))
    resources = f'["{ct["ParentStudy"]}", "{mr["ParentSeries"]}", "{rtplan["ID"]}"]'
    check = pair.checker()
    check.compare_all(
        [
            Call("exports-clear", "DELETE", "/exports"),
            get("peer-system", "/peers/target/system"),
            _store("bare-id", ct["ID"]),
            _store("json", f'{{"Resources": {resources}, "Synchronous": true}}'),
            _store("list", f'["{mr["ID"]}"]'),
            _store("string", f'"{rtplan["ID"]}"'),
            _store("compress", f'{{"Resources": ["{ct["ID"]}"], "Compress": true}}'),
            _store("transcode", f'{{"Resources": ["{ct["ID"]}"], "Transcode": "1.2.840.10008.1.2.1"}}'),
            _store("permissive", f'{{"Resources": ["{mr["ParentStudy"]}"], "Permissive": true}}'),
            _store("empty", '{"Resources": []}'),
            Call(
                "peer-store-straight",
                "POST",
                "/peers/target/store-straight",
                body=test_file("CT_small.dcm").read_bytes(),
            ),
            get("exports", "/exports"),
            get("exports-limit-since", "/exports", limit="2", since="1"),
            _store("not-json", "garbage"),
            _store("no-resources", "{}"),
            _store("resources-not-list", '{"Resources": "x"}'),
            _store("not-an-id", '{"Resources": ["bad"]}'),
            _store("compress-not-boolean", f'{{"Resources": ["{ct["ID"]}"], "Compress": "yes"}}'),
            _store("synchronous-not-boolean", f'{{"Resources": ["{ct["ID"]}"], "Synchronous": "yes"}}'),
            _store("priority-not-integer", f'{{"Resources": ["{ct["ID"]}"], "Priority": "1"}}'),
            _store("unknown-syntax", f'{{"Resources": ["{ct["ID"]}"], "Transcode": "nonsense"}}'),
            _store("unknown-resource", UNKNOWN_ID),
            _store("unknown-after-known", f'{{"Resources": ["{ct["ID"]}", "{UNKNOWN_ID}"]}}'),
            _store("unknown-peer", ct["ID"], peer="nosuch"),
            Call("peer-store-straight-not-dicom", "POST", "/peers/target/store-straight", body=b"garbage"),
            get("exports-after-refused-stores", "/exports"),
        ]
    )
    check.verdict()


def _wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_store_to_peer_down(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    ct = stored["CT_small.dcm"]
    down = f"http://127.0.0.1:{free_port()}"
    check = pair.checker()
    check.compare_all(
        [
            _put("down", "down", {"Url": down}),
            _put("downfull", "down-full", {"Url": down, "HttpHeaders": {"X-Token": "secret"}, "Timeout": 3}),
            _store("down", ct["ID"], peer="down"),
            get("peer-system-down", "/peers/down/system"),
        ]
    )
    for peer in ("down", "downfull"):
        body = f'{{"Resources": ["{ct["ParentStudy"]}"], "Asynchronous": true, "Priority": 2}}'.encode()
        jobs = []
        for client in (pair.orthanc_client, pair.fastpacs_client):
            answer = client.post(f"/peers/{peer}/store", content=body)
            assert answer.status_code == 200, answer.text
            job_id = answer.json()["ID"]
            assert answer.json() == {"ID": job_id, "Path": f"/jobs/{job_id}"}
            jobs.append(_wait(client, job_id))
        check.compare_documents(f"peer-job-{peer}", *(_normalized_job(job) for job in jobs))
    check.verdict()


def _normalized_job(job: dict[str, Any]) -> dict[str, Any]:
    """The job with its ID, times and run time replaced once their format is checked."""
    normalized = dict(job)
    for key in ("CreationTime", "CompletionTime", "Timestamp"):
        assert len(job[key]) == len("20261127T165355.851337") and job[key][8] == "T", (key, job[key])
        normalized[key] = "<time>"
    assert isinstance(job["EffectiveRuntime"], float)
    normalized["ID"] = normalized["EffectiveRuntime"] = "<varies>"
    return normalized


class _Recorder:
    """An HTTP server standing for an Orthanc peer: it notes, per upload received, who sent it (the
    first part of the path: each server gets its own peer URL) and the instance it holds, and answers
    as Orthanc answers an upload."""

    def __init__(self) -> None:
        received: list[tuple[str, str]] = []

        class Upload(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                sender = self.path.split("/")[1]
                received.append((sender, str(dcmread(BytesIO(data), stop_before_pixels=True).SOPInstanceUID)))
                answer = json.dumps(
                    {"ID": UNKNOWN_ID, "Path": f"/instances/{UNKNOWN_ID}", "Status": "Success"}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Upload)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sent_by(self, sender: str) -> list[str]:
        return [uid for name, uid in self.received if name == sender]


def test_instances_sent_to_a_peer_come_as_orthanc_sends_them(pair: ServerPair) -> None:
    """A store to a peer of a whole study, then of its series and instances listed out of order:
    each server sends the same instances in the same order."""
    recorder = _Recorder()
    study = shuffled_study()
    try:
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client)):
            answers = []
            for dataset in study:
                buffer = BytesIO()
                dataset.save_as(buffer, enforce_file_format=True)
                answers.append(client.post("/instances", content=buffer.getvalue()).json())
            assert client.put("/peers/recorder", json={"Url": f"{recorder.url}/{name}/"}).status_code == 200
            listed = [
                answers[2]["ID"],
                answers[0]["ParentSeries"],
                answers[4]["ID"],
                answers[1]["ParentSeries"],
            ]
            for resources in ([answers[0]["ParentStudy"]], listed):
                answer = client.post(
                    "/peers/recorder/store", json={"Resources": resources, "Synchronous": True}
                )
                assert answer.status_code == 200, answer.text
            client.delete("/peers/recorder")
            client.delete(f"/studies/{answers[0]['ParentStudy']}")
    finally:
        recorder.server.shutdown()
    assert len(recorder.sent_by("orthanc")) == 2 * len(study) + 2
    assert recorder.sent_by("fastpacs") == recorder.sent_by("orthanc")
