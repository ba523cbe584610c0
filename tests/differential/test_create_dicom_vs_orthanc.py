"""``POST /tools/create-dicom`` compared with Orthanc 1.10.1.

Each case is sent to both servers; refusals are compared as answers (status
and error body), created instances by their ``/tags``, ``/metadata?expand``,
``/frames`` and decoded pixels (``/frames/0/raw``) or PDF. What a server
generates (PatientID, the study, series and SOP instance UIDs, today's dates
and times) is compared by its form, then replaced by a placeholder, and so
are the answer's IDs that depend on a generated value.

Covered: tags by name and by ``gggg,eeee``, sequences, private tags (with
``PrivateCreator``, with the ``DefaultPrivateCreator`` option both servers
run with, with an empty creator), ``Force`` and the tags it guards,
``InterpretBinaryTags``, character sets, too-long and malformed values,
``Content`` as PNG (8-bit gray, RGB, RGBA, 16-bit), JPEG, PDF, an array (a
series), bad data URIs and unsupported types, ``Parent`` at each level
(inherited tags, conflicts), the legacy form without ``Tags``, and bodies of
the wrong shape.
"""

import base64
import hashlib
import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from fastpacs.dicom.ids import format_id, hash_identifiers
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import Answer, Call, Checker, ServerPair, answer_differences

pytestmark = pytest.mark.reference

DEFAULT_CREATOR = "GEMS_ACQU_01"
GENERATED_UID = re.compile(r"^(1\.2\.276\.0\.7230010\.3\.1\.[234]\.[0-9.]+|2\.25\.\d+)$")
GENERATED_PATIENT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
GENERATED = {
    "0010,0020": GENERATED_PATIENT_ID,
    **dict.fromkeys(("0020,000d", "0020,000e", "0008,0018"), GENERATED_UID),
}
DATED = ("0008,0012", "0008,0020", "0008,0021", "0008,0022", "0008,0023")
TIMED = ("0008,0013", "0008,0030", "0008,0031", "0008,0032", "0008,0033")
ANSWER_DEPENDS = {
    "ParentPatient": ("0010,0020",),
    "ParentStudy": ("0010,0020", "0020,000d"),
    "ParentSeries": ("0010,0020", "0020,000d", "0020,000e"),
    "ID": ("0010,0020", "0020,000d", "0020,000e", "0008,0018"),
    "Path": ("0010,0020", "0020,000d", "0020,000e", "0008,0018"),
}


def _image(array: numpy.ndarray, image_format: str = "PNG") -> bytes:
    output = io.BytesIO()
    Image.fromarray(array).save(output, image_format)
    return output.getvalue()


def uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


GRAY8 = _image(numpy.arange(12, dtype=numpy.uint8).reshape(3, 4) * 20)
RGB = _image(numpy.arange(36, dtype=numpy.uint8).reshape(3, 4, 3) * 7)
RGBA = _image(numpy.arange(48, dtype=numpy.uint8).reshape(3, 4, 4) * 5)
GRAY16 = _image(numpy.arange(12, dtype=numpy.uint16).reshape(3, 4) * 5000)
JPEG_GRAY = _image(numpy.full((8, 8), 100, numpy.uint8), "JPEG")
JPEG_RGB = _image(numpy.full((8, 8, 3), 100, numpy.uint8), "JPEG")
GRAY_ALPHA = _image(numpy.arange(24, dtype=numpy.uint8).reshape(3, 4, 2) * 9)
ONE_BIT = _image(numpy.array([[False, True], [True, False]]))
GIF = _image(numpy.zeros((2, 2), numpy.uint8), "GIF")
BMP = _image(numpy.zeros((2, 2), numpy.uint8), "BMP")
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"  # odd length
PATIENT = {"PatientID": "CREATE", "PatientName": "Doe^John"}


def uids(number: int) -> dict[str, str]:
    return {
        "StudyInstanceUID": f"1.2.826.0.1.3680043.99.70.{number}.1",
        "SeriesInstanceUID": f"1.2.826.0.1.3680043.99.70.{number}.2",
        "SOPInstanceUID": f"1.2.826.0.1.3680043.99.70.{number}.3",
    }


def fixed(number: int, **tags: Any) -> dict[str, Any]:
    """Tags with every identifier given, so that both servers make the same IDs (needs ``Force``)."""
    return {**PATIENT, **uids(number), **tags}


