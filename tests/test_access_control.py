"""Access control beyond HTTP Basic (tests/test_security.py): TLS, DICOM permissions, Lua off by default.

- TLS: ``SslEnabled`` with ``SslCertificate`` (one PEM holding a self-signed
  certificate and its key, made here with the openssl command) serves HTTPS
  only, with TLS 1.2 and 1.3; ``SslEnabled`` without a certificate is a
  start-up error.
- DICOM: with ``DicomCheckCalledAet`` and no ``DicomAlwaysAllow*``, a
  modality registered without the right to move or get has its C-MOVE or
  C-GET aborted (as Orthanc does), and an AET nobody registered cannot
  associate at all; a modality with every right is served.
- Lua: ``ExecuteLuaEnabled`` is false by default, so /tools/execute-script
  never runs a script.
"""

import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.testing import ServerProcess, fastpacs_server, free_port
from tests.conftest import association_answer, pydicom_file

pytestmark = pytest.mark.slow

CT_SMALL = dcmread(pydicom_file("CT_small.dcm"), stop_before_pixels=True)
SERVER_AET = "GUARDED"
FULL_AET = "FULLRIGHTS"
NO_RETRIEVE_AET = "NORETRIEVE"


def self_signed_certificate(folder: Path) -> Path:
    """A PEM file with a fresh self-signed certificate for 127.0.0.1 and its private key (as Orthanc's)."""
    key, certificate = folder / "key.pem", folder / "certificate.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    combined = folder / "fastpacs.pem"
    combined.write_bytes(certificate.read_bytes() + key.read_bytes())
    return combined


@dataclass
class TlsServerProcess(ServerProcess):
    """A fastpacs server answering HTTPS only, checked against its own certificate."""

    certificate: Path | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/system", verify=self.context(), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def context(self, maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certificate))
        context.maximum_version = maximum
        return context


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServerProcess]:
    folder = tmp_path_factory.mktemp("tls")
    certificate = self_signed_certificate(folder)
    plain = fastpacs_server(folder, {"SslEnabled": True, "SslCertificate": str(certificate)})
    process = TlsServerProcess(**{**plain.__dict__, "certificate": certificate}).start()
    yield process
    process.stop()


def test_tls_serves_https_with_tls_1_2_and_1_3(tls_server: TlsServerProcess) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with httpx.Client(base_url=tls_server.base_url, verify=tls_server.context(version)) as https:
            assert https.get("/system").json()["ApiVersion"] > 0
            answer = https.post("/instances", content=pydicom_file("CT_small.dcm").read_bytes())
            assert answer.status_code == 200
            assert (
                https.get(f"/instances/{answer.json()['ID']}/file").content
                == pydicom_file("CT_small.dcm").read_bytes()
            )


def test_tls_refuses_plain_http_and_unknown_certificates(tls_server: TlsServerProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.http_port}/system", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.base_url}/system", timeout=5)  # the system's CAs never signed it


def test_tls_without_a_certificate_is_a_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "fastpacs.json").write_text('{"SslEnabled": true}')
    result = subprocess.run(
        [sys.executable, "-m", "fastpacs", "serve", "--config", str(tmp_path / "fastpacs.json")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "SslEnabled needs SslCertificate" in result.stderr


# ----------------------------------------------------------------- DICOM permissions


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    options = {
        "DicomAet": SERVER_AET,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomModalities": {
            "full": {"AET": FULL_AET, "Host": "127.0.0.1", "Port": free_port()},
            "noretrieve": {
                "AET": NO_RETRIEVE_AET,
                "Host": "127.0.0.1",
                "Port": free_port(),
                "AllowMove": False,
                "AllowGet": False,
            },
        },
    }
    process = fastpacs_server(tmp_path_factory.mktemp("guarded-dicom"), options).start()
    yield process
    process.stop()


def associate(
    server: ServerProcess, aet: str, contexts: list, roles: list | None = None, called: str = SERVER_AET
):
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate(
        "127.0.0.1",
        server.dicom_port,
        contexts,
        ae_title=called,
        ext_neg=roles,
        evt_handlers=NO_DELAY_HANDLERS,
    )


def study_query() -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = CT_SMALL.StudyInstanceUID
    return query


def test_unknown_or_miscalled_callers_cannot_associate(guarded: ServerProcess) -> None:
    for calling, called in (("STRANGER", SERVER_AET), (FULL_AET, "SOMEONEELSE")):
        assert isinstance(association_answer(guarded, calling, called, Verification), A_ASSOCIATE_RJ)
    assoc = associate(guarded, FULL_AET, [build_context(Verification)])
    assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_move_and_get_are_aborted_for_a_modality_without_those_rights(guarded: ServerProcess) -> None:
    assoc = associate(guarded, FULL_AET, [build_context(CTImageStorage)])
    dataset = pydicom_file("CT_small.dcm")
    assert assoc.send_c_store(dataset).Status == 0x0000  # the full modality may store
    assoc.release()

    model = StudyRootQueryRetrieveInformationModelMove
    assoc = associate(guarded, NO_RETRIEVE_AET, [build_context(model)])
    assert assoc.is_established
    answers = list(assoc.send_c_move(study_query(), FULL_AET, model))
    assert all("Status" not in status for status, _ in answers)
    assoc.join(10)
    assert assoc.is_aborted

    model = StudyRootQueryRetrieveInformationModelGet
    roles = [build_role(CTImageStorage, scp_role=True)]
    assoc = associate(guarded, NO_RETRIEVE_AET, [build_context(model), build_context(CTImageStorage)], roles)
    assert assoc.is_established
    answers = list(assoc.send_c_get(study_query(), model))
    assert all("Status" not in status for status, _ in answers)
    assoc.join(10)
    assert assoc.is_aborted

    # The modality with every right is served: its C-GET brings the study back.
    received = []
    ae = AE(ae_title=FULL_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(model)
    ae.add_requested_context(CTImageStorage)

    def on_store(event) -> int:
        received.append(event.dataset.SOPInstanceUID)
        return 0x0000

    assoc = ae.associate(
        "127.0.0.1",
        guarded.dicom_port,
        ae_title=SERVER_AET,
        ext_neg=roles,
        evt_handlers=[*NO_DELAY_HANDLERS, (evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    statuses = [
        int(status.Status) for status, _ in assoc.send_c_get(study_query(), model) if "Status" in status
    ]
    assoc.release()
    assert statuses[-1] == 0x0000
    assert received == [CT_SMALL.SOPInstanceUID]


def test_lua_is_off_by_default(guarded: ServerProcess) -> None:
    """ExecuteLuaEnabled is false unless configured: /tools/execute-script runs nothing (Orthanc: 403)."""
    with httpx.Client(base_url=guarded.base_url, timeout=30) as http:
        routes = http.get("/openapi.json").json()["paths"]
        answer = http.post("/tools/execute-script", content=b'print("hello")')
    assert answer.status_code == (403 if "/tools/execute-script" in routes else 404)
