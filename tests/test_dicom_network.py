"""The DICOM network of a running fastpacs: its SCP driven by pynetdicom, its SCU through /modalities.

One server, configured the strict way a hospital would (``DicomCheckCalledAet``,
no ``DicomAlwaysAllowStore``), with one registered modality allowed
everything (the tests' own AET), one allowed nothing but C-ECHO, and — added
by the tests — the server itself as a modality, so that its SCU talks to its
own SCP.
"""

import socket
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, build_context, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from fastpacs.dicom.writer import IMPLEMENTATION_CLASS_UID
from fastpacs.net.scu import leave_answers_to_requests
from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.testing import ServerProcess, fastpacs_server, free_port
from tests.conftest import association_answer, c_get_association, pydicom_file

TEST_AET = "NETTEST"
LIMITED_AET = "LIMITED"
SERVER_AET = "FASTPACS"

QUERY_RETRIEVE_SIZE = 3
CT_FILE = "CT_small.dcm"
MR_FILE = "MR_small.dcm"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    options = {
        "DicomAet": SERVER_AET,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": False,
        "LogExportedResources": True,
        "QueryRetrieveSize": QUERY_RETRIEVE_SIZE,
        "DicomModalities": {
            "tests": {"AET": TEST_AET, "Host": "127.0.0.1", "Port": free_port()},
            "limited": {
                "AET": LIMITED_AET,
                "Host": "127.0.0.1",
                "Port": free_port(),
                "AllowStore": False,
                "AllowFind": False,
                "AllowMove": False,
                "AllowGet": False,
            },
        },
    }
    process = fastpacs_server(tmp_path_factory.mktemp("dicom-network"), options).start()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        yield http


def _associate(server: ServerProcess, contexts, aet: str = TEST_AET, called: str = SERVER_AET):
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate(
        "127.0.0.1", server.dicom_port, contexts, ae_title=called, evt_handlers=NO_DELAY_HANDLERS
    )


def _store(server: ServerProcess, datasets: list[Dataset], aet: str = TEST_AET) -> list[int]:
    contexts = [build_context(CTImageStorage), build_context(MRImageStorage)]
    assoc = _associate(server, contexts, aet)
    assert assoc.is_established
    leave_answers_to_requests(assoc)
    try:
        statuses = []
        for dataset in datasets:
            status = assoc.send_c_store(dataset)
            statuses.append(status.Status if "Status" in status else None)
        return statuses
    finally:
        if assoc.is_established:
            assoc.release()


def _ends_aborted(assoc) -> bool:
    """Whether the association ends aborted by the peer (its thread sees the A-ABORT shortly after)."""
    assoc.join(10)
    return assoc.is_aborted


def _copy_with_new_uids(name: str, study: str | None = None) -> Dataset:
    dataset = dcmread(pydicom_file(name))
    dataset.StudyInstanceUID = study or generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return dataset


# --- SCP: association acceptance and C-ECHO ------------------------------------------------------


def test_echo_from_a_known_modality(server: ServerProcess) -> None:
    assoc = _associate(server, [build_context(Verification)])
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_a_requestors_reactor_leaves_the_answers_to_its_requests(server: ServerProcess) -> None:
    """The reactor's look at the queue takes nothing; the requests get their answers."""
    assoc = _associate(server, [build_context(Verification)])
    assert assoc.is_established
    leave_answers_to_requests(assoc)
    try:
        assert assoc.send_c_echo().Status == 0x0000
        assoc.dimse.msg_queue.put((1, "an answer"))
        assert assoc.dimse.get_msg(block=False) == (None, None)
        assert assoc.dimse.get_msg(block=True) == (1, "an answer")
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_echo_from_an_unknown_aet_is_allowed(server: ServerProcess) -> None:
    """DicomAlwaysAllowEcho (true by default) accepts anyone's association for C-ECHO."""
    assoc = _associate(server, [build_context(Verification)], aet="STRANGER")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_wrong_called_aet_is_rejected(server: ServerProcess) -> None:
    answer = association_answer(server, TEST_AET, "SOMEONE", Verification)
    assert isinstance(answer, A_ASSOCIATE_RJ)
    assert (answer.result, answer.source) == (0x01, 0x01)  # rejected permanently, by the service user
    assert answer.reason_diagnostic == 0x07  # called AE title not recognised


def test_called_aet_is_compared_case_insensitively(server: ServerProcess) -> None:
    assoc = _associate(server, [build_context(Verification)], called=SERVER_AET.lower())
    assert assoc.is_established
    assoc.release()


def test_an_idle_association_is_aborted_after_the_scp_timeout(tmp_path: Path) -> None:
    """DicomScpTimeout: the server ends an association idle that long (its association threads wait
    for work instead of polling, the network timer must still fire)."""
    server = fastpacs_server(tmp_path, {"DicomScpTimeout": 1}).start()
    try:
        assoc = _associate(server, [build_context(Verification)], called="ORTHANC")
        assert assoc.is_established
        started = time.monotonic()
        assert _ends_aborted(assoc)
        assert time.monotonic() - started < 5
    finally:
        server.stop()


# --- SCP: C-STORE --------------------------------------------------------------------------------


