"""DICOM media (``/media``, ``/tools/create-media[-extended]``), fastpacs against the reference Orthanc.

Both servers store the same files: pydicom's (several SOP classes and
transfer syntaxes, character sets from Latin-1 to ISO 2022 Japanese) and
made-up ones that exercise DCMTK's copy rules (attributes absent, empty,
present) and Orthanc's way of finding records by DICOM identifier (one
StudyInstanceUID under two patients). Compared, for each media:

- status, Content-Type and Content-Disposition;
- the files of the ZIP, in order, and their bytes (the stored files);
- the DICOMDIR as parsed datasets: each record's type, depth in the tree
  (walked through the records' offsets) and attributes, ReferencedFileID
  included, and the file-set attributes.

Allowed differences, by design:

- ZIP bytes: Orthanc deflates, fastpacs stores (see fastpacs.services.archive).
- The DICOMDIR's bytes: DCMTK writes records as undefined-length items, fastpacs
  as defined-length ones, so the offsets differ; the trees they encode are compared.
- MediaStorageSOPInstanceUID, ImplementationClassUID/VersionName of the DICOMDIR:
  each server's own (checked to be a UID).
- StudyDate/StudyTime of a record whose file has none: the moment the media is
  made, checked for its format and date.
- A job's ``ArchiveSize``: deflated or not.
"""

import io
import re
import time
import zipfile
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from tests.differential.archive_jobs import normalized_job, wait_success
from tests.differential.data import CHARSET_FILES, test_file
from tests.differential.harness import Call, ServerPair

pytestmark = pytest.mark.reference

UPLOADED = (
    "CT_small.dcm",
    "MR_small.dcm",
    "test-SR.dcm",
    "rtplan.dcm",
    "SC_rgb_rle_2frame.dcm",
    "JPEG2000.dcm",
)
CHARSETS = ("chrFren.dcm", "chrH31.dcm", "chrX1.dcm", "chrGreek.dcm", "chrRuss.dcm")
UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
NOW_TIME = re.compile(r"^\d{6}\.000000$")
TIMEOUT = 30.0


def _made_up(number: int, **tags: Any) -> bytes:
    """A small secondary capture with fixed UIDs and the given attributes (``None``: left out)."""
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.StudyInstanceUID = tags.pop("study", f"2.25.9900{number}1")
    dataset.SeriesInstanceUID = f"2.25.9900{number}2"
    dataset.SOPInstanceUID = f"2.25.9900{number}3"
    for keyword, value in tags.items():
        if value is not None:
            setattr(dataset, keyword, value)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


MADE_UP = {
    "full": _made_up(
        1,
        PatientID="MU1",
        PatientName="Made^Up",
        PatientBirthDate="19700101",
        StudyDate="20200101",
        StudyTime="101010",
        AccessionNumber="ACC",
        StudyDescription="Study",
        StudyID="SID",
        Modality="OT",
        SeriesNumber="5",
        SeriesDescription="Series",
        InstanceNumber="7",
        ImageComments="Comments",
        SpecificCharacterSet="ISO_IR 100",
    ),
    "bare": _made_up(2, PatientID="MU2"),
    "empty values": _made_up(
        3,
        PatientID="MU3",
        PatientName="",
        StudyDate="",
        StudyTime="",
        AccessionNumber="",
        StudyDescription="",
        StudyID="",
        Modality="",
        SeriesNumber="",
        SeriesDescription="",
        InstanceNumber="",
    ),
    "shared study A": _made_up(4, PatientID="MUA", study="2.25.990099", Modality="OT"),
    "shared study B": _made_up(5, PatientID="MUB", study="2.25.990099", Modality="OT"),
}


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict[str, str]]:
    """Upload answers by name, checked identical on both servers."""
    uploads = [(name, test_file(name).read_bytes()) for name in UPLOADED]
    charset_paths = {path.name: path for path in CHARSET_FILES}
    uploads += [(name, charset_paths[name].read_bytes()) for name in CHARSETS]
    uploads += list(MADE_UP.items())
    answers = {}
    for name, data in uploads:
        orthanc, fastpacs = pair.send(Call(f"upload {name}", "POST", "/instances", body=data))
        assert orthanc.status == fastpacs.status == 200, name
        assert orthanc.json == fastpacs.json, name
        answers[name] = orthanc.json
    return answers


