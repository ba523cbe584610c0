"""The ``Dictionary``, ``LoadPrivateDictionary`` and ``DefaultPrivateCreator`` options.

A site's attributes name and type the elements of the files (Implicit VR files
take their VR from the dictionary, in the worker processes that read them at
ingest too), the tags stored at ingest follow a dictionary that changed since
(the server restarted on the same storage with another one), and entries
Orthanc refuses stop the server at start-up with Orthanc's reason.
"""

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from fastpacs.config import ConfigurationError, load_config
from fastpacs.dicom import dictionary as tag_dictionary
from fastpacs.dicom.parse import summarize
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.differential.test_user_dictionary_vs_orthanc import DICTIONARY, user_tags_file

IMPLICIT, EXPLICIT = user_tags_file(True, 1), user_tags_file(False, 2)
NAMED = {
    "4320,1001": ("EvenUnknown", "3.25\\4"),
    "4321,1001": ("OddNoCreator", "1.5\\2"),
    "0029,1101": ("AcmeLeaf", "acme leaf"),
    "0029,1102": ("AcmeCount", "513"),
    "00e1,10c2": ("PET-CT Multi Modality Name", "1.2.840.99.1"),
    "7053,1103": ("Original Image Filename", "scan_0001.img"),
}


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("user-dictionary")


def _serving(directory: Path, options: dict) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    server = fastpacs_server(directory, options).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            yield server, client
    finally:
        server.stop()


def _upload(client: httpx.Client, data: bytes) -> str:
    response = client.post("/instances", content=data)
    assert response.status_code == 200, response.text
    return response.json()["ID"]


def _check_named(client: httpx.Client, instance: str) -> None:
    full = client.get(f"/instances/{instance}/tags").json()
    for key, (name, value) in NAMED.items():
        assert (full[key]["Name"], full[key]["Type"], full[key]["Value"]) == (name, "String", value), key
    sequence = full["0029,1103"]
    assert (sequence["Name"], sequence["Type"]) == ("AcmeSequence", "Sequence")
    assert sequence["Value"][0]["0029,1101"]["Value"] == "inner leaf"
    simplified = client.get(f"/instances/{instance}/tags", params={"simplify": ""}).json()
    assert simplified["AcmeSequence"] == [{"AcmeLeaf": "inner leaf", "PrivateCreator": "ACME 1.0"}]
    assert simplified["EvenUnknown"] == "3.25\\4"
    assert client.get(f"/instances/{instance}/simplified-tags").json() == simplified
    short = client.get(f"/instances/{instance}/tags", params={"short": ""}).json()
    assert short["4320,1001"] == "3.25\\4"
    assert client.get(f"/instances/{instance}/content/EvenUnknown").content == b"3.25\\4"


def test_names_and_vrs_of_the_dictionary(storage: Path) -> None:
    """Ingested with the dictionary: every form names the attributes, Implicit VR values are typed."""
    for _server, client in _serving(storage, {"Dictionary": DICTIONARY}):
        for data in (IMPLICIT, EXPLICIT):
            _check_named(client, _upload(client, data))
        found = client.post("/tools/find", json={"Level": "Instance", "Query": {"EvenUnknown": "3.25*"}})
        assert found.json()["Details"] == "Wildcards are not allowed on tag 4320,1001"  # as in Orthanc
        modified = client.post(
            f"/instances/{_upload(client, EXPLICIT)}/modify",
            json={"Replace": {"EvenUnknown": "7.5"}, "Remove": ["OddNoCreator"], "Force": True},
        )
        assert modified.status_code == 200
        again = client.post("/instances", content=modified.content).json()["ID"]
        tags = client.get(f"/instances/{again}/tags").json()
        assert tags["4320,1001"]["Value"] == "7.5" and "4321,1001" not in tags


