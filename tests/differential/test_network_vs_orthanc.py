"""The DICOM network, fastpacs against the reference Orthanc 1.10.1.

Both servers get the same files (REST uploads) and register themselves as
modality ``self``, as the capture of Orthanc's behaviour did: their SCU talks
to their own SCP. Compared:

- /modalities (configuration, errors), /tools/accepted-transfer-syntaxes,
  /tools/unknown-sop-class-accepted;
- C-ECHO and C-STORE through /modalities/self, and /exports;
- C-FIND through /modalities/self/query and /queries (query IDs and the order
  of C-FIND answers differ between servers: answers are matched by UID);
- the answers of each SCP to the same C-FIND identifiers sent by pynetdicom,
  and the metadata of an instance received by C-STORE;

then the two servers are made modalities of each other (fastpacs's modality
``orthanc``, Orthanc's modality ``fastpacs``) and exchange studies both ways:
C-STORE, C-FIND, C-MOVE.
"""

import json
import time
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, build_context, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.testing import free_port
from tests.differential.allowlist import ALLOWED, KNOWN_BUGS
from tests.differential.data import CHARSET_FILES, shuffled_study, test_file
from tests.differential.harness import (
    KNOWN_BUGS_MET,
    Answer,
    Call,
    Checker,
    Difference,
    ServerPair,
    _listed,
    answer_differences,
    get,
)

pytestmark = pytest.mark.reference

FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "SC_rgb_jpeg_dcmtk.dcm")
GERMAN = next(path for path in CHARSET_FILES if path.name == "chrGerm.dcm")
PEER = {"AET": "PEER", "Host": "127.0.0.1", "Port": 11112}


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict[str, str]]:
    """File name → Orthanc's upload answer (both servers hold the same files)."""
    answers = {}
    for path in [test_file(name) for name in FILES] + [GERMAN]:
        orthanc, fastpacs = pair.send(
            Call(f"upload {path.name}", "POST", "/instances", body=path.read_bytes())
        )
        assert (orthanc.status, fastpacs.status) == (200, 200), path.name
        answers[path.name] = orthanc.json
    return answers


@pytest.fixture
def self_modality(pair: ServerPair) -> Iterator[str]:
    """Each server registered as its own modality "self" (its own port: set on each, not compared)."""
    for server, client in ((pair.orthanc, pair.orthanc_client), (pair.fastpacs, pair.fastpacs_client)):
        body = {"AET": server.aet, "Host": "127.0.0.1", "Port": server.dicom_port}
        assert client.put("/modalities/self", json=body).status_code == 200
    yield "self"
    for client in (pair.orthanc_client, pair.fastpacs_client):
        client.delete("/modalities/self")


def _record(checker: Checker, call: Call, differences: list[Difference]) -> None:
    """Judge differences with the allow-list, as ``Checker.compare`` does."""
    for difference in differences:
        if _listed(ALLOWED, call, difference) is not None:
            continue
        bug = _listed(KNOWN_BUGS, call, difference)
        if bug is not None:
            checker.known.setdefault(bug, []).append(f"{call.name} {difference}")
            KNOWN_BUGS_MET.add(bug)
        else:
            checker.unexplained.append(f"{call.name} ({call.method} {call.path}) {difference}")


def _compare_paths(
    checker: Checker,
    name: str,
    paths: tuple[str, str],
    *,
    method: str = "GET",
    body: bytes | None = None,
    params: dict[str, str] | None = None,
) -> tuple[Answer, Answer]:
    """The same request made on different paths (a query's ID differs on each server)."""
    pair = checker.pair
    call = Call(name, method, paths[0], params, body)
    orthanc = Answer.of(pair.orthanc_client.request(method, paths[0], params=params, content=body))
    fastpacs = Answer.of(pair.fastpacs_client.request(method, paths[1], params=params, content=body))
    if isinstance(fastpacs.json, dict) and fastpacs.json.get("Uri") == paths[1]:
        fastpacs.json["Uri"] = paths[0]  # an error names the request's path: the same one, but for the ID
    ports = (
        {pair.orthanc.http_port: "<http-port>", pair.orthanc.dicom_port: "<dicom-port>"},
        {pair.fastpacs.http_port: "<http-port>", pair.fastpacs.dicom_port: "<dicom-port>"},
    )
    _record(checker, call, answer_differences(orthanc, fastpacs, call, ports))
    return orthanc, fastpacs