def _value(element: Any) -> Any:
    value = element.value
    return list(value) if isinstance(value, pydicom.multival.MultiValue) else value


def _records(dicomdir: bytes, moment: float) -> dict[str, Any]:
    """The DICOMDIR as a document: file-set attributes, and records in tree order with their depth.

    The date and time a record takes when its file has none are replaced by placeholders once checked.
    """
    dataset = pydicom.dcmread(io.BytesIO(dicomdir))
    assert UID.match(dataset.file_meta.MediaStorageSOPInstanceUID)
    records_at = {record.seq_item_tell: record for record in dataset.DirectoryRecordSequence}
    walked: list[dict[str, Any]] = []
    today = {time.strftime("%Y%m%d", time.gmtime(moment + delta)) for delta in (-TIMEOUT, TIMEOUT)}

    def walk(offset: int, depth: int) -> None:
        while offset:
            record = records_at[offset]
            attributes = {
                element.keyword: _value(element)
                for element in record
                if element.tag.group != 0x0004 or element.tag.element >= 0x1500
            }
            if record.DirectoryRecordType == "STUDY":
                if attributes.get("StudyDate") in today:
                    attributes["StudyDate"] = "<today>"
                if NOW_TIME.match(attributes.get("StudyTime") or ""):
                    attributes["StudyTime"] = "<now>"
            walked.append({"Depth": depth, "Type": record.DirectoryRecordType, "Attributes": attributes})
            walk(record.OffsetOfReferencedLowerLevelDirectoryEntity, depth + 1)
            offset = record.OffsetOfTheNextDirectoryRecord

    walk(dataset.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, 0)
    assert len(walked) == len(records_at)
    return {
        "FileSetID": dataset.FileSetID,
        "FileSetConsistencyFlag": dataset.FileSetConsistencyFlag,
        "MediaStorageSOPClassUID": dataset.file_meta.MediaStorageSOPClassUID,
        "TransferSyntaxUID": dataset.file_meta.TransferSyntaxUID,
        "Records": walked,
    }


def _zip_files(content: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as reader:
        assert reader.testzip() is None
        return [(name, reader.read(name)) for name in reader.namelist()]


def _compare_media(pair: ServerPair, name: str, method: str, path: str, **request: Any) -> list[str]:
    """Same answer from both servers: headers, files, DICOMDIR records. The names of the files."""
    moment = time.time()
    orthanc, fastpacs = (
        client.request(method, path, **request) for client in (pair.orthanc_client, pair.fastpacs_client)
    )
    assert orthanc.status_code == fastpacs.status_code == 200, (name, fastpacs.text[:300])
    for header in ("content-type", "content-disposition"):
        assert orthanc.headers.get(header) == fastpacs.headers.get(header), (name, header)
    orthanc_files, fastpacs_files = _zip_files(orthanc.content), _zip_files(fastpacs.content)
    names = [file_name for file_name, _ in orthanc_files]
    assert [file_name for file_name, _ in fastpacs_files] == names, name
    assert names[-1] == "DICOMDIR"
    assert fastpacs_files[:-1] == orthanc_files[:-1], name  # the stored files, byte for byte
    check = pair.checker()
    check.compare_documents(
        f"media {name}",
        _records(orthanc_files[-1][1], moment),
        _records(fastpacs_files[-1][1], moment),
    )
    check.verdict()
    return names


def test_resource_media(pair: ServerPair, stored: dict) -> None:
    ct, sr, rgb = stored["CT_small.dcm"], stored["test-SR.dcm"], stored["SC_rgb_rle_2frame.dcm"]
    _compare_media(pair, "study", "GET", f"/studies/{ct['ParentStudy']}/media")
    _compare_media(pair, "patient", "GET", f"/patients/{rgb['ParentPatient']}/media")
    _compare_media(
        pair, "series extended", "GET", f"/series/{sr['ParentSeries']}/media", params={"extended": ""}
    )
    _compare_media(
        pair, "series post", "POST", f"/series/{sr['ParentSeries']}/media", json={"Extended": True}
    )
    _compare_media(pair, "study of an instance ID", "GET", f"/studies/{ct['ID']}/media")


def test_media_of_everything(pair: ServerPair, stored: dict) -> None:
    patients = sorted({answer["ParentPatient"] for answer in stored.values()})
    names = _compare_media(pair, "everything", "POST", "/tools/create-media", json={"Resources": patients})
    assert len(names) == len(stored) + 1
    _compare_media(pair, "everything extended", "POST", "/tools/create-media-extended", json=patients)
    mixed = [
        stored["MR_small.dcm"]["ID"],
        stored["chrH31.dcm"]["ParentSeries"],
        stored["shared study B"]["ParentPatient"],
        stored["shared study A"]["ParentStudy"],
    ]
    _compare_media(pair, "mixed levels", "POST", "/tools/create-media", json={"Resources": mixed})
    assert _compare_media(pair, "empty", "POST", "/tools/create-media", json={"Resources": []}) == [
        "DICOMDIR"
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b"[1]",
        b'{"Resources": "x"}',
        b'{"Resources": ["nonsense"]}',
        b'{"Resources": ["00000000-00000000-00000000-00000000-00000000"]}',
        b'{"Resources": [], "Extended": "yes"}',
        b'{"Resources": [], "Synchronous": "yes"}',
        b'{"Resources": [], "Priority": "high"}',
    ],
)
def test_create_media_errors(pair: ServerPair, body: bytes) -> None:
    check = pair.checker()
    for route in ("create-media", "create-media-extended"):
        check.compare(Call(f"{route} {body!r}", "POST", f"/tools/{route}", body=body))
    check.verdict()


