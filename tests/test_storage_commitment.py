"""Storage commitment (Push Model), both roles, with a pynetdicom modality and Orthanc 1.10.1.

- fastpacs as the archive (SCP): a pynetdicom modality sends the N-ACTION
  and serves the N-EVENT-REPORT on its own port: event type 1 when all are
  stored, 2 with the failure reasons otherwise; callers not allowed have
  their association aborted, as Orthanc does; the job shows in /jobs.
- fastpacs as the modality (SCU) through the REST API, against the
  reference Orthanc as SCP, and Orthanc as SCU against fastpacs as SCP: the
  reports on the requesting side are the same JSON for the same instances;
  the REST errors equal Orthanc's.
"""

import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from fastpacs.net.storage_commitment import CommitmentItem, CommitmentResult
from fastpacs.services.storage_commitment import CommitmentReport, CommitmentReports
from fastpacs.testing import ServerProcess, fastpacs_server, free_port, orthanc_server
from tests.conftest import dicom_variant, pydicom_file, wait_for

CT = pydicom_file("CT_small.dcm")
MR = pydicom_file("MR_small.dcm")
CT_DATASET = pydicom.dcmread(CT, stop_before_pixels=True)
CT_ITEM = (str(CT_DATASET.SOPClassUID), str(CT_DATASET.SOPInstanceUID))
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MISSING_ITEM = (CT_ITEM[0], "1.2.3.4.5.6.7")
WRONG_CLASS_ITEM = (MR_IMAGE_STORAGE, CT_ITEM[1])
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"


class Modality:
    """A pynetdicom modality: sends the N-ACTION, serves the N-EVENT-REPORT on its own port."""

    def __init__(self, aet: str):
        self.aet = aet
        self.port = free_port()
        self.reports: queue.Queue[tuple[str, int, Dataset, str]] = queue.Queue()
        self.ae = AE(ae_title=aet)
        self.ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        self.ae.add_requested_context(StorageCommitmentPushModel)
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report), (evt.EVT_N_ACTION, self._on_action)],
        )
        self.actions: queue.Queue[str] = queue.Queue()

    def _on_action(self, event: evt.Event) -> tuple[int, None]:
        """An archive's request is accepted and never reported on."""
        self.actions.put(str(event.action_information.TransactionUID))
        return 0x0000, None

    def _on_report(self, event: evt.Event) -> tuple[int, None]:
        request = event.request
        self.reports.put(
            (
                event.assoc.requestor.ae_title,
                request.EventTypeID,
                event.event_information,
                str(request.AffectedSOPInstanceUID),
            )
        )
        return 0x0000, None

    def request(self, server: ServerProcess, items: list[tuple[str, str]]) -> tuple[str, int | None]:
        """Send an N-ACTION; the transaction UID and the status (``None``: no answer)."""
        transaction_uid = generate_uid()
        dataset = Dataset()
        dataset.TransactionUID = transaction_uid
        dataset.ReferencedSOPSequence = []
        for sop_class, sop_instance in items:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            dataset.ReferencedSOPSequence.append(item)
        assoc = self.ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet)
        assert assoc.is_established
        status, _ = assoc.send_n_action(dataset, 1, StorageCommitmentPushModel, WELL_KNOWN_INSTANCE)
        if assoc.is_established:
            assoc.release()
        return transaction_uid, (status.get("Status") if status else None)

    def close(self) -> None:
        self.server.shutdown()


def _pairs(sequence: Any) -> list[tuple[str, str]]:
    return [(str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID)) for item in sequence]


@pytest.fixture(scope="module")
def modalities() -> Iterator[dict[str, Modality]]:
    found = {aet: Modality(aet) for aet in ("MODALITY", "DENIED", "STRANGER")}
    yield found
    for modality in found.values():
        modality.close()


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, modalities: dict[str, Modality]
) -> Iterator[ServerProcess]:
    """fastpacs holding CT_small, knowing MODALITY (allowed) and DENIED (AllowNAction false)."""
    options = {
        "StorageCommitmentReportsSize": 1,
        "DicomModalities": {
            "modality": {"AET": "MODALITY", "Host": "127.0.0.1", "Port": modalities["MODALITY"].port},
            "denied": {
                "AET": "DENIED",
                "Host": "127.0.0.1",
                "Port": modalities["DENIED"].port,
                "AllowNAction": False,
            },
        },
    }
    server = fastpacs_server(tmp_path_factory.mktemp("fastpacs"), options).start()
    try:
        assert httpx.post(f"{server.base_url}/instances", content=CT.read_bytes()).status_code == 200
        yield server
    finally:
        server.stop()


