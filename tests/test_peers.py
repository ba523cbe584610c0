"""Orthanc peers: fastpacs and the reference Orthanc 1.10.1 storing studies to each other over HTTP.

Both servers require HTTP Basic authentication. fastpacs knows Orthanc from
its configuration (the array form ``[url, user, password]``); Orthanc is
told about fastpacs through its own REST API (``PUT /peers/fastpacs``).
Studies travel both ways and must arrive whole, byte for byte, under the
same IDs.

Failures are played by small servers run by the tests: a closed port, a
peer that answers errors (or 503 once, to be retried), one that never
answers, and an HTTPS peer that demands a client certificate. A failed
store must fail its job with Orthanc's error code and a clear text, and
leave the local copy untouched.

The registry's persistence (``OrthancPeersInDatabase``) and the reading of
``OrthancPeers`` are checked in-process, without a server.
"""

import asyncio
import hashlib
import http.server
import io
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy
import pydicom
import pytest
from pydicom.uid import generate_uid

from fastpacs.config import ConfigurationError, OrthancPeer, load_config
from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.services.peers import PeerRegistry, PeerStoreJob, PeerStoreState
from fastpacs.storage.blobs import BlobStore
from fastpacs.testing import ServerProcess, fastpacs_server, free_port, orthanc_server
from tests.conftest import pydicom_file

ORTHANC_USER = ("alice", "wonderland")
FASTPACS_USER = ("bob", "builder")
KEY_PASSWORD = "key-secret"
JOB_TIMEOUT = 30.0
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


# --- test data ---------------------------------------------------------------------------------------


def _large_ct(dataset: pydicom.Dataset) -> None:
    """Make a CT 1024×1024 (2 MB of pixels): a file larger than the usual HTTP buffers."""
    pixels = (numpy.arange(1024 * 1024, dtype=numpy.uint32) % 4096).astype(numpy.int16).reshape(1024, 1024)
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.PixelData = pixels.tobytes()


STUDY_LAYOUT = (
    # (pydicom file, series number, changed to a large image)
    ("CT_small.dcm", 1, False),
    ("CT_small.dcm", 1, False),
    ("CT_small.dcm", 1, True),
    ("MR_small.dcm", 2, False),
    ("SC_rgb_jpeg_dcmtk.dcm", 3, False),  # JPEG baseline: compressed pixel data
    ("SC_rgb_rle.dcm", 4, False),
)


def study_files(name: str, layout: tuple[tuple[str, int, bool], ...] = STUDY_LAYOUT) -> list[bytes]:
    """The files of one study (patient ``peers-{name}``): several series, several kinds of file."""
    study_uid = generate_uid(entropy_srcs=["peers", name])
    files = []
    for number, (base, series, large) in enumerate(layout):
        dataset = pydicom.dcmread(pydicom_file(base))
        dataset.PatientID = f"peers-{name}"
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = generate_uid(entropy_srcs=["peers", name, str(series)])
        dataset.SOPInstanceUID = generate_uid(entropy_srcs=["peers", name, str(series), str(number)])
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        if large:
            _large_ct(dataset)
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append(buffer.getvalue())
    return files


def upload(client: httpx.Client, files: list[bytes]) -> tuple[str, dict[str, str]]:
    """Upload files of one study: the study's ID and instance ID → SHA-256 of the file."""
    hashes, study = {}, ""
    for data in files:
        answer = client.post("/instances", content=data)
        assert answer.status_code == 200, answer.text
        hashes[answer.json()["ID"]] = hashlib.sha256(data).hexdigest()
        study = answer.json()["ParentStudy"]
    return study, hashes


def stored_hashes(client: httpx.Client, study: str) -> dict[str, str]:
    """Instance ID → SHA-256 of the file a server stores, for every instance of a study."""
    instances = client.get(f"/studies/{study}/instances")
    assert instances.status_code == 200, instances.text
    return {
        item["ID"]: hashlib.sha256(client.get(f"/instances/{item['ID']}/file").content).hexdigest()
        for item in instances.json()
    }