def _compare_documents(checker: Checker, name: str, orthanc: Any, fastpacs: Any) -> None:
    """Two JSON documents built by the test (answers matched by UID, C-FIND results)."""
    call = Call(name, "GET", "-")
    left = Answer(200, httpx.Headers(), b"", orthanc, True)
    right = Answer(200, httpx.Headers(), b"", fastpacs, True)
    _record(checker, call, answer_differences(left, right, call, ({}, {})))


# --- /modalities and the DICOM server's settings ---------------------------------------------------


def test_modalities_configuration(pair: ServerPair) -> None:
    checker = pair.checker()
    body = httpx.Request("PUT", "/", json=PEER).content
    checker.compare_all(
        [
            Call("modality-put", "PUT", "/modalities/peer", body=body),
            Call("modality-put-array", "PUT", "/modalities/array", body=b'["ARRAY", "10.0.0.2", 104, "GE"]'),
            Call("modality-put-bad", "PUT", "/modalities/bad", body=b'{"Host": "127.0.0.1"}'),
            Call(
                "modality-put-bad-port",
                "PUT",
                "/modalities/bad",
                body=b'{"AET": "A", "Host": "h", "Port": 0}',
            ),
            Call(
                "modality-put-bad-manufacturer",
                "PUT",
                "/modalities/bad",
                body=b'{"AET": "A", "Host": "h", "Port": 104, "Manufacturer": "Nope"}',
            ),
            Call(
                "modality-put-commitment",
                "PUT",
                "/modalities/commitment",
                body=b'{"AET": "C", "Host": "h", "Port": "105", "AllowStorageCommitment": false, '
                b'"Timeout": 5}',
            ),
            get("modalities", "/modalities"),
            get("modalities-expand", "/modalities", expand=""),
            get("modality-peer", "/modalities/peer"),
            get("modality-peer-configuration", "/modalities/peer/configuration"),
            get("modality-unknown", "/modalities/nosuch"),
            get("modality-unknown-configuration", "/modalities/nosuch/configuration"),
            Call("modality-unknown-echo", "POST", "/modalities/nosuch/echo", body=b"{}"),
            Call("modality-unknown-store", "POST", "/modalities/nosuch/store", body=b"[]"),
            Call("modality-delete", "DELETE", "/modalities/array"),
            Call("modality-delete-again", "DELETE", "/modalities/array"),
            Call("modality-delete-commitment", "DELETE", "/modalities/commitment"),
            Call("modality-delete-peer", "DELETE", "/modalities/peer"),
            get("modalities-after-delete", "/modalities"),
            get("accepted-transfer-syntaxes", "/tools/accepted-transfer-syntaxes"),
            Call(
                "accepted-transfer-syntaxes-put",
                "PUT",
                "/tools/accepted-transfer-syntaxes",
                body=b'["1.2.840.10008.1.2.4.9?", "1.2.840.10008.1.2"]',
            ),
            Call(
                "accepted-transfer-syntaxes-put-bad",
                "PUT",
                "/tools/accepted-transfer-syntaxes",
                body=b"1.2.*",
            ),
            Call(
                "accepted-transfer-syntaxes-put-all", "PUT", "/tools/accepted-transfer-syntaxes", body=b'"*"'
            ),
            get("unknown-sop-class-accepted", "/tools/unknown-sop-class-accepted"),
            Call("unknown-sop-class-accepted-put", "PUT", "/tools/unknown-sop-class-accepted", body=b"1"),
            get("unknown-sop-class-accepted-after", "/tools/unknown-sop-class-accepted"),
            Call("unknown-sop-class-accepted-bad", "PUT", "/tools/unknown-sop-class-accepted", body=b"maybe"),
            Call("unknown-sop-class-accepted-reset", "PUT", "/tools/unknown-sop-class-accepted", body=b"0"),
        ]
    )
    checker.verdict()


# --- C-ECHO, C-STORE and /exports through the SCU ---------------------------------------------------


