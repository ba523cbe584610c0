"""Modify, anonymize, split and merge compared with Orthanc 1.10.1.

Both servers receive the same files and the same requests. What a server
generates (UIDs, IDs, PatientIDs, the N of ``AnonymizedN``, its name in
DeidentificationMethod, its implementation UID) is compared by rule, not by
value: each such value must have the expected form, and is replaced by a
placeholder numbered in order of first appearance, so that two answers
still compare by structure (which generated values are equal to which).
Everything else is compared as is: the tags removed, emptied, replaced and
kept, inside sequences too, the JSON answers, the new resources and their
metadata, the change log, and the errors.

Modified DICOM files are compared as documents ``{"gggg,eeee": {"vr", "value"}}``
(sequences as lists of documents, binary values by size and SHA-256).
"""

import hashlib
import io
import json
import re
from collections import Counter
from typing import Any

import pydicom
import pytest
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.differential.allowlist import ALLOWED, KNOWN_BUGS
from tests.differential.data import test_file
from tests.differential.harness import (
    KNOWN_BUGS_MET,
    Call,
    Checker,
    Difference,
    ServerPair,
    _listed,
    get,
    json_differences,
    normalize,
)

pytestmark = pytest.mark.reference

ORTHANC_UID = re.compile(r"^1\.2\.276\.0\.7230010\.3\.1\.[234]\.\d+\.\d+\.\d+\.\d+$")
FASTPACS_UID = re.compile(r"^2\.25\.\d{1,39}$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RESOURCE_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
ANONYMIZED = re.compile(r"^Anonymized\d+$")
SOFTWARE = re.compile(r"^(Orthanc 1\.10\.1|fastpacs \d+\.\d+\.\d+) - ")
SERVER_META = ("0002,0000", "0002,0012", "0002,0013")
"""ImplementationClassUID and ImplementationVersionName (each server names itself) and the group
length, which follows their lengths and those of the generated UIDs."""

FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "SC_rgb_small_odd.dcm",  # } one series of three
    "SC_rgb_jpeg_dcmtk.dcm",  # } instances, one
    "SC_rgb_rle_2frame.dcm",  # } of them compressed
    "ExplVR_BigEndNoMeta.dcm",
)


# -- files built here


def encoded(dataset: Dataset) -> bytes:
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def probe_file() -> bytes:
    """CT_small plus every public attribute of pydicom's dictionary (groups 0008 to FFF8, except the
    image pixel module): a dummy value per VR, one item per sequence holding a code, a reference to the
    study and a name. The same probe as the captured observations of Orthanc."""
    values = {
        "AE": "PROBEAE", "AS": "030Y", "CS": "PROBECS", "DA": "20010101", "DS": "1.5", "DT": "20010101120000",
        "IS": "7", "LO": "Probe LO", "LT": "Probe LT", "PN": "Probe^Name", "SH": "Probe SH", "ST": "Probe ST",
        "TM": "120000", "UC": "Probe UC", "UI": "1.2.3.4.5.6.7.8.9.1", "UR": "http://probe.example/",
        "UT": "Probe UT", "US": 1, "SS": -1, "UL": 1, "SL": -1, "FL": 1.5, "FD": 2.5, "AT": 0x00100010,
        "SV": -2, "UV": 2, "OB": b"\x01\x02", "OW": b"\x01\x02", "OF": b"\x00" * 4, "OD": b"\x00" * 8,
        "OL": b"\x00" * 4, "OV": b"\x00" * 8, "UN": b"\x01\x02",
    }  # fmt: skip
    dataset = pydicom.dcmread(test_file("CT_small.dcm"))
    for tag, (vrs, *_rest) in sorted(DicomDictionary.items()):
        group = tag >> 16
        if group in (0, 2, 4, 0x28, 0x7FE0) or group >= 0xFFFA or tag in dataset:
            continue
        vr = vrs.split(" or ")[0]
        if vr == "SQ":
            item = Dataset()
            item.CodeValue = "SQVAL"
            item.ReferencedSOPInstanceUID = dataset.StudyInstanceUID
            item.PatientName = "Inner^Name"
            dataset.add_new(tag, "SQ", Sequence([item]))
        elif vr in values:
            dataset.add_new(tag, vr, values[vr])
    dataset.PatientID, dataset.PatientName = "PROBE", "Probe^Patient"
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = "2.25.1001", "2.25.1002"
    dataset.SOPInstanceUID = "2.25.1003"
    return encoded(dataset)


