"""Orthanc's ``Dictionary``, ``LoadPrivateDictionary`` and ``DefaultPrivateCreator`` options, compared
with Orthanc 1.10.1.

Both servers start with the same user dictionary: a public attribute DCMTK does not know, private
attributes of known and unknown creators (one by the low byte of its element, as Orthanc's
documentation asks), a private sequence and a private attribute without creator. The same two
files carry them, in Implicit VR Little Endian (where only the dictionary gives their VR) and in
Explicit VR Little Endian, in blocks 0x10 and 0x11. Compared: the tags in every form, /content
by tag and by the new names, /tools/find and C-FIND with them, and /modify and /anonymize naming
them (with and without ``PrivateCreator``). A second pair runs without DCMTK's private dictionary
and with a ``DefaultPrivateCreator``.
"""

import io
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import Call, ServerPair, get
from tests.differential.test_find_matching_vs_orthanc import PROBE_AET, _load
from tests.differential.test_modify_vs_orthanc import StructureChecker, known_ids, post

pytestmark = pytest.mark.reference

DICTIONARY = {
    "4320,1001": ["DS", "EvenUnknown", 1, 0],
    "00e1,c2": ["UI", "PET-CT Multi Modality Name", 1, 1, "ELSCINT1"],
    "7053,03": ["ST", "Original Image Filename", 1, 1, "Philips PET Private Group"],
    "0029,01": ["LO", "AcmeLeaf", 1, 1, "ACME 1.0"],
    "0029,02": ["US", "AcmeCount", 1, 1, "ACME 1.0"],
    "0029,03": ["SQ", "AcmeSequence", 1, 1, "ACME 1.0"],
    "4321,1001": ["DS", "OddNoCreator", 1, 0],
}


def user_tags_file(implicit: bool, number: int) -> bytes:
    """CT_small (which has private blocks of its own) with an attribute of each dictionary entry."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.99.77.{number}"
    dataset.SeriesInstanceUID = f"1.2.826.0.1.3680043.99.78.{number}"
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.99.79"
    dataset.PatientID = "UDICT"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.add_new(0x00E10010, "LO", "ELSCINT1")
    dataset.add_new(0x00E110C2, "UI", "1.2.840.99.1")
    dataset.add_new(0x70530011, "LO", "Philips PET Private Group")  # block 0x11
    dataset.add_new(0x70531103, "ST", "scan_0001.img")
    dataset.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    item = Dataset()
    item.add_new(0x00200013, "IS", "7")
    item.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    item.add_new(0x2001105F, "SQ", [])
    dataset.add_new(0x2001105F, "SQ", [item])
    dataset.add_new(0x00290011, "LO", "ACME 1.0")  # block 0x10 holds CT_small's GEMS_IMPS_01
    dataset.add_new(0x00291101, "LO", "acme leaf")
    dataset.add_new(0x00291102, "US", 513)
    inner = Dataset()
    inner.add_new(0x00290011, "LO", "ACME 1.0")
    inner.add_new(0x00291101, "LO", "inner leaf")
    dataset.add_new(0x00291103, "SQ", [inner])
    dataset.add_new(0x43201001, "DS", "3.25\\4")
    dataset.add_new(0x43211001, "DS", "1.5\\2")
    dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    out = io.BytesIO()
    dataset.save_as(out, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return out.getvalue()


FILES = {"implicit": user_tags_file(True, 1), "explicit": user_tags_file(False, 2)}


def _started(tmp_path_factory: pytest.TempPathFactory, options: dict[str, Any]) -> Iterator[ServerPair]:
    pair = ServerPair.start(tmp_path_factory.mktemp("user-dictionary"), {**COMMON_OPTIONS, **options})
    try:
        _load(pair, list(FILES.values()))
        yield pair
    finally:
        pair.stop()


@pytest.fixture(scope="module")
def declared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    """Both servers with ``DICTIONARY``, holding both files."""
    yield from _started(tmp_path_factory, {"Dictionary": DICTIONARY})


@pytest.fixture(scope="module")
def without_private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    """Both servers with ``DICTIONARY``, without DCMTK's private dictionary, with a default creator."""
    options = {"Dictionary": DICTIONARY, "LoadPrivateDictionary": False, "DefaultPrivateCreator": "ACME 1.0"}
    yield from _started(tmp_path_factory, options)