def test_store_lands_with_its_origin(server: ServerProcess, client: httpx.Client) -> None:
    dataset = _copy_with_new_uids(CT_FILE)
    assert _store(server, [dataset]) == [0x0000]
    found = client.post("/tools/lookup", content=str(dataset.SOPInstanceUID)).json()
    assert [entry["Type"] for entry in found] == ["Instance"]
    metadata = client.get(f"/instances/{found[0]['ID']}/metadata", params={"expand": ""}).json()
    assert metadata["Origin"] == "DicomProtocol"
    assert metadata["RemoteAET"] == TEST_AET
    assert metadata["RemoteIP"] == "127.0.0.1"
    assert metadata["CalledAET"] == SERVER_AET
    stored = client.get(f"/instances/{found[0]['ID']}/file").content
    assert dcmread(pydicom_file(CT_FILE)).PixelData in stored


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_stored_file_is_the_dataset_as_received_behind_fastpacs_file_meta(
    server: ServerProcess, client: httpx.Client, transfer_syntax: str
) -> None:
    """fastpacs's file meta group (the transfer syntax of the context), then the dataset as received:
    a deflated one is stored deflated once, not twice."""
    dataset = _copy_with_new_uids(CT_FILE)
    dataset.file_meta.TransferSyntaxUID = transfer_syntax
    assoc = _associate(server, [build_context(CTImageStorage, transfer_syntax)])
    assert assoc.is_established
    try:
        assert assoc.send_c_store(dataset).Status == 0x0000
    finally:
        assoc.release()
    found = client.post("/tools/lookup", content=str(dataset.SOPInstanceUID)).json()
    stored = dcmread(BytesIO(client.get(f"/instances/{found[0]['ID']}/file").content))
    assert stored.file_meta.TransferSyntaxUID == transfer_syntax
    assert stored.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert stored.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID
    assert stored.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert stored.PatientName == dataset.PatientName
    assert stored.PixelData == dataset.PixelData


@pytest.mark.parametrize(
    "sop_class",
    [
        "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (Retired)
        "1.2.840.10008.5.1.4.1.1.5",  # Nuclear Medicine Image Storage (Retired)
        "1.2.840.10008.5.1.4.1.1.88.1",  # Text SR Storage - Trial (Retired)
    ],
)
def test_store_of_retired_storage_sop_classes_lands(
    server: ServerProcess, client: httpx.Client, sop_class: str
) -> None:
    """Retired storage SOP classes that pynetdicom leaves out are accepted, as by Orthanc."""
    dataset = _copy_with_new_uids(CT_FILE)
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = sop_class
    assoc = _associate(server, [build_context(sop_class, ExplicitVRLittleEndian)])
    assert assoc.is_established
    try:
        assert assoc.accepted_contexts[0].abstract_syntax == sop_class
        assert assoc.send_c_store(dataset).Status == 0x0000
    finally:
        assoc.release()
    found = client.post("/tools/lookup", content=str(dataset.SOPInstanceUID)).json()
    stored = client.get(f"/instances/{found[0]['ID']}/tags", params={"simplify": ""}).json()
    assert stored["SOPClassUID"] == sop_class


def test_store_of_an_instance_already_stored_succeeds(server: ServerProcess) -> None:
    dataset = _copy_with_new_uids(CT_FILE)
    assert _store(server, [dataset, dataset]) == [0x0000, 0x0000]


def test_store_of_a_dataset_fastpacs_cannot_index_is_cannot_understand(server: ServerProcess) -> None:
    """A dataset without its study and series UIDs cannot be indexed: 0xC000, and the association goes on."""
    broken = Dataset()
    broken.SOPClassUID = CTImageStorage
    broken.SOPInstanceUID = generate_uid()
    broken.file_meta = Dataset()
    broken.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    good = _copy_with_new_uids(CT_FILE)
    assert _store(server, [broken, good]) == [0xC000, 0x0000]


def test_store_from_an_unknown_aet_aborts(server: ServerProcess) -> None:
    """Without DicomAlwaysAllowStore, Orthanc accepts the association and aborts it at the C-STORE."""
    assoc = _associate(server, [build_context(CTImageStorage)], aet="STRANGER")
    assert assoc.is_established
    status = assoc.send_c_store(_copy_with_new_uids(CT_FILE))
    assert "Status" not in status
    assert _ends_aborted(assoc)


def test_store_from_a_modality_not_allowed_to_store_aborts(server: ServerProcess) -> None:
    assoc = _associate(server, [build_context(CTImageStorage)], aet=LIMITED_AET)
    assert assoc.is_established
    status = assoc.send_c_store(_copy_with_new_uids(CT_FILE))
    assert "Status" not in status
    assert _ends_aborted(assoc)


