"""The rest of the REST API compared with the reference Orthanc: attachments, helpers, tools, HTTP."""

import io
import json
import re
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.differential.data import test_file
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

FILES = ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm", "rtdose.dcm", "liver_1frame.dcm")
LEVELS = (("patients", "ParentPatient"), ("studies", "ParentStudy"), ("series", "ParentSeries"))
ATTACHMENT_VIEWS = (
    "",
    "/data",
    "/compressed-data",
    "/size",
    "/compressed-size",
    "/md5",
    "/compressed-md5",
    "/is-compressed",
    "/info",
)
ETAG = ("content-type", "etag")


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict[str, str]]:
    """Upload the test files to both servers; file name → Orthanc's upload answer."""
    answers = {}
    for name in FILES:
        data = test_file(name).read_bytes()
        pair.fastpacs_client.post("/instances", content=data)
        answers[name] = pair.orthanc_client.post("/instances", content=data).json()
    pair.wait_until_stable()
    return answers


def test_dicom_attachment(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    check = pair.checker()
    for name, answer in stored.items():
        base = f"/instances/{answer['ID']}/attachments"
        check.compare(get(f"attachments {name}", base))
        check.compare(get(f"attachments {name} full", base, full=""))
        for view in ATTACHMENT_VIEWS:
            check.compare(
                Call(f"attachment {name} dicom{view}", "GET", f"{base}/dicom{view}", compared_headers=ETAG)
            )
        check.compare(Call(f"attachment {name} verify-md5", "POST", f"{base}/dicom/verify-md5"))
    ct = f"/instances/{stored['CT_small.dcm']['ID']}/attachments"
    check.compare_all(
        [
            get("attachment by number", f"{ct}/1/size"),
            get("attachment unknown name", f"{ct}/nosuch"),
            get("attachment absent", f"{ct}/1025"),
            get("attachment unknown operation", f"{ct}/dicom/nosuch"),
            get("attachment uuid", f"{ct}/dicom/uuid"),
            get("attachment verify-md5 with GET", f"{ct}/dicom/verify-md5"),
            Call("attachment POST on size", "POST", f"{ct}/dicom/size"),
            Call("attachment compress", "POST", f"{ct}/dicom/compress"),
            Call("attachment uncompress", "POST", f"{ct}/dicom/uncompress"),
            Call("attachment put dicom", "PUT", f"{ct}/dicom", body=b"x"),
            Call("attachment put system number", "PUT", f"{ct}/2", body=b"x"),
            Call("attachment put beyond user range", "PUT", f"{ct}/70000", body=b"x"),
            Call("attachment delete dicom", "DELETE", f"{ct}/dicom"),
            Call("attachment put unknown name", "PUT", f"{ct}/nosuch", body=b"x"),
            get("attachments unknown instance", "/instances/nonexistent/attachments"),
            get("attachment unknown instance", "/instances/nonexistent/attachments/dicom/size"),
        ]
    )
    for level, key in LEVELS:
        resource = stored["CT_small.dcm"][key]
        check.compare(get(f"attachments {level}", f"/{level}/{resource}/attachments"))
        check.compare(get(f"attachment {level} dicom", f"/{level}/{resource}/attachments/dicom"))
    check.verdict()


def test_user_attachments(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    check = pair.checker()
    mr = stored["MR_small.dcm"]
    last = {
        name: client.get("/changes", params={"last": ""}).json()["Last"]
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client))
    }
    for level, key in (*LEVELS, ("instances", "ID")):
        base = f"/{level}/{mr[key]}/attachments"
        check.compare(
            Call(
                f"user attachment {level} put",
                "PUT",
                f"{base}/1025",
                body=b"report of " + level.encode(),
                compared_headers=ETAG,
            )
        )
        check.compare(get(f"user attachment {level} list", base, full=""))
        for view in ATTACHMENT_VIEWS:
            check.compare(
                Call(
                    f"user attachment {level}{view}",
                    "GET",
                    f"{base}/1025{view}",
                    compared_headers=ETAG,
                )
            )
        check.compare(Call(f"user attachment {level} verify-md5", "POST", f"{base}/1025/verify-md5"))
        check.compare(get(f"user attachment {level} statistics", f"/{level}/{mr[key]}/statistics"))
    instance = f"/instances/{mr['ID']}/attachments"
    etag = pair.orthanc_client.get(f"{instance}/1025").headers["etag"]
    check.compare_all(
        [
            Call("user attachment empty", "PUT", f"{instance}/1030", body=b"", compared_headers=ETAG),
            get("user attachment empty info", f"{instance}/1030/info"),
            Call("user attachment replace", "PUT", f"{instance}/1025", body=b"second", compared_headers=ETAG),
            Call(
                "user attachment stale if-match",
                "PUT",
                f"{instance}/1025",
                body=b"x",
                headers={"If-Match": etag},
            ),
            Call(
                "user attachment malformed if-match",
                "PUT",
                f"{instance}/1025",
                body=b"x",
                headers={"If-Match": '"0"'},
            ),
            get("user attachment list after replace", instance),
            get("user attachment statistics", "/statistics"),
            Call("user attachment delete", "DELETE", f"{instance}/1030"),
            Call("user attachment delete again", "DELETE", f"{instance}/1030"),
            Call("user attachment delete unknown name", "DELETE", f"{instance}/nosuch"),
        ]
    )
    check.verdict()
    changes = [
        [
            (change["ChangeType"], change["ResourceType"], change["ID"])
            for change in client.get("/changes", params={"since": str(last[name]), "limit": "100"}).json()[
                "Changes"
            ]
        ]
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client))
    ]
    assert changes[1] == changes[0]