def test_echo_store_and_exports(
    pair: ServerPair, stored: dict[str, dict[str, str]], self_modality: str
) -> None:
    checker = pair.checker()
    ct, rtplan = stored["CT_small.dcm"], stored["rtplan.dcm"]
    resources = f'["{rtplan["ParentStudy"]}", "{ct["ParentSeries"]}"]'
    checker.compare_all(
        [
            Call("exports-clear", "DELETE", "/exports"),
            Call("modality-echo", "POST", "/modalities/self/echo", body=b"{}"),
            Call("modality-echo-empty", "POST", "/modalities/self/echo", body=b""),
            Call("modality-echo-bad", "POST", "/modalities/self/echo", body=b"{"),
            Call("modality-store", "POST", "/modalities/self/store", body=ct["ID"].encode()),
            Call(
                "modality-store-json",
                "POST",
                "/modalities/self/store",
                body=f'{{"Resources": {resources}, "Synchronous": true}}'.encode(),
            ),
            Call("modality-store-empty", "POST", "/modalities/self/store", body=b'{"Resources": []}'),
            Call(
                "modality-store-unknown",
                "POST",
                "/modalities/self/store",
                body=b'{"Resources": ["00000000-00000000-00000000-00000000-00000000"]}',
            ),
            Call(
                "modality-store-not-an-id",
                "POST",
                "/modalities/self/store",
                body=b'{"Resources": ["nothex"]}',
            ),
            Call("modality-store-not-strings", "POST", "/modalities/self/store", body=b'{"Resources": [1]}'),
            Call("modality-store-no-resources", "POST", "/modalities/self/store", body=b"{}"),
            Call("modality-store-bad-json", "POST", "/modalities/self/store", body=b"{bad json"),
            Call("modality-store-straight-bad", "POST", "/modalities/self/store-straight", body=b"garbage"),
            Call(
                "modality-store-straight",
                "POST",
                "/modalities/self/store-straight",
                body=test_file("CT_small.dcm").read_bytes(),
            ),
            get("exports", "/exports"),
            get("exports-limit-since", "/exports", limit="1", since="1"),
            get("exports-last", "/exports", last=""),
            Call("exports-delete", "DELETE", "/exports"),
            get("exports-after-clear", "/exports"),
        ]
    )
    checker.verdict()


# --- /modalities/self/query and /queries ------------------------------------------------------------


def _query(pair: ServerPair, body: dict[str, Any]) -> tuple[str, str]:
    ids = []
    for client in (pair.orthanc_client, pair.fastpacs_client):
        response = client.post("/modalities/self/query", json=body)
        assert response.status_code == 200, response.text
        ids.append(response.json()["ID"])
    return ids[0], ids[1]


def _answers_by_uid(client: httpx.Client, query: str, key: str) -> dict[str, tuple[int, Any]]:
    """A query's answers (full form) by the value of one of their UIDs, with their index."""
    answers = client.get(f"/queries/{query}/answers", params={"expand": ""}).json()
    return {answer[key]["Value"]: (index, answer) for index, answer in enumerate(answers)}