def test_fifty_stores_over_four_parallel_associations_all_land(
    server: ServerProcess, client: httpx.Client
) -> None:
    study = generate_uid()
    datasets = [_copy_with_new_uids(CT_FILE, study) for _ in range(50)]
    statuses: list[int] = []
    lock = threading.Lock()

    def send(part: list[Dataset]) -> None:
        result = _store(server, part)
        with lock:
            statuses.extend(result)

    threads = [threading.Thread(target=send, args=(datasets[number::4],)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [0x0000] * 50
    found = client.post(
        "/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study}}
    ).json()
    assert len(found) == 50


# --- SCP: C-FIND, C-MOVE, C-GET ------------------------------------------------------------------


def _find(
    server: ServerProcess, identifier: Dataset, aet: str = TEST_AET
) -> list[tuple[int, Dataset | None]]:
    assoc = _associate(server, [build_context(StudyRootQueryRetrieveInformationModelFind)], aet)
    assert assoc.is_established
    try:
        return [
            (status.Status if "Status" in status else -1, answer)
            for status, answer in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        ]
    finally:
        if assoc.is_established:
            assoc.release()


def test_find_study_answers_the_keys_asked(server: ServerProcess) -> None:
    dataset = _copy_with_new_uids(MR_FILE)
    assert _store(server, [dataset]) == [0x0000]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = dataset.StudyInstanceUID
    query.PatientName = ""
    query.ModalitiesInStudy = ""
    query.NumberOfStudyRelatedInstances = ""
    query.StudyDescription = ""
    responses = _find(server, query)
    assert [status for status, _ in responses] == [0xFF00, 0x0000]
    answer = responses[0][1]
    assert answer is not None
    assert answer.QueryRetrieveLevel == "STUDY"
    assert answer.RetrieveAETitle == SERVER_AET
    assert answer.SpecificCharacterSet == "ISO_IR 100"
    assert answer.PatientName == dataset.PatientName
    assert answer.ModalitiesInStudy == "MR"
    assert answer.NumberOfStudyRelatedInstances == 1
    assert answer.StudyDescription == dataset.get("StudyDescription", "")
    assert "StudyDate" not in answer  # only what was asked


def test_find_matches_person_names_case_insensitively_and_other_keys_exactly(server: ServerProcess) -> None:
    dataset = _copy_with_new_uids(CT_FILE)
    dataset.PatientName = "Doe^Jane"
    dataset.PatientID = "CASE-" + generate_uid()[-8:]
    assert _store(server, [dataset]) == [0x0000]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = "DOE^J*"
    query.PatientID = dataset.PatientID
    query.StudyInstanceUID = ""
    assert [status for status, _ in _find(server, query)] == [0xFF00, 0x0000]
    query.PatientID = dataset.PatientID.lower()
    assert [status for status, _ in _find(server, query)] == [0x0000]


def test_find_at_image_level_reads_tags_beyond_the_main_ones(server: ServerProcess) -> None:
    dataset = _copy_with_new_uids(CT_FILE)
    assert _store(server, [dataset]) == [0x0000]
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = dataset.StudyInstanceUID
    query.SeriesInstanceUID = dataset.SeriesInstanceUID
    query.SOPInstanceUID = ""
    query.Rows = None
    query.NumberOfFrames = None
    responses = _find(server, query)
    answer = responses[0][1]
    assert answer is not None
    assert answer.SOPInstanceUID == dataset.SOPInstanceUID
    assert answer.Rows == dataset.Rows
    assert answer.NumberOfFrames is None or answer.NumberOfFrames == ""


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_find_with_a_wildcard_on_a_date_fails(server: ServerProcess) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyDate = "2004*"
    assert [status for status, _ in _find(server, query)] == [0xC000]


def test_find_without_a_level_fails(server: ServerProcess) -> None:
    query = Dataset()
    query.PatientID = "x"
    assert [status for status, _ in _find(server, query)] == [0xC000]


def test_find_from_a_modality_not_allowed_to_find_aborts(server: ServerProcess) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    assoc = _associate(server, [build_context(StudyRootQueryRetrieveInformationModelFind)], LIMITED_AET)
    assert assoc.is_established
    responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    assert all("Status" not in status for status, _ in responses)
    assert _ends_aborted(assoc)


def test_get_sends_the_series_back_on_the_same_association(server: ServerProcess) -> None:
    dataset = _copy_with_new_uids(CT_FILE)
    assert _store(server, [dataset]) == [0x0000]
    received: list[Dataset] = []

    def on_store(event) -> int:
        received.append(event.dataset)
        return 0x0000

    assoc = c_get_association(server, TEST_AET, on_store)
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = dataset.StudyInstanceUID
    query.SeriesInstanceUID = dataset.SeriesInstanceUID
    statuses = [
        status.Status for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
    ]
    assoc.release()
    assert statuses[-1] == 0x0000
    assert [item.SOPInstanceUID for item in received] == [dataset.SOPInstanceUID]


def _move(server: ServerProcess, query: Dataset, destination: str) -> list[int]:
    assoc = _associate(server, [build_context(StudyRootQueryRetrieveInformationModelMove)])
    assert assoc.is_established
    try:
        return [
            status.Status
            for status, _ in assoc.send_c_move(query, destination, StudyRootQueryRetrieveInformationModelMove)
        ]
    finally:
        assoc.release()


def test_move_to_an_unknown_destination_fails(server: ServerProcess) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = "1.2.3"
    assert _move(server, query, "NOBODY") == [0xC000]  # as Orthanc 1.10.1 (not 0xA801)


def test_move_to_a_registered_modality_sends_the_study(server: ServerProcess, tmp_path: Path) -> None:
    received: list[str] = []
    port = free_port()

    def on_store(event) -> int:
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    receiver = AE(ae_title="RECEIVER")
    receiver.supported_contexts = AllStoragePresentationContexts
    scp = receiver.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            assert (
                http.put(
                    "/modalities/receiver", json={"AET": "RECEIVER", "Host": "127.0.0.1", "Port": port}
                ).status_code
                == 200
            )
            study = generate_uid()
            datasets = [_copy_with_new_uids(CT_FILE, study) for _ in range(3)]
            assert _store(server, datasets) == [0x0000] * 3
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = study
            statuses = _move(server, query, "RECEIVER")
            http.delete("/modalities/receiver")
    finally:
        scp.shutdown()
    assert statuses[-1] == 0x0000
    assert sorted(received) == sorted(str(item.SOPInstanceUID) for item in datasets)


# --- REST: /modalities, C-ECHO and C-STORE through the SCU, /exports ------------------------------


@pytest.fixture
def self_modality(server: ServerProcess, client: httpx.Client) -> Iterator[str]:
    """The server registered as one of its own modalities: its SCU calls its SCP."""
    body = {"AET": SERVER_AET, "Host": "127.0.0.1", "Port": server.dicom_port}
    assert client.put("/modalities/self", json=body).status_code == 200
    yield "self"
    client.delete("/modalities/self")


def _error(response: httpx.Response) -> tuple[int, int, str | None]:
    body = response.json()
    return response.status_code, body["OrthancStatus"], body.get("Details")


def test_modalities_are_configured_as_in_orthanc(client: httpx.Client) -> None:
    assert client.get("/modalities").json() == ["limited", "tests"]
    assert client.put("/modalities/extra", json=["EXTRA", "10.0.0.1", 104, "GE"]).status_code == 200
    configuration = client.get("/modalities/extra/configuration").json()
    assert configuration == {
        "AET": "EXTRA",
        "AllowEcho": True,
        "AllowEventReport": True,
        "AllowFind": True,
        "AllowFindWorklist": True,
        "AllowGet": True,
        "AllowMove": True,
        "AllowNAction": True,
        "AllowStore": True,
        "AllowTranscoding": True,
        "Host": "10.0.0.1",
        "LocalAet": "",
        "Manufacturer": "GE",
        "Port": 104,
        "Timeout": 0,
        "UseDicomTls": False,
    }
    body = {"AET": "EXTRA", "Host": "h", "Port": "105", "AllowStorageCommitment": False, "Timeout": 3}
    assert client.put("/modalities/extra", json=body).status_code == 200
    expanded = client.get("/modalities", params={"expand": ""}).json()
    assert list(expanded) == ["extra", "limited", "tests"]
    assert expanded["extra"]["Port"] == 105
    assert expanded["extra"]["AllowNAction"] is expanded["extra"]["AllowEventReport"] is False
    assert expanded["extra"]["Manufacturer"] == "Generic"
    assert expanded["extra"]["Timeout"] == 3
    assert client.get("/modalities/extra").json()[:2] == ["configuration", "echo"]
    assert client.delete("/modalities/extra").status_code == 200
    assert client.get("/modalities/extra").status_code == 404
    assert _error(client.delete("/modalities/extra")) == (
        404,
        7,
        "Unknown DICOM modality with symbolic name: extra",
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"Host": "h", "Port": 104}, (400, 15, "String value expected in field: AET")),
        ({"AET": "X", "Port": 104}, (400, 15, "String value expected in field: Host")),
        ({"AET": "X", "Host": "h"}, (400, 15, None)),
        (
            {"AET": "X", "Host": "h", "Port": 0},
            (400, 3, "A TCP port number must be in range [1..65534], but found: 0"),
        ),
        (
            {"AET": "X", "Host": "h", "Port": 104, "Manufacturer": "Nope"},
            (400, 3, 'Unknown modality manufacturer: "Nope"'),
        ),
        (
            {"AET": "X", "Host": "h", "Port": 104, "AllowStore": "yes"},
            (400, 15, "Boolean value expected in field: AllowStore"),
        ),
        (
            {"AET": "X", "Host": "h", "Port": 104, "Timeout": -1},
            (400, 15, "Unsigned integer value expected in field: Timeout"),
        ),
        (["X", "h"], (400, 15, None)),
    ],
)
def test_bad_modality_definitions_are_refused(client: httpx.Client, body, expected) -> None:
    assert _error(client.put("/modalities/bad", json=body)) == expected
    assert "bad" not in client.get("/modalities").json()