def nested_file() -> bytes:
    """MR_small with identifying data inside items, private blocks at both levels, overlay data."""
    dataset = pydicom.dcmread(test_file("MR_small.dcm"))
    dataset.PatientID = "NEST1"
    dataset.SOPInstanceUID = "2.25.2001"
    item = Dataset()
    item.PatientName, item.PatientID, item.StudyDate = "Inner^Name", "NEST1", "20010101"
    item.InstitutionName, item.AccessionNumber = "Inner Inst", "ACC"
    item.ReferencedSOPInstanceUID, item.StudyInstanceUID = dataset.SOPInstanceUID, dataset.StudyInstanceUID
    item.SeriesInstanceUID, item.FrameOfReferenceUID = "1.2.3.999", dataset.FrameOfReferenceUID
    item.add_new(0x00090010, "LO", "ACME")
    item.add_new(0x00091001, "LO", "nested private")
    deeper = Dataset()
    deeper.PatientName, deeper.ReferencedSOPInstanceUID, deeper.InstitutionName = "Deep", "2.25.7", "deep"
    item.ReferencedImageSequence = Sequence([deeper])
    dataset.ReferencedStudySequence = Sequence([item])
    dataset.RelatedSeriesSequence = Sequence([item])
    dataset.ReferencedImageSequence = Sequence([deeper])
    dataset.add_new(0x60003000, "OW", b"\x00\x01" * 8)
    dataset.add_new(0x60004000, "LT", "overlay comment")
    dataset.add_new(0x00090010, "LO", "ACME")
    dataset.add_new(0x00091001, "LO", "private")
    dataset.DeidentificationMethod = "Original method"
    return encoded(dataset)


def multi_series_study() -> list[bytes]:
    """A CT study of three series of four instances (CT_small's header, new UIDs)."""
    files = []
    for series in range(1, 4):
        for number in range(1, 5):
            dataset = pydicom.dcmread(test_file("CT_small.dcm"))
            dataset.PatientID = "MULTI"
            dataset.StudyInstanceUID = "2.25.3000"
            dataset.SeriesInstanceUID = f"2.25.30{series}0"
            dataset.SOPInstanceUID = f"2.25.30{series}{number}"
            dataset.SeriesNumber, dataset.InstanceNumber = series, number
            files.append(encoded(dataset))
    return files


# -- comparing by structure


class Placeholders:
    """Numbers what one server generated, in order of first appearance."""

    def __init__(self, known_ids: set[str]):
        self.known_ids = known_ids
        self.seen: dict[tuple[str, str], str] = {}

    def __call__(self, value: str) -> str:
        kind = self._kind(value)
        if kind is None:
            return SOFTWARE.sub("<software> - ", value)
        return self.seen.setdefault((kind, value), f"<{kind}-{sum(k == kind for k, _ in self.seen) + 1}>")

    def _kind(self, value: str) -> str | None:
        if ORTHANC_UID.match(value) or FASTPACS_UID.match(value):
            return "uid"
        if UUID4.match(value):
            return "uuid"
        if RESOURCE_ID.match(value) and value not in self.known_ids:
            return "id"
        if ANONYMIZED.match(value):
            return "anonymized"
        return None


def by_structure(document: Any, placeholders: Placeholders) -> Any:
    if isinstance(document, dict):
        return {key: by_structure(value, placeholders) for key, value in document.items()}
    if isinstance(document, list):
        return [by_structure(value, placeholders) for value in document]
    if isinstance(document, str):
        return re.sub(r"[^\\/]+", lambda match: placeholders(match.group()), document)
    return document


def dicom_document(data: bytes) -> dict[str, Any]:
    """A DICOM file as a JSON-like document: file meta and dataset, tag by tag."""
    dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    meta = {key: entry for key, entry in _elements(dataset.file_meta).items() if key not in SERVER_META}
    return {"meta": meta, "dataset": _elements(dataset)}


def _elements(dataset: Dataset) -> dict[str, Any]:
    document = {}
    for element in dataset:
        key = f"{element.tag.group:04x},{element.tag.element:04x}"
        document[key] = {"vr": element.VR, "value": _value(element)}
    return document