def test_compress_and_uncompress(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    """POST compress and uncompress: the content and its uncompressed views stay the same."""
    rtdose = stored["rtdose.dcm"]
    check = pair.checker()
    for label, base in (
        ("dicom", f"/instances/{rtdose['ID']}/attachments/dicom"),
        ("user", f"/series/{rtdose['ParentSeries']}/attachments/1040"),
    ):
        if label == "user":
            check.compare(Call("compressed attachment user put", "PUT", base, body=bytes(4000)))
        for step in ("compress", "compress again", "uncompress", "uncompress again"):
            check.compare(Call(f"compressed attachment {label} {step}", "POST", f"{base}/{step.split()[0]}"))
            for view in ("/data", "/size", "/md5", "/is-compressed", "/compressed-size", "/info"):
                check.compare(
                    Call(
                        f"compressed attachment {label} {step}{view}",
                        "GET",
                        f"{base}{view}",
                        compared_headers=ETAG,
                    )
                )
            check.compare(
                Call(f"compressed attachment {label} {step} verify-md5", "POST", f"{base}/verify-md5")
            )
    check.compare_all(
        [
            Call(
                "compressed attachment unknown",
                "POST",
                f"/instances/{rtdose['ID']}/attachments/1041/compress",
            ),
            Call(
                "compressed attachment unknown name",
                "POST",
                f"/instances/{rtdose['ID']}/attachments/x/compress",
            ),
        ]
    )
    check.verdict()


def _derived(source: str, series: int, index: int, **changes: object) -> bytes:
    """A test file copied as instance ``index`` of a new series, attributes changed (None: removed)."""
    dataset = pydicom.dcmread(test_file(source))
    dataset.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{series}"
    dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{series}.{index}"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def _every_attribute() -> bytes:
    """A file holding every attribute of the data dictionary (one value of its VR; sequences of one item)."""
    dataset = Dataset()
    for tag, (vrs, _, _, _, _) in DicomDictionary.items():
        if tag >> 16 in (0x0000, 0x0002, 0x7FE0, 0xFFFE) or tag & 0xFFFF == 0 or tag > 0xFFFFFFFF:
            continue
        vr = vrs.split(" or ")[0]
        if vr == "SQ":
            item = Dataset()
            item.CodeValue = "1"
            dataset.add_new(tag, vr, Sequence([item]))
        elif vr in SAMPLE_VALUES:
            dataset.add_new(tag, vr, SAMPLE_VALUES[vr])
    dataset.update({"PatientID": "EVERY", "StudyInstanceUID": "1.2.3.4.1", "SeriesInstanceUID": "1.2.3.4.2"})
    dataset.SOPInstanceUID = "1.2.3.4.3"
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SpecificCharacterSet = "ISO_IR 100"
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


SAMPLE_VALUES = {
    "AE": "AE", "AS": "030Y", "AT": 0x00100010, "CS": "CS", "DA": "20200101", "DS": "1.5",
    "DT": "20200101120000", "FL": 1.5, "FD": 1.5, "IS": "7", "LO": "LO", "LT": "LT", "PN": "P^N",
    "SH": "SH", "SL": -3, "SS": -3, "ST": "ST", "TM": "120000", "UC": "UC", "UI": "1.2.3", "UL": 3,
    "UR": "http://x", "US": 3, "UT": "UT", "SV": -3, "UV": 3,
}  # fmt: skip
LOG_CATEGORIES = ("generic", "plugins", "http", "sqlite", "dicom", "lua", "jobs")
NOT_YET_TOOLS: set[str] = set()
"""What GET /tools may list in Orthanc and not in fastpacs (nothing any more)."""
SLICE_SERIES = {
    "by position": [
        {"ImagePositionPatient": [0, 0, 10], "InstanceNumber": 1},
        {"ImagePositionPatient": [0, 0, 30], "InstanceNumber": 2},
        {"ImagePositionPatient": [0, 0, 20], "InstanceNumber": 3},
    ],
    "same position": [
        {"ImagePositionPatient": [0, 0, 5], "InstanceNumber": 2},
        {"ImagePositionPatient": [0, 0, 5], "InstanceNumber": 1},
    ],
    "nothing to order by": [
        {"ImagePositionPatient": None, "InstanceNumber": None},
        {"ImagePositionPatient": None, "InstanceNumber": None},
    ],
    "no orientation": [
        {"ImagePositionPatient": [0, 0, 10], "InstanceNumber": 2, "ImageOrientationPatient": None},
        {"ImagePositionPatient": [0, 0, 5], "InstanceNumber": 1, "ImageOrientationPatient": None},
    ],
    "same position without index": [
        {"ImagePositionPatient": [0, 0, 10], "InstanceNumber": None},
        {"ImagePositionPatient": [0, 0, 10], "InstanceNumber": None},
    ],
    "one position missing": [
        {"ImagePositionPatient": [0, 0, 10], "InstanceNumber": 1},
        {"ImagePositionPatient": None, "InstanceNumber": 2},
    ],
    "oblique": [
        {"ImagePositionPatient": [3, 1, 10], "ImageOrientationPatient": [1, 0, 0, 0, 0.8, -0.6]},
        {"ImagePositionPatient": [3, 9, 4], "ImageOrientationPatient": [1, 0, 0, 0, 0.8, -0.6]},
        {"ImagePositionPatient": [3, 5, 7], "ImageOrientationPatient": [1, 0, 0, 0, 0.8, -0.6]},
    ],
}


@pytest.fixture(scope="module")
def helpers_data(pair: ServerPair, stored: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The file with every attribute, a second CT slice in the CT series, and the series to order."""
    uploads = {"every attribute": _every_attribute()}
    ct = pydicom.dcmread(test_file("CT_small.dcm"))
    uploads["second CT slice"] = _derived(
        "CT_small.dcm", 0, 2, SeriesInstanceUID=ct.SeriesInstanceUID, InstanceNumber=2, ImageComments="second"
    )
    for number, (name, instances) in enumerate(SLICE_SERIES.items(), start=1):
        for index, changes in enumerate(instances, start=1):
            uploads[f"{name} {index}"] = _derived("CT_small.dcm", number, index, **changes)
    answers = {}
    for name, data in uploads.items():
        pair.fastpacs_client.post("/instances", content=data)
        answers[name] = pair.orthanc_client.post("/instances", content=data).json()
    return answers


def _tag_forms(name: str, path: str) -> list[Call]:
    return [get(name, path), get(f"{name} simplify", path, simplify=""), get(f"{name} short", path, short="")]


def test_modules(
    pair: ServerPair, stored: dict[str, dict[str, str]], helpers_data: dict[str, dict[str, str]]
) -> None:
    check = pair.checker()
    for label, answer in (
        ("CT", stored["CT_small.dcm"]),
        ("every attribute", helpers_data["every attribute"]),
    ):
        ids = {"patients": answer["ParentPatient"], "studies": answer["ParentStudy"]}
        ids |= {"series": answer["ParentSeries"], "instances": answer["ID"]}
        for level, resource in ids.items():
            check.compare_all(_tag_forms(f"module {label} {level}", f"/{level}/{resource}/module"))
        check.compare_all(_tag_forms(f"module-patient {label}", f"/studies/{ids['studies']}/module-patient"))
    check.compare_all(
        [
            get("module unknown series", "/series/00000000-00000000-00000000-00000000-00000000/module"),
            get("module-patient of a series", f"/series/{ids['series']}/module-patient"),
            get("patient-module of a study", f"/studies/{ids['studies']}/patient-module"),
            get("patient-module of a patient", f"/patients/{ids['patients']}/patient-module"),
        ]
    )
    check.verdict()


def test_shared_and_instances_tags(
    pair: ServerPair, stored: dict[str, dict[str, str]], helpers_data: dict[str, dict[str, str]]
) -> None:
    check = pair.checker()
    for name, answer in stored.items():
        for level, key in LEVELS:
            for route in ("shared-tags", "instances-tags"):
                check.compare_all(_tag_forms(f"{route} {name} {level}", f"/{level}/{answer[key]}/{route}"))
    every = helpers_data["every attribute"]["ParentSeries"]
    check.compare_all(_tag_forms("shared-tags every attribute", f"/series/{every}/shared-tags"))
    check.compare_all(
        [
            get("shared-tags of an instance", f"/instances/{stored['CT_small.dcm']['ID']}/shared-tags"),
            get(
                "instances-tags unknown",
                "/series/00000000-00000000-00000000-00000000-00000000/instances-tags",
            ),
        ]
    )
    check.verdict()


def test_ordered_slices(
    pair: ServerPair, stored: dict[str, dict[str, str]], helpers_data: dict[str, str]
) -> None:
    check = pair.checker()
    for name, answer in stored.items():
        check.compare(get(f"ordered-slices {name}", f"/series/{answer['ParentSeries']}/ordered-slices"))
    for name in SLICE_SERIES:
        check.compare(
            get(
                f"ordered-slices {name}",
                f"/series/{helpers_data[name + ' 1']['ParentSeries']}/ordered-slices",
            )
        )
    check.compare(
        get("ordered-slices unknown", "/series/00000000-00000000-00000000-00000000-00000000/ordered-slices")
    )
    check.compare(
        get("ordered-slices of a study", f"/studies/{stored['CT_small.dcm']['ParentStudy']}/ordered-slices")
    )
    check.verdict()


def test_statistics_and_protection(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    check = pair.checker()
    for name, answer in stored.items():
        for level, key in (*LEVELS, ("instances", "ID")):
            check.compare(get(f"statistics {name} {level}", f"/{level}/{answer[key]}/statistics"))
    patient = f"/patients/{stored['CT_small.dcm']['ParentPatient']}/protected"
    unknown = "/patients/00000000-00000000-00000000-00000000-00000000/protected"
    check.compare_all(
        [
            get("statistics unknown", "/series/00000000-00000000-00000000-00000000-00000000/statistics"),
            get("protected initially", patient),
            Call("protect", "PUT", patient, body=b"1"),
            get("protected after protect", patient),
            Call("protect with true", "PUT", patient, body=b" true "),
            Call("protect with a bad value", "PUT", patient, body=b"2"),
            Call("unprotect", "PUT", patient, body=b"0"),
            get("protected after unprotect", patient),
            get("protected unknown patient", unknown),
            Call("protect unknown patient", "PUT", unknown, body=b"1"),
            get("protected malformed id", "/patients/nonexistent/protected"),
            get("protected of a study", f"/studies/{stored['CT_small.dcm']['ParentStudy']}/protected"),
        ]
    )
    check.verdict()


def test_tools(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    check = pair.checker()
    ct, mr = stored["CT_small.dcm"], stored["MR_small.dcm"]
    check.compare_all(
        [
            get("generate-uid without level", "/tools/generate-uid"),
            get("generate-uid of an unknown level", "/tools/generate-uid", level="foo"),
            get("log-level", "/tools/log-level"),
            Call("log-level set verbose", "PUT", "/tools/log-level-http", body=b"verbose"),
            get("log-level after setting a category", "/tools/log-level"),
            Call("log-level set a bad value", "PUT", "/tools/log-level", body=b"loud"),
            Call("log-level set default", "PUT", "/tools/log-level", body=b"default"),
            get("log-level of a category", "/tools/log-level-http"),
            Call("log-level with POST", "POST", "/tools/log-level"),
            Call("now with POST", "POST", "/tools/now"),
            Call("reconstruct a study", "POST", f"/studies/{ct['ParentStudy']}/reconstruct"),
            Call("reconstruct an instance", "POST", f"/instances/{ct['ID']}/reconstruct"),
            Call("reconstruct a patient", "POST", f"/patients/{mr['ParentPatient']}/reconstruct"),
            Call("reconstruct a series", "POST", f"/series/{mr['ParentSeries']}/reconstruct"),
            Call("reconstruct a study by a series route", "POST", f"/series/{ct['ParentStudy']}/reconstruct"),
            Call("reconstruct an instance by a study route", "POST", f"/studies/{ct['ID']}/reconstruct"),
            Call(
                "reconstruct a patient by an instance route",
                "POST",
                f"/instances/{mr['ParentPatient']}/reconstruct",
            ),
            Call(
                "reconstruct unknown",
                "POST",
                "/series/00000000-00000000-00000000-00000000-00000000/reconstruct",
            ),
            Call("reconstruct with GET", "GET", f"/instances/{ct['ID']}/reconstruct"),
            Call("reconstruct everything", "POST", "/tools/reconstruct"),
            Call("invalidate-tags", "POST", "/tools/invalidate-tags"),
            get("after reconstruct", f"/studies/{ct['ParentStudy']}"),
            Call("export refused by default", "POST", f"/instances/{ct['ID']}/export", body=b"refused.dcm"),
            Call("export of an unknown instance refused", "POST", "/instances/nonexistent/export", body=b"x"),
            Call("reset with GET", "GET", "/tools/reset"),
            Call("shutdown with GET", "GET", "/tools/shutdown"),
        ]
    )
    for category in LOG_CATEGORIES:
        check.compare_all(
            [
                get(f"log-level {category}", f"/tools/log-level-{category}"),
                Call(f"log-level {category} set trace", "PUT", f"/tools/log-level-{category}", body=b"trace"),
                get(f"log-level {category} after trace", f"/tools/log-level-{category}"),
                Call(
                    f"log-level {category} set a bad value", "PUT", f"/tools/log-level-{category}", body=b"x"
                ),
                Call(
                    f"log-level {category} set default",
                    "PUT",
                    f"/tools/log-level-{category}",
                    body=b"default",
                ),
            ]
        )
    check.compare_all(
        [
            get("log-level unknown category", "/tools/log-level-nosuch"),
            Call("log-level set trace", "PUT", "/tools/log-level", body=b"trace"),
            get("log-level after trace", "/tools/log-level"),
            get("log-level of a category after trace", "/tools/log-level-dicom"),
            Call("log-level set back to default", "PUT", "/tools/log-level", body=b"default"),
        ]
    )
    for level in ("Patient", "Study", "Series", "Instance"):
        body = f'{{"Resources": ["{ct["ParentStudy"]}", "{mr["ID"]}", "nonexistent"], "Level": "{level}"}}'
        check.compare(Call(f"bulk-content {level}", "POST", "/tools/bulk-content", body=body.encode()))
    check.compare_all(
        [
            Call(
                "bulk-content any level",
                "POST",
                "/tools/bulk-content",
                body=f'{{"Resources": ["{ct["ID"]}"]}}'.encode(),
            ),
            Call("bulk-content without resources", "POST", "/tools/bulk-content", body=b"{}"),
            *(
                Call(
                    f"bulk-content {option}",
                    "POST",
                    "/tools/bulk-content",
                    body=json.dumps({"Resources": [ct["ParentSeries"], mr["ID"]], option: True}).encode(),
                )
                for option in ("Full", "Short", "Simplify", "Expand", "Metadata")
            ),
            Call(
                "bulk-content in the order asked, repetitions kept",
                "POST",
                "/tools/bulk-content",
                body=json.dumps({"Resources": [mr["ID"], ct["ID"], mr["ParentStudy"], ct["ID"]]}).encode(),
            ),
            Call(
                "bulk-content of a level, once each in the order of IDs",
                "POST",
                "/tools/bulk-content",
                body=json.dumps(
                    {
                        "Resources": [mr["ID"], ct["ParentPatient"], ct["ID"], mr["ID"]],
                        "Level": "Instance",
                        "Short": True,
                    }
                ).encode(),
            ),
            Call(
                "bulk-content full not a boolean",
                "POST",
                "/tools/bulk-content",
                body=json.dumps({"Resources": [ct["ID"]], "Full": 1}).encode(),
            ),
            Call("bulk-delete not JSON", "POST", "/tools/bulk-delete", body=b"x"),
            Call("bulk-delete an array", "POST", "/tools/bulk-delete", body=b"[]"),
            Call("bulk-content not JSON", "POST", "/tools/bulk-content", body=b"x"),
            Call(
                "bulk-content resources not strings",
                "POST",
                "/tools/bulk-content",
                body=b'{"Resources": [1]}',
            ),
            Call(
                "bulk-content bad level",
                "POST",
                "/tools/bulk-content",
                body=b'{"Resources": [], "Level": "Foo"}',
            ),
            Call("bulk-delete without resources", "POST", "/tools/bulk-delete", body=b'{"Resources": "x"}'),
            Call("bulk-delete unknown", "POST", "/tools/bulk-delete", body=b'{"Resources": ["nonexistent"]}'),
        ]
    )
    check.verdict()
    orthanc_tools, fastpacs_tools = set(pair.orthanc_get("/tools")), set(pair.fastpacs_get("/tools"))
    assert fastpacs_tools <= orthanc_tools
    assert orthanc_tools - fastpacs_tools <= NOT_YET_TOOLS


CONFORMANCE_ROW = re.compile(r"  (\S+) +\| ([0-9.]+)")
DICOM_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")
TIMESTAMP = "%Y%m%dT%H%M%S"
LEVEL_NAMES = ("patient", "study", "series", "instance")


def _conformance_sections(text: str) -> dict[str, list[str]]:
    """Section title → UIDs of the ``  Keyword | UID`` rows of a conformance statement."""
    sections: dict[str, list[str]] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines[1:-1], start=1):
        if set(lines[index - 1]) == set(lines[index + 1]) == {"-"}:
            sections[line] = []
        elif line.startswith("  ") and sections:
            row = CONFORMANCE_ROW.fullmatch(line)
            assert row is not None, f"not a 'Keyword | UID' row: {line!r}"
            sections[list(sections)[-1]].append(row.group(2))
    return sections


def test_dicom_conformance(pair: ServerPair) -> None:
    """Same status and type; each server's own text, in the same sections, order and row format."""
    orthanc, fastpacs = pair.send(get("dicom-conformance", "/tools/dicom-conformance"))
    assert (fastpacs.status, fastpacs.headers["content-type"]) == (
        orthanc.status,
        orthanc.headers["content-type"],
    )
    texts = orthanc.content.decode(), fastpacs.content.decode()
    assert [re.sub(r"of \S+$", "of", text.splitlines()[1]) for text in texts] == [
        "DICOM Conformance Statement of"
    ] * 2
    expected, actual = (_conformance_sections(text) for text in texts)
    assert list(actual) == list(expected)
    assert [title for title, uids in actual.items() if uids] == [
        title for title, uids in expected.items() if uids
    ]
    for title in set(expected) - {"Store SCP Conformance", "Transfer Syntaxes"}:
        assert set(actual[title]) <= set(expected[title]), title
    # Every storage SOP class Orthanc accepts, fastpacs accepts (and some newer ones besides).
    assert set(expected["Store SCP Conformance"]) <= set(actual["Store SCP Conformance"])
    accepted = pair.fastpacs_get("/tools/accepted-transfer-syntaxes")
    assert set(accepted) <= set(actual["Transfer Syntaxes"])


def test_clocks_and_uids(pair: ServerPair) -> None:
    """Answers whose values differ by nature: same status and type, same format, same moment."""
    calls = [get("now", "/tools/now"), get("now-local", "/tools/now-local")]
    calls += [get(f"generate-uid {level}", "/tools/generate-uid", level=level) for level in LEVEL_NAMES]
    failures = []
    for call in calls:
        orthanc, fastpacs = pair.send(call)
        texts = (orthanc.content.decode(), fastpacs.content.decode())
        same_answer = (orthanc.status, orthanc.headers.get("content-type")) == (
            fastpacs.status,
            fastpacs.headers.get("content-type"),
        )
        if call.name.startswith("now"):
            moments = [datetime.strptime(text, TIMESTAMP) for text in texts]
            well_formed = abs((moments[0] - moments[1]).total_seconds()) <= 5
        elif call.params == {"level": "patient"}:
            well_formed = all(
                re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", text) for text in texts
            )
        else:
            well_formed = all(DICOM_UID.fullmatch(text) and len(text) <= 64 for text in texts)
        if not (same_answer and well_formed):
            failures.append(
                f"{call.name}: Orthanc {orthanc.status} {texts[0]!r}, fastpacs {fastpacs.status} {texts[1]!r}"
            )
    assert not failures, "\n".join(failures)


def test_bulk_delete(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    """A successful bulk delete of every level: same answer, same resources left, same changes."""
    uploads = {
        f"bulk {patient} {series} {index}": _derived(
            "MR_small.dcm",
            900 + series,
            index,
            PatientID=f"BULK{patient}",
            StudyInstanceUID=f"1.2.826.0.1.3680043.8.498.78.{patient}",
        )
        for patient, series, index in ((1, 1, 1), (2, 2, 1), (3, 3, 1), (3, 3, 2), (3, 4, 1))
    }
    answers = {}
    for name, data in uploads.items():
        pair.fastpacs_client.post("/instances", content=data)
        answers[name] = pair.orthanc_client.post("/instances", content=data).json()
    last = {
        name: client.get("/changes", params={"last": ""}).json()["Last"]
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client))
    }
    resources = [
        answers["bulk 1 1 1"]["ParentPatient"],
        answers["bulk 2 2 1"]["ParentStudy"],
        answers["bulk 3 3 1"]["ID"],
        answers["bulk 3 4 1"]["ParentSeries"],
        "nonexistent",
    ]
    body = json.dumps({"Resources": resources}).encode()
    check = pair.checker()
    check.compare_all(
        [
            Call("bulk-delete", "POST", "/tools/bulk-delete", body=body),
            get("bulk-delete patients left", "/patients"),
            get("bulk-delete studies left", "/studies"),
            get("bulk-delete series left", "/series"),
            get("bulk-delete instances left", "/instances"),
            get("bulk-delete remaining study", f"/studies/{answers['bulk 3 3 2']['ParentStudy']}", expand=""),
            get("bulk-delete statistics", "/statistics"),
        ]
    )
    # The resources left turn stable StableAge (1 s) after their upload, sooner or later on each server
    # under load: Stable* changes are left out.
    changes = [
        [
            (change["ChangeType"], change["ResourceType"], change["ID"])
            for change in client.get("/changes", params={"since": str(last[name]), "limit": "100"}).json()[
                "Changes"
            ]
            if not change["ChangeType"].startswith("Stable")
        ]
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client))
    ]
    check.compare_documents("bulk-delete changes", sorted(changes[0]), sorted(changes[1]))
    check.verdict()