def test_all_stored_is_event_type_1(archive: ServerProcess, modalities: dict[str, Modality]) -> None:
    modality = modalities["MODALITY"]
    transaction_uid, status = modality.request(archive, [CT_ITEM])
    assert status == 0x0000
    caller, event_type, information, instance = modality.reports.get(timeout=15)
    assert (caller, event_type, instance) == (archive.aet, 1, WELL_KNOWN_INSTANCE)
    assert information.TransactionUID == transaction_uid
    assert _pairs(information.ReferencedSOPSequence) == [CT_ITEM]
    assert "FailedSOPSequence" not in information

    def job() -> dict[str, Any] | None:
        jobs = httpx.get(f"{archive.base_url}/jobs", params={"expand": ""}).json()
        done = [item for item in jobs if item["Content"].get("TransactionUid") == transaction_uid]
        return done[0] if done and done[0]["State"] == "Success" else None

    found = wait_for(job)
    assert found["Type"] == "StorageCommitmentScp"
    assert found["Progress"] == 100
    assert found["Content"] == {
        "CalledAet": archive.aet,
        "Description": "",
        "RemoteAet": "MODALITY",
        "TransactionUid": transaction_uid,
    }


def test_missing_and_wrong_class_are_event_type_2(
    archive: ServerProcess, modalities: dict[str, Modality]
) -> None:
    modality = modalities["MODALITY"]
    transaction_uid, status = modality.request(archive, [CT_ITEM, MISSING_ITEM, WRONG_CLASS_ITEM])
    assert status == 0x0000
    _, event_type, information, _ = modality.reports.get(timeout=15)
    assert (event_type, information.TransactionUID) == (2, transaction_uid)
    assert _pairs(information.ReferencedSOPSequence) == [CT_ITEM]
    failed = information.FailedSOPSequence
    assert _pairs(failed) == [MISSING_ITEM, WRONG_CLASS_ITEM]
    assert [item.FailureReason for item in failed] == [NO_SUCH_OBJECT_INSTANCE, CLASS_INSTANCE_CONFLICT]


def test_empty_transaction_is_event_type_1(archive: ServerProcess, modalities: dict[str, Modality]) -> None:
    modality = modalities["MODALITY"]
    transaction_uid, status = modality.request(archive, [])
    assert status == 0x0000
    _, event_type, information, _ = modality.reports.get(timeout=15)
    assert (event_type, information.TransactionUID) == (1, transaction_uid)
    assert len(information.ReferencedSOPSequence) == 0


@pytest.mark.parametrize("aet", ["DENIED", "STRANGER"])
def test_callers_not_allowed_are_aborted(
    archive: ServerProcess, modalities: dict[str, Modality], aet: str
) -> None:
    """Orthanc 1.10.1 aborts the association of a modality without AllowNAction, or not registered."""
    modality = modalities[aet]
    _, status = modality.request(archive, [CT_ITEM])
    assert status is None
    with pytest.raises(queue.Empty):
        modality.reports.get(timeout=1.5)


def test_malformed_requests_answered_with_failure_statuses(
    archive: ServerProcess, modalities: dict[str, Modality]
) -> None:
    """PS3.7 statuses: no such action type (0x0123), no such SOP instance (0x0112), invalid argument
    (0x0115: no Transaction UID); no report is sent."""
    modality = modalities["MODALITY"]
    with_uid = Dataset()
    with_uid.TransactionUID = generate_uid()
    with_uid.ReferencedSOPSequence = []
    without_uid = Dataset()
    without_uid.ReferencedSOPSequence = []
    assoc = modality.ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    assert assoc.is_established
    try:
        statuses = [
            assoc.send_n_action(dataset, action, StorageCommitmentPushModel, instance)[0].Status
            for dataset, action, instance in (
                (with_uid, 2, WELL_KNOWN_INSTANCE),
                (with_uid, 1, "1.2.3.4"),
                (without_uid, 1, WELL_KNOWN_INSTANCE),
            )
        ]
    finally:
        assoc.release()
    assert statuses == [0x0123, 0x0112, 0x0115]
    with pytest.raises(queue.Empty):
        modality.reports.get(timeout=1)