def wait_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


# --- TLS material and small peers played by the tests -------------------------------------------------


EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


@dataclass
class Tls:
    """A test CA, a certificate for 127.0.0.1 it signed, and client certificates with a protected key."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def client_certificate(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    def openssl(self, *arguments: str) -> None:
        subprocess.run(["openssl", *arguments], cwd=self.folder, check=True, capture_output=True)

    def create(self) -> "Tls":
        self.openssl(
            "req", "-x509", *EC_KEY, "-noenc", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ca"
        )
        (self.folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        self.issue("server", "127.0.0.1", key=("-noenc",), extensions=("-extfile", "server.ext"))
        self.issue_client("fastpacs-client")
        return self

    def issue_client(self, common_name: str) -> None:
        """(Re)write client.pem and client.key: a certificate for ``common_name``, its key protected."""
        self.issue("client", common_name, key=("-passout", f"pass:{KEY_PASSWORD}"))

    def issue(
        self, name: str, common_name: str, key: tuple[str, ...], extensions: tuple[str, ...] = ()
    ) -> None:
        """``{name}.pem`` signed by the CA for ``common_name``, and its key ``{name}.key``."""
        request = ("-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={common_name}")
        self.openssl("req", *EC_KEY, *key, *request)
        self.openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", *extensions,
        )  # fmt: skip

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.folder / "server.pem", self.folder / "server.key")
        context.load_verify_locations(self.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_subject: str | None


@dataclass
class FakePeer:
    """An HTTP(S) server in a thread: answers the scripted statuses, then ``default``; records requests."""

    script: list[int] = field(default_factory=list)
    default: int = 200
    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                certificate = self.connection.getpeercert() if peer.tls else None
                subject = dict(item[0] for item in certificate["subject"]) if certificate else None
                peer.received.append(
                    Received(
                        self.command, self.path, dict(self.headers), body, (subject or {}).get("commonName")
                    )
                )
                status = peer.script.pop(0) if peer.script else peer.default
                answer = json.dumps({"ID": "fake", "Status": "Success"}).encode()
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = _answer  # noqa: N815 - the names http.server calls

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- servers -------------------------------------------------------------------------------------------


@dataclass
class Peers:
    orthanc: ServerProcess
    fastpacs: ServerProcess
    orthanc_client: httpx.Client
    fastpacs_client: httpx.Client
    tls: Tls


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """The reference Orthanc and fastpacs, both with HTTP Basic authentication, started side by side."""
    folder = tmp_path_factory.mktemp("peers")
    tls = Tls(folder).create()
    orthanc = orthanc_server(
        folder / "orthanc",
        {"AuthenticationEnabled": True, "RegisteredUsers": dict([ORTHANC_USER])},
    )
    fastpacs = fastpacs_server(
        folder / "fastpacs",
        {
            "AuthenticationEnabled": True,
            "RegisteredUsers": dict([FASTPACS_USER]),
            "LogExportedResources": True,
            "HttpsCACertificates": str(tls.ca),
            "OrthancPeers": {"orthanc": [orthanc.base_url, *ORTHANC_USER]},
        },
    )
    with ThreadPoolExecutor(2) as starting:
        for started in [starting.submit(server.start) for server in (orthanc, fastpacs)]:
            started.result()
    try:
        with (
            httpx.Client(base_url=orthanc.base_url, auth=ORTHANC_USER, timeout=60) as orthanc_client,
            httpx.Client(base_url=fastpacs.base_url, auth=FASTPACS_USER, timeout=60) as fastpacs_client,
        ):
            yield Peers(orthanc, fastpacs, orthanc_client, fastpacs_client, tls)
    finally:
        orthanc.stop()
        fastpacs.stop()


# --- the happy paths: both directions -------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.slow
def test_configured_peer_and_its_system(peers: Peers) -> None:
    client = peers.fastpacs_client
    assert client.get("/peers").json() == ["orthanc"]
    assert client.get("/peers", params={"expand": ""}).json() == {
        "orthanc": {
            "HttpHeaders": [],
            "Password": None,
            "Pkcs11": False,
            "Timeout": 0,
            "Url": f"{peers.orthanc.base_url}/",
            "Username": "alice",
        }
    }
    assert client.get("/peers/orthanc").json() == ["configuration", "store", "store-straight", "system"]
    system = client.get("/peers/orthanc/system")
    assert system.status_code == 200
    assert system.headers["content-type"] == "application/json"
    assert system.json()["Version"] == "1.10.1"
    assert system.json()["HttpPort"] == peers.orthanc.http_port


@pytest.mark.reference
def test_study_from_fastpacs_to_orthanc(peers: Peers) -> None:
    study, hashes = upload(peers.fastpacs_client, study_files("to-orthanc"))
    answer = peers.fastpacs_client.post(
        "/peers/orthanc/store", json={"Resources": [study], "Synchronous": True}
    )
    assert answer.status_code == 200, answer.text
    sizes = [len(data) for data in study_files("to-orthanc")]
    assert answer.json() == {
        "Compress": False,
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": len(sizes),
        "ParentResources": [study],
        "Peer": [f"{peers.orthanc.base_url}/", "alice", ""],
        "Size": str(sum(sizes)),
        "SizeMB": sum(sizes) // (1024 * 1024),
    }
    assert stored_hashes(peers.orthanc_client, study) == hashes
    exports = peers.fastpacs_client.get("/exports", params={"last": ""}).json()["Exports"]
    assert [(entry["ID"], entry["ResourceType"], entry["RemoteModality"]) for entry in exports] == [
        (study, "Study", "orthanc")
    ]


@pytest.mark.reference
def test_study_from_orthanc_to_fastpacs(peers: Peers) -> None:
    orthanc = peers.orthanc_client
    study, hashes = upload(orthanc, study_files("from-orthanc"))
    peer = {"Url": peers.fastpacs.base_url, "Username": FASTPACS_USER[0], "Password": FASTPACS_USER[1]}
    assert orthanc.put("/peers/fastpacs", json=peer).status_code == 200
    assert orthanc.get("/peers/fastpacs/system").json()["Name"] == "fastpacs"
    answer = orthanc.post("/peers/fastpacs/store", json={"Resources": [study], "Synchronous": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["FailedInstancesCount"] == 0
    assert stored_hashes(peers.fastpacs_client, study) == hashes


@pytest.mark.reference
def test_asynchronous_store_with_compression_and_transcoding(peers: Peers) -> None:
    client = peers.fastpacs_client
    layout = (("SC_rgb_jpeg_dcmtk.dcm", 1, False), ("CT_small.dcm", 2, False))
    study, _ = upload(client, study_files("compressed", layout))
    request = {
        "Resources": [study],
        "Asynchronous": True,
        "Compress": True,
        "Transcode": EXPLICIT_VR_LITTLE_ENDIAN,
        "Priority": 5,
    }
    answer = client.post("/peers/orthanc/store", json=request)
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["ID"]
    assert answer.json() == {"ID": job_id, "Path": f"/jobs/{job_id}"}
    job = wait_job(client, job_id)
    assert (job["State"], job["Type"], job["Priority"], job["Progress"]) == (
        "Success",
        "OrthancPeerStore",
        5,
        100,
    )
    content = job["Content"]
    assert (content["Compress"], content["Transcode"], content["InstancesCount"]) == (
        True,
        EXPLICIT_VR_LITTLE_ENDIAN,
        2,
    )
    instances = peers.orthanc_client.get(f"/studies/{study}/instances").json()
    assert len(instances) == 2
    for instance in instances:
        syntax = peers.orthanc_client.get(f"/instances/{instance['ID']}/metadata/TransferSyntax").text
        assert syntax == EXPLICIT_VR_LITTLE_ENDIAN
    sent = sum(instance["FileSize"] for instance in instances)
    assert 0 < int(content["Size"]) < sent  # gzip made the uploads smaller than the files


# --- failures --------------------------------------------------------------------------------------------


def _local_copy(client: httpx.Client, study: str) -> tuple[dict[str, str], dict[str, Any]]:
    return stored_hashes(client, study), client.get("/statistics").json()


@pytest.mark.reference
def test_peer_down_fails_cleanly(peers: Peers) -> None:
    client = peers.fastpacs_client
    study, _ = upload(client, study_files("down", (("CT_small.dcm", 1, False), ("MR_small.dcm", 2, False))))
    before = _local_copy(client, study)
    assert client.put("/peers/down", json={"Url": f"http://127.0.0.1:{free_port()}"}).status_code == 200

    synchronous = client.post("/peers/down/store", content=study)
    assert synchronous.status_code == 500
    error = synchronous.json()
    assert (error["OrthancStatus"], error["OrthancError"]) == (9, "Error in the network protocol")
    assert "Cannot reach the peer" in error["Details"]

    job_id = client.post("/peers/down/store", json={"Resources": [study], "Asynchronous": True}).json()["ID"]
    job = wait_job(client, job_id)
    assert (job["State"], job["ErrorCode"], job["ErrorDescription"]) == (
        "Failure",
        9,
        "Error in the network protocol",
    )
    assert "Cannot reach the peer" in job["ErrorDetails"]
    assert job["Content"]["FailedInstancesCount"] == 0  # not permissive: the job stopped at the first

    system = client.get("/peers/down/system")
    assert (system.status_code, system.json()["OrthancStatus"]) == (500, 9)
    assert _local_copy(client, study) == before


@pytest.mark.reference
def test_peer_answering_errors(peers: Peers) -> None:
    client = peers.fastpacs_client
    study, _ = upload(client, study_files("errors", (("CT_small.dcm", 1, False), ("MR_small.dcm", 2, False))))
    before = _local_copy(client, study)

    wrong_password = {"Url": peers.orthanc.base_url, "Username": "alice", "Password": "wrong"}
    assert client.put("/peers/intruder", json=wrong_password).status_code == 200
    refused = client.post("/peers/intruder/store", content=study)
    assert (refused.status_code, refused.json()["OrthancStatus"]) == (500, 9)
    assert "HTTP status 401 (Unauthorized)" in refused.json()["Details"]

    failing = FakePeer(default=500)
    try:
        assert client.put("/peers/failing", json={"Url": failing.url}).status_code == 200
        job_id = client.post(
            "/peers/failing/store", json={"Resources": [study], "Asynchronous": True}
        ).json()["ID"]
        job = wait_job(client, job_id)
        assert (job["State"], job["ErrorCode"]) == ("Failure", 9)
        assert "HTTP status 500 (Internal Server Error)" in job["ErrorDetails"]

        permissive = client.post("/peers/failing/store", json={"Resources": [study], "Permissive": True})
        assert permissive.status_code == 200, permissive.text
        assert (permissive.json()["FailedInstancesCount"], permissive.json()["Size"]) == (2, "0")
    finally:
        failing.close()
    assert _local_copy(client, study) == before


@pytest.mark.reference
def test_busy_peer_is_retried_and_headers_are_sent(peers: Peers) -> None:
    client = peers.fastpacs_client
    study, hashes = upload(client, study_files("busy", (("MR_small.dcm", 1, False),)))
    busy = FakePeer(script=[503])
    try:
        peer = {
            "Url": busy.url + "/base",
            "Username": "u",
            "Password": "p",
            "HttpHeaders": {"X-Token": "t0k"},
        }
        assert client.put("/peers/busy", json=peer).status_code == 200
        answer = client.post("/peers/busy/store", content=study)
        assert answer.status_code == 200, answer.text
        assert answer.json()["Peer"] == {
            "HttpHeaders": ["X-Token"],  # names only: the values are secrets
            "Pkcs11": False,
            "Timeout": 0,
            "Url": f"{busy.url}/base/",
            "Username": "u",
        }
        assert [(request.method, request.path) for request in busy.received] == [
            ("POST", "/base/instances")
        ] * 2
        sent = busy.received[-1]
        assert sent.headers["Authorization"] == "Basic dTpw"
        assert sent.headers["X-Token"] == "t0k"
        assert sent.headers["Content-Type"] == "application/dicom"
        assert [hashlib.sha256(sent.body).hexdigest()] == list(hashes.values())
    finally:
        busy.close()


@pytest.mark.reference
def test_peer_that_never_answers_times_out(peers: Peers) -> None:
    client = peers.fastpacs_client
    study, _ = upload(client, study_files("silent", (("MR_small.dcm", 1, False),)))
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert client.put("/peers/silent", json={"Url": url, "Timeout": 1}).status_code == 200
        started = time.monotonic()
        answer = client.post("/peers/silent/store", content=study)
        elapsed = time.monotonic() - started
    assert (answer.status_code, answer.json()["OrthancStatus"]) == (500, 9)
    assert "Timeout after 1 s" in answer.json()["Details"]
    assert elapsed < 5


@pytest.mark.reference
def test_tls_peer_with_client_certificate(peers: Peers) -> None:
    client = peers.fastpacs_client
    study, _ = upload(client, study_files("tls", (("MR_small.dcm", 1, False),)))
    secure = FakePeer(tls=peers.tls.server_context())
    try:
        peer = {
            "Url": secure.url,
            "CertificateFile": str(peers.tls.client_certificate),
            "CertificateKeyFile": str(peers.tls.client_key),
            "CertificateKeyPassword": KEY_PASSWORD,
        }
        assert client.put("/peers/tls", json=peer).status_code == 200
        assert client.get("/peers/tls/configuration").json() == {
            "CertificateFile": str(peers.tls.client_certificate),
            "CertificateKeyFile": None,
            "CertificateKeyPassword": None,
            "HttpHeaders": [],
            "Pkcs11": False,
            "Timeout": 0,
            "Url": f"{secure.url}/",
        }
        answer = client.post("/peers/tls/store", content=study)
        assert answer.status_code == 200, answer.text
        assert [request.client_subject for request in secure.received] == ["fastpacs-client"]
        peers.tls.issue_client("fastpacs-client-renewed")  # a renewed certificate is used at once
        assert client.get("/peers/tls/system").status_code == 200
        assert secure.received[-1].client_subject == "fastpacs-client-renewed"

        assert client.put("/peers/anonymous", json={"Url": secure.url}).status_code == 200
        refused = client.post("/peers/anonymous/store", content=study)
        assert (refused.status_code, refused.json()["OrthancStatus"]) == (500, 9)
        assert len(secure.received) == 2  # the store without a certificate never reached the server
    finally:
        secure.close()


@pytest.mark.reference
def test_peer_settings_and_errors(peers: Peers) -> None:
    client = peers.fastpacs_client
    assert client.put("/peers/short", json=["http://127.0.0.1:9", "u", "p"]).status_code == 200
    assert client.get("/peers/short/configuration").json()["Url"] == "http://127.0.0.1:9/"
    assert client.delete("/peers/short").status_code == 200
    missing = client.delete("/peers/short")
    assert (missing.status_code, missing.json()["Details"]) == (404, "Unknown Orthanc peer: short")
    for body, status, details in (
        ({}, 400, "Empty URL"),
        ({"Url": "ftp://host"}, 400, "Bad URL: ftp://host"),
        ({"Url": "http://h", "Timeout": -1}, 400, "Unsigned integer value expected in field: Timeout"),
        (
            {"Url": "http://h", "CertificateFile": "/nonexistent"},
            404,
            "Cannot open certificate file: /nonexistent",
        ),
    ):
        answer = client.put("/peers/bad", json=body)
        assert (answer.status_code, answer.json().get("Details")) == (status, details), body
    unknown = client.post("/peers/nosuch/store", content=b"00000000-00000000-00000000-00000000-00000000")
    assert (unknown.status_code, unknown.json()["Details"]) == (404, "No peer with symbolic name: nosuch")
    assert client.get("/peers/nosuch").status_code == 404
    assert client.put("/peers/unusable", json={"Url": "http://127.0.0.1:port"}).status_code == 200
    unusable = client.get("/peers/unusable/system")  # a URL Orthanc accepts but nobody can reach
    assert (unusable.status_code, unusable.json()["OrthancStatus"]) == (500, 9)
    assert "Invalid port" in unusable.json()["Details"]


# --- without a server: OrthancPeers and OrthancPeersInDatabase --------------------------------------------


def test_configured_peers_accept_the_array_forms(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "OrthancPeers": {
                    "short": ["http://a:8042"],
                    "credentials": ["http://b:8042/", "user", "secret"],
                    "object": {"Url": "https://c", "HttpHeaders": {"X": "1"}, "Timeout": 3},
                }
            }
        )
    )
    peers = load_config(path).orthanc_peers
    assert peers == {
        "short": OrthancPeer(url="http://a:8042"),
        "credentials": OrthancPeer(url="http://b:8042/", username="user", password="secret"),
        "object": OrthancPeer(url="https://c", http_headers={"X": "1"}, timeout=3),
    }
    path.write_text(json.dumps({"OrthancPeers": {"wrong": ["http://a", "user"]}}))
    with pytest.raises(ConfigurationError, match="wrong"):
        load_config(path)


def test_peers_in_database_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"OrthancPeersInDatabase": True, "OrthancPeers": {"ignored": ["http://x"]}}))
    config = load_config(path)

    async def scenario() -> None:
        database = Database(tmp_path / "index", 1)
        writer = IndexWriter(database, BlobStore(tmp_path / "storage"))
        writer.start()
        try:
            registry = PeerRegistry(config, database, writer)
            assert registry.names() == []  # the configured peers are ignored, as in Orthanc
            await registry.put("kept", OrthancPeer(url="http://kept/", username="u", password="p"))
            await registry.put("dropped", OrthancPeer(url="http://dropped/"))
            await registry.delete("dropped")
            reopened = PeerRegistry(config, database, writer)
            assert reopened.all() == {"kept": OrthancPeer(url="http://kept/", username="u", password="p")}
        finally:
            writer.stop()
            database.close()

    asyncio.run(scenario())


def test_store_job_state_survives_saving() -> None:
    peer = OrthancPeer(url="https://h/", username="u", password="p", http_headers={"X": "1"}, timeout=3)
    state = PeerStoreState(
        peer, [bytes(20), bytes([1] * 20)], ["a"], compress=True, transcode="1.2.840.10008.1.2.1"
    )
    state.failed, state.size = 1, 12345
    job = PeerStoreJob(msgspec.msgpack.decode(PeerStoreJob(state, None).save(), type=PeerStoreState), None)
    assert job.state == state
    assert job.content() == {
        "Compress": True,
        "Description": "REST API",
        "FailedInstancesCount": 1,
        "InstancesCount": 2,
        "ParentResources": ["a"],
        "Peer": {"HttpHeaders": ["X"], "Pkcs11": False, "Timeout": 3, "Url": "https://h/", "Username": "u"},
        "Size": "12345",
        "SizeMB": 0,
        "Transcode": "1.2.840.10008.1.2.1",
    }