def _value(element) -> Any:
    if element.VR == "SQ":
        return [_elements(item) for item in element.value]
    value = element.value
    if isinstance(value, bytes):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()[:16]}
    if isinstance(value, pydicom.multival.MultiValue | list):
        return "\\".join(str(item) for item in value)
    return "" if value is None else str(value)


class StructureChecker(Checker):
    """A :class:`Checker` comparing documents by structure (see the module docstring)."""

    def __init__(self, pair: ServerPair, known_ids: set[str]):
        super().__init__(pair)
        self.known_ids = known_ids

    def compare_structures(self, call: Call, orthanc: Any, fastpacs: Any) -> None:
        left = by_structure(normalize(orthanc, {}), Placeholders(self.known_ids))
        right = by_structure(normalize(fastpacs, {}), Placeholders(self.known_ids))
        self.record(call, list(json_differences(left, right)))

    def record(self, call: Call, differences: list[Difference]) -> None:
        for difference in differences:
            if _listed(ALLOWED, call, difference) is not None:
                continue
            bug = _listed(KNOWN_BUGS, call, difference)
            if bug is not None:
                self.known.setdefault(bug, []).append(f"{call.name} {difference}")
                KNOWN_BUGS_MET.add(bug)
            else:
                self.unexplained.append(f"{call.name} ({call.method} {call.path}) {difference}")

    def exchange(self, call: Call) -> tuple[Any, Any]:
        """Send the call; compare status and body; return both answers (JSON, DICOM document or None)."""
        orthanc, fastpacs = self.pair.send(call)
        if orthanc.status != fastpacs.status:
            self.record(call, [Difference("status", orthanc.status, fastpacs.status)])
        bodies = []
        for answer in (orthanc, fastpacs):
            if answer.is_json:
                bodies.append(answer.json)
            elif answer.content[128:132] == b"DICM":
                bodies.append(dicom_document(answer.content))
            else:
                bodies.append(None)
        self.compare_structures(call, bodies[0], bodies[1])
        return bodies[0], bodies[1]

    def compare_new_resource(self, name: str, orthanc_answer: Any, fastpacs_answer: Any) -> None:
        """The resource a modification created, its metadata and every instance's tags, on both servers."""
        created = ("Path", "TargetStudy")
        if not all(isinstance(answer, dict) and any(key in answer for key in created)
                   for answer in (orthanc_answer, fastpacs_answer)):  # fmt: skip
            return
        answers = []
        for server_get, answer in (
            (self.pair.orthanc_get, orthanc_answer),
            (self.pair.fastpacs_get, fastpacs_answer),
        ):
            path = answer.get("Path") or f"/studies/{answer['TargetStudy']}"
            resource = server_get(path)
            for children in ("Studies", "Series", "Instances"):
                if children in resource:
                    resource[children] = len(resource[children])  # new IDs, in an order of storage
            instances = server_get(f"{path}/instances") if not path.startswith("/instances") else []
            tags = sorted(
                (server_get(f"/instances/{instance['ID']}/tags") for instance in instances), key=_content
            )
            answers.append({"resource": resource, "metadata": server_get(f"{path}/metadata", expand=""),
                            "instances": tags})  # fmt: skip
        self.compare_structures(get(f"{name}: new resource", ""), answers[0], answers[1])


def _content(full: dict[str, Any]) -> list[str]:
    """What orders the instances of a new resource alike on both servers (not the generated UIDs)."""
    keys = ("0020,0011", "0020,0013", "0028,0008", "0028,0010", "0028,0004", "0002,0010")
    return [str(full.get(key, {}).get("Value")) for key in keys]


# -- the tests


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict]:
    """File name → Orthanc's upload answer, the same files on both servers."""
    files = {name: test_file(name).read_bytes() for name in FILES}
    files["probe"] = probe_file()
    files["nested"] = nested_file()
    for number, data in enumerate(multi_series_study()):
        files[f"multi {number}"] = data
    return pair.upload_all(files)


def known_ids(stored: dict[str, dict]) -> set[str]:
    return {value for answer in stored.values() for key, value in answer.items() if key != "Path"}


def post(name: str, path: str, body: Any) -> Call:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Call(name, "POST", path, body=content, headers={"Content-Type": "application/json"})