def test_reports_kept_as_configured(archive: ServerProcess, modalities: dict[str, Modality]) -> None:
    """StorageCommitmentReportsSize 1: a second request forgets the first; Pending until reported."""
    with httpx.Client(base_url=archive.base_url, timeout=30) as client:
        transactions = []
        for _ in range(2):
            answer = client.post(
                "/modalities/modality/storage-commitment", json={"DicomInstances": [list(CT_ITEM)]}
            )
            assert answer.status_code == 200, answer.text
            transactions.append(answer.json())
            assert modalities["MODALITY"].actions.get(timeout=5) == transactions[-1]["ID"]
        assert client.get(transactions[0]["Path"]).status_code == 404
        assert client.get(transactions[1]["Path"]).json() == {"RemoteAET": "MODALITY", "Status": "Pending"}


def test_reports_keep_the_most_recently_used() -> None:
    reports = CommitmentReports(2)
    for uid in ("1", "2"):
        reports.add(uid, CommitmentReport(remote_aet="PEER"))
    assert reports.get("1") is not None  # now the most recent
    reports.add("3", CommitmentReport(remote_aet="PEER"))
    assert reports.get("2") is None
    reports.fill("PEER", "1", CommitmentResult(success=[CommitmentItem("1.2", "1.3")], failures=[]))
    report = reports.get("1")
    assert report is not None and report.status == "Success"
    reports.fill("PEER", "unknown", CommitmentResult(success=[], failures=[]))
    assert reports.get("unknown") is None


# --- against the reference Orthanc ---------------------------------------------------------------


class Pair:
    def __init__(self, orthanc: ServerProcess, fastpacs: ServerProcess):
        self.orthanc, self.fastpacs = orthanc, fastpacs
        self.orthanc_client = httpx.Client(base_url=orthanc.base_url, timeout=30)
        self.fastpacs_client = httpx.Client(base_url=fastpacs.base_url, timeout=30)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Orthanc and fastpacs, each the modality of the other, both holding CT_small."""
    orthanc = orthanc_server(tmp_path_factory.mktemp("orthanc"), {"DicomAet": "ORTHANC"})
    fastpacs = fastpacs_server(tmp_path_factory.mktemp("fastpacs-pair"), {"DicomAet": "FASTPACS"})
    orthanc.start()
    try:
        fastpacs.start()
        try:
            servers = Pair(orthanc, fastpacs)
            assert servers.orthanc_client.put(
                "/modalities/peer", json={"AET": "FASTPACS", "Host": "127.0.0.1", "Port": fastpacs.dicom_port}
            ).is_success
            assert servers.fastpacs_client.put(
                "/modalities/peer", json={"AET": "ORTHANC", "Host": "127.0.0.1", "Port": orthanc.dicom_port}
            ).is_success
            for client in (servers.orthanc_client, servers.fastpacs_client):
                assert client.post("/instances", content=CT.read_bytes()).is_success
            yield servers
        finally:
            fastpacs.stop()
    finally:
        orthanc.stop()


def _finished_report(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/modalities/peer/storage-commitment", json=body)
    assert answer.status_code == 200, answer.text
    transaction = answer.json()
    assert transaction["Path"] == f"/storage-commitment/{transaction['ID']}"
    return _wait_report(client, transaction["Path"])


def _wait_report(client: httpx.Client, path: str) -> dict[str, Any]:
    """The report at ``path`` once the peer's N-EVENT-REPORT arrived."""
    return wait_for(lambda: (report := client.get(path).json())["Status"] != "Pending" and report)