def _instances(pair: ServerPair) -> dict[str, str]:
    """File name → instance ID (the same on both servers)."""
    return {
        name: _instance_id(pair, pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
        for name, data in FILES.items()
    }


def _instance_id(pair: ServerPair, sop_instance_uid: str) -> str:
    orthanc, _ = pair.send(
        post("lookup", "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}})
    )
    (identifier,) = orthanc.json
    return identifier


CONTENT_PATHS = (
    "4320,1001",
    "EvenUnknown",
    "OddNoCreator",
    "0029,1101",
    "0029-1101",
    "AcmeLeaf",
    "AcmeSequence",
    "PET-CT Multi Modality Name",
    "0029,1103/0/0029,1101",
    "00e1,10c2",
    "7053,1103",
    "0029,1102",
    "StackSequence",  # DCMTK's private name: (2001,005f), not in the file
)


def _tag_calls(pair: ServerPair) -> list[Call]:
    calls = []
    for name, instance in _instances(pair).items():
        calls += [
            get(f"{name} tags", f"/instances/{instance}/tags"),
            get(f"{name} tags simplify", f"/instances/{instance}/tags", simplify=""),
            get(f"{name} tags short", f"/instances/{instance}/tags", short=""),
            get(f"{name} simplified-tags", f"/instances/{instance}/simplified-tags"),
            get(f"{name} series shared-tags", f"/series/{_parent_series(pair, instance)}/shared-tags"),
        ]
        calls += [
            get(f"{name} content {path}", f"/instances/{instance}/content/{path}") for path in CONTENT_PATHS
        ]
    return calls


def _parent_series(pair: ServerPair, instance: str) -> str:
    return pair.orthanc_get(f"/instances/{instance}")["ParentSeries"]


def test_tags(declared: ServerPair) -> None:
    check = declared.checker()
    check.compare_all(_tag_calls(declared))
    check.verdict()


def test_tags_without_private_dictionary(without_private: ServerPair) -> None:
    check = without_private.checker()
    check.compare_all(_tag_calls(without_private))
    check.verdict()


FINDS = {
    "public nickname": {"EvenUnknown": "3.25\\4"},
    "public nickname wildcard": {"EvenUnknown": "3.25*"},
    "public tag": {"4320,1001": "3.25\\4"},
    "no creator nickname": {"OddNoCreator": "1.5\\2"},
    "private nickname": {"AcmeLeaf": "acme leaf"},
    "private nickname wildcard": {"AcmeLeaf": "acme*"},
    "private tag": {"0029,1101": "acme leaf"},
    "private creator-less mismatch": {"OddNoCreator": "9"},
    "dcmtk private name": {"VersionOfHeaderStructure": "2"},
    "dcmtk private name wildcard": {"TextAnnotation": "a*"},
}


def test_find(declared: ServerPair) -> None:
    check = declared.checker()
    for name, query in FINDS.items():
        for level in ("Instance", "Study"):
            body = {"Level": level, "Query": {**query, "PatientID": "UDICT"}, "Expand": True}
            check.compare(post(f"find {name} {level}", "/tools/find", body))
    check.verdict()


def c_find(port: int, keys: dict[int, tuple[str, str]]) -> dict[str, Any]:
    """Status and answers (sorted, by tag) of an IMAGE-level Study Root C-FIND with ``keys``."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = "1.2.826.0.1.3680043.99.79"
    identifier.SeriesInstanceUID = ""
    identifier.SOPInstanceUID = ""
    for tag, (vr, value) in keys.items():
        identifier.add_new(tag, vr, value)
    model = StudyRootQueryRetrieveInformationModelFind
    context = build_context(model, [ExplicitVRLittleEndian])  # answers carry their VR
    association = AE(ae_title=PROBE_AET).associate("127.0.0.1", port, [context])
    assert association.is_established
    answers, status = [], None
    try:
        for reply, answer in association.send_c_find(identifier, model):
            status = reply.Status if reply else None
            if status in (0xFF00, 0xFF01) and answer is not None:
                answers.append({f"{element.tag:08x}": str(element.value) for element in answer})
    finally:
        association.release()
    return {"Status": status, "Answers": sorted(answers, key=lambda item: sorted(item.items()))}


C_FINDS = {
    "public": {0x43201001: ("DS", "")},
    "public value": {0x43201001: ("DS", "3.25\\4")},
    "no creator": {0x43211001: ("DS", "")},
}


def test_c_find(declared: ServerPair) -> None:
    check = declared.checker()
    for name, keys in C_FINDS.items():
        check.compare_documents(
            f"c-find {name}",
            c_find(declared.orthanc.dicom_port, keys),
            c_find(declared.fastpacs.dicom_port, keys),
        )
    check.verdict()


MODIFICATIONS = {
    "replace public": {"Replace": {"EvenUnknown": "7.5"}, "Force": True},
    "replace private": {"Replace": {"AcmeLeaf": "new leaf"}, "Force": True},
    "replace private with creator": {
        "Replace": {"AcmeLeaf": "new leaf"},
        "PrivateCreator": "ACME 1.0",
        "Force": True,
    },
    "replace known creator": {
        "Replace": {"PET-CT Multi Modality Name": "1.2.3"},
        "PrivateCreator": "ELSCINT1",
        "Force": True,
    },
    "replace private tag": {"Replace": {"0029,1101": "by tag"}, "Force": True},
    "remove private": {"Remove": ["AcmeLeaf"], "Force": True},
    "remove public": {"Remove": ["EvenUnknown"], "Force": True},
    "remove no creator": {"Remove": ["OddNoCreator"], "Force": True},
    "remove private sequence": {"Remove": ["AcmeSequence"], "Force": True},
    "remove dcmtk private name": {"Remove": ["StackSequence"], "Force": True},
    "replace dcmtk private name": {"Replace": {"VersionOfHeaderStructure": "3"}, "Force": True},
}
ANONYMIZATIONS = {
    "keep public": {"Keep": ["EvenUnknown"]},
    "keep private": {"Keep": ["AcmeLeaf"], "KeepPrivateTags": False},
    "replace private": {
        "Replace": {"AcmeLeaf": "anon"},
        "KeepPrivateTags": True,
        "PrivateCreator": "ACME 1.0",
    },
    "replace public": {"Replace": {"EvenUnknown": "20000101"}},
    "keep private tags": {"KeepPrivateTags": True},
}


def _modifications(pair: ServerPair) -> None:
    check = StructureChecker(pair, set(_instances(pair).values()) | known_ids({}))
    for name, instance in _instances(pair).items():
        for option, body in MODIFICATIONS.items():
            check.exchange(post(f"modify {option} {name}", f"/instances/{instance}/modify", body))
        for option, body in ANONYMIZATIONS.items():
            check.exchange(post(f"anonymize {option} {name}", f"/instances/{instance}/anonymize", body))
    check.verdict()


def test_modify_and_anonymize(declared: ServerPair) -> None:
    _modifications(declared)


def test_modify_and_anonymize_with_default_creator(without_private: ServerPair) -> None:
    _modifications(without_private)