CASES: list[tuple[str, Any]] = [
    # Tags and their values
    ("names", {"Tags": fixed(1, StudyDescription="desc", Modality="CT", InstanceNumber="3"), "Force": True}),
    ("gggg,eeee keys", {"Tags": {"0010,0010": "Hex^Name", "0010,0020": "HEX", "0020,000D": "1.2.3.4.1"}}),
    ("eight hex digits", {"Tags": {"00100010": "Eight"}}),
    ("empty tags", {"Tags": {}}),
    ("patient id only", {"Tags": {"PatientID": "ONLY"}}),
    ("dates given", {"Tags": {"StudyDate": "20200101", "StudyTime": "101010", "ContentDate": "20200102"}}),
    ("null value", {"Tags": {"InstanceNumber": None, "PatientName": None}}),
    ("number value", {"Tags": {"InstanceNumber": 3}}),
    ("array for a string", {"Tags": {"PatientName": []}}),
    ("object value", {"Tags": {"PatientName": {}}}),
    ("unknown tag", {"Tags": {"Nope": "x"}}),
    ("too long", {"Tags": {"PatientID": "X" * 80, "Modality": "ABCDEFGHIJKLMNOPQRST"}}),
    ("uid with spaces", {"Tags": {"FrameOfReferenceUID": " 1.2 .3 "}}),
    ("US value", {"Tags": {"Rows": "12"}}),
    ("US not a number", {"Tags": {"Rows": "abc"}}),
    ("DS values", {"Tags": {"PixelSpacing": "0.5\\0.25", "SliceThickness": ""}}),
    (
        "IS and DS not numbers",
        {"Tags": {"InstanceNumber": "abc", "SliceThickness": "x y", "PatientWeight": "1e400"}},
    ),
    ("IS decimal", {"Tags": {"InstanceNumber": "1.5"}}),
    ("FD value", {"Tags": {"DiffusionBValue": "1000.5"}}),
    ("FD not a number", {"Tags": {"DiffusionBValue": "abc"}}),
    ("US too large", {"Tags": {"Rows": "70000"}}),
    ("US negative", {"Tags": {"Rows": "-1"}}),
    ("US decimal", {"Tags": {"Rows": "1.5"}}),
    ("US two values", {"Tags": {"Rows": "1\\2"}}),
    ("FD infinite", {"Tags": {"DiffusionBValue": "1e400"}}),
    ("AT value", {"Tags": {"DimensionIndexPointer": "00200032"}}),
    ("AT by name", {"Tags": {"DimensionIndexPointer": "ImagePositionPatient"}}),
    ("AT unknown", {"Tags": {"DimensionIndexPointer": "zz"}}),
    (
        "binary bad base64",
        {"Tags": {"0009,1001": f"{uri('application/octet-stream', b'')}@@"}, "PrivateCreator": "A"},
    ),
    ("meta tag", {"Tags": {"0002,0010": "1.2.840.10008.1.2"}}),
    ("group lengths", {"Tags": {"0000,0000": "x", "0008,0000": "5"}}),
    ("SOPClassUID", {"Tags": {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}}),
    ("PixelData tag", {"Tags": {"PixelData": uri("application/octet-stream", b"\x01\x02")}}),
    ("public OB data uri", {"Tags": {"0042,0011": uri("application/octet-stream", b"\x01\x02\x03")}}),
    ("public OB text", {"Tags": {"0042,0011": "hello"}}),
    # Sequences
    (
        "sequence",
        {
            "Tags": {
                "ReferencedStudySequence": [
                    {"ReferencedSOPClassUID": "1.2", "ReferencedSOPInstanceUID": "1.3"},
                    {},
                ]
            }
        },
    ),
    (
        "nested sequence",
        {"Tags": {"0008,1115": [{"ReferencedSeriesSequence": [{"SeriesInstanceUID": "1.5"}]}]}},
    ),
    ("empty sequence", {"Tags": {"ReferencedStudySequence": []}}),
    ("sequence empty string", {"Tags": {"ReferencedStudySequence": ""}}),
    ("sequence as string", {"Tags": {"ReferencedStudySequence": "x"}}),
    ("sequence empty array item", {"Tags": {"ReferencedStudySequence": [[]]}}),
    ("sequence string item", {"Tags": {"ReferencedStudySequence": ["x"]}}),
    ("sequence number item", {"Tags": {"ReferencedStudySequence": [5]}}),
    ("sequence unknown tag", {"Tags": {"ReferencedStudySequence": [{"Nope": "1"}]}}),
    ("sequence number value", {"Tags": {"ReferencedStudySequence": [{"ReferencedSOPClassUID": 5}]}}),
    # Private tags
    ("private with creator", {"Tags": {"0009,1001": "abc"}, "PrivateCreator": "ACME"}),
    ("private creator element", {"Tags": {"0009,0010": "ACME", "0009,1001": "abc"}}),
    ("private default creator", {"Tags": {"0019,1002": "5", "0019,1010": "abc"}}),
    ("private sequence", {"Tags": {"0009,1001": [{"PatientName": "x"}]}, "PrivateCreator": "ACME"}),
    ("private empty creator", {"Tags": {"0009,1001": "abc"}, "PrivateCreator": ""}),
    (
        "private binary",
        {"Tags": {"0009,1001": uri("application/octet-stream", b"\x01\x02\x03")}, "PrivateCreator": "ACME"},
    ),
    (
        "private binary not interpreted",
        {
            "Tags": {"0009,1001": uri("application/octet-stream", b"\x01\x02\x03")},
            "PrivateCreator": "ACME",
            "InterpretBinaryTags": False,
        },
    ),
    # Force and the tags it guards
    ("SOPInstanceUID without Force", {"Tags": fixed(2)}),
    ("SOPInstanceUID Force false", {"Tags": fixed(2), "Force": False}),
    ("StudyInstanceUID without Force", {"Tags": {"StudyInstanceUID": "1.2.3.99"}}),
    ("SeriesInstanceUID without Force", {"Tags": {"SeriesInstanceUID": "1.2.3.98"}}),
    ("Force", {"Tags": fixed(3), "Force": True}),
    ("Force again", {"Tags": fixed(3), "Force": True}),
    # Options of the wrong type
    ("Tags string", {"Tags": "x"}),
    ("Tags array", {"Tags": []}),
    ("PrivateCreator number", {"Tags": {}, "PrivateCreator": 3}),
    ("Force string", {"Tags": {}, "Force": "yes"}),
    ("InterpretBinaryTags string", {"Tags": {}, "InterpretBinaryTags": "no"}),
    ("unknown member", {"Tags": {}, "Foo": 1}),
    # Character sets
    ("latin1 default", {"Tags": {"PatientName": "Müller^Jürgen"}}),
    ("utf8", {"Tags": {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Müller^Jürgen"}}),
    ("japanese utf8", {"Tags": {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "山田^太郎"}}),
    ("japanese in latin1", {"Tags": {"PatientName": "山田^太郎", "StudyDescription": "a山b"}}),
    ("katakana ISO_IR 13", {"Tags": {"SpecificCharacterSet": "ISO_IR 13", "PatientName": "ﾔﾏﾀﾞ"}}),
    ("ISO 2022 IR 100", {"Tags": {"SpecificCharacterSet": "ISO 2022 IR 100", "PatientName": "é"}}),
    (
        "kanji ISO 2022 IR 87",
        {
            "Tags": {
                "SpecificCharacterSet": "ISO 2022 IR 87",
                "PatientName": "山田^太郎",
                "StudyDescription": "a山b",
            }
        },
    ),
    ("greek ISO_IR 126", {"Tags": {"SpecificCharacterSet": "ISO_IR 126", "PatientName": "Ελληνικά^Müller"}}),
    ("ascii ISO_IR 6", {"Tags": {"SpecificCharacterSet": "ISO_IR 6", "PatientName": "Müller"}}),
    ("GB18030", {"Tags": {"SpecificCharacterSet": "GB18030", "PatientName": "王^小东"}}),
    ("unknown character set", {"Tags": {"SpecificCharacterSet": "NOPE"}}),
    ("two character sets", {"Tags": {"SpecificCharacterSet": "ISO_IR 100\\ISO 2022 IR 87"}}),
    # Content
    ("png gray8", {"Tags": {}, "Content": uri("image/png", GRAY8)}),
    ("png rgb", {"Tags": {}, "Content": uri("image/png", RGB)}),
    ("png rgba", {"Tags": {}, "Content": uri("image/png", RGBA)}),
    ("png gray16", {"Tags": {}, "Content": uri("image/png", GRAY16)}),
    ("jpeg gray", {"Tags": {}, "Content": uri("image/jpeg", JPEG_GRAY)}),
    ("jpeg rgb", {"Tags": {}, "Content": uri("image/jpeg", JPEG_RGB)}),
    ("pdf", {"Tags": {}, "Content": uri("application/pdf", PDF)}),
    ("pdf with modality", {"Tags": {"Modality": "MR"}, "Content": uri("application/pdf", PDF)}),
    ("pdf not a pdf", {"Tags": {}, "Content": uri("application/pdf", b"\x01\x02\x03")}),
    ("gif", {"Tags": {}, "Content": uri("image/gif", GIF)}),
    ("png gray with alpha", {"Tags": {}, "Content": uri("image/png", GRAY_ALPHA)}),
    ("png 1-bit", {"Tags": {}, "Content": uri("image/png", ONE_BIT)}),
    ("bmp declared png", {"Tags": {}, "Content": uri("image/png", BMP)}),
    ("png declared jpeg", {"Tags": {}, "Content": uri("image/jpeg", GRAY8)}),
    ("empty png", {"Tags": {}, "Content": "data:image/png;base64,"}),
    ("not a data uri", {"Tags": {}, "Content": "hello"}),
    ("bad base64", {"Tags": {}, "Content": "data:image/png;base64,@@@"}),
    ("content number", {"Tags": {}, "Content": 5}),
    ("content empty array", {"Tags": {}, "Content": []}),
    # Content arrays: a series
    (
        "series",
        {"Tags": fixed(10), "Force": True, "Content": [uri("image/png", GRAY8), uri("image/png", RGB)]},
    ),
    (
        "series of objects",
        {
            "Tags": fixed(11),
            "Force": True,
            "Content": [{"Content": uri("image/png", GRAY8), "Tags": {"ImageComments": "first"}}],
        },
    ),
    ("series first without payload", {"Tags": {}, "Content": [{"Tags": {}}]}),
    ("series first number", {"Tags": {}, "Content": [5]}),
    ("series second number", {"Tags": {}, "Content": [uri("image/png", GRAY8), 5]}),
    ("series second without payload", {"Tags": {}, "Content": [uri("image/png", GRAY8), {"Tags": {}}]}),
    (
        "series item overriding",
        {"Tags": {}, "Content": [{"Content": uri("image/png", GRAY8), "Tags": {"SOPInstanceUID": "1.2"}}]},
    ),
    # The legacy form
    ("legacy", {"PatientName": "Legacy", "PatientID": "LEGACY"}),
    ("legacy with a UID", {"PatientName": "Legacy", "SOPInstanceUID": "1.2.826.0.1.3680043.99.71"}),
    ("legacy image", {"PatientID": "LEGACY", "PixelData": uri("image/png", RGB)}),
    ("legacy non-ascii", {"PatientName": "Müller^山", "StudyDescription": "Étude"}),
    ("legacy character set", {"PatientName": "Müller", "SpecificCharacterSet": "ISO_IR 192"}),
    ("legacy number", {"PatientName": 5}),
    ("legacy bad image", {"PixelData": "data:image/png;base64,xx"}),
    ("empty object", {}),
]

BODIES = [
    ("empty body", b""),
    ("not json", b"xyz"),
    ("array body", b"[]"),
    ("lenient json", b'{"Tags": {"PatientID": "LENIENT",},} // comment'),
]


UTF8_PARENT = {
    "SpecificCharacterSet": "ISO_IR 192",
    "PatientName": "Müller^Jürgen",
    "PatientID": "UTF8PARENT",
    "StudyDescription": "Étude",
    **uids(20),
}
UTF8_PARENT_SERIES = format_id(hash_identifiers(["UTF8PARENT", *list(uids(20).values())[:2]]))


def parent_cases(patient: str, study: str, series: str, instance: str) -> list[tuple[str, Any]]:
    return [
        ("parent patient", {"Tags": {"StudyDescription": "new study"}, "Parent": patient}),
        ("parent study", {"Tags": {"SeriesDescription": "new series"}, "Parent": study}),
        ("parent series", {"Tags": {"InstanceNumber": "77"}, "Parent": series}),
        ("parent study date", {"Tags": {"StudyDate": "19990101"}, "Parent": study}),
        ("parent conflict", {"Tags": {"PatientName": "Other"}, "Parent": series}),
        ("parent conflicts", {"Tags": {"StudyDescription": "Other", "Modality": "MR"}, "Parent": series}),
        ("parent image", {"Tags": {}, "Parent": series, "Content": uri("image/png", GRAY8)}),
        ("parent series of images", {"Tags": {}, "Parent": study, "Content": [uri("image/png", GRAY8)]}),
        ("parent new patient id", {"Tags": {"PatientID": "Other"}, "Parent": series}),
        ("parent character set", {"Tags": {"SpecificCharacterSet": "ISO_IR 192"}, "Parent": series}),
        (
            "parent forced",
            {"Tags": {"PatientName": "Other", "Modality": "MR"}, "Parent": series, "Force": True},
        ),
        ("parent after forced", {"Tags": {}, "Parent": series}),
        ("parent instance", {"Tags": {}, "Parent": instance}),
        ("utf8 parent", {"Tags": UTF8_PARENT, "Force": True}),
        ("child of utf8 parent", {"Tags": {"ImageComments": "Ünïcødé 山"}, "Parent": UTF8_PARENT_SERIES}),
        (
            "latin1 child of utf8 parent",
            {
                "Tags": {"SpecificCharacterSet": "ISO_IR 100", "ImageComments": "é 山"},
                "Parent": UTF8_PARENT_SERIES,
            },
        ),
        ("parent unknown", {"Tags": {}, "Parent": "nope"}),
        ("parent number", {"Tags": {}, "Parent": 5}),
        ("parent unknown with bad option", {"Tags": {}, "Parent": "nope", "Force": "yes"}),
        ("parent unknown in legacy form", {"PatientName": "x", "Parent": "nope"}),
    ]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    options = {**COMMON_OPTIONS, "DefaultPrivateCreator": DEFAULT_CREATOR}
    servers = ServerPair.start(tmp_path_factory.mktemp("create-dicom"), options)
    yield servers
    servers.stop()


def _placeholders(tags: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The tags with generated values replaced, and the keys of the generated ones."""
    normalized, generated = dict(tags), set()
    today = time.strftime("%Y%m%d", time.gmtime())
    for key, pattern in GENERATED.items():
        value = tags.get(key, {}).get("Value")
        if isinstance(value, str) and pattern.match(value):
            normalized[key] = {**tags[key], "Value": "<generated>"}
            generated.add(key)
    for key in DATED:
        if tags.get(key, {}).get("Value") == today:
            normalized[key] = {**tags[key], "Value": "<today>"}
    for key in TIMED:
        value = tags.get(key, {}).get("Value")
        if isinstance(value, str) and re.fullmatch(r"\d{6}\.000000", value):
            now = time.gmtime()
            seconds = int(value[:2]) * 3600 + int(value[2:4]) * 60 + int(value[4:6])
            if abs(seconds - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)) < 30:
                normalized[key] = {**tags[key], "Value": "<now>"}
    return normalized, generated


class CreateChecker:
    """Sends a create-dicom body to both servers and compares what each created."""

    def __init__(self, pair: ServerPair):
        self.pair = pair
        self.check: Checker = pair.checker()
        self.created: set[str] = set()
        """The cases both servers created something for."""

    def _get(self, server: str, path: str) -> Any:
        client = self.pair.orthanc_client if server == "orthanc" else self.pair.fastpacs_client
        response = client.get(path)
        if response.status_code != 200:
            return {"status": response.status_code}
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return {"sha256": hashlib.sha256(response.content).hexdigest(), "size": len(response.content)}

    def _instances(self, server: str, answer: dict[str, Any]) -> list[str]:
        if answer["Path"].startswith("/series/"):
            instances = self._get(server, f"/series/{answer['ID']}/instances")
            instances.sort(key=lambda item: int(item["MainDicomTags"].get("InstanceNumber", "0")))
            return [item["ID"] for item in instances]
        return [answer["ID"]]

    def compare(self, name: str, body: bytes) -> None:
        call = Call(f"create-dicom {name}", "POST", "/tools/create-dicom", body=body)
        orthanc, fastpacs = self.pair.send(call)
        if orthanc.status != 200 or fastpacs.status != 200:
            self.check.record(call, answer_differences(orthanc, fastpacs, call, ({}, {})))
            return
        self.created.add(name)
        self._compare_created(call, orthanc, fastpacs)

    def _compare_created(self, call: Call, orthanc: Answer, fastpacs: Answer) -> None:
        instances = {
            server: self._instances(server, answer.json)
            for server, answer in (("orthanc", orthanc), ("fastpacs", fastpacs))
        }
        if len(instances["orthanc"]) != len(instances["fastpacs"]):
            self.check.compare_documents(
                f"{call.name} instances", instances["orthanc"], instances["fastpacs"]
            )
            return
        generated: set[str] = set()
        for index, (left, right) in enumerate(zip(instances["orthanc"], instances["fastpacs"], strict=True)):
            suffix = f" [{index}]" if len(instances["orthanc"]) > 1 else ""
            left_tags, generated_left = _placeholders(self._get("orthanc", f"/instances/{left}/tags"))
            right_tags, generated_right = _placeholders(self._get("fastpacs", f"/instances/{right}/tags"))
            self.check.compare_documents(f"{call.name} tags{suffix}", left_tags, right_tags)
            generated |= generated_left & generated_right
            self.check.compare_documents(
                f"{call.name} file meta{suffix}",
                _classes(self._get("orthanc", f"/instances/{left}/header?simplify")),
                _classes(self._get("fastpacs", f"/instances/{right}/header?simplify")),
            )
            for sub in ("metadata?expand", "frames", "frames/0/raw", "pdf"):
                self.check.compare_documents(
                    f"{call.name} {sub}{suffix}",
                    self._get("orthanc", f"/instances/{left}/{sub}"),
                    self._get("fastpacs", f"/instances/{right}/{sub}"),
                )
        self.check.compare_documents(
            f"{call.name} answer", *self._answers(orthanc.json, fastpacs.json, generated)
        )

    @staticmethod
    def _answers(orthanc: dict[str, Any], fastpacs: dict[str, Any], generated: set[str]) -> tuple[dict, dict]:
        """The answers with the IDs that depend on generated values replaced (their form checked)."""
        if orthanc["Path"].startswith("/series/"):
            depends = {"ID": ANSWER_DEPENDS["ParentSeries"], "Path": ANSWER_DEPENDS["ParentSeries"]}
        else:
            depends = ANSWER_DEPENDS
        left, right = dict(orthanc), dict(fastpacs)
        for key, tags in depends.items():
            if key in left and key in right and generated.intersection(tags):
                assert re.search(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}$", right[key]), right[key]
                left[key] = right[key] = "<generated>"
        return left, right


def _classes(header: dict[str, str]) -> dict[str, str | None]:
    """What a file meta says of its content (the rest names its writer, or generated UIDs)."""
    return {name: header.get(name) for name in ("MediaStorageSOPClassUID", "TransferSyntaxUID")}


def test_create_dicom(pair: ServerPair) -> None:
    creator = CreateChecker(pair)
    for name, body in CASES:
        creator.compare(name, json.dumps(body).encode())
    for name, raw in BODIES:
        creator.compare(name, raw)
    creator.check.verdict()
    assert {
        "names",
        "private default creator",
        "png gray16",
        "pdf",
        "series",
        "legacy image",
    } <= creator.created


def test_create_dicom_with_parent(pair: ServerPair) -> None:
    with open(get_testdata_file("CT_small.dcm", download=False), "rb") as file:
        uploaded = pair.upload_all({"CT_small": file.read()})["CT_small"]
    creator = CreateChecker(pair)
    ids = uploaded["ParentPatient"], uploaded["ParentStudy"], uploaded["ParentSeries"], uploaded["ID"]
    for name, body in parent_cases(*ids):
        creator.compare(name, json.dumps(body).encode())
    creator.check.verdict()
    assert {
        "parent patient",
        "parent series",
        "parent series of images",
        "child of utf8 parent",
        "latin1 child of utf8 parent",
    } <= creator.created


def test_item_tags_are_refused(pair: ServerPair) -> None:
    """Item and delimitation tags are not attributes: Orthanc 1.10.1 crashes on them, fastpacs refuses."""
    for tag in ("FFFE,E000", "FFFE,E0DD"):
        answer = pair.fastpacs_client.post("/tools/create-dicom", json={"Tags": {tag: "x"}})
        assert answer.status_code == 400, answer.text
        assert answer.json()["OrthancStatus"] == 15