@pytest.mark.reference
@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [
        {"DicomInstances": [list(CT_ITEM)]},
        {
            "DicomInstances": [
                list(CT_ITEM),
                {"SOPClassUID": MISSING_ITEM[0], "SOPInstanceUID": MISSING_ITEM[1]},
                list(WRONG_CLASS_ITEM),
            ]
        },
        {"DicomInstances": []},
        {"Resources": ["resources of CT_small"], "Timeout": 10},
    ],
    ids=["stored", "failures", "empty", "resources"],
)
def test_reports_equal_both_ways(pair: Pair, body: dict[str, Any]) -> None:
    """Orthanc asking fastpacs, and fastpacs asking Orthanc: the same report on the requesting side."""
    if "Resources" in body:
        study = pair.fastpacs_client.get("/studies").json()
        body = {**body, "Resources": study}
    from_orthanc = _finished_report(pair.orthanc_client, body)
    from_fastpacs = _finished_report(pair.fastpacs_client, body)
    assert from_orthanc.pop("RemoteAET") == "FASTPACS"
    assert from_fastpacs.pop("RemoteAET") == "ORTHANC"
    assert from_fastpacs == from_orthanc


@pytest.mark.reference
@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b"[]",
        b"not json",
        b'{"DicomInstances": "x"}',
        b'{"DicomInstances": [["x"]]}',
        b'{"DicomInstances": [{"SOPClassUID": "1.2"}]}',
        b'{"DicomInstances": [["1.2", "1.3"]], "Timeout": "x"}',
        b'{"Resources": "x"}',
        b'{"Resources": ["nope"]}',
    ],
)
def test_request_errors_equal_orthanc(pair: Pair, body: bytes) -> None:
    answers = [
        client.post("/modalities/peer/storage-commitment", content=body)
        for client in (pair.orthanc_client, pair.fastpacs_client)
    ]
    assert answers[1].status_code == answers[0].status_code
    expected, found = answers[0].json(), answers[1].json()
    for key in ("Details", "Message", "OrthancStatus"):
        assert found.get(key) == expected.get(key), key


@pytest.mark.reference
def test_unknown_modality_and_transaction_equal_orthanc(pair: Pair) -> None:
    for method, path, body in (
        ("POST", "/modalities/nope/storage-commitment", b'{"DicomInstances": []}'),
        ("GET", "/storage-commitment/1.2.3", None),
        ("POST", "/storage-commitment/1.2.3/remove", b""),
    ):
        expected = pair.orthanc_client.request(method, path, content=body)
        found = pair.fastpacs_client.request(method, path, content=body)
        assert found.status_code == expected.status_code, path
        assert found.json()["Details"] == expected.json()["Details"], path


@pytest.mark.reference
@pytest.mark.slow
def test_remove_equal_orthanc(pair: Pair, tmp_path: Path) -> None:
    """A failed transaction cannot be removed (500); a successful one deletes the instances here."""
    failed = {"DicomInstances": [list(MISSING_ITEM)]}
    for client in (pair.orthanc_client, pair.fastpacs_client):
        answer = client.post("/modalities/peer/storage-commitment", json=failed).json()
        _wait_report(client, answer["Path"])
        refused = client.post(f"{answer['Path']}/remove")
        assert refused.status_code == 500
        assert refused.json()["Details"] == (
            "Cannot remove DICOM instances after failure in storage commitment transaction: " + answer["ID"]
        )
    for client in (pair.orthanc_client, pair.fastpacs_client):
        answer = client.post("/modalities/peer/storage-commitment", json={"DicomInstances": [list(CT_ITEM)]})
        path = answer.json()["Path"]
        assert _wait_report(client, path)["Status"] == "Success"
        removed = client.post(f"{path}/remove")
        assert (removed.status_code, removed.json()) == (200, {})
        assert client.get("/instances").json() == []
        assert client.post("/instances", content=CT.read_bytes()).is_success  # as the other tests expect


@pytest.mark.reference
@pytest.mark.slow
def test_store_with_storage_commitment_equal_orthanc(pair: Pair) -> None:
    """``"StorageCommitment": true`` on a synchronous store: the answer names the transaction."""
    reports = []
    for client in (pair.orthanc_client, pair.fastpacs_client):
        instance = client.get("/instances").json()[0]
        answer = client.post(
            "/modalities/peer/store", json={"Resources": [instance], "StorageCommitment": True}
        )
        assert answer.status_code == 200, answer.text
        stored = answer.json()
        transaction_uid = stored.pop("StorageCommitmentTransactionUID")
        assert stored["InstancesCount"] == 1
        path = f"/storage-commitment/{transaction_uid}"
        reports.append(_wait_report(client, path))
    for report in reports:
        report.pop("RemoteAET")
    assert reports[1] == reports[0]
    assert reports[0]["Status"] == "Success"