def test_tags_follow_a_dictionary_changed_since_ingest(storage: Path) -> None:
    """The same storage without the dictionary, then without DCMTK's private names: the tags stored
    at ingest are not shown as they were read then."""
    for _server, client in _serving(storage, {}):
        implicit = _upload(client, IMPLICIT)  # stored already: the same instance
        full = client.get(f"/instances/{implicit}/tags").json()
        assert full["4320,1001"] == {"Name": "Unknown Tag & Data", "Type": "Null", "Value": None}
        assert full["0029,1101"]["Name"] == "Unknown Tag & Data"
        assert full["0029,1004"]["Name"] == "LowerRangeOfPixels"  # DCMTK's (GEMS_IMPS_01)
        assert "EvenUnknown" not in client.get(f"/instances/{implicit}/tags", params={"simplify": ""}).json()
        series = client.get(f"/instances/{implicit}/series").json()["ID"]
        shared = client.get(f"/series/{series}/instances-tags").json()
        assert shared[implicit]["4320,1001"]["Type"] == "Null"
    for _server, client in _serving(storage, {"LoadPrivateDictionary": False}):
        full = client.get(f"/instances/{implicit}/tags").json()
        assert full["0029,1004"]["Name"] == "Unknown Tag & Data"
        assert full["0029,0010"]["Name"] == "PrivateCreator"
    for _server, client in _serving(storage, {"Dictionary": DICTIONARY}):
        _check_named(client, implicit)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"0014,1020": ["DA", "ValidationExpiryDate", 1, 1]}, "Cannot register twice the tag (0014,1020)"),
        (
            {"2001,5f": ["SQ", "StackSequence", 1, 1, "Philips Imaging DD 001"]},
            "Cannot register twice the tag (2001,005f)",
        ),
        ({"0029,01": ["XX", "Bad", 1, 1, "ACME"]}, "Unsupported value representation encountered: XX"),
        ({"0029,01": ["OV", "Bad", 1, 1, "ACME"]}, "Unsupported value representation encountered: OV"),
        ({"zz29,01": ["LO", "Bad", 1, 1, "ACME"]}, "Unknown DICOM tag"),
        ({"0029,01": ["LO"]}, "The definition of the '0029,01' dictionary entry is invalid."),
        ({"0029,01": "LO"}, "The definition of the '0029,01' dictionary entry is invalid."),
        ({"0029,01": ["LO", "Bad", "1"]}, "The definition of the '0029,01' dictionary entry is invalid."),
        ({"0029,01": ["LO", "Bad", 1, 1, "ACME", 1]}, "dictionary entry is invalid"),
        ({"0029,01": ["LO", "Bad"]}, "Parameter out of range"),
        ({"0029,01": ["LO", "Bad", 0, 1, "ACME"]}, "Parameter out of range"),
        ({"4320,1001": ["LO", "Bad", 2, 1]}, "Parameter out of range"),
        ({"4320,1001": ["LO", "Bad", 1, 1, "ACME"]}, "it must have an odd group >= 0x0009"),
        ({"4321,01": ["LO", "Bad", 1]}, "Parameter out of range"),
    ],
)
def test_entries_orthanc_refuses(tmp_path: Path, entry: dict, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"Dictionary": entry}))
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load_config(path, environ={})


def test_entries_orthanc_accepts(tmp_path: Path) -> None:
    """A private attribute DCMTK knows may be declared again once its private dictionary is off."""
    path = tmp_path / "config.json"
    stack = {
        "2001,5f": ["SQ", "StackSequence", 1, 1, "Philips Imaging DD 001"],
        "4321,1001": ["DS", "X", 1, 0],
    }
    path.write_text(json.dumps({"Dictionary": stack, "LoadPrivateDictionary": False}))
    assert len(load_config(path, environ={}).user_dictionary.entries) == 2
    for ignored in (["x"], "abc", 3, None):
        path.write_text(json.dumps({"Dictionary": ignored}))
        assert load_config(path, environ={}).user_dictionary.entries == ()


def test_server_refuses_to_start(tmp_path: Path) -> None:
    server = fastpacs_server(tmp_path, {"Dictionary": {"0010,0010": ["PN", "Name", 1, 1]}})
    with pytest.raises(RuntimeError, match="exited during start-up"):
        server.start()
    assert "Cannot register twice the tag (0010,0010)" in server.log_tail()


