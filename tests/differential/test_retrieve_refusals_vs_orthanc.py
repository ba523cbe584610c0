"""C-GET and C-MOVE refusals, failures and answers, fastpacs against the reference Orthanc 1.10.1.

Both servers hold the same four instances (two patients, three series) and
know the same modalities: ``PROBE`` (a storage SCP, the C-MOVE destination
and the C-GET caller, which can be told to refuse some C-STOREs), ``REFUSER``
(rejects every association), ``NOCTX`` (accepts Verification only) and
``DEAD`` (nothing listens). The same identifiers are sent to both by
pynetdicom (and by DCMTK's getscu and movescu); compared: every response
(status, counts of remaining, completed, failed and warning sub-operations
when it carries them, whether it has a data set and its Failed SOP Instance
UID List), and the SOP Instance UIDs the destination received.

Orthanc 1.10.1 refuses a retrieve with 0xC000 (0 sub-operations of each
kind, nothing sent) for an unknown or missing level key, a wildcard, an
identifier naming nothing; its C-GET also without QueryRetrieveLevel, or
when any value of a list (an empty one too) names nothing, where its C-MOVE
sends what the other values name. The sequencing of the answers is
fastpacs's :mod:`fastpacs.net.retrieve_service`, whose docstring lists what
these tests measured.
"""

import io
import re
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from fastpacs.testing import free_port
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import ServerPair
from tests.differential.test_find_vs_orthanc import _file as part10_file
from tests.test_retrieve_delete_races import DeletingReceiver, _series_query, _stored_series

pytestmark = pytest.mark.reference

ROOT = "1.2.826.0.1.3680043.8.498.77."
PROBE_AET = "PROBE"
OUT_OF_RESOURCES = 0xA700
NO_TRANSCODING_AET = "NOTRANSCODING"
"""A C-GET caller whose modality has AllowTranscoding off."""
COMPRESSED_SOP = ROOT + "9.1.1"
PATIENT_GET, PATIENT_MOVE = (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
)
STUDY_GET, STUDY_MOVE = StudyRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelMove
MODELS = {("get", "patient"): PATIENT_GET, ("get", "study"): STUDY_GET}
MODELS |= {("move", "patient"): PATIENT_MOVE, ("move", "study"): STUDY_MOVE}
INSTANCES = {
    # SOP Instance UID suffix: (PatientID, study, series)
    "1.1.1": ("PAT1", "1", "1.1"),
    "1.1.2": ("PAT1", "1", "1.1"),
    "1.2.1": ("PAT1", "1", "1.2"),
    "2.1.1": ("PAT2", "2", "2.1"),
}


def _instance(sop: str) -> bytes:
    patient, study, series = INSTANCES[sop]
    dataset = dcmread(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
    dataset.PatientID = dataset.PatientName = patient
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = ROOT + study, ROOT + series
    dataset.SOPInstanceUID = ROOT + sop
    dataset.AccessionNumber = f"ACC{study}"
    return part10_file(dataset)


class Destinations:
    """The modalities both servers know: a storage SCP recording what it gets, and broken ones."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.store_delay = 0.0
        self.refused: set[str] = set()
        """SOP Instance UIDs whose C-STORE the probe answers 0xA700 (out of resources)."""
        self.on_store: Callable[[evt.Event], object] | None = None
        """Called with each C-STORE the probe receives, before it answers."""
        self.ports = {name: free_port() for name in (PROBE_AET, "REFUSER", "NOCTX", "DEAD")}
        probe = AE(ae_title=PROBE_AET)
        for context in StoragePresentationContexts:
            probe.add_supported_context(context.abstract_syntax)
        refuser = AE(ae_title="REFUSER")
        refuser.require_calling_aet = ["NOBODY"]
        refuser.add_supported_context(CTImageStorage)
        no_storage = AE(ae_title="NOCTX")
        no_storage.add_supported_context(Verification)
        self.servers = [
            probe.start_server(
                self._address(PROBE_AET), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)]
            ),
            refuser.start_server(self._address("REFUSER"), block=False),
            no_storage.start_server(self._address("NOCTX"), block=False),
        ]

    def _address(self, name: str) -> tuple[str, int]:
        return "127.0.0.1", self.ports[name]

    def store(self, event: evt.Event) -> int:
        time.sleep(self.store_delay)
        uid = str(event.dataset.SOPInstanceUID)
        self.received.append(uid)
        if self.on_store is not None:
            self.on_store(event)
        return OUT_OF_RESOURCES if uid in self.refused else 0x0000

    @property
    def modalities(self) -> dict[str, list[Any]]:
        return {name.lower(): [name, "127.0.0.1", port] for name, port in self.ports.items()}

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()


@pytest.fixture(scope="module")
def destinations() -> Iterator[Destinations]:
    nodes = Destinations()
    yield nodes
    nodes.stop()


def _compressed_instance() -> bytes:
    """pydicom's JPEG baseline Secondary Capture (SC_rgb_jpeg_dcmtk.dcm), a patient of its own."""
    dataset = dcmread(pydicom.data.get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False))
    dataset.PatientID = dataset.PatientName = "COMPRESSED"
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = ROOT + "9", ROOT + "9.1"
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = COMPRESSED_SOP
    dataset.AccessionNumber = ""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)  # in its own (JPEG baseline) transfer syntax
    return buffer.getvalue()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, destinations: Destinations) -> Iterator[ServerPair]:
    no_transcoding = {"AET": NO_TRANSCODING_AET, "Host": "127.0.0.1", "Port": free_port()}
    modalities = {**destinations.modalities, "notranscoding": {**no_transcoding, "AllowTranscoding": False}}
    options = {**COMMON_OPTIONS, "DicomModalities": modalities}
    pair = ServerPair.start(tmp_path_factory.mktemp("retrieve-refusals"), options)
    try:
        pair.upload_all({sop: _instance(sop) for sop in INSTANCES} | {"compressed": _compressed_instance()})
        yield pair
    finally:
        pair.stop()