def _finished_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (job := client.get(f"/jobs/{job_id}").json())["State"] in ("Success", "Failure") and job
    )


@pytest.mark.reference
@pytest.mark.slow
def test_asynchronous_store_with_storage_commitment_equal_orthanc(pair: Pair) -> None:
    """``"StorageCommitment": true`` on an asynchronous store: the job asks once the instances are sent
    and shows the transaction in its content; a job that failed shows one it never asked for."""
    unreachable = {"AET": "DOWN", "Host": "127.0.0.1", "Port": free_port()}
    contents, reports, unknown = [], [], []
    for client in (pair.orthanc_client, pair.fastpacs_client):
        assert client.put("/modalities/down", json=unreachable).is_success
        instance = client.get("/instances").json()[0]
        body = {"Resources": [instance], "StorageCommitment": True, "Asynchronous": True}
        job = _finished_job(client, client.post("/modalities/peer/store", json=body).json()["ID"])
        assert job["State"] == "Success", job
        contents.append(job["Content"])
        reports.append(
            _wait_report(client, f"/storage-commitment/{job['Content']['StorageCommitmentTransactionUID']}")
        )
        failed = _finished_job(client, client.post("/modalities/down/store", json=body).json()["ID"])
        assert failed["State"] == "Failure"
        never_asked = client.get(
            f"/storage-commitment/{failed['Content']['StorageCommitmentTransactionUID']}"
        )
        unknown.append((never_asked.status_code, never_asked.json()["Message"]))
        assert client.delete("/modalities/down").is_success
    for content, report in zip(contents, reports, strict=True):
        assert content.pop("StorageCommitmentTransactionUID").startswith("2.25.")
        content.pop("RemoteAet"), content.pop("LocalAet"), report.pop("RemoteAET")
    assert contents[1] == contents[0]
    assert reports[1] == reports[0] and reports[0]["Status"] == "Success"
    assert unknown[1] == unknown[0] == (404, "Accessing an inexistent item")


# --- over DICOM TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """DICOM TLS only, with one self-signed certificate both servers present and trust."""
    folder = tmp_path_factory.mktemp("pki")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "2", "-newkey", "rsa:2048",
            "-keyout", str(folder / "node.key"), "-out", str(folder / "node.crt"), "-subj", "/CN=node",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(folder / "node.crt"),
        "DicomTlsPrivateKey": str(folder / "node.key"),
        "DicomTlsTrustedCertificates": str(folder / "node.crt"),
    }


@pytest.mark.slow
def test_both_roles_over_dicom_tls(tmp_path_factory: pytest.TempPathFactory, tls_options: dict) -> None:
    """fastpacs asking fastpacs, both DICOM servers TLS only: the N-ACTION and the N-EVENT-REPORT
    associations are made over TLS (the modalities' UseDicomTls)."""
    requester = fastpacs_server(tmp_path_factory.mktemp("requester"), {**tls_options, "DicomAet": "ASKER"})
    archiver = fastpacs_server(tmp_path_factory.mktemp("archiver"), {**tls_options, "DicomAet": "KEEPER"})
    requester.start()
    try:
        archiver.start()
        try:
            for server, peer in ((requester, archiver), (archiver, requester)):
                body = {"AET": peer.aet, "Host": "127.0.0.1", "Port": peer.dicom_port, "UseDicomTls": True}
                assert httpx.put(f"{server.base_url}/modalities/peer", json=body).status_code == 200
            assert httpx.post(f"{archiver.base_url}/instances", content=CT.read_bytes()).is_success
            with httpx.Client(base_url=requester.base_url, timeout=30) as client:
                report = _finished_report(client, {"DicomInstances": [list(CT_ITEM), list(MISSING_ITEM)]})
            assert report["RemoteAET"] == "KEEPER"
            assert report["Success"] == [{"SOPClassUID": CT_ITEM[0], "SOPInstanceUID": CT_ITEM[1]}]
            assert [failure["FailureReason"] for failure in report["Failures"]] == [NO_SUCH_OBJECT_INSTANCE]
        finally:
            archiver.stop()
    finally:
        requester.stop()