def test_queries(pair: ServerPair, stored: dict[str, dict[str, str]], self_modality: str) -> None:
    checker = pair.checker()
    ids = _query(pair, {"Level": "Study", "Query": {"PatientName": "*", "StudyDescription": ""}})
    for part in ("", "/level", "/modality", "/query", "/answers/99/content", "/answers/x/content"):
        _compare_paths(checker, f"query{part}", (f"/queries/{ids[0]}{part}", f"/queries/{ids[1]}{part}"))
    orthanc, fastpacs = (
        _answers_by_uid(client, query, "0020,000d")
        for client, query in zip((pair.orthanc_client, pair.fastpacs_client), ids, strict=True)
    )
    _compare_documents(
        checker,
        "query-answers-by-uid",
        {uid: answer for uid, (_, answer) in orthanc.items()},
        {uid: answer for uid, (_, answer) in fastpacs.items()},
    )
    ct_study = dcmread(test_file("CT_small.dcm"), stop_before_pixels=True).StudyInstanceUID
    indexes = (orthanc[ct_study][0], fastpacs[ct_study][0])
    for part in ("", "/content"):
        _compare_paths(
            checker,
            f"query-answer{part}",
            (
                f"/queries/{ids[0]}/answers/{indexes[0]}{part}",
                f"/queries/{ids[1]}/answers/{indexes[1]}{part}",
            ),
            params={"simplify": ""} if part else None,
        )
    children = [
        client.post(f"/queries/{query}/answers/{index}/query-series", json={}).json()["ID"]
        for client, query, index in zip(
            (pair.orthanc_client, pair.fastpacs_client), ids, indexes, strict=True
        )
    ]
    for part in ("/level", "/query"):
        _compare_paths(
            checker, f"query-series{part}", (f"/queries/{children[0]}{part}", f"/queries/{children[1]}{part}")
        )
    _compare_paths(
        checker,
        "query-series-answers",
        (f"/queries/{children[0]}/answers", f"/queries/{children[1]}/answers"),
        params={"expand": "", "simplify": ""},
    )
    retrieve = b'{"TargetAet": "ORTHANC"}'
    _compare_paths(
        checker,
        "query-retrieve",
        (f"/queries/{children[0]}/answers/0/retrieve", f"/queries/{children[1]}/answers/0/retrieve"),
        method="POST",
        body=retrieve,
    )
    _compare_paths(  # an empty JSON TargetAet is sent as such: a C-MOVE without destination fails
        checker,
        "query-retrieve-empty-target",
        (f"/queries/{children[0]}/answers/0/retrieve", f"/queries/{children[1]}/answers/0/retrieve"),
        method="POST",
        body=b'{"TargetAet": ""}',
    )
    _compare_paths(
        checker,
        "query-delete",
        (f"/queries/{ids[0]}", f"/queries/{ids[1]}"),
        method="DELETE",
    )
    _compare_paths(checker, "query-after-delete", (f"/queries/{ids[0]}", f"/queries/{ids[1]}"))
    checker.compare_all(
        [
            Call("query-bad-level", "POST", "/modalities/self/query", body=b'{"Level": "Nope", "Query": {}}'),
            Call("query-no-level", "POST", "/modalities/self/query", body=b'{"Query": {}}'),
            Call("query-not-an-object", "POST", "/modalities/self/query", body=b"[]"),
            Call(
                "query-not-strings",
                "POST",
                "/modalities/self/query",
                body=b'{"Level": "Study", "Query": {"PatientName": 1}}',
            ),
            Call(
                "query-unknown-tag",
                "POST",
                "/modalities/self/query",
                body=b'{"Level": "Study", "Query": {"Nosuch": "a"}}',
            ),
            get("query-unknown", "/queries/nosuch"),
            Call("query-unknown-delete", "DELETE", "/queries/nosuch"),
        ]
    )
    checker.verdict()


# --- the deprecated C-FIND shortcuts /modalities/self/find-* and /find ----------------------------

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
FIND_CASES: list[tuple[str, Any]] = [
    ("find-patient", {}),
    ("find-patient", {"PatientName": "CompressedSamples*", "StudyDate": "2004*"}),
    ("find-patient", {"PatientID": 5}),
    ("find-study", {"PatientID": "1CT1"}),
    ("find-study", {"AccessionNumber": "ACC", "PatientID": "1"}),
    ("find-study", {"PatientID": "1CT1", "ModalitiesInStudy": "CT", "InstitutionName": "x"}),
    ("find-series", {"PatientID": "1CT1", "StudyInstanceUID": CT_STUDY, "Manufacturer": "x"}),
    ("find-instance", {"PatientID": "1CT1", "StudyInstanceUID": CT_STUDY, "SeriesInstanceUID": CT_SERIES}),
    (
        "find-instance",
        {
            "PatientID": "1CT1",
            "StudyInstanceUID": CT_STUDY,
            "SeriesInstanceUID": CT_SERIES,
            "InstanceNumber": "x",
        },
    ),
    ("find", {}),
    ("find", {"PatientName": "*MR*"}),
    # Refused before any C-FIND: parents not named (two characters or fewer), not an object, unknown tag.
    ("find-study", {}),
    ("find-study", {"PatientID": "*"}),
    ("find-study", {"PatientID": "PA"}),
    ("find-series", {"PatientID": "1CT1"}),
    ("find-instance", {"PatientID": "1CT1", "StudyInstanceUID": CT_STUDY, "SeriesInstanceUID": "1."}),
    ("find-patient", []),
    ("find-patient", {"Nosuch": "x"}),
]