def test_echo_through_the_rest_api(client: httpx.Client, self_modality: str) -> None:
    response = client.post(f"/modalities/{self_modality}/echo", json={})
    assert (response.status_code, response.content, response.headers["content-type"]) == (
        200,
        b"{}",
        "application/json",
    )
    assert client.post(f"/modalities/{self_modality}/echo", content=b"").status_code == 200
    assert _error(client.post(f"/modalities/{self_modality}/echo", content=b"{")) == (
        400,
        15,
        "Cannot parse the JSON body",
    )
    assert _error(client.post("/modalities/nosuch/echo", json={})) == (
        404,
        7,
        "No modality with symbolic name: nosuch",
    )
    closed = free_port()
    client.put("/modalities/closed", json={"AET": "CLOSED", "Host": "127.0.0.1", "Port": closed})
    try:
        assert _error(client.post("/modalities/closed/echo", json={})) == (
            500,
            9,
            'DicomAssociation - connecting to AET "CLOSED": TCP Initialization Error: Connection refused',
        )
    finally:
        client.delete("/modalities/closed")


def test_store_through_the_rest_api_logs_exports(
    server: ServerProcess, client: httpx.Client, self_modality: str
) -> None:
    client.delete("/exports")
    study = generate_uid()
    datasets = [_copy_with_new_uids(CT_FILE, study) for _ in range(2)]
    assert _store(server, datasets) == [0x0000, 0x0000]
    instance = client.post("/tools/lookup", content=str(datasets[0].SOPInstanceUID)).json()[0]["ID"]
    study_id = client.post("/tools/lookup", content=study).json()[0]["ID"]

    answer = client.post(f"/modalities/{self_modality}/store", content=instance.encode())
    assert answer.status_code == 200
    assert answer.json() == {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 1,
        "LocalAet": SERVER_AET,
        "ParentResources": [instance],
        "RemoteAet": SERVER_AET,
    }
    answer = client.post(
        f"/modalities/{self_modality}/store", json={"Resources": [study_id], "Synchronous": True}
    )
    assert answer.json()["InstancesCount"] == 2

    exports = client.get("/exports").json()
    assert exports["Done"] is True
    first, second = exports["Exports"]
    assert (first["ResourceType"], first["ID"], first["RemoteModality"]) == ("Instance", instance, "self")
    assert first["Path"] == f"/instances/{instance}"
    assert first["SOPInstanceUID"] == datasets[0].SOPInstanceUID
    assert first["StudyInstanceUID"] == study
    assert first["PatientID"] == datasets[0].PatientID
    assert second["ResourceType"] == "Study"
    assert set(second) == {
        "Date",
        "ID",
        "Path",
        "PatientID",
        "RemoteModality",
        "ResourceType",
        "Seq",
        "StudyInstanceUID",
    }
    assert second["Seq"] == first["Seq"] + 1
    assert exports["Last"] == second["Seq"]
    paged = client.get("/exports", params={"since": str(first["Seq"] - 1), "limit": "1"}).json()
    assert (paged["Done"], [entry["Seq"] for entry in paged["Exports"]]) == (False, [first["Seq"]])

    assert client.delete("/exports").status_code == 200
    assert client.get("/exports").json() == {"Done": True, "Exports": [], "Last": 0}
    client.post(f"/modalities/{self_modality}/store", json=[instance])
    assert client.get("/exports").json()["Exports"][0]["Seq"] == second["Seq"] + 1  # numbering goes on