def test_media_route_errors(pair: ServerPair, stored: dict) -> None:
    series = stored["CT_small.dcm"]["ParentSeries"]
    check = pair.checker()
    check.compare(Call("media unknown", "GET", "/studies/00000000-00000000-00000000-00000000-00000000/media"))
    check.compare(
        Call("media of an instance route", "GET", f"/instances/{stored['CT_small.dcm']['ID']}/media")
    )
    check.compare(Call("media post empty body", "POST", f"/series/{series}/media", body=b""))
    check.compare(Call("media post garbage", "POST", f"/series/{series}/media", body=b"garbage"))
    check.compare(Call("media post bad extended", "POST", f"/series/{series}/media", body=b'{"Extended": 1}'))
    check.verdict()


def test_media_job(pair: ServerPair, stored: dict) -> None:
    resources = [stored["CT_small.dcm"]["ParentStudy"], stored["chrFren.dcm"]["ParentPatient"]]
    clients = (pair.orthanc_client, pair.fastpacs_client)
    body = {"Resources": resources, "Asynchronous": True}
    submitted = [client.post("/tools/create-media-extended", json=body) for client in clients]
    for answer in submitted:
        assert answer.status_code == 200
        assert answer.json() == {"ID": answer.json()["ID"], "Path": f"/jobs/{answer.json()['ID']}"}
    ids = [answer.json()["ID"] for answer in submitted]
    jobs = [normalized_job(wait_success(client, job_id)) for client, job_id in zip(clients, ids, strict=True)]
    check = pair.checker()
    check.compare_documents("media job", jobs[0], jobs[1])
    check.verdict()
    outputs = [client.get(f"/jobs/{job_id}/archive") for client, job_id in zip(clients, ids, strict=True)]
    assert outputs[0].status_code == outputs[1].status_code == 200
    assert outputs[0].headers["content-disposition"] == outputs[1].headers["content-disposition"]
    orthanc_files, fastpacs_files = _zip_files(outputs[0].content), _zip_files(outputs[1].content)
    assert fastpacs_files[:-1] == orthanc_files[:-1]
    check = pair.checker()
    moment = time.time()
    check.compare_documents(
        "media job output", _records(orthanc_files[-1][1], moment), _records(fastpacs_files[-1][1], moment)
    )
    check.verdict()