def retrieve(
    destinations: Destinations,
    port: int,
    operation: str,
    root: str,
    keys: dict[str, str],
    *,
    destination: str = PROBE_AET,
    cancel: bool = False,
    storage: str = "role",
    storage_class: str = CTImageStorage,
    caller: str = PROBE_AET,
) -> dict[str, Any]:
    """Every response to a C-GET or C-MOVE sent by pynetdicom, and the instances the destination received.

    With ``cancel``, a C-CANCEL follows the first pending response. A C-GET
    caller proposes ``storage_class`` (uncompressed transfer syntaxes only) with
    the SCP role (``storage="role"``), without it (``"no role"``), or no
    storage context at all (``"none"``).
    """
    destinations.received.clear()
    model = MODELS[(operation, root)]
    ae = AE(ae_title=caller)
    ae.add_requested_context(model)
    has_data_set: list[bool] = []

    def response_received(event: evt.Event) -> None:
        command = event.message.command_set
        if "Status" in command:  # a response (a C-GET caller also receives C-STORE requests)
            has_data_set.append(command.CommandDataSetType != NO_DATA_SET)

    handlers: list[Any] = [(evt.EVT_DIMSE_RECV, response_received)]
    options: dict[str, Any] = {}
    if operation == "get" and storage != "none":
        ae.add_requested_context(storage_class)
    if operation == "get" and storage == "role":
        options["ext_neg"] = [build_role(storage_class, scp_role=True)]
        handlers.append((evt.EVT_C_STORE, destinations.store))
    assoc = ae.associate("127.0.0.1", port, evt_handlers=handlers, **options)
    assert assoc.is_established
    identifier = _identifier(keys)
    requests = (
        assoc.send_c_get(identifier, model, msg_id=7)
        if operation == "get"
        else assoc.send_c_move(identifier, destination, model, msg_id=7)
    )
    responses = []
    try:
        for status, answer in requests:
            responses.append(_response(status, answer))
            if cancel and status.get("Status") == 0xFF00:
                context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == model)
                assoc.send_c_cancel(7, context.context_id)
                cancel = False
    finally:
        assoc.release()
    for response, data_set in zip(responses, has_data_set, strict=True):
        response["DataSet"] = data_set
    return {"Responses": responses, "Received": sorted(destinations.received)}


NO_DATA_SET = 0x0101
"""Command Data Set Type of a DIMSE message without a data set."""


def _response(status: Dataset, answer: Dataset | None) -> dict[str, Any]:
    """A response's status, the counts it carries, and its Failed SOP Instance UID List if any."""
    response: dict[str, Any] = {"Status": f"0x{status.Status:04X}" if "Status" in status else None}
    for name in ("Remaining", "Completed", "Failed", "Warning"):
        if f"NumberOf{name}Suboperations" in status:
            response[name] = status[f"NumberOf{name}Suboperations"].value
    if answer is not None and "FailedSOPInstanceUIDList" in answer:
        response["FailedSOPInstanceUIDList"] = sorted(_uids(answer.FailedSOPInstanceUIDList))
    return response