@pytest.mark.parametrize("preamble", [True, False], ids=["empty-meta", "bare-dataset"])
def test_a_file_without_a_full_meta_is_sent_all_the_same(
    client: httpx.Client, self_modality: str, preamble: bool
) -> None:
    """A file with a preamble but an empty file meta group, or a bare dataset, is stored (as Orthanc
    does); sending it gives it the file meta the index knows, where pynetdicom refused the file
    (a 500 before)."""
    dataset = _copy_with_new_uids(CT_FILE)
    del dataset.file_meta
    if not preamble:
        dataset.preamble = None
    encoded = BytesIO()
    dcmwrite(encoded, dataset, implicit_vr=False, little_endian=True, enforce_file_format=False)
    assert (encoded.getvalue()[128:132] == b"DICM") is preamble
    stored = client.post("/instances", content=encoded.getvalue()).json()
    answer = client.post(f"/modalities/{self_modality}/store", json={"Resources": [stored["ID"]]})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["InstancesCount"], answer.json()["FailedInstancesCount"]) == (1, 0)


def test_an_instance_without_sop_class_fails_alone_in_a_permissive_store(
    client: httpx.Client, self_modality: str
) -> None:
    """A file whose dataset has no SOPClassUID (whatever its file meta says) cannot be sent: no
    presentation context names its class; the association still carries the study's other
    instances."""
    study = generate_uid()
    sendable, classless = (_copy_with_new_uids(CT_FILE, study) for _ in range(2))
    del classless.SOPClassUID
    for dataset in (sendable, classless):
        encoded = BytesIO()
        dataset.save_as(encoded, enforce_file_format=False)
        assert client.post("/instances", content=encoded.getvalue()).status_code == 200
    study_id = client.post("/tools/lookup", content=study).json()[0]["ID"]
    answer = client.post(
        f"/modalities/{self_modality}/store",
        json={"Resources": [study_id], "Synchronous": True, "Permissive": True},
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["InstancesCount"], answer.json()["FailedInstancesCount"]) == (2, 1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"Resources": ["nothex"]}', (400, 15, "This string is not a valid Orthanc identifier: nothex")),
        (
            b'{"Resources": [1]}',
            (400, 15, "Resources to be exported must be specified as a JSON array of strings"),
        ),
        (b'{"Resources": "x"}', (400, 15, 'JSON field "Resources" must contain an array')),
        (b"{}", (400, 15, 'Missing field in JSON: "Resources"')),
        (b"{bad json", (400, 15, "Must provide a JSON value")),
        (b'["00000000-00000000-00000000-00000000-00000000"]', (404, 17, None)),
    ],
)
def test_bad_store_requests_are_refused(client: httpx.Client, self_modality: str, body, expected) -> None:
    assert _error(client.post(f"/modalities/{self_modality}/store", content=body)) == expected


def _any_instance(server: ServerProcess, client: httpx.Client) -> str:
    dataset = _stored_study(server, 1)[0]
    return client.post("/tools/lookup", content=str(dataset.SOPInstanceUID)).json()[0]["ID"]