def _compressed(name: str, path: str, accept_encoding: str, **params: str) -> Call:
    return Call(
        name,
        "GET",
        path,
        params or None,
        headers={"Accept-Encoding": accept_encoding},
        compared_headers=("content-type", "content-encoding"),
    )


def test_compression(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    """Accept-Encoding as Orthanc's default HttpCompressionEnabled answers it (the body decoded by httpx)."""
    ct = stored["CT_small.dcm"]
    tags = f"/instances/{ct['ID']}/tags"
    check = pair.checker()
    check.compare_all(
        [
            _compressed("gzip large JSON tags", tags, "gzip"),
            _compressed("gzip large JSON expand", "/instances", "gzip", expand=""),
            _compressed("gzip large JSON with deflate", tags, "gzip, deflate"),
            _compressed("gzip large JSON deflate first", tags, "deflate, gzip"),
            _compressed("gzip large binary", f"/instances/{ct['ID']}/frames/0/raw", "gzip"),
            _compressed("gzip identity", tags, "identity"),
            _compressed("gzip refused", tags, "gzip;q=0"),
            _compressed("gzip unknown coding", tags, "br"),
            _compressed("gzip error", "/instances/nonexistent/tags", "gzip"),
            _compressed("gzip shared-tags", f"/series/{ct['ParentSeries']}/shared-tags", "gzip"),
        ]
    )
    check.compare(
        Call(
            "gzip find",
            "POST",
            "/tools/find",
            body=b'{"Level": "Instance", "Query": {}, "Expand": true}',
            headers={"Accept-Encoding": "gzip"},
            compared_headers=("content-type", "content-encoding"),
        )
    )
    check.verdict()


AS_THEY_ARE = (
    # What fastpacs sends without Content-Encoding where Orthanc gzips or deflates: answers that
    # gain nothing (under one TCP segment; PNG and ZIP, already compressed), streamed ones (DICOM
    # files), and deflate, which fastpacs does not offer (gzip only; identity is always allowed).
    # Content-Encoding is transparent to HTTP clients: they read the same bytes.
    ("gzip small JSON", "/studies", "gzip", True),
    ("gzip small text", "/instances/{ID}/metadata/Origin", "gzip", True),
    ("gzip small module", "/instances/{ID}/module", "gzip", True),
    ("gzip small metadata", "/instances/{ID}/metadata", "gzip", True),
    ("gzip small attachments", "/instances/{ID}/attachments", "gzip", True),
    ("gzip DICOM file", "/instances/{ID}/file", "gzip", True),
    ("gzip deflate only", "/instances/{ID}/tags", "deflate", True),
    ("gzip PNG", "/instances/{ID}/preview", "gzip", False),  # PNG encoders differ in their bytes
    ("gzip archive", "/studies/{ParentStudy}/archive", "gzip", False),  # Orthanc deflates entries
)


def test_answers_sent_as_they_are(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    """Same status, type and (where deterministic) bytes as Orthanc, without Content-Encoding."""
    failures = []
    for name, path, accept_encoding, same_bytes in AS_THEY_ARE:
        call = _compressed(name, path.format(**stored["CT_small.dcm"]), accept_encoding)
        orthanc, fastpacs = pair.send(call)
        # Orthanc indents JSON, fastpacs does not: JSON is compared parsed.
        same_body = orthanc.json == fastpacs.json if orthanc.is_json else orthanc.content == fastpacs.content
        if (
            (orthanc.status, orthanc.headers.get("content-type"))
            != (fastpacs.status, fastpacs.headers.get("content-type"))
            or "content-encoding" in fastpacs.headers
            or (same_bytes and not same_body)
        ):
            failures.append(
                f"{name}: Orthanc {orthanc.status} {orthanc.headers.get('content-type')} "
                f"{orthanc.headers.get('content-encoding')}, fastpacs {fastpacs.status} "
                f"{fastpacs.headers.get('content-type')} {fastpacs.headers.get('content-encoding')}"
            )
    assert not failures, "\n".join(failures)


MOVE_TARGET = "TARGET"
"""The move destination the C-MOVE SCP of the tests knows: it answers Success (no sub-operation)."""
UNABLE_TARGET = "UNABLE"
"""The move destination for which the C-MOVE SCP answers "unable to process" (0xC000)."""


class MoveScp:
    """A C-MOVE SCP (pynetdicom) that records the requests it gets and sends nothing.

    It answers Success for :data:`MOVE_TARGET`, 0xC000 for :data:`UNABLE_TARGET`
    (after opening the sub-operations' association, to itself), and "move
    destination unknown" (0xA801) for any other destination.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        ae = AE(ae_title="MOVESCP")
        for model in (
            PatientRootQueryRetrieveInformationModelMove,
            StudyRootQueryRetrieveInformationModelMove,
        ):
            ae.add_supported_context(model)
        ae.add_supported_context(Verification)
        ae.add_requested_context(Verification)
        self.server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_MOVE, self._move)]
        )
        self.port: int = self.server.server_address[1]

    def _move(self, event: evt.Event) -> Iterator[tuple[str | int | None, int | None] | int]:
        # Orthanc leaves file meta elements, (0002,0003) at the instance level, in the identifier
        # it sends; they are no part of an identifier (PS3.4 C.4.2.1.4) and SCPs ignore them.
        identifier = {
            element.keyword: str(element.value) for element in event.identifier if element.tag.group != 2
        }
        self.requests.append(
            {
                "CallingAET": event.assoc.requestor.ae_title,
                "Model": event.request.AffectedSOPClassUID,
                "MoveDestination": event.move_destination,
                **identifier,
            }
        )
        if event.move_destination == MOVE_TARGET:
            yield "127.0.0.1", 104  # never called: there is no sub-operation
            yield 0
        elif event.move_destination == UNABLE_TARGET:
            yield "127.0.0.1", self.port
            yield 1
            yield 0xC000, None
        else:
            yield None, None

    def taken(self) -> list[dict[str, str]]:
        requests, self.requests = self.requests, []
        return requests

    def stop(self) -> None:
        self.server.shutdown()


def _move(name: str, modality: str, body: object) -> Call:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Call(name, "POST", f"/modalities/{modality}/move", body=content)


def test_modality_move(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    """POST /modalities/{id}/move to a C-MOVE SCP: same answers, same C-MOVE requests on the wire."""
    ct = pair.orthanc_get(f"/instances/{stored['CT_small.dcm']['ID']}/simplified-tags")
    study = {"StudyInstanceUID": ct["StudyInstanceUID"]}
    series = {**study, "SeriesInstanceUID": ct["SeriesInstanceUID"], "PatientName": "ignored"}
    instance = {**series, "SOPInstanceUID": ct["SOPInstanceUID"]}
    scps = {"orthanc": MoveScp(), "fastpacs": MoveScp()}
    clients = {"orthanc": pair.orthanc_client, "fastpacs": pair.fastpacs_client}
    try:
        for server, client in clients.items():
            modality = {"AET": "MOVESCP", "Host": "127.0.0.1", "Port": scps[server].port}
            client.put("/modalities/movescp", json=modality).raise_for_status()
            client.put("/modalities/down", json={**modality, "Port": 1}).raise_for_status()
        check = pair.checker()
        for call in [
            _move(
                "move study", "movescp", {"Level": "Study", "Resources": [study], "TargetAet": MOVE_TARGET}
            ),
            _move(
                "move patients",
                "movescp",
                {"Level": "Patient", "Resources": [{"PatientID": ct["PatientID"]}, {"PatientID": "other"}]},
            ),
            _move("move series, extra tags", "movescp", {"Level": "series", "Resources": [series]}),
            _move(
                "move instance",
                "movescp",
                {"Level": "Instances", "Resources": [instance], "TargetAet": MOVE_TARGET, "Timeout": 10},
            ),
            _move(
                "move tag numbers",
                "movescp",
                {"Level": "Study", "Resources": [{"0020,000d": "1.2.3"}], "TargetAet": MOVE_TARGET},
            ),
            _move(
                "move as LocalAet",
                "movescp",
                {"Level": "Study", "Resources": [study], "TargetAet": MOVE_TARGET, "LocalAet": "OTHER"},
            ),
            _move(
                "move asynchronous",
                "movescp",
                {"Level": "Study", "Resources": [study], "TargetAet": MOVE_TARGET, "Asynchronous": True},
            ),
            _move("move to an unknown destination", "movescp", {"Level": "Study", "Resources": [study]}),
            _move(
                "move unable to process",
                "movescp",
                {"Level": "Study", "Resources": [study], "TargetAet": UNABLE_TARGET},
            ),
            _move(
                "move a resource without its identifier after one",
                "movescp",
                {"Level": "Series", "Resources": [series, study], "TargetAet": MOVE_TARGET},
            ),
            _move("move nothing", "movescp", {"Level": "Study", "Resources": []}),
            _move("move nothing from a modality down", "down", {"Level": "Study", "Resources": []}),
            _move("move from a modality down", "down", {"Level": "Study", "Resources": [study]}),
            _move("move from an unknown modality", "nosuch", {"Level": "Study", "Resources": []}),
            _move("move unknown modality, bad body", "nosuch", b"{}"),
            _move("move empty body", "movescp", b""),
            _move("move not JSON", "movescp", b"x"),
            _move("move array", "movescp", []),
            _move("move without resources", "movescp", {"Level": "Study"}),
            _move("move resources not a list", "movescp", {"Level": "Study", "Resources": {}}),
            _move("move level not a string", "movescp", {"Level": 5, "Resources": []}),
            _move("move unknown level", "movescp", {"Level": "Foo", "Resources": []}),
            _move("move resource not an object", "movescp", {"Level": "Study", "Resources": ["x"]}),
            _move(
                "move value not a string",
                "movescp",
                {"Level": "Study", "Resources": [{"StudyInstanceUID": 5}]},
            ),
            _move("move unknown tag", "movescp", {"Level": "Study", "Resources": [{"Foo": "x"}]}),
            _move(
                "move TargetAet not a string", "movescp", {"Level": "Study", "Resources": [], "TargetAet": 5}
            ),
            _move(
                "move LocalAet not a string", "movescp", {"Level": "Study", "Resources": [], "LocalAet": 5}
            ),
            _move(
                "move Timeout not an integer", "movescp", {"Level": "Study", "Resources": [], "Timeout": "x"}
            ),
            _move("move negative Timeout", "movescp", {"Level": "Study", "Resources": [], "Timeout": -1}),
        ]:
            check.compare(call)
            check.compare_documents(
                f"{call.name} C-MOVE requests", scps["orthanc"].taken(), scps["fastpacs"].taken()
            )
        check.verdict()
    finally:
        for server, client in clients.items():
            client.delete("/modalities/movescp")
            client.delete("/modalities/down")
            scps[server].stop()


def test_http_conventions(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    check = pair.checker()
    protected = f"/patients/{stored['CT_small.dcm']['ParentPatient']}/protected"
    redirect = ("content-type", "location")
    check.compare_all(
        [
            Call("override PUT", "POST", protected, body=b"1", headers={"X-HTTP-Method-Override": "PUT"}),
            get("override PUT result", protected),
            Call(
                "override lower case", "POST", protected, body=b"0", headers={"X-HTTP-Method-Override": "put"}
            ),
            get("override lower case result", protected),
            Call("override GET", "POST", protected, headers={"X-HTTP-Method-Override": "GET"}),
            Call("override unknown", "POST", protected, headers={"X-HTTP-Method-Override": "FOO"}),
            Call("override on GET", "GET", protected, headers={"X-HTTP-Method-Override": "PUT"}),
            Call(
                "override on PUT", "PUT", protected, body=b"1", headers={"X-HTTP-Method-Override": "DELETE"}
            ),
            Call("override POST", "POST", protected, body=b"1", headers={"X-HTTP-Method-Override": "POST"}),
            Call("override empty", "POST", protected, body=b"1", headers={"X-HTTP-Method-Override": ""}),
            Call(
                "override metadata PUT",
                "POST",
                f"/instances/{stored['CT_small.dcm']['ID']}/metadata/1050",
                body=b"by override",
                headers={"X-HTTP-Method-Override": "PUT"},
            ),
            get("override metadata PUT result", f"/instances/{stored['CT_small.dcm']['ID']}/metadata/1050"),
            Call(
                "override metadata DELETE",
                "POST",
                f"/instances/{stored['CT_small.dcm']['ID']}/metadata/1050",
                headers={"X-HTTP-Method-Override": "DELETE"},
            ),
            get(
                "override metadata DELETE result", f"/instances/{stored['CT_small.dcm']['ID']}/metadata/1050"
            ),
            get("override protected after all", protected),
            Call(
                "override DELETE",
                "POST",
                "/instances/nonexistent",
                headers={"X-HTTP-Method-Override": "DELETE"},
            ),
            Call("root", "GET", "/", compared_headers=redirect),
            Call("root with arguments", "GET", "/", params={"x": "1"}, compared_headers=redirect),
            Call("root with POST", "POST", "/"),
            Call("app", "GET", "/app", compared_headers=redirect),
            Call("app with a slash", "GET", "/app/", compared_headers=redirect),
            get("app unknown file", "/app/nosuch.js"),
            get("plugins", "/plugins"),
            get("plugins expand", "/plugins", expand=""),
            get("plugins explorer extensions", "/plugins/explorer.js"),
            get("plugins unknown", "/plugins/nosuch"),
            Call("plugins with POST", "POST", "/plugins"),
            Call("plugins explorer extensions with PUT", "PUT", "/plugins/explorer.js"),
        ]
    )
    check.verdict()


RENDERINGS = (
    {},
    {"window-center": "1000", "window-width": "500"},
    {"window-center": "-200", "window-width": "3000"},
    {"width": "32"},
    {"height": "100", "width": "40"},
    {"width": "200"},
)


def _pixels(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def test_rendered(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    """Same status and type, and the same pixels (PNG encoders differ in their bytes, not in pixels)."""
    failures = []
    for name, answer in stored.items():
        for frame in ("", "/frames/0", "/frames/1", "/frames/99"):
            for arguments in RENDERINGS:
                path = f"/instances/{answer['ID']}{frame}/rendered"
                orthanc, fastpacs = pair.send(Call(f"rendered {name}", "GET", path, params=arguments))
                label = f"{name}{frame} {arguments}"
                if orthanc.status != fastpacs.status or (
                    orthanc.status == 200
                    and orthanc.headers["content-type"] != fastpacs.headers["content-type"]
                ):
                    failures.append(f"{label}: Orthanc {orthanc.status} ≠ fastpacs {fastpacs.status}")
                elif orthanc.status == 200 and not np.array_equal(
                    _pixels(orthanc.content), _pixels(fastpacs.content)
                ):
                    failures.append(f"{label}: pixels differ")
    ct = f"/instances/{stored['CT_small.dcm']['ID']}/rendered"
    for arguments in ({"window-center": "abc"}, {"width": "-3"}, {"smooth": "2"}, {"quality": "0"}):
        orthanc, fastpacs = pair.send(Call("rendered bad argument", "GET", ct, params=arguments))
        if orthanc.status != fastpacs.status:
            failures.append(f"{arguments}: Orthanc {orthanc.status} ≠ fastpacs {fastpacs.status}")
    assert not failures, "\n".join(failures)


def test_series_numpy(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    for name, answer in stored.items():
        for arguments in ({}, {"rescale": "0"}):
            path = f"/series/{answer['ParentSeries']}/numpy"
            orthanc, fastpacs = pair.send(Call(f"series numpy {name}", "GET", path, params=arguments))
            assert orthanc.status == fastpacs.status, name
            if orthanc.status == 200:
                assert _same_arrays(
                    np.load(io.BytesIO(orthanc.content)), np.load(io.BytesIO(fastpacs.content))
                ), name


def test_numpy_compressed(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    """?compress: an .npz archive of the same arrays (its ZIP bytes differ by encoder)."""
    ct = stored["CT_small.dcm"]
    paths = (
        f"/instances/{ct['ID']}/numpy",
        f"/instances/{ct['ID']}/frames/0/numpy",
        f"/series/{ct['ParentSeries']}/numpy",
    )
    check = pair.checker()
    for path in paths:
        check.compare(get(f"numpy {path} compress not a Boolean", path, compress="x"))
    check.verdict()
    failures = []
    for path in paths:
        for arguments in ({"compress": "1"}, {"compress": "true", "rescale": "0"}, {"compress": "0"}):
            orthanc, fastpacs = pair.send(Call(f"numpy {path}", "GET", path, params=arguments))
            label = f"{path} {arguments}"
            if (orthanc.status, orthanc.headers.get("content-type")) != (
                fastpacs.status,
                fastpacs.headers.get("content-type"),
            ):
                failures.append(f"{label}: Orthanc {orthanc.status} ≠ fastpacs {fastpacs.status}")
            elif not _same_arrays(
                np.load(io.BytesIO(orthanc.content)), np.load(io.BytesIO(fastpacs.content))
            ):
                failures.append(f"{label}: arrays differ")
    assert not failures, "\n".join(failures)


def _same_arrays(
    expected: np.ndarray | np.lib.npyio.NpzFile, actual: np.ndarray | np.lib.npyio.NpzFile
) -> bool:
    """The same array (.npy), or the same named arrays (.npz)."""
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        return (
            isinstance(expected, np.ndarray)
            and isinstance(actual, np.ndarray)
            and expected.dtype == actual.dtype
            and np.array_equal(expected, actual)
        )
    return sorted(expected.files) == sorted(actual.files) and all(
        _same_arrays(expected[key], actual[key]) for key in expected.files
    )