def _identifier(keys: dict[str, str]) -> Dataset:
    identifier = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of wildcards in UI values
        for keyword, value in keys.items():
            setattr(identifier, keyword, value)
    return identifier


def _uids(value: str | list[str]) -> list[str]:
    """The UIDs of a multi-valued element's value (one UID is a string; none an empty one)."""
    return [str(uid) for uid in ([value] if isinstance(value, str) else value) if uid]


def _patient(patient_id: str) -> dict[str, str]:
    return {"QueryRetrieveLevel": "PATIENT", "PatientID": patient_id}


def _image(sop: str) -> dict[str, str]:
    return {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": sop}


IDENTIFIERS: dict[str, tuple[str, dict[str, str]]] = {
    # name: (information model, identifier)
    "patient id star": ("patient", _patient("PAT*")),
    "patient id question": ("patient", _patient("PAT?")),
    "patient id star alone": ("patient", _patient("*")),
    "study uid star": ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ROOT + "*"}),
    "study uid question": ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ROOT + "?"}),
    "series uid star": (
        "study",
        {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": ROOT + "1", "SeriesInstanceUID": ROOT + "1.*"},
    ),
    "sop uid question": ("study", _image(ROOT + "1.1.?")),
    "sop uid list": ("study", _image(f"{ROOT}1.1.1\\{ROOT}2.1.1")),
    "sop uid list with a wildcard": ("study", _image(f"{ROOT}1.1.1\\{ROOT}2.*")),
    "sop uid list with an unknown uid": ("study", _image(f"{ROOT}1.1.1\\{ROOT}9.9")),
    "study uid list with an empty value": (
        "study",
        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ROOT + "2\\"},
    ),
    "wildcard in a key above the level": (
        "study",
        {"QueryRetrieveLevel": "STUDY", "PatientID": "PAT*", "StudyInstanceUID": ROOT + "2"},
    ),
    "no level patient id": ("patient", {"PatientID": "PAT2"}),
    "no level sop uid": ("study", {"SOPInstanceUID": ROOT + "1.2.1"}),
    "no level wildcard": ("study", {"SOPInstanceUID": ROOT + "1.2.*"}),
    "unknown level": ("study", {"QueryRetrieveLevel": "FOO", "StudyInstanceUID": ROOT + "2"}),
    "series level with a study uid": (
        "study",
        {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": ROOT + "2"},
    ),
    "image level with a patient id": ("patient", {"QueryRetrieveLevel": "IMAGE", "PatientID": "PAT2"}),
    "patient level with a study uid": (
        "patient",
        {"QueryRetrieveLevel": "PATIENT", "StudyInstanceUID": ROOT + "2"},
    ),
    "study level with an empty uid": ("study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}),
    "accession number": ("study", {"QueryRetrieveLevel": "STUDY", "AccessionNumber": "ACC2"}),
    "unknown accession number": ("study", {"QueryRetrieveLevel": "STUDY", "AccessionNumber": "NOPE"}),
    "unknown patient id": ("patient", _patient("NOPE")),
    "no key but the character set": ("study", {"SpecificCharacterSet": "ISO_IR 100"}),
}


@pytest.mark.parametrize("operation", ["get", "move"])
@pytest.mark.parametrize("name", IDENTIFIERS)
def test_retrieve(servers: ServerPair, destinations: Destinations, name: str, operation: str) -> None:
    root, keys = IDENTIFIERS[name]
    orthanc = retrieve(destinations, servers.orthanc.dicom_port, operation, root, keys)
    fastpacs = retrieve(destinations, servers.fastpacs.dicom_port, operation, root, keys)
    check = servers.checker()
    check.compare_documents(f"c-{operation} {name}", orthanc, fastpacs)
    check.verdict()


STUDY_1 = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ROOT + "1"}
DESTINATIONS = {
    # name: (move destination, identifier)
    "unknown": ("UNKNOWNAE", STUDY_1),
    "refusing the association": ("REFUSER", STUDY_1),
    "accepting no storage": ("NOCTX", STUDY_1),
    "not listening": ("DEAD", STUDY_1),
    "accepting no storage, wildcard": ("NOCTX", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "*"}),
}