def test_store_to_a_closed_port_is_a_network_error(server: ServerProcess, client: httpx.Client) -> None:
    instance = _any_instance(server, client)
    client.put("/modalities/closed", json={"AET": "CLOSED", "Host": "127.0.0.1", "Port": free_port()})
    try:
        status, code, details = _error(client.post("/modalities/closed/store", json=[instance]))
    finally:
        client.delete("/modalities/closed")
    assert (status, code) == (500, 9)
    assert details is not None and details.startswith('DicomAssociation - connecting to AET "CLOSED"')


def test_store_straight_sends_the_body(client: httpx.Client, self_modality: str) -> None:
    dataset = _copy_with_new_uids(MR_FILE)
    encoded = BytesIO()
    dataset.save_as(encoded, enforce_file_format=True)
    answer = client.post(f"/modalities/{self_modality}/store-straight", content=encoded.getvalue())
    assert answer.json() == {"SOPClassUID": MRImageStorage, "SOPInstanceUID": dataset.SOPInstanceUID}
    assert client.post("/tools/lookup", content=str(dataset.SOPInstanceUID)).json()[0]["Type"] == "Instance"
    assert _error(client.post(f"/modalities/{self_modality}/store-straight", content=b"garbage")) == (
        400,
        15,
        "Cannot parse an invalid DICOM file (size: 7 bytes)",
    )


def test_accepted_transfer_syntaxes_apply_to_new_associations(
    server: ServerProcess, client: httpx.Client
) -> None:
    everything = client.get("/tools/accepted-transfer-syntaxes").json()
    assert everything[:4] == [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.2",
    ]
    assert len(everything) == 42
    try:
        answer = client.put("/tools/accepted-transfer-syntaxes", json=["1.2.840.10008.1.2"])
        assert answer.json() == ["1.2.840.10008.1.2"]
        assoc = _associate(
            server, [build_context(Verification), build_context(CTImageStorage, ExplicitVRLittleEndian)]
        )
        assert assoc.is_established
        assert [context.abstract_syntax for context in assoc.accepted_contexts] == [Verification]
        assoc.release()
        assert _error(client.put("/tools/accepted-transfer-syntaxes", content=b"1.2.*"))[:2] == (400, 15)
    finally:
        assert client.put("/tools/accepted-transfer-syntaxes", json="*").json() == everything
    assert _store(server, [_copy_with_new_uids(CT_FILE)]) == [0x0000]


def test_unknown_sop_classes_are_accepted_on_demand(server: ServerProcess, client: httpx.Client) -> None:
    private_class = "1.2.826.0.1.3680043.9.9999.1"
    dataset = _copy_with_new_uids(CT_FILE)
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = private_class
    assert client.get("/tools/unknown-sop-class-accepted").text == "0"
    assoc = _associate(server, [build_context(Verification), build_context(private_class)])
    assert [context.abstract_syntax for context in assoc.accepted_contexts] == [Verification]
    assoc.release()
    assert client.put("/tools/unknown-sop-class-accepted", content=b"true").status_code == 200
    try:
        assert client.get("/tools/unknown-sop-class-accepted").text == "1"
        assoc = _associate(server, [build_context(private_class)])
        assert assoc.send_c_store(dataset).Status == 0x0000
        assoc.release()
    finally:
        client.put("/tools/unknown-sop-class-accepted", content=b"0")
    assert _error(client.put("/tools/unknown-sop-class-accepted", content=b"maybe")) == (
        400,
        15,
        "Boolean value expected",
    )


# --- REST: /modalities/{name}/query and /queries (C-FIND and C-MOVE through the SCU) -------------


@pytest.fixture
def receiver(client: httpx.Client) -> Iterator[list[str]]:
    """A pynetdicom storage SCP registered as modality "receiver": the SOP instance UIDs it received."""
    received: list[str] = []
    port = free_port()

    def on_store(event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="RECEIVER")
    ae.supported_contexts = AllStoragePresentationContexts
    scp = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    client.put("/modalities/receiver", json={"AET": "RECEIVER", "Host": "127.0.0.1", "Port": port})
    yield received
    client.delete("/modalities/receiver")
    scp.shutdown()


def _stored_study(server: ServerProcess, instances: int = 2) -> list[Dataset]:
    study = generate_uid()
    datasets = [_copy_with_new_uids(CT_FILE, study) for _ in range(instances)]
    for dataset in datasets:
        dataset.PatientID = "Q-" + study[-10:]
    assert _store(server, datasets) == [0x0000] * instances
    return datasets