@pytest.mark.reference
@pytest.mark.slow
def test_report_refused_without_allow_event_report_equal_orthanc(pair: Pair) -> None:
    """A peer without AllowEventReport cannot deliver its report: it stays Pending, and the
    answering side's job fails, on both servers."""
    clients = (pair.orthanc_client, pair.fastpacs_client)
    servers = (pair.fastpacs, pair.orthanc)  # each client's peer
    paths = []
    try:
        for client, peer in zip(clients, servers, strict=True):
            body = {"AET": peer.aet, "Host": "127.0.0.1", "Port": peer.dicom_port, "AllowEventReport": False}
            assert client.put("/modalities/peer", json=body).is_success
        for client in clients:
            answer = client.post(
                "/modalities/peer/storage-commitment", json={"DicomInstances": [list(CT_ITEM)]}
            )
            assert answer.status_code == 200, answer.text
            paths.append((answer.json()["ID"], answer.json()["Path"]))

        def job_state(client: httpx.Client, transaction_uid: str) -> tuple[str, int, str] | None:
            jobs = client.get("/jobs", params={"expand": ""}).json()
            found = [job for job in jobs if job["Content"].get("TransactionUid") == transaction_uid]
            if not found or found[0]["State"] not in ("Success", "Failure"):
                return None
            return found[0]["State"], found[0]["ErrorCode"], found[0]["ErrorDetails"]

        # Orthanc's request is answered by fastpacs's job, and the other way round.
        states = [
            wait_for(lambda: job_state(pair.fastpacs_client, paths[0][0])),
            wait_for(lambda: job_state(pair.orthanc_client, paths[1][0])),
        ]
        assert states == [
            ("Failure", 9, "Storage commitment - Unable to read N-EVENT-REPORT response from AET: ORTHANC"),
            ("Failure", 9, "Storage commitment - Unable to read N-EVENT-REPORT response from AET: FASTPACS"),
        ]
        reports = [client.get(path).json() for client, (_, path) in zip(clients, paths, strict=True)]
        assert [report["Status"] for report in reports] == ["Pending", "Pending"]
    finally:
        for client, peer in zip(clients, servers, strict=True):
            body = {"AET": peer.aet, "Host": "127.0.0.1", "Port": peer.dicom_port}
            assert client.put("/modalities/peer", json=body).is_success


class FakeArchive:
    """A pynetdicom archive that answers every N-ACTION with a report failing each instance with
    the reason given as its SOP Instance UID's last component (what a real archive cannot be made to do)."""

    def __init__(self, requesters: dict[str, int]):
        self.requesters = requesters  # AET -> DICOM port
        self.port = free_port()
        self.ae = AE(ae_title="ARCHIVE")
        self.ae.add_supported_context(StorageCommitmentPushModel)
        self.ae.add_requested_context(StorageCommitmentPushModel)
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_N_ACTION, self._on_action)]
        )

    def _on_action(self, event: evt.Event) -> tuple[int, None]:
        caller = event.assoc.requestor.ae_title
        threading.Thread(target=self._report, args=(caller, event.action_information)).start()
        return 0x0000, None

    def _report(self, caller: str, request: Dataset) -> None:
        report = Dataset()
        report.TransactionUID = request.TransactionUID
        report.FailedSOPSequence = []
        for item in request.ReferencedSOPSequence:
            failed = Dataset()
            failed.ReferencedSOPClassUID = item.ReferencedSOPClassUID
            failed.ReferencedSOPInstanceUID = item.ReferencedSOPInstanceUID
            failed.FailureReason = int(str(item.ReferencedSOPInstanceUID).rsplit(".", 1)[1])
            report.FailedSOPSequence.append(failed)
        report.ReferencedSOPSequence = []
        role = build_role(StorageCommitmentPushModel, scp_role=True)
        assoc = self.ae.associate("127.0.0.1", self.requesters[caller], ae_title=caller, ext_neg=[role])
        assert assoc.is_established
        assoc.send_n_event_report(report, 2, StorageCommitmentPushModel, WELL_KNOWN_INSTANCE)
        assoc.release()

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.reference
def test_failure_reasons_read_as_orthanc(pair: Pair) -> None:
    """Every failure reason of PS3.4 J.3.3.1.1 (and one it does not define) in the reports of both servers."""
    archive = FakeArchive({"ORTHANC": pair.orthanc.dicom_port, "FASTPACS": pair.fastpacs.dicom_port})
    reasons = (0x0110, 0x0112, 0x0119, 0x0122, 0x0131, 0x0213, 0xA700)
    body = {"DicomInstances": [[CT_ITEM[0], f"1.2.3.{reason}"] for reason in reasons]}
    reports = []
    try:
        for client in (pair.orthanc_client, pair.fastpacs_client):
            modality = {"AET": "ARCHIVE", "Host": "127.0.0.1", "Port": archive.port}
            assert client.put("/modalities/archive", json=modality).is_success
            answer = client.post("/modalities/archive/storage-commitment", json=body)
            assert answer.status_code == 200, answer.text
            reports.append(_wait_report(client, answer.json()["Path"]))
    finally:
        archive.close()
        for client in (pair.orthanc_client, pair.fastpacs_client):
            client.delete("/modalities/archive")
    assert [failure["FailureReason"] for failure in reports[0]["Failures"]] == list(reasons)
    assert reports[1] == reports[0]