@pytest.mark.parametrize("name", DESTINATIONS)
def test_move_destination(servers: ServerPair, destinations: Destinations, name: str) -> None:
    destination, keys = DESTINATIONS[name]
    check = servers.checker()
    check.compare_documents(
        f"c-move destination {name}",
        retrieve(destinations, servers.orthanc.dicom_port, "move", "study", keys, destination=destination),
        retrieve(destinations, servers.fastpacs.dicom_port, "move", "study", keys, destination=destination),
    )
    check.verdict()


@pytest.mark.parametrize("operation", ["get", "move"])
def test_cancel(servers: ServerPair, destinations: Destinations, operation: str) -> None:
    """A C-CANCEL after the first sub-operation: a final Cancel (0xFE00) without data set, whose
    counts (with the Remaining ones) account for every instance.

    When each server notices the cancel is a matter of timing (Orthanc's C-MOVE
    sometimes finishes all three), so the counts themselves are not compared."""
    finals = []
    destinations.store_delay = 0.5
    try:
        for port in (servers.orthanc.dicom_port, servers.fastpacs.dicom_port):
            answer = retrieve(destinations, port, operation, "patient", _patient("PAT1"), cancel=True)
            finals.append(answer["Responses"][-1])
    finally:
        destinations.store_delay = 0.0
    for final in finals:
        assert final["Status"] == "0xFE00", finals
        assert final["Remaining"] + final["Completed"] + final["Failed"] + final["Warning"] == 3, finals
        assert final["Failed"] == final["Warning"] == 0, finals
        assert final["DataSet"] is False, finals


@pytest.mark.parametrize("storage", ["none", "no role"])
def test_get_without_storage(servers: ServerPair, destinations: Destinations, storage: str) -> None:
    """A C-GET caller that cannot receive the instances: no storage context (Orthanc ends the retrieve
    at the first instance, 0xC000 with 1 failed), or a context without the SCP role (every
    sub-operation fails, 0xA702)."""
    check = servers.checker()
    answers = [
        retrieve(destinations, port, "get", "patient", _patient("PAT1"), storage=storage)
        for port in (servers.orthanc.dicom_port, servers.fastpacs.dicom_port)
    ]
    check.compare_documents(f"c-get storage {storage}", *answers)
    check.verdict()


def test_get_of_an_instance_that_cannot_be_sent(servers: ServerPair, destinations: Destinations) -> None:
    """A JPEG baseline instance for a C-GET caller accepting uncompressed syntaxes only, whose
    modality has AllowTranscoding off: it cannot be sent, which ends the C-GET there (0xC000, it
    counted failed), where a C-STORE the caller refuses is a failed sub-operation the C-GET goes past."""
    answers = [
        retrieve(
            destinations,
            port,
            "get",
            "study",
            _image(COMPRESSED_SOP),
            storage_class=SecondaryCaptureImageStorage,
            caller=NO_TRANSCODING_AET,
        )
        for port in (servers.orthanc.dicom_port, servers.fastpacs.dicom_port)
    ]
    ended = {"Status": "0xC000", "Completed": 0, "Failed": 1, "Warning": 0, "DataSet": False}
    assert answers[0] == {"Responses": [ended], "Received": []}  # Orthanc's, as measured
    check = servers.checker()
    check.compare_documents("c-get of an instance that cannot be sent", *answers)
    check.verdict()


STORE_FAILURES = {
    # name: (operation, SOP Instance UID suffixes whose C-STORE the destination refuses)
    "c-get one refused": ("get", ["1.1.2"]),
    "c-get all refused": ("get", ["1.1.1", "1.1.2", "1.2.1"]),
    "c-move one refused": ("move", ["1.1.2"]),
    "c-move all refused": ("move", ["1.1.1", "1.1.2", "1.2.1"]),
}


@pytest.mark.parametrize("name", STORE_FAILURES)
def test_store_failure(servers: ServerPair, destinations: Destinations, name: str) -> None:
    """The destination refuses some C-STORE sub-operations of a study: a C-GET goes on (0xB000, or
    0xA702 when all failed), a C-MOVE ends at the first failure (0xC000 with zero counts).

    The two servers send a study's instances in different orders (Orthanc: last
    received first) but both send 1.1.2 second: which instances reach the
    destination differs, not how many, nor the responses."""
    operation, refused = STORE_FAILURES[name]
    destinations.refused = {ROOT + sop for sop in refused}
    answers = []
    try:
        for port in (servers.orthanc.dicom_port, servers.fastpacs.dicom_port):
            answer = retrieve(destinations, port, operation, "study", STUDY_1)
            answers.append({**answer, "Received": len(answer["Received"])})
    finally:
        destinations.refused = set()
    check = servers.checker()
    check.compare_documents(name, *answers)
    check.verdict()