def _sorted_answers(answer: Any) -> Any:
    """C-FIND answers come in no stable order: sorted, nested studies and series too."""
    if not isinstance(answer, list):
        return answer
    items = [
        {key: _sorted_answers(value) for key, value in item.items()} if isinstance(item, dict) else item
        for item in answer
    ]
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))


def test_find_shortcuts(pair: ServerPair, stored: dict[str, dict[str, str]], self_modality: str) -> None:
    """Each server asks its own C-FIND SCP: the shortcut's keys, checks and answers are Orthanc's."""
    checker = pair.checker()
    for index, (shortcut, body) in enumerate(FIND_CASES):
        call = Call(
            f"{shortcut} {index}", "POST", f"/modalities/self/{shortcut}", body=json.dumps(body).encode()
        )
        orthanc, fastpacs = pair.send(call)
        assert orthanc.status == fastpacs.status, (call.name, body, orthanc.status, fastpacs.content[:300])
        if orthanc.status == 200:
            _compare_documents(
                checker, call.name, _sorted_answers(orthanc.json), _sorted_answers(fastpacs.json)
            )
        else:
            _record(checker, call, answer_differences(orthanc, fastpacs, call, ({}, {})))
    checker.verdict()


@pytest.fixture
def worklist_modality(pair: ServerPair) -> Iterator[list[dict[str, Any]]]:
    """A pynetdicom RIS with one worklist item, modality "ris" of both servers; yields the identifiers
    it receives (in DICOM JSON)."""
    received: list[dict[str, Any]] = []

    def on_find(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        received.append(event.identifier.to_json_dict())
        item = Dataset()
        item.Modality, item.ScheduledProcedureStepStartDate, item.ScheduledStationAETitle = (
            "CT",
            "20261128",
            "CT1",
        )
        answer = Dataset()
        answer.SpecificCharacterSet, answer.PatientName, answer.PatientID = "ISO_IR 100", "Doe^John", "WL1"
        answer.ScheduledProcedureStepSequence = [item]
        yield 0xFF00, answer

    ae = AE(ae_title="RIS")
    ae.add_supported_context(ModalityWorklistInformationFind)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    for client in (pair.orthanc_client, pair.fastpacs_client):
        assert client.put(
            "/modalities/ris", json={"AET": "RIS", "Host": "127.0.0.1", "Port": port}
        ).is_success
    try:
        yield received
    finally:
        for client in (pair.orthanc_client, pair.fastpacs_client):
            client.delete("/modalities/ris")
        server.shutdown()


WORKLIST_QUERIES: list[tuple[str, Any]] = [
    ("ris", {}),
    ("ris", {"PatientName": "", "ScheduledProcedureStepSequence": [{"Modality": "CT"}]}),
    ("ris", {"ScheduledProcedureStepSequence": []}),
    ("ris", {"PatientID": 5}),
    ("ris", {"ScheduledProcedureStepSequence": {"Modality": "CT"}}),
    ("ris", {"Nosuch": "x"}),
    ("self", {}),  # a modality without worklists: Orthanc's 2016
    # Texts that do not fit their VR, binary and private tags, nested sequences.
    ("ris", {"Rows": "x"}),
    ("ris", {"Rows": "12"}),
    ("ris", {"PixelData": "x"}),
    ("ris", {"0009,1001": "x"}),
    ("ris", {"PatientAge": "abcdefgh"}),
    ("ris", {"ScheduledProcedureStepSequence": [{"ScheduledProcedureStepSequence": [{"Rows": "12"}]}]}),
]


def test_find_worklist(pair: ServerPair, self_modality: str, worklist_modality: list[dict[str, Any]]) -> None:
    """Both servers ask the same RIS: the identifiers sent, the answers and the errors are Orthanc's."""
    checker = pair.checker()
    for index, (modality, body) in enumerate(WORKLIST_QUERIES):
        worklist_modality.clear()
        call = Call(
            f"find-worklist {index}",
            "POST",
            f"/modalities/{modality}/find-worklist",
            body=json.dumps(body).encode(),
        )
        orthanc, fastpacs = pair.send(call)
        _record(checker, call, answer_differences(orthanc, fastpacs, call, ({}, {})))
        if len(worklist_modality) == 2:
            _compare_documents(checker, f"{call.name} identifier", worklist_modality[0], worklist_modality[1])
    checker.verdict()


# --- the SCPs' answers to the same C-FIND ----------------------------------------------------------


def _c_find(port: int, model: str, keys: dict[str, Any]) -> list[dict[str, str]]:
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    ae = AE(ae_title="ORTHANC")  # the modality "self" of both servers
    assoc = ae.associate(
        "127.0.0.1", port, [build_context(model)], ae_title="ORTHANC", evt_handlers=NO_DELAY_HANDLERS
    )
    assert assoc.is_established
    answers = []
    try:
        for status, answer in assoc.send_c_find(identifier, model):
            if status.Status in (0xFF00, 0xFF01) and answer is not None:
                answers.append({f"{int(element.tag):08X}": str(element.value) for element in answer})
    finally:
        assoc.release()
    return sorted(answers, key=lambda item: sorted(item.items()))


C_FIND_CASES = {
    "patients": (
        PatientRootQueryRetrieveInformationModelFind,
        {
            "QueryRetrieveLevel": "PATIENT",
            "PatientID": "",
            "PatientName": "",
            "PatientSex": "",
            "NumberOfPatientRelatedStudies": "",
            "NumberOfPatientRelatedInstances": "",
        },
    ),
    "studies-by-date": (
        StudyRootQueryRetrieveInformationModelFind,
        {
            "QueryRetrieveLevel": "STUDY",
            "StudyDate": "20040101-",
            "StudyInstanceUID": "",
            "PatientName": "",
            "ModalitiesInStudy": "",
            "NumberOfStudyRelatedSeries": "",
            "NumberOfStudyRelatedInstances": "",
            "StudyDescription": "",
        },
    ),
    "studies-by-name": (
        StudyRootQueryRetrieveInformationModelFind,
        {
            "QueryRetrieveLevel": "STUDY",
            "PatientName": "compressed*",
            "StudyInstanceUID": "",
        },
    ),
    "series-by-modality": (
        StudyRootQueryRetrieveInformationModelFind,
        {
            "QueryRetrieveLevel": "SERIES",
            "Modality": "CT\\MR",
            "SeriesInstanceUID": "",
            "StudyInstanceUID": "",
            "NumberOfSeriesRelatedInstances": "",
            "SeriesDescription": "",
        },
    ),
    "images": (
        StudyRootQueryRetrieveInformationModelFind,
        {
            "QueryRetrieveLevel": "IMAGE",
            "StudyInstanceUID": "",
            "SOPInstanceUID": "",
            "InstanceNumber": "",
            "Rows": None,
            "SOPClassUID": "",
        },
    ),
}


def test_c_find_answers(pair: ServerPair, stored: dict[str, dict[str, str]], self_modality: str) -> None:
    checker = pair.checker()
    for name, (model, keys) in C_FIND_CASES.items():
        _compare_documents(
            checker,
            f"c-find {name}",
            _c_find(pair.orthanc.dicom_port, model, keys),
            _c_find(pair.fastpacs.dicom_port, model, keys),
        )
    checker.verdict()


def test_c_store_metadata(pair: ServerPair) -> None:
    """The same new instance sent by C-STORE to both: what each records about its origin."""
    dataset = dcmread(test_file("CT_small.dcm"))
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for server in (pair.orthanc, pair.fastpacs):
        ae = AE(ae_title="SENDER")
        assoc = ae.associate(
            "127.0.0.1", server.dicom_port, [build_context(CTImageStorage)], ae_title="ORTHANC"
        )
        assert assoc.send_c_store(dataset).Status == 0x0000
        assoc.release()
    instance = pair.orthanc_client.post("/tools/lookup", content=str(dataset.SOPInstanceUID)).json()[0]["ID"]
    checker = pair.checker()
    checker.compare_all(
        [
            get("c-store-metadata", f"/instances/{instance}/metadata", expand=""),
            get("c-store-instance", f"/instances/{instance}"),
            get("c-store-tags", f"/instances/{instance}/simplified-tags"),
        ]
    )
    checker.verdict()


class _Recorder:
    """A storage SCP (AET ``RECORDER``) noting, per C-STORE received, the SOPInstanceUID its request
    names and the one its dataset holds."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, str]] = []
        ae = AE(ae_title="RECORDER")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._stored)]
        )

    def _stored(self, event: evt.Event) -> int:
        self.received.append((str(event.request.AffectedSOPInstanceUID), str(event.dataset.SOPInstanceUID)))
        return 0x0000

    def take(self) -> list[tuple[str, str]]:
        received, self.received = self.received, []
        return received


def test_instances_sent_to_a_modality_come_as_orthanc_sends_them(pair: ServerPair) -> None:
    """A store to a modality, a C-MOVE and a C-GET of a study: each server sends the same instances in
    the same order (Orthanc's: the tree of series and instances walked in storage order, then sent
    the last first), each C-STORE naming its dataset's instance, not the one its file meta names."""
    recorder = _Recorder()
    try:
        study = shuffled_study()
        sent: dict[str, dict[str, list[tuple[str, str]]]] = {}
        servers = {
            "orthanc": (pair.orthanc, pair.orthanc_client),
            "fastpacs": (pair.fastpacs, pair.fastpacs_client),
        }
        for name, (server, client) in servers.items():
            for dataset in study:
                buffer = BytesIO()
                dataset.save_as(buffer, enforce_file_format=True)
                assert client.post("/instances", content=buffer.getvalue()).status_code == 200
            body = {"AET": "RECORDER", "Host": "127.0.0.1", "Port": recorder.port}
            assert client.put("/modalities/recorder", json=body).status_code == 200
            found = client.post("/tools/lookup", content=str(study[0].StudyInstanceUID)).json()
            answer = client.post("/modalities/recorder/store", json=[found[0]["ID"]])
            assert answer.status_code == 200, answer.text
            routes = {"store": recorder.take()}
            query = Dataset()
            query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", study[0].StudyInstanceUID
            mover = AE(ae_title="RECORDER")
            association = mover.associate(
                "127.0.0.1",
                server.dicom_port,
                [build_context(StudyRootQueryRetrieveInformationModelMove)],
                ae_title=server.aet,
            )
            statuses = [
                status.Status
                for status, _ in association.send_c_move(
                    query, "RECORDER", StudyRootQueryRetrieveInformationModelMove
                )
                if status
            ]
            association.release()
            assert statuses[-1] == 0x0000
            routes["c-move"] = recorder.take()
            getter = AE(ae_title="RECORDER")
            got: list[tuple[str, str]] = []

            def stored(event: evt.Event, got: list[tuple[str, str]] = got) -> int:
                got.append((str(event.request.AffectedSOPInstanceUID), str(event.dataset.SOPInstanceUID)))
                return 0x0000

            association = getter.associate(
                "127.0.0.1",
                server.dicom_port,
                [build_context(StudyRootQueryRetrieveInformationModelGet), build_context(CTImageStorage)],
                ae_title=server.aet,
                ext_neg=[build_role(CTImageStorage, scp_role=True)],
                evt_handlers=[(evt.EVT_C_STORE, stored)],
            )
            statuses = [
                status.Status
                for status, _ in association.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
                if status
            ]
            association.release()
            assert statuses[-1] == 0x0000
            routes["c-get"] = got
            client.delete("/modalities/recorder")
            client.delete(f"/studies/{found[0]['ID']}")
            sent[name] = routes
    finally:
        recorder.server.shutdown()
    by_series: dict[str, list[str]] = {}
    for dataset in study:
        by_series.setdefault(str(dataset.SeriesInstanceUID), []).append(str(dataset.SOPInstanceUID))
    walked = [uid for uids in by_series.values() for uid in uids]  # series, then slices, as stored
    expected = [(uid, uid) for uid in reversed(walked)]
    assert sent["orthanc"] == {"store": expected, "c-move": expected, "c-get": expected}
    assert sent["fastpacs"] == sent["orthanc"]


# --- Orthanc and fastpacs as modalities of each other ----------------------------------------------


def _new_study() -> tuple[bytes, Dataset]:
    dataset = dcmread(test_file("CT_small.dcm"))
    dataset.PatientID = "EXCHANGE-" + generate_uid()[-6:]
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue(), dataset


def _lookup(client: httpx.Client, uid: str) -> list[dict[str, str]]:
    return client.post("/tools/lookup", content=uid).json()


def _wait_for(client: httpx.Client, uid: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _lookup(client, uid):
            return True
        time.sleep(0.2)
    return False


def test_orthanc_and_fastpacs_exchange_studies(pair: ServerPair) -> None:
    orthanc, fastpacs = pair.orthanc_client, pair.fastpacs_client
    assert (
        fastpacs.put(
            "/modalities/orthanc",
            json={"AET": pair.orthanc.aet, "Host": "127.0.0.1", "Port": pair.orthanc.dicom_port},
        ).status_code
        == 200
    )
    assert (
        orthanc.put(
            "/modalities/fastpacs",
            json={"AET": pair.fastpacs.aet, "Host": "127.0.0.1", "Port": pair.fastpacs.dicom_port},
        ).status_code
        == 200
    )
    try:
        assert fastpacs.post("/modalities/orthanc/echo", json={}).status_code == 200
        assert orthanc.post("/modalities/fastpacs/echo", json={}).status_code == 200

        # fastpacs → Orthanc (C-STORE SCU of fastpacs, SCP of Orthanc)
        data, sent_by_fastpacs = _new_study()
        study = fastpacs.post("/instances", content=data).json()["ParentStudy"]
        answer = fastpacs.post("/modalities/orthanc/store", json=[study]).json()
        assert (answer["InstancesCount"], answer["FailedInstancesCount"]) == (1, 0)
        assert _lookup(orthanc, sent_by_fastpacs.SOPInstanceUID)

        # Orthanc → fastpacs (C-STORE SCU of Orthanc, SCP of fastpacs)
        data, sent_by_orthanc = _new_study()
        study = orthanc.post("/instances", content=data).json()["ParentStudy"]
        assert orthanc.post("/modalities/fastpacs/store", json=[study]).status_code == 200
        assert _lookup(fastpacs, sent_by_orthanc.SOPInstanceUID)

        # fastpacs queries Orthanc and retrieves a study it does not have (C-MOVE to itself)
        data, only_in_orthanc = _new_study()
        orthanc.post("/instances", content=data)
        body = {"Level": "Study", "Query": {"PatientID": only_in_orthanc.PatientID}}
        query = fastpacs.post("/modalities/orthanc/query", json=body).json()["ID"]
        answers = fastpacs.get(f"/queries/{query}/answers", params={"expand": "", "simplify": ""}).json()
        assert [answer["StudyInstanceUID"] for answer in answers] == [only_in_orthanc.StudyInstanceUID]
        assert fastpacs.post(f"/queries/{query}/retrieve", content=b"").status_code == 200
        assert _wait_for(fastpacs, only_in_orthanc.SOPInstanceUID)

        # Orthanc queries fastpacs and retrieves a study it does not have (C-MOVE to itself)
        data, only_in_fastpacs = _new_study()
        fastpacs.post("/instances", content=data)
        body = {"Level": "Series", "Query": {"PatientID": only_in_fastpacs.PatientID}}
        query = orthanc.post("/modalities/fastpacs/query", json=body).json()["ID"]
        answers = orthanc.get(f"/queries/{query}/answers", params={"expand": "", "simplify": ""}).json()
        assert [answer["SeriesInstanceUID"] for answer in answers] == [only_in_fastpacs.SeriesInstanceUID]
        assert orthanc.post(f"/queries/{query}/answers/0/retrieve", content=b"").status_code == 200
        assert _wait_for(orthanc, only_in_fastpacs.SOPInstanceUID)
    finally:
        fastpacs.delete("/modalities/orthanc")
        orthanc.delete("/modalities/fastpacs")


def test_tools_dicom_echo(pair: ServerPair) -> None:
    """POST /tools/dicom-echo: a C-ECHO of a node described in the body, as for PUT /modalities."""
    check = pair.checker()
    closed_port = free_port()
    for name, body in (
        ("unreachable", {"AET": "NOBODY", "Host": "127.0.0.1", "Port": closed_port, "Timeout": 1}),
        ("no host", {"AET": "NOBODY"}),
        ("not json", None),
    ):
        content = b"{{" if body is None else json.dumps(body).encode()
        check.compare(Call(f"dicom-echo {name}", "POST", "/tools/dicom-echo", body=content))
    check.verdict()
    for server, client in ((pair.orthanc, pair.orthanc_client), (pair.fastpacs, pair.fastpacs_client)):
        itself = {"AET": server.aet, "Host": "127.0.0.1", "Port": server.dicom_port}
        answer = client.post("/tools/dicom-echo", json=itself)
        assert (answer.status_code, answer.json()) == (200, {})
