"""DICOM TLS, as Orthanc 1.10.1 offers it (``DicomTlsEnabled``, the modalities' ``UseDicomTls``).

Certificates are made for the tests with the ``openssl`` command: the
server's identity (both fastpacs servers here use it), a trusted client's,
and a "rogue" one nobody trusts. The trusted file holds the server's and
the client's certificates.

- The DICOM server with ``DicomTlsEnabled``: pynetdicom and DCMTK callers
  with a trusted certificate echo and store; a plain association, an
  untrusted certificate and (by default) no certificate are refused; a
  caller that connects and says nothing holds nobody else at the door.
- ``DicomTlsRemoteCertificateRequired`` false: a caller without certificate
  is served, an untrusted certificate is still refused.
- A trusted caller's C-GET: the instance comes back on its TLS association.
- Outgoing: C-ECHO, C-STORE, C-FIND and C-MOVE (whose C-STORE
  sub-operations go back over TLS) between two fastpacs servers with
  ``UseDicomTls``; without it towards a TLS-only server, Orthanc's 500.
- With the reference Orthanc 1.10.1: echo and store both ways over TLS.
- Configuration: missing or unreadable files refuse the start.
"""

import io
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import msgspec
import numpy
import pytest
from pydicom import Dataset, dcmread
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet, Verification

from fastpacs.config import Config, ConfigurationError, DicomModality, load_config
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.net import scu
from fastpacs.net.tls import DicomTlsFiles, TlsConfigurationError, server_context
from fastpacs.services.modalities import ModalityRegistry
from fastpacs.testing import ServerProcess, fastpacs_server, free_port, orthanc_server
from tests.conftest import c_get_association, dicom_variant, wait_for

MAIN_AET = "FASTPACS"
OPTIONAL_AET = "OPTIONAL"
TIMEOUT = 60
NETWORK_PROTOCOL_ERROR = 9  # Orthanc's "Error in the network protocol"