@pytest.mark.parametrize("operation", ["get", "move"])
def test_instance_deleted_during_retrieve(
    servers: ServerPair, destinations: Destinations, operation: str
) -> None:
    """An instance of a series deleted (REST) at the first sub-operation: the retrieve ends when it
    reaches it, 0xC000 without data set; a C-GET counts the instances sent before as completed
    (the deleted one is not counted failed), a C-MOVE counts nothing.

    The servers send a series' instances in different orders, so how many go
    before the deleted one differs: compared are the final status, its failed
    and warning counts, and its completed count less the instances received."""
    finals = []
    for server in (servers.orthanc, servers.fastpacs):
        datasets = _stored_series(server, f"DELETED-{operation.upper()}")
        destinations.on_store = DeletingReceiver(server, datasets)
        try:
            keys = {keyword: _series_query(datasets[0])[keyword].value for keyword in SERIES_KEYS}
            answer = retrieve(destinations, server.dicom_port, operation, "study", keys)
        finally:
            destinations.on_store = None
        final = answer["Responses"][-1]
        sent_before = len(answer["Received"]) if operation == "get" else 0
        finals.append({**final, "Completed": final["Completed"] - sent_before, "Sent": bool(sent_before)})
    check = servers.checker()
    check.compare_documents(f"c-{operation} of a deleted instance", *finals)
    check.verdict()


SERIES_KEYS = ("QueryRetrieveLevel", "StudyInstanceUID", "SeriesInstanceUID")


DCMTK_RETRIEVES = {
    # name: the tool's arguments after the server's address
    "getscu wildcard": ["getscu", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT*"],
    "getscu patient": ["getscu", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT2"],
    "getscu patient of three": ["getscu", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT1"],
    "getscu unknown patient": ["getscu", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=NO"],
    "movescu patient of three": [
        "movescu",
        "-aem",
        PROBE_AET,
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID=PAT1",
    ],
    "movescu wildcard": [
        "movescu",
        "-aem",
        PROBE_AET,
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID=PAT*",
    ],
    "movescu unknown patient": [
        "movescu",
        "-aem",
        PROBE_AET,
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID=NO",
    ],
    "movescu patient": [
        "movescu",
        "-aem",
        PROBE_AET,
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID=PAT2",
    ],
}
FINAL_RESPONSE = re.compile(r"Received (?:C-GET|Final Move) Response \((?P<status>[^)]*)\)")
COUNT = re.compile(r"Number of (?P<name>\w+) Suboperations\s*: (?P<count>\d+)")


def dcmtk_retrieve(
    destinations: Destinations, port: int, tool: str, arguments: list[str], output: str
) -> dict:
    """What DCMTK's getscu or movescu reports: exit code, final status and counts, release."""
    destinations.received.clear()
    stored = ["-od", output] if tool == "getscu" else []
    command = [
        tool,
        "-v",
        "-aet",
        PROBE_AET,
        "-aec",
        "ORTHANC",
        "-P",
        *stored,
        "127.0.0.1",
        str(port),
        *arguments,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    log = done.stdout + done.stderr
    finals = FINAL_RESPONSE.findall(log)
    return {
        "ExitCode": done.returncode,
        "Status": finals[-1] if finals else None,
        **{match["name"]: int(match["count"]) for match in COUNT.finditer(log)},
        "ReleaseFailed": "Association Release Failed" in log,
        "Received": sorted(destinations.received),
    }


@pytest.mark.parametrize("name", DCMTK_RETRIEVES)
def test_dcmtk_retrieve(servers: ServerPair, destinations: Destinations, tmp_path: Path, name: str) -> None:
    tool, *arguments = DCMTK_RETRIEVES[name]
    answers = [
        dcmtk_retrieve(destinations, port, tool, arguments, str(tmp_path))
        for port in (servers.orthanc.dicom_port, servers.fastpacs.dicom_port)
    ]
    check = servers.checker()
    check.compare_documents(f"dcmtk {name}", *answers)
    check.verdict()