def test_lookups_of_an_installed_dictionary() -> None:
    """In one process: names and VRs by creator and element (low byte: any block), nicknames, the
    fingerprint that tells stored tags apart, and the same dictionary checked again once installed."""
    user = tag_dictionary.user_dictionary(DICTIONARY, True, "ACME 1.0")
    try:
        tag_dictionary.install(user)
        assert tag_dictionary.attribute_name(0x00291101, "ACME 1.0") == "AcmeLeaf"
        assert tag_dictionary.attribute_name(0x00292201, "ACME 1.0") == "AcmeLeaf"
        assert tag_dictionary.attribute_name(0x00291101, "OTHER") == tag_dictionary.UNKNOWN_NAME
        assert tag_dictionary.dictionary_vr(0x00291103, "ACME 1.0") == "SQ"
        assert tag_dictionary.attribute_name(0x43211001, None) == "OddNoCreator"
        assert tag_dictionary.dictionary_vr(0x43201001, None) == "DS"
        assert tag_dictionary.parse_tag("AcmeLeaf") == 0x00290001
        assert tag_dictionary.parse_tag("EvenUnknown") == 0x43201001
        assert tag_dictionary.default_private_creator() == "ACME 1.0"
        assert tag_dictionary.installed_fingerprint() == user.fingerprint is not None
        assert tag_dictionary.user_dictionary(DICTIONARY, True, "").entries == user.entries
        assert tag_dictionary.UserDictionary((), True, "X").fingerprint is None  # the creator reads nothing
        tag_dictionary.install(tag_dictionary.UserDictionary((), False))
        assert tag_dictionary.attribute_name(0x00291004, "GEMS_IMPS_01") == tag_dictionary.UNKNOWN_NAME
    finally:
        tag_dictionary.install(tag_dictionary.UserDictionary())
    assert tag_dictionary.attribute_name(0x00291004, "GEMS_IMPS_01") == "LowerRangeOfPixels"
    assert tag_dictionary.attribute_name(0x00291101, "ACME 1.0") == tag_dictionary.UNKNOWN_NAME
    assert tag_dictionary.installed_fingerprint() is None


def test_stored_tags_name_the_dictionary_they_depend_on() -> None:
    """Tags that only public attributes DCMTK knows make are current whatever the dictionary; others
    were read with the installed one (``None``: DCMTK's alone) and are current only with it."""
    public_only = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    for tag in [tag for tag in public_only.keys() if tag.is_private]:  # noqa: SIM118 - deleted while walked
        del public_only[tag]
    out = io.BytesIO()
    public_only.save_as(out, enforce_file_format=True)
    independent = summarize(out.getvalue(), "Latin1").tags
    user = tag_dictionary.user_dictionary(DICTIONARY, True, "")
    try:
        default = summarize(EXPLICIT, "Latin1").tags
        tag_dictionary.install(user)
        declared = summarize(EXPLICIT, "Latin1").tags
        assert (independent.dictionary, default.dictionary, declared.dictionary) == (
            "",
            None,
            user.fingerprint,
        )
        assert independent.is_current("Latin1") and declared.is_current("Latin1")
        assert not default.is_current("Latin1")
    finally:
        tag_dictionary.install(tag_dictionary.UserDictionary())
    assert independent.is_current("Latin1") and default.is_current("Latin1")
    assert not declared.is_current("Latin1")


def test_nicknames_leave_pydicom_keywords_alone() -> None:
    """A site may name an attribute as a public one (Orthanc accepts it): pydicom's keyword stays."""
    user = tag_dictionary.user_dictionary({"4320,1001": ["DS", "PatientName", 1, 0]}, True, "")
    try:
        tag_dictionary.install(user)
        dataset = pydicom.Dataset()
        dataset.PatientName = "Doe^John"
        assert 0x00100010 in dataset and tag_dictionary.attribute_name(0x43201001, None) == "PatientName"
        assert tag_dictionary.parse_tag("PatientName") == 0x00100010
    finally:
        tag_dictionary.install(tag_dictionary.UserDictionary())