INSTANCE_MODIFICATIONS = {
    "name": {"Replace": {"PatientName": "Modified^Name"}},
    "patientid-force": {"Replace": {"PatientID": "NEWID"}, "Force": True},
    "studyuid-force": {"Replace": {"StudyInstanceUID": "1.2.3.4"}, "Force": True},
    "remove-private": {"RemovePrivateTags": True, "Remove": ["InstitutionName", "0008-0090"]},
    "remove-private-keep-one": {"RemovePrivateTags": True, "Keep": ["0009-1001"]},
    "replace-private": {"Replace": {"0009,1001": "new"}},
    "keep-force": {"Replace": {"StudyDescription": "K"}, "Keep": ["SOPInstanceUID"], "Force": True},
    "replace-sequence": {"Replace": {"OtherPatientIDsSequence": [{"PatientID": "SEQ1"}]}},
    "replace-hex-tag": {"Replace": {"0008,1030": "HexTag"}},
    "replace-path": {"Replace": {"OtherPatientIDsSequence[1].PatientID": "B"}},
    "replace-path-every-item": {"Replace": {"OtherPatientIDsSequence[*].TypeOfPatientID": "RFID"}},
    "remove-path": {"Remove": ["OtherPatientIDsSequence[0].PatientID"]},
    "cast": {"Replace": {"Rows": "128", "PixelSpacing": "1\\2", "PatientWeight": "70.5", "StudyDate": "X"}},
    "null": {"Replace": {"PatientName": None}},
    "data-uri": {"Replace": {"PatientName": "data:application/octet-stream;base64,QUJD"}},
    "latin-1": {"Replace": {"StudyDescription": "Étude à Zürich"}},
    "transcode": {"Transcode": "1.2.840.10008.1.2"},
    "empty": {},
}
INSTANCE_ANONYMIZATIONS = {
    "default": {},
    "2017c": {"DicomVersion": "2017c"},
    "2008": {"DicomVersion": "2008"},
    "options": {
        "Keep": ["StudyDescription", "SeriesDescription"],
        "KeepPrivateTags": True,
        "Replace": {"PatientName": "Fixed^Name"},
        "Remove": ["Modality"],
    },
    "keep-sequence": {"Keep": ["ReferencedStudySequence"]},
    "replace-identifiers": {"Replace": {"PatientID": "ANON", "StudyInstanceUID": "1.2.3"}, "Force": True},
    "keep-identifiers": {"Keep": ["StudyInstanceUID", "SeriesInstanceUID"], "Force": True},
}
ERRORS = {
    "modify": [
        {"Replace": {"PatientID": "NEWID"}},
        {"Replace": {"SOPInstanceUID": "1.2.3"}},
        {"Replace": {"StudyDescription": "K"}, "Keep": ["SOPInstanceUID"]},
        {"Replace": {"NoSuchTag": "x"}},
        {"Remove": ["PatientID"], "Force": True},
        {"Replace": {"Rows": "abc"}},
        {"Replace": {"PatientName": 12}},
        {"Replace": {"OtherPatientIDsSequence": "x"}},
        {"Replace": "x"},
        {"Keep": [5]},
        {"Force": "yes"},
        {"PrivateCreator": 5},
        {"Transcode": "1.2.3"},
        [],
        b"{",
        b"",
    ],
    "anonymize": [
        {"DicomVersion": "1999"},
        {"DicomVersion": 2017},
        {"Keep": ["SOPInstanceUID"]},
        {"Replace": {"PatientID": "ANON1"}},
        b"null",
    ],
}


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "ExplVR_BigEndNoMeta.dcm", "nested"]
)
def test_instance_modify(pair: ServerPair, stored: dict[str, dict], name: str) -> None:
    check = StructureChecker(pair, known_ids(stored))
    for option, body in INSTANCE_MODIFICATIONS.items():
        check.exchange(post(f"modify {option} {name}", f"/instances/{stored[name]['ID']}/modify", body))
    check.verdict()