@pytest.mark.reference
def test_request_refused_without_allow_n_action_equal_orthanc(pair: Pair) -> None:
    """Each server refuses the other's N-ACTION (AllowNAction false): the requesters answer the same error."""
    clients = (pair.orthanc_client, pair.fastpacs_client)
    servers = (pair.fastpacs, pair.orthanc)  # each client's peer
    try:
        for client, peer in zip(clients, servers, strict=True):
            body = {"AET": peer.aet, "Host": "127.0.0.1", "Port": peer.dicom_port, "AllowNAction": False}
            assert client.put("/modalities/peer", json=body).is_success
        answers = [
            client.post("/modalities/peer/storage-commitment", json={"DicomInstances": [list(CT_ITEM)]})
            for client in clients
        ]
    finally:
        for client, peer in zip(clients, servers, strict=True):
            body = {"AET": peer.aet, "Host": "127.0.0.1", "Port": peer.dicom_port}
            assert client.put("/modalities/peer", json=body).is_success
    assert [answer.status_code for answer in answers] == [500, 500]
    expected, found = answers[0].json(), answers[1].json()
    assert found["OrthancStatus"] == expected["OrthancStatus"]
    assert found["Details"] == expected["Details"].replace("FASTPACS", "ORTHANC")


@pytest.mark.reference
@pytest.mark.slow
def test_study_resources_in_the_same_order_as_orthanc(pair: Pair) -> None:
    """Three series uploaded interleaved, asked for as a study, one instance again, and a missing
    instance: the same report lists, in the same order (Orthanc's is last child first)."""
    clients = (pair.orthanc_client, pair.fastpacs_client)
    uploaded: dict[str, Any] = {}
    try:
        for client in clients:
            for name in ("a0", "b0", "a1", "b1", "a2", "b2", "c0"):
                data = dicom_variant(study="commit", series=name[0], instance=name)
                answer = client.post("/instances", content=data)
                assert answer.is_success
                uploaded[name] = answer.json()
        body = {
            "DicomInstances": [list(MISSING_ITEM)],
            "Resources": [uploaded["a0"]["ParentStudy"], uploaded["b1"]["ID"]],
        }
        reports = [_finished_report(client, body) for client in clients]
    finally:
        for client in clients:
            client.delete(f"/studies/{uploaded['a0']['ParentStudy']}")
    for report in reports:
        report.pop("RemoteAET")
    assert [item["SOPInstanceUID"].rsplit(".", 1)[1] for item in reports[0]["Success"]] == [
        "c0", "b2", "b1", "b0", "a2", "a1", "a0", "b1"
    ]  # fmt: skip
    assert reports[1] == reports[0]
