"""C-GET and C-MOVE refusals and failures, fastpacs against the reference Orthanc 1.10.1.

Both servers hold the same four instances (two patients, three series) and
know the same modalities: ``PROBE`` (a storage SCP, the C-MOVE destination
and the C-GET caller), ``REFUSER`` (rejects every association), ``NOCTX``
(accepts Verification only) and ``DEAD`` (nothing listens). The same
identifiers are sent to both by pynetdicom (and by DCMTK's getscu and
movescu); compared: the final response's status, its counts of completed,
failed and warning sub-operations, its Failed SOP Instance UID List, and the
SOP Instance UIDs the destination received.

Orthanc 1.10.1 refuses a retrieve with 0xC000 (0 sub-operations of each
kind, nothing sent) for an unknown or missing level key, a wildcard, an
identifier naming nothing; its C-GET also without QueryRetrieveLevel, or
when any value of a list (an empty one too) names nothing, where its C-MOVE
sends what the other values name.

Not compared: the pending responses and Number of Remaining Sub-operations
of the final one, which pynetdicom's SCP sends its own way (a C-MOVE's last
pending response and a final Remaining of 0, both of which Orthanc leaves out).
"""

import re
import subprocess
import time
import warnings
from collections.abc import Iterator
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
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from fastpacs.testing import free_port
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import ServerPair
from tests.differential.test_find_vs_orthanc import _file as part10_file

pytestmark = pytest.mark.reference

ROOT = "1.2.826.0.1.3680043.8.498.77."
PROBE_AET = "PROBE"
UNABLE_TO_PROCESS = 0xC000
"""Orthanc's status refusing a retrieve: the allowed differences of its answers are keyed on it."""
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
        self.received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

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


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, destinations: Destinations) -> Iterator[ServerPair]:
    options = {**COMMON_OPTIONS, "DicomModalities": destinations.modalities}
    pair = ServerPair.start(tmp_path_factory.mktemp("retrieve-refusals"), options)
    try:
        pair.upload_all({sop: _instance(sop) for sop in INSTANCES})
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
) -> dict[str, Any]:
    """The final response of a C-GET or C-MOVE sent by pynetdicom, and the instances received.

    With ``cancel``, a C-CANCEL follows the first pending response, and the
    final response's Number of Remaining Sub-operations is given too.
    """
    counted = (
        ("Remaining", "Completed", "Failed", "Warning") if cancel else ("Completed", "Failed", "Warning")
    )
    destinations.received.clear()
    model = MODELS[(operation, root)]
    ae = AE(ae_title=PROBE_AET)
    ae.add_requested_context(model)
    options: dict[str, Any] = {}
    if operation == "get":
        ae.add_requested_context(CTImageStorage)
        options = {
            "ext_neg": [build_role(CTImageStorage, scp_role=True)],
            "evt_handlers": [(evt.EVT_C_STORE, destinations.store)],
        }
    assoc = ae.associate("127.0.0.1", port, **options)
    assert assoc.is_established
    identifier = _identifier(keys)
    responses = (
        assoc.send_c_get(identifier, model, msg_id=7)
        if operation == "get"
        else assoc.send_c_move(identifier, destination, model, msg_id=7)
    )
    final: tuple[Dataset, Dataset | None] = (Dataset(), None)
    try:
        for status, answer in responses:
            final = (status, answer)
            if cancel and status.get("Status") == 0xFF00:
                context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == model)
                assoc.send_c_cancel(7, context.context_id)
                cancel = False
    finally:
        assoc.release()
    status, answer = final
    failed = answer.get("FailedSOPInstanceUIDList") if answer is not None else None
    return {
        "Status": f"0x{status.Status:04X}" if "Status" in status else None,
        **{name: status.get(f"NumberOf{name}Suboperations") for name in counted},
        "FailedSOPInstanceUIDList": None if failed is None else _uids(failed),
        "Received": sorted(destinations.received),
    }


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
    refused = "refused: " if orthanc["Status"] == f"0x{UNABLE_TO_PROCESS:04X}" else ""
    check = servers.checker()
    check.compare_documents(f"c-{operation} {refused}{name}", orthanc, fastpacs)
    check.verdict()


DESTINATIONS = {
    # name: (move destination, identifier)
    "unknown": ("UNKNOWNAE", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ROOT + "1"}),
    "refusing the association": ("REFUSER", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ROOT + "1"}),
    "accepting no storage": ("NOCTX", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ROOT + "1"}),
    "not listening": ("DEAD", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ROOT + "1"}),
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
    """A C-CANCEL after the first sub-operation: a final Cancel (0xFE00) accounting for every instance.

    When each server notices the cancel is a matter of timing (Orthanc's C-MOVE
    finished all three here), so only the status and the sum are compared."""
    answers = []
    destinations.store_delay = 0.5
    try:
        for port in (servers.orthanc.dicom_port, servers.fastpacs.dicom_port):
            final = retrieve(destinations, port, operation, "patient", _patient("PAT1"), cancel=True)
            answers.append(final)
    finally:
        destinations.store_delay = 0.0
    for final in answers:
        assert final["Status"] == "0xFE00", answers
        assert final["Remaining"] + final["Completed"] + final["Failed"] + final["Warning"] == 3, answers
        assert final["Failed"] == final["Warning"] == 0, answers


def get_without_storage_role(port: int) -> dict[str, Any]:
    """The final response of a C-GET whose caller offers no storage SCP role: no sub-operation can work."""
    ae = AE(ae_title=PROBE_AET)
    ae.add_requested_context(PATIENT_GET)
    assoc = ae.associate("127.0.0.1", port)
    assert assoc.is_established
    try:
        *_, (status, answer) = assoc.send_c_get(_identifier(_patient("PAT1")), PATIENT_GET)
    finally:
        assoc.release()
    failed = answer.get("FailedSOPInstanceUIDList") if answer is not None else None
    return {
        "Status": status.Status,
        **{name: status.get(f"NumberOf{name}Suboperations") for name in ("Completed", "Failed", "Warning")},
        "FailedSOPInstanceUIDList": None if failed is None else sorted(_uids(failed)),
    }


def test_get_without_storage_role(servers: ServerPair) -> None:
    """Every C-STORE sub-operation fails: both answer a failure and send nothing.

    Orthanc stops at the first failed sub-operation (0xC000, 1 failed, no
    identifier); pynetdicom's SCP tries each (0xA702 "unable to perform
    sub-operations", 3 failed) and lists the SOP Instance UIDs that failed,
    as the standard asks for a failure response."""
    orthanc = get_without_storage_role(servers.orthanc.dicom_port)
    fastpacs = get_without_storage_role(servers.fastpacs.dicom_port)
    assert orthanc == {
        "Status": UNABLE_TO_PROCESS,
        "Completed": 0,
        "Failed": 1,
        "Warning": 0,
        "FailedSOPInstanceUIDList": None,
    }
    patient_uids = sorted(ROOT + sop for sop, (patient, _, _) in INSTANCES.items() if patient == "PAT1")
    assert fastpacs == {
        "Status": 0xA702,
        "Completed": 0,
        "Failed": 3,
        "Warning": 0,
        "FailedSOPInstanceUIDList": patient_uids,
    }


DCMTK_RETRIEVES = {
    # name: the tool's arguments after the server's address
    "getscu wildcard": ["getscu", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT*"],
    "getscu patient": ["getscu", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT2"],
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