def test_query_and_its_answers(server: ServerProcess, client: httpx.Client, self_modality: str) -> None:
    datasets = _stored_study(server)
    body = {"Level": "Study", "Query": {"PatientID": datasets[0].PatientID, "StudyDescription": ""}}
    created = client.post(f"/modalities/{self_modality}/query", json=body).json()
    query = created["ID"]
    assert created["Path"] == f"/queries/{query}"
    assert query in client.get("/queries").json()
    assert client.get(f"/queries/{query}").json() == ["answers", "level", "modality", "query", "retrieve"]
    assert client.get(f"/queries/{query}/level").text == "Study"
    assert client.get(f"/queries/{query}/modality").text == self_modality
    assert client.get(f"/queries/{query}/query").json() == {
        "0008,1030": {"Name": "StudyDescription", "Type": "String", "Value": ""},
        "0010,0020": {"Name": "PatientID", "Type": "String", "Value": datasets[0].PatientID},
    }
    assert client.get(f"/queries/{query}/answers").json() == ["0"]
    simplified = client.get(f"/queries/{query}/answers", params={"expand": "", "simplify": ""}).json()
    assert simplified == [
        {
            "AccessionNumber": datasets[0].get("AccessionNumber", ""),
            "PatientID": datasets[0].PatientID,
            "QueryRetrieveLevel": "STUDY",
            "RetrieveAETitle": SERVER_AET,
            "SpecificCharacterSet": "ISO_IR 100",
            "StudyDescription": datasets[0].get("StudyDescription", ""),
            "StudyInstanceUID": datasets[0].StudyInstanceUID,
        }
    ]
    content = client.get(f"/queries/{query}/answers/0/content").json()
    assert content["0008,0052"] == {"Name": "QueryRetrieveLevel", "Type": "String", "Value": "STUDY"}
    assert client.get(f"/queries/{query}/answers/0").json() == [
        "content",
        "retrieve",
        "query-series",
        "query-instances",
    ]
    assert _error(client.get(f"/queries/{query}/answers/99/content"))[:2] == (400, 3)
    assert _error(client.get(f"/queries/{query}/answers/x/content")) == (
        400,
        5,
        "Syntax error in some user-supplied data",
    )

    series = client.post(f"/queries/{query}/answers/0/query-series", json={}).json()["ID"]
    assert client.get(f"/queries/{series}/level").text == "Series"
    series_answers = client.get(f"/queries/{series}/answers", params={"expand": "", "simplify": ""}).json()
    assert sorted(answer["SeriesInstanceUID"] for answer in series_answers) == sorted(
        str(dataset.SeriesInstanceUID) for dataset in datasets
    )

    assert client.delete(f"/queries/{query}").status_code == 200
    assert _error(client.get(f"/queries/{query}")) == (404, 17, None)
    assert client.delete(f"/queries/{query}").status_code == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"Level": "Nope", "Query": {}}, (400, 3, None)),
        ({"Query": {}}, (400, 15, "The JSON body must contain field Level")),
        ([], (400, 15, "Must provide a JSON object")),
        (
            {"Level": "Study", "Query": {"PatientName": 1}},
            (400, 15, "Associative array of DICOM tags to strings expected in field: Query"),
        ),
        (
            {"Level": "Study", "Query": {"Nosuch": "a"}},
            (400, 15, "Associative array of DICOM tags to strings expected in field: Query"),
        ),
    ],
)
def test_bad_queries_are_refused(client: httpx.Client, self_modality: str, body, expected) -> None:
    assert _error(client.post(f"/modalities/{self_modality}/query", json=body)) == expected


def test_retrieve_moves_the_answers_to_the_target(
    server: ServerProcess, client: httpx.Client, self_modality: str, receiver: list[str]
) -> None:
    datasets = _stored_study(server, 3)
    body = {"Level": "Series", "Query": {"StudyInstanceUID": datasets[0].StudyInstanceUID}}
    query = client.post(f"/modalities/{self_modality}/query", json=body).json()["ID"]
    assert len(client.get(f"/queries/{query}/answers").json()) == 3

    answer = client.post(f"/queries/{query}/answers/0/retrieve", content=b"RECEIVER").json()
    assert answer["Description"] == "REST API"
    assert (answer["LocalAet"], answer["RemoteAet"]) == (SERVER_AET, SERVER_AET)
    (item,) = answer["Query"]
    assert item["0008,0052"] == "SERIES"
    assert item["0020,000d"] == datasets[0].StudyInstanceUID
    assert len(receiver) == 1

    answer = client.post(f"/queries/{query}/retrieve", json={"TargetAet": "RECEIVER", "Full": True}).json()
    assert len(answer["Query"]) == 3
    assert answer["Query"][0]["0008,0052"] == {
        "Name": "QueryRetrieveLevel",
        "Type": "String",
        "Value": "SERIES",
    }
    assert sorted(receiver[1:]) == sorted(str(dataset.SOPInstanceUID) for dataset in datasets)

    status, code, details = _error(client.post(f"/queries/{query}/retrieve", json={"TargetAet": "NOBODY"}))
    assert (status, code) == (500, 9)
    assert (
        details == f'C-MOVE SCU to AET "{SERVER_AET}" has failed with DIMSE status 0xC000 (unable to process)'
    )


# --- jobs: asynchronous store and retrieve ---------------------------------------------------------