@pytest.mark.parametrize(
    "name",
    [
        *("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtstruct.dcm", "test-SR.dcm", "nested"),
        pytest.param("probe", marks=pytest.mark.slow),  # every attribute of the dictionary: about 10 s
    ],
)
def test_instance_anonymize(pair: ServerPair, stored: dict[str, dict], name: str) -> None:
    check = StructureChecker(pair, known_ids(stored))
    for option, body in INSTANCE_ANONYMIZATIONS.items():
        check.exchange(post(f"anonymize {option} {name}", f"/instances/{stored[name]['ID']}/anonymize", body))
    check.verdict()


def test_instance_errors(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    instance = stored["CT_small.dcm"]["ID"]
    for operation, bodies in ERRORS.items():
        for number, body in enumerate(bodies):
            check.exchange(post(f"{operation} error {number}", f"/instances/{instance}/{operation}", body))
    for operation in ERRORS:
        check.exchange(post(f"{operation} unknown instance", f"/instances/nonexistent/{operation}", {}))
    check.verdict()


def test_resource_modifications(pair: ServerPair, stored: dict[str, dict]) -> None:
    """Each level, KeepSource, Keep of the study UID; the new resources and the change log."""
    check = StructureChecker(pair, known_ids(stored))
    last = pair.orthanc_get("/changes", last="")["Last"], pair.fastpacs_get("/changes", last="")["Last"]
    requests = [
        ("study", f"/studies/{stored['MR_small.dcm']['ParentStudy']}/modify",
         {"Replace": {"StudyDescription": "Modified study"}}),
        ("series keep-source false", f"/series/{stored['rtdose.dcm']['ParentSeries']}/modify",
         {"Replace": {"SeriesDescription": "Moved"}, "KeepSource": False}),
        ("patient no patientid", f"/patients/{stored['rtstruct.dcm']['ParentPatient']}/modify",
         {"Replace": {"PatientName": "X"}}),
        ("patient noforce", f"/patients/{stored['rtstruct.dcm']['ParentPatient']}/modify",
         {"Replace": {"PatientID": "RTNEW"}}),
        ("patient force", f"/patients/{stored['rtstruct.dcm']['ParentPatient']}/modify",
         {"Replace": {"PatientID": "RTNEW", "PatientName": "New^Name"}, "Force": True}),
        ("study patientid", f"/studies/{stored['MR_small.dcm']['ParentStudy']}/modify",
         {"Replace": {"PatientID": "X"}, "Force": True}),
        ("series studyuid", f"/series/{stored['MR_small.dcm']['ParentSeries']}/modify",
         {"Replace": {"StudyInstanceUID": "1.2.3"}, "Force": True}),
        ("study keep uid", f"/studies/{stored['rtplan.dcm']['ParentStudy']}/modify",
         {"Replace": {"StudyDescription": "Same UID"}, "Keep": ["StudyInstanceUID"], "Force": True}),
        ("study multi-series", f"/studies/{stored['multi 0']['ParentStudy']}/modify",
         {"Replace": {"StudyDescription": "Three series"}}),
        ("unknown study", "/studies/00000000-00000000-00000000-00000000-00000000/modify", {}),
        ("bad keep source", f"/studies/{stored['CT_small.dcm']['ParentStudy']}/modify", {"KeepSource": "x"}),
    ]  # fmt: skip
    for name, path, body in requests:
        orthanc, fastpacs = check.exchange(post(f"modify {name}", path, body))
        check.compare_new_resource(f"modify {name}", orthanc, fastpacs)
    check.compare_structures(
        get("changes after modify", "/changes"),
        change_counts(pair.orthanc_get("/changes", since=str(last[0]), limit="1000")["Changes"]),
        change_counts(pair.fastpacs_get("/changes", since=str(last[1]), limit="1000")["Changes"]),
    )
    check.verdict()


def change_counts(changes: list[dict]) -> dict[str, int]:
    """How many changes of each kind: a modification logs only the New* changes of what it created
    (their order depends on the order the instances were stored in, which fastpacs does not fix)."""
    counts = Counter(f"{change['ChangeType']} {change['ResourceType']}" for change in changes)
    return {kind: count for kind, count in sorted(counts.items()) if not kind.startswith("Stable")}


def test_resource_anonymizations(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    requests = [
        ("study", f"/studies/{stored['MR_small.dcm']['ParentStudy']}/anonymize", {}),
        ("patient fixed", f"/patients/{stored['nested']['ParentPatient']}/anonymize",
         {"Replace": {"PatientName": "Anon^Fixed", "PatientID": "ANONFIXED"}, "Force": True}),
        ("series of three", f"/series/{stored['SC_rgb_small_odd.dcm']['ParentSeries']}/anonymize", {}),
        ("multi-series study 2017c", f"/studies/{stored['multi 0']['ParentStudy']}/anonymize",
         {"DicomVersion": "2017c"}),
        ("structure set", f"/studies/{stored['rtstruct.dcm']['ParentStudy']}/anonymize", {}),
    ]  # fmt: skip
    for name, path, body in requests:
        orthanc, fastpacs = check.exchange(post(f"anonymize {name}", path, body))
        check.compare_new_resource(f"anonymize {name}", orthanc, fastpacs)
    check.verdict()


def test_split_and_merge(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    multi = stored["multi 0"]["ParentStudy"]
    series = [stored[f"multi {number}"]["ParentSeries"] for number in (0, 4, 8)]
    ct, mr = stored["CT_small.dcm"], stored["MR_small.dcm"]
    orthanc, fastpacs = check.exchange(
        post("split keep source", f"/studies/{multi}/split",
             {"Series": [series[1]], "KeepSource": True, "Replace": {"StudyDescription": "Split copy"}})
    )  # fmt: skip
    check.compare_new_resource("split keep source", orthanc, fastpacs)
    orthanc, fastpacs = check.exchange(post("split move", f"/studies/{multi}/split", {"Series": [series[2]]}))
    check.compare_new_resource("split move", orthanc, fastpacs)
    check.exchange(get("split source after the move", f"/series/{series[2]}"))
    check.exchange(
        post("split instances", f"/studies/{multi}/split",
             {"Instances": [stored["multi 1"]["ID"]], "KeepSource": True, "Remove": ["PatientSex"]})
    )  # fmt: skip
    if isinstance(orthanc, dict) and isinstance(fastpacs, dict) and "TargetStudy" in orthanc:
        merged = (
            pair.orthanc_client.post(f"/studies/{multi}/merge", json={"Resources": [orthanc["TargetStudy"]]}),
            pair.fastpacs_client.post(
                f"/studies/{multi}/merge", json={"Resources": [fastpacs["TargetStudy"]]}
            ),
        )
        check.compare_structures(get("merge back", ""), merged[0].json(), merged[1].json())
        check.compare_new_resource("merge back", merged[0].json(), merged[1].json())
    orthanc, fastpacs = check.exchange(
        post("merge other patient", f"/studies/{ct['ParentStudy']}/merge",
             {"Resources": [mr["ParentSeries"]], "KeepSource": True})
    )  # fmt: skip
    check.compare_new_resource("merge other patient", orthanc, fastpacs)
    for name, path, body in [
        ("split nothing", f"/studies/{multi}/split", {}),
        ("split foreign series", f"/studies/{multi}/split", {"Series": [mr["ParentSeries"]]}),
        ("split foreign instance", f"/studies/{multi}/split", {"Instances": [mr["ID"]]}),
        ("split unknown study", "/studies/nope/split", {"Series": [series[0]]}),
        ("split bad series", f"/studies/{multi}/split", {"Series": "x"}),
        (
            "split bad replace",
            f"/studies/{multi}/split",
            {"Series": [series[0]], "Replace": {"Modality": "MR"}},
        ),
        (
            "split unknown tag",
            f"/studies/{multi}/split",
            {"Series": [series[0]], "Replace": {"NoSuchTag": "x"}},
        ),
        ("split bad json", f"/studies/{multi}/split", b"{"),
        ("merge nothing", f"/studies/{multi}/merge", {"Resources": []}),
        (
            "merge unknown",
            f"/studies/{multi}/merge",
            {"Resources": ["00000000-00000000-00000000-00000000-00000000"]},
        ),
        ("merge self", f"/studies/{multi}/merge", {"Resources": [multi]}),
        ("merge own series", f"/studies/{multi}/merge", {"Resources": [series[0]]}),
        ("merge patient", f"/studies/{multi}/merge", {"Resources": [ct["ParentPatient"]]}),
        ("merge missing resources", f"/studies/{multi}/merge", {}),
        ("merge unknown study", "/studies/nope/merge", {"Resources": []}),
    ]:
        check.exchange(post(name, path, body))
    check.verdict()