@dataclass(frozen=True)
class Pki:
    """The certificates and keys of the tests (PEM files in ``folder``)."""

    folder: Path

    def certificate(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    @property
    def trusted(self) -> Path:
        return self.folder / "trusted.crt"

    def server_options(self, **options: object) -> dict[str, object]:
        return {
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(self.certificate("server")),
            "DicomTlsPrivateKey": str(self.key("server")),
            "DicomTlsTrustedCertificates": str(self.trusted),
            **options,
        }

    def client_context(self, identity: str | None) -> ssl.SSLContext:
        """A caller trusting the server's certificate, presenting ``identity``'s (or none)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(self.certificate("server"))
        if identity is not None:
            context.load_cert_chain(self.certificate(identity), self.key(identity))
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    for name in ("server", "client", "rogue"):
        subprocess.run(
            [
                "openssl", "req", "-x509", "-nodes", "-days", "2", "-newkey", "rsa:2048",
                "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt"),
                "-subj", f"/CN={name}",
            ],
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
        )  # fmt: skip
    (folder / "trusted.crt").write_bytes(
        (folder / "server.crt").read_bytes() + (folder / "client.crt").read_bytes()
    )
    return Pki(folder)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    """A fastpacs accepting DICOM TLS only, with a client certificate required (the default)."""
    process = fastpacs_server(
        tmp_path_factory.mktemp("tls-server"), pki.server_options(DicomAet=MAIN_AET)
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def optional_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    """A fastpacs accepting DICOM TLS only, without requiring a client certificate."""
    options = pki.server_options(DicomAet=OPTIONAL_AET, DicomTlsRemoteCertificateRequired=False)
    process = fastpacs_server(tmp_path_factory.mktemp("optional-server"), options).start()
    yield process
    process.stop()


def _associate(server: ServerProcess, context: ssl.SSLContext | None, *sop_classes: str) -> Association:
    ae = AE(ae_title="TLSCLIENT")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 15
    for sop_class in sop_classes or (Verification,):
        ae.add_requested_context(sop_class)
    tls_args = (context, None) if context is not None else None
    return ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet, tls_args=tls_args)


def _echo_status(assoc: Association) -> int | None:
    try:
        status = assoc.send_c_echo()
        return status.get("Status") if status else None
    finally:
        assoc.release()


def _variant(name: str, base: str = "CT_small.dcm") -> tuple[bytes, Dataset]:
    """A test file of its own (UIDs suffixed with ``name``'s digits), and its dataset."""
    suffix = str(sum(ord(character) for character in name))
    data = dicom_variant(base, study=suffix, series=suffix, instance=suffix)
    return data, dcmread(io.BytesIO(data))


def _upload(server: ServerProcess, data: bytes) -> str:
    answer = httpx.post(f"{server.base_url}/instances", content=data, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return answer.json()["ID"]


def _instance_count(server: ServerProcess, sop_instance_uid: str) -> int:
    body = {"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}}
    return len(httpx.post(f"{server.base_url}/tools/find", json=body, timeout=TIMEOUT).json())


def _put_modality(server: ServerProcess, name: str, target: ServerProcess, use_tls: bool) -> None:
    body = {"AET": target.aet, "Host": "127.0.0.1", "Port": target.dicom_port, "UseDicomTls": use_tls}
    _put_modality_body(server, name, body)


def _put_modality_body(server: ServerProcess, name: str, body: dict[str, object]) -> None:
    answer = httpx.put(f"{server.base_url}/modalities/{name}", json=body, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text


def _peer_aborted(aet: str) -> str:
    """Orthanc's Details when the peer closes the connection instead of answering the association."""
    return f'DicomAssociation - connecting to AET "{aet}": Peer aborted Association (or never connected)'


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(arguments, check=False, capture_output=True, text=True, timeout=TIMEOUT)


def _post(server: ServerProcess, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=TIMEOUT)


# --- the DICOM server with DicomTlsEnabled -------------------------------------------------------


def test_a_trusted_caller_echoes_and_stores_over_tls(tls_server: ServerProcess, pki: Pki) -> None:
    _, dataset = _variant("pynetdicom")
    assoc = _associate(tls_server, pki.client_context("client"), Verification, CTImageStorage)
    assert assoc.is_established
    assert isinstance(assoc.dul.socket.socket, ssl.SSLSocket)
    try:
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(dataset).Status == 0x0000
    finally:
        assoc.release()
    assert _instance_count(tls_server, dataset.SOPInstanceUID) == 1


def test_a_large_instance_arrives_whole_over_tls(tls_server: ServerProcess, pki: Pki) -> None:
    """One 6 MB PDU (the server accepts any PDU length), read off many TLS records."""
    _, dataset = _variant("large")
    dataset.Rows, dataset.Columns = 1536, 2048
    dataset.PixelData = numpy.arange(1536 * 2048, dtype=numpy.uint16).tobytes()
    assoc = _associate(tls_server, pki.client_context("client"), CTImageStorage)
    assert assoc.is_established
    assert assoc.acceptor.maximum_length == 0
    try:
        assert assoc.send_c_store(dataset).Status == 0x0000
    finally:
        assoc.release()
    found = _post(
        tls_server, "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": dataset.SOPInstanceUID}}
    )
    stored = httpx.get(f"{tls_server.base_url}/instances/{found.json()[0]}/file", timeout=TIMEOUT)
    assert dcmread(io.BytesIO(stored.content)).PixelData == dataset.PixelData


def test_get_sends_instances_back_over_the_same_tls_association(tls_server: ServerProcess, pki: Pki) -> None:
    """C-GET's C-STORE sub-operations travel on the caller's TLS association (a 6 MB instance: many
    TLS records each way)."""
    _, dataset = _variant("get over tls")
    dataset.Rows, dataset.Columns = 1536, 2048
    dataset.PixelData = numpy.arange(1536 * 2048, dtype=numpy.uint16).tobytes()
    storing = _associate(tls_server, pki.client_context("client"), CTImageStorage)
    try:
        assert storing.send_c_store(dataset).Status == 0x0000
    finally:
        storing.release()
    getter = {"AET": "TLSGETTER", "Host": "127.0.0.1", "Port": 11112}
    _put_modality_body(tls_server, "getter", getter)  # only declared modalities may C-GET
    received: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    assoc = c_get_association(
        tls_server, "TLSGETTER", on_store, timeout=15, tls_args=(pki.client_context("client"), None)
    )
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = dataset.StudyInstanceUID
    query.SeriesInstanceUID = dataset.SeriesInstanceUID
    query.SOPInstanceUID = dataset.SOPInstanceUID
    try:
        answers = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    assert answers[-1][0].Status == 0x0000
    assert [item.SOPInstanceUID for item in received] == [dataset.SOPInstanceUID]
    assert received[0].PixelData == dataset.PixelData


def test_plain_and_untrusted_callers_are_refused(tls_server: ServerProcess, pki: Pki) -> None:
    plain = _associate(tls_server, None)
    assert not plain.is_established
    rogue = _associate(tls_server, pki.client_context("rogue"))
    assert not rogue.is_established
    anonymous = _associate(tls_server, pki.client_context(None))  # a certificate is required
    assert not anonymous.is_established
    assert _echo_status(_associate(tls_server, pki.client_context("client"))) == 0x0000
    log = tls_server.log_path.read_text(errors="replace")
    assert "DICOM TLS connection from 127.0.0.1 refused" in log


def test_a_silent_caller_holds_nobody_at_the_door(tls_server: ServerProcess, pki: Pki) -> None:
    """A connection that never starts its TLS handshake does not stall the accept loop."""
    with socket.create_connection(("127.0.0.1", tls_server.dicom_port)):
        time.sleep(0.2)  # accepted, its handshake waiting
        started = time.monotonic()
        assert _echo_status(_associate(tls_server, pki.client_context("client"))) == 0x0000
        assert time.monotonic() - started < 5


def test_dcmtk_echoscu_and_storescu_over_tls(tls_server: ServerProcess, pki: Pki, tmp_path: Path) -> None:
    tls = [
        "+tls",
        str(pki.key("client")),
        str(pki.certificate("client")),
        "+cf",
        str(pki.certificate("server")),
    ]
    address = ["-aet", "DCMTK", "-aec", MAIN_AET, "127.0.0.1", str(tls_server.dicom_port)]
    echo = _run("echoscu", *tls, *address)
    assert echo.returncode == 0, echo.stderr
    data, dataset = _variant("dcmtk", "MR_small.dcm")
    path = tmp_path / "mr.dcm"
    path.write_bytes(data)
    store = _run("storescu", *tls, *address, str(path))
    assert store.returncode == 0, store.stderr
    assert _instance_count(tls_server, dataset.SOPInstanceUID) == 1
    plain = _run("echoscu", *address)
    assert plain.returncode != 0


@pytest.mark.slow
def test_a_certificate_may_be_optional(optional_server: ServerProcess, pki: Pki) -> None:
    """DicomTlsRemoteCertificateRequired false: no certificate is fine, an untrusted one is not."""
    assert _echo_status(_associate(optional_server, pki.client_context(None))) == 0x0000
    assert _echo_status(_associate(optional_server, pki.client_context("client"))) == 0x0000
    assert not _associate(optional_server, pki.client_context("rogue")).is_established
    assert not _associate(optional_server, None).is_established


# --- outgoing associations with UseDicomTls --------------------------------------------------------


@pytest.mark.slow
def test_echo_store_find_and_move_with_use_dicom_tls(
    tls_server: ServerProcess, optional_server: ServerProcess
) -> None:
    _put_modality(tls_server, "optional", optional_server, use_tls=True)
    _put_modality(optional_server, "main", tls_server, use_tls=True)  # the C-MOVE destination
    assert _post(tls_server, "/modalities/optional/echo", {}).status_code == 200

    # C-STORE: an instance uploaded to the main server, sent to the other one
    data, dataset = _variant("store")
    stored = _post(tls_server, "/modalities/optional/store", [_upload(tls_server, data)])
    assert stored.status_code == 200, stored.text
    assert stored.json()["InstancesCount"] == 1
    assert _instance_count(optional_server, dataset.SOPInstanceUID) == 1

    # C-FIND, then C-MOVE back to the main server, of a study only the other server holds
    data, only_there = _variant("move", "MR_small.dcm")
    _upload(optional_server, data)
    study = str(only_there.StudyInstanceUID)
    query = _post(
        tls_server, "/modalities/optional/query", {"Level": "Study", "Query": {"StudyInstanceUID": study}}
    )
    assert query.status_code == 200, query.text
    answers = httpx.get(f"{tls_server.base_url}{query.json()['Path']}/answers", timeout=TIMEOUT).json()
    assert len(answers) == 1
    move = _post(
        tls_server,
        "/modalities/optional/move",
        {"Level": "Study", "Resources": [{"StudyInstanceUID": study}], "TargetAet": MAIN_AET},
    )
    assert move.status_code == 200, move.text
    wait_for(lambda: _instance_count(tls_server, only_there.SOPInstanceUID) == 1)


@pytest.mark.slow
def test_plain_association_with_a_tls_server_is_a_network_error(
    tls_server: ServerProcess, optional_server: ServerProcess
) -> None:
    _put_modality(tls_server, "optional-plain", optional_server, use_tls=False)
    answer = _post(tls_server, "/modalities/optional-plain/echo", {})
    assert answer.status_code == 500
    assert answer.json()["OrthancError"] == "Error in the network protocol"
    assert answer.json()["OrthancStatus"] == NETWORK_PROTOCOL_ERROR
    assert answer.json()["Details"] == _peer_aborted(OPTIONAL_AET)


def test_use_dicom_tls_towards_a_plain_or_untrusted_scp_is_a_network_error(
    tls_server: ServerProcess, pki: Pki
) -> None:
    """pynetdicom SCPs: one without TLS, one presenting the rogue certificate."""
    rogue = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    rogue.load_cert_chain(pki.certificate("rogue"), pki.key("rogue"))
    for name, context, reason in (
        ("plain-scp", None, "DICOM TLS handshake failed: "),
        ("rogue-scp", rogue, "DICOM TLS handshake failed: CERTIFICATE_VERIFY_FAILED"),
    ):
        ae = AE(ae_title="SCP")
        ae.add_supported_context(Verification)
        port = free_port()
        scp = ae.start_server(("127.0.0.1", port), block=False, ssl_context=context)
        try:
            body = {"AET": "SCP", "Host": "127.0.0.1", "Port": port, "UseDicomTls": True}
            _put_modality_body(tls_server, name, body)
            answer = _post(tls_server, f"/modalities/{name}/echo", {})
        finally:
            scp.shutdown()
        assert answer.status_code == 500, name
        assert answer.json()["OrthancStatus"] == NETWORK_PROTOCOL_ERROR
        assert answer.json()["Details"].startswith(f'DicomAssociation - connecting to AET "SCP": {reason}')


def test_use_dicom_tls_without_local_tls_files_is_orthancs_error() -> None:
    """Orthanc 1.10.1 answers 500 "Bad sequence of calls" (observed: the same with its files unset)."""
    registry = ModalityRegistry(Config(), cast(Database, None), cast(IndexWriter, None))
    modality = DicomModality(aet="REMOTE", host="127.0.0.1", port=104, use_dicom_tls=True)
    with pytest.raises(OrthancError) as raised:
        registry.node(modality)
    assert (raised.value.code, raised.value.http_status) == (ErrorCode.BAD_SEQUENCE_OF_CALLS, 500)
    assert "DicomTlsCertificate" in str(raised.value.details)
    registry.tls_files = DicomTlsFiles("server.crt", "server.key", "")
    with pytest.raises(OrthancError, match="DicomTlsTrustedCertificates"):
        registry.node(modality)
    assert registry.node(msgspec.structs.replace(modality, use_dicom_tls=False)).tls is None
    # Files set but gone since the start: the association fails with the network error.
    registry.tls_files = DicomTlsFiles("/gone.crt", "/gone.key", "/gone-trusted.crt")
    node = registry.node(modality)
    with pytest.raises(scu.DicomNetworkError, match=r"cannot use DicomTlsCertificate '/gone\.crt'"):
        scu.echo(node)


def test_the_tls_configuration_is_checked_before_start(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "fastpacs.json"
    config.write_text(json.dumps(pki.server_options()))
    loaded = load_config(config, environ={})
    assert (loaded.dicom_tls_enabled, loaded.dicom_tls_remote_certificate_required) == (True, True)
    assert loaded.dicom_tls_trusted_certificates == str(pki.trusted)
    config.write_text('{"DicomTlsEnabled": true}')
    with pytest.raises(
        ConfigurationError, match="DicomTlsEnabled needs DicomTlsCertificate, DicomTlsPrivate"
    ):
        load_config(config, environ={})
    options = pki.server_options(DicomTlsPrivateKey=str(tmp_path / "missing.key"))
    config.write_text(json.dumps(options))
    with pytest.raises(ConfigurationError, match=r"DicomTlsPrivateKey: cannot read .*missing\.key"):
        load_config(config, environ={})
    result = subprocess.run(
        [sys.executable, "-m", "fastpacs", "serve", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "missing.key" in result.stderr
    # Files that are there but do not hold what they should: the DICOM server refuses them.
    mismatched = DicomTlsFiles(str(pki.certificate("server")), str(pki.key("client")), str(pki.trusted))
    with pytest.raises(TlsConfigurationError, match="cannot use DicomTlsCertificate"):
        server_context(mismatched, remote_certificate_required=True)
    not_certificates = DicomTlsFiles(
        str(pki.certificate("server")), str(pki.key("server")), str(pki.key("client"))
    )
    with pytest.raises(TlsConfigurationError, match="cannot read DicomTlsTrustedCertificates"):
        server_context(not_certificates, remote_certificate_required=True)
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        [
            "openssl",
            "rsa",
            "-aes256",
            "-passout",
            "pass:secret",
            "-in",
            str(pki.key("server")),
            "-out",
            str(encrypted),
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    with pytest.raises(TlsConfigurationError, match="DicomTlsPrivateKey is encrypted"):  # no prompt
        server_context(
            DicomTlsFiles(str(pki.certificate("server")), str(encrypted), str(pki.trusted)),
            remote_certificate_required=True,
        )


# --- with the reference Orthanc 1.10.1 -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.reference
def test_echo_and_store_both_ways_with_orthanc(tmp_path: Path, tls_server: ServerProcess, pki: Pki) -> None:
    orthanc = orthanc_server(tmp_path / "orthanc", pki.server_options()).start()
    try:
        _put_modality(orthanc, "fastpacs", tls_server, use_tls=True)
        _put_modality(tls_server, "orthanc", orthanc, use_tls=True)
        _put_modality(orthanc, "fastpacs-plain", tls_server, use_tls=False)
        _put_modality(tls_server, "orthanc-plain", orthanc, use_tls=False)
        for source, name, target in ((orthanc, "fastpacs", tls_server), (tls_server, "orthanc", orthanc)):
            assert _post(source, f"/modalities/{name}/echo", {}).status_code == 200, source.name
            data, dataset = _variant(f"from {source.name}")
            stored = _post(source, f"/modalities/{name}/store", [_upload(source, data)])
            assert stored.status_code == 200, (source.name, stored.text)
            assert _instance_count(target, dataset.SOPInstanceUID) == 1
            failed = _post(source, f"/modalities/{name}-plain/echo", {})
            assert failed.status_code == 500, source.name
            assert failed.json()["OrthancStatus"] == NETWORK_PROTOCOL_ERROR
            assert failed.json()["Details"] == _peer_aborted(target.aet)
        # The modality's configuration, as each shows it.
        body = {"AET": "REMOTE", "Host": "10.0.0.1", "Port": 104, "UseDicomTls": True}
        shown = []
        for server in (orthanc, tls_server):
            _put_modality_body(server, "remote", body)
            shown.append(httpx.get(f"{server.base_url}/modalities/remote/configuration").json())
            assert httpx.get(f"{server.base_url}/modalities?expand").json()["remote"] == shown[-1]
        assert shown[0] == shown[1]
        assert shown[0]["UseDicomTls"] is True
    finally:
        orthanc.stop()