def _finished_job(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_asynchronous_store_is_a_job(server: ServerProcess, client: httpx.Client, self_modality: str) -> None:
    datasets = _stored_study(server)
    study_id = client.post("/tools/lookup", content=str(datasets[0].StudyInstanceUID)).json()[0]["ID"]
    body = {"Resources": [study_id], "Asynchronous": True, "Priority": 3}
    created = client.post(f"/modalities/{self_modality}/store", json=body).json()
    assert created["Path"] == f"/jobs/{created['ID']}"
    job = _finished_job(client, created["ID"])
    assert (job["State"], job["Type"], job["Priority"], job["Progress"]) == (
        "Success",
        "DicomModalityStore",
        3,
        100,
    )
    assert job["Content"] == {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 2,
        "LocalAet": SERVER_AET,
        "ParentResources": [study_id],
        "RemoteAet": SERVER_AET,
    }


def test_store_job_to_a_closed_port_fails_unless_permissive(
    server: ServerProcess, client: httpx.Client
) -> None:
    instance = _any_instance(server, client)
    client.put("/modalities/closed", json={"AET": "CLOSED", "Host": "127.0.0.1", "Port": free_port()})
    try:
        created = client.post(
            "/modalities/closed/store", json={"Resources": [instance], "Synchronous": False}
        )
        job = _finished_job(client, created.json()["ID"])
        assert (job["State"], job["ErrorCode"], job["ErrorDescription"]) == (
            "Failure",
            9,
            "Error in the network protocol",
        )
        assert job["ErrorDetails"].startswith('DicomAssociation - connecting to AET "CLOSED"')
        body = {"Resources": [instance], "Asynchronous": True, "Permissive": True}
        job = _finished_job(client, client.post("/modalities/closed/store", json=body).json()["ID"])
        assert (job["State"], job["Content"]["FailedInstancesCount"]) == ("Success", 1)
    finally:
        client.delete("/modalities/closed")


def test_asynchronous_retrieve_is_a_job(
    server: ServerProcess, client: httpx.Client, self_modality: str, receiver: list[str]
) -> None:
    datasets = _stored_study(server, 1)
    body = {"Level": "Study", "Query": {"StudyInstanceUID": datasets[0].StudyInstanceUID}}
    query = client.post(f"/modalities/{self_modality}/query", json=body).json()["ID"]
    created = client.post(f"/queries/{query}/retrieve", json={"TargetAet": "RECEIVER", "Asynchronous": True})
    job = _finished_job(client, created.json()["ID"])
    assert (job["State"], job["Type"]) == ("Success", "DicomMoveScu")
    assert job["Content"]["Query"] == [
        {
            "0008,0050": datasets[0].get("AccessionNumber", ""),
            "0008,0052": "STUDY",
            "0010,0020": datasets[0].PatientID,
            "0020,000d": datasets[0].StudyInstanceUID,
        }
    ]
    assert receiver == [datasets[0].SOPInstanceUID]


def test_queries_are_kept_up_to_query_retrieve_size(client: httpx.Client, self_modality: str) -> None:
    """The least recently used query goes first (Orthanc's QueryRetrieveSize)."""
    body = {"Level": "Patient", "Query": {"PatientID": "NOBODY"}}
    queries = [client.post(f"/modalities/{self_modality}/query", json=body).json()["ID"] for _ in range(3)]
    assert client.get(f"/queries/{queries[0]}/level").status_code == 200  # now the most recently used
    queries.append(client.post(f"/modalities/{self_modality}/query", json=body).json()["ID"])
    kept = client.get("/queries").json()
    assert len(kept) == QUERY_RETRIEVE_SIZE
    assert queries[1] not in kept
    assert {queries[0], queries[2], queries[3]} <= set(kept)


@pytest.mark.slow
def test_modalities_in_database_survive_a_restart(tmp_path: Path) -> None:
    server = fastpacs_server(
        tmp_path, {"DicomModalitiesInDatabase": True, "DicomModalities": {"ignored": ["X", "h", 104]}}
    )
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            assert http.get("/modalities").json() == []  # the configured ones are ignored, as in Orthanc
            assert http.put("/modalities/kept", json=["KEPT", "10.0.0.1", 104]).status_code == 200
            assert http.put("/modalities/gone", json=["GONE", "10.0.0.2", 104]).status_code == 200
            assert http.delete("/modalities/gone").status_code == 200
        server.stop()
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            assert http.get("/modalities").json() == ["kept"]
            assert http.get("/modalities/kept/configuration").json()["Host"] == "10.0.0.1"
    finally:
        server.stop()


def test_find_answers_names_beyond_latin1_in_utf8(server: ServerProcess) -> None:
    """Orthanc drops what ISO_IR 100 cannot hold; fastpacs answers in ISO_IR 192 then."""
    dataset = _copy_with_new_uids(CT_FILE)
    dataset.SpecificCharacterSet = "ISO_IR 192"
    dataset.PatientName = "Yamada^Tarou=山田^太郎"
    dataset.PatientID = "UTF8-" + generate_uid()[-8:]
    assert _store(server, [dataset]) == [0x0000]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = dataset.PatientID
    query.PatientName = ""
    answer = _find(server, query)[0][1]
    assert answer is not None
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Yamada^Tarou=山田^太郎"


def test_store_to_a_modality_that_never_answers_times_out(
    server: ServerProcess, client: httpx.Client
) -> None:
    """A listener that accepts the connection and says nothing: the modality's Timeout applies."""
    instance = _any_instance(server, client)
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen()
        port = black_hole.getsockname()[1]
        client.put(
            "/modalities/blackhole",
            json={"AET": "BLACKHOLE", "Host": "127.0.0.1", "Port": port, "Timeout": 1},
        )
        try:
            started = time.monotonic()
            answer = client.post("/modalities/blackhole/store", json=[instance])
            elapsed = time.monotonic() - started
        finally:
            client.delete("/modalities/blackhole")
    assert _error(answer) == (
        500,
        9,
        'DicomAssociation - connecting to AET "BLACKHOLE": DUL network read timeout',
    )
    assert elapsed < 5
