"""DICOM media (ZIP + DICOMDIR): the DICOMDIR writer directly, then /media and /tools/create-media over HTTP.

The expected records come from Orthanc 1.10.1 (ORTHANC-BEHAVIOUR.md §14 and
probes of the reference server): one IMAGE record per file whatever its SOP
class, records found by DICOM identifier, DCMTK's copy rules, printable
ASCII values. Every DICOMDIR written here is read back with pydicom's
``FileSet``, which follows the records' byte offsets.
"""

import asyncio
import calendar
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from fastpacs.dicom import dicomdir as dd
from fastpacs.dicom.dicomdir import MediaFile, dicomdir
from fastpacs.services import zip_stream
from fastpacs.services.media import MediaState, _state_decoder
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file
from tests.test_archive import SlowDownload, _accepted, _action, _big_series, _wait_state

TIMEOUT = 20.0
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"


# ---------------------------------------------------------------------------- the DICOMDIR writer


def _file(number: int, patient: str, study: str, series: str, **attributes: str) -> MediaFile:
    values = {
        dd.PATIENT_ID: patient,
        dd.PATIENT_NAME: f"Name^{patient}",
        dd.STUDY_INSTANCE_UID: study,
        dd.SERIES_INSTANCE_UID: series,
        dd.SOP_INSTANCE_UID: f"{series}.{number}",
        dd.SOP_CLASS_UID: CT_IMAGE_STORAGE,
        dd.INSTANCE_NUMBER: str(number),
    }
    for keyword, value in attributes.items():
        tag = getattr(dd, keyword)
        if value is None:
            values.pop(tag, None)
        else:
            values[tag] = value
    return MediaFile(name=f"IM{number}", attributes=values, transfer_syntax_uid=EXPLICIT_LITTLE)


def _read(data: bytes) -> tuple[Dataset, list[tuple[int, str, Any]]]:
    """The DICOMDIR dataset, and its records walked through their offsets: (depth, type, record)."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    records_at = {record.seq_item_tell: record for record in dataset.DirectoryRecordSequence}
    walked: list[tuple[int, str, Any]] = []

    def walk(offset: int, depth: int) -> None:
        while offset:
            record = records_at[offset]
            walked.append((depth, record.DirectoryRecordType, record))
            walk(record.OffsetOfReferencedLowerLevelDirectoryEntity, depth + 1)
            offset = record.OffsetOfTheNextDirectoryRecord

    walk(dataset.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, 0)
    assert len(walked) == len(records_at)  # every record is reached, once
    return dataset, walked


def _pydicom_file_set(data: bytes, files: list[MediaFile], folder: Path) -> FileSet:
    """pydicom's reading of a DICOMDIR, which builds its own tree from the offsets.

    (It refuses PATIENT records without PatientID, which Orthanc writes for files without one.)
    """
    (folder / "DICOMDIR").write_bytes(data)
    (folder / "IMAGES").mkdir()
    for file in files:
        (folder / "IMAGES" / file.name).touch()  # only their existence is checked
    return FileSet(folder / "DICOMDIR")


def _shape(walked: list[tuple[int, str, Any]]) -> list[tuple[int, str, str]]:
    """Depth, type and the identifying value of each record."""
    keys = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID"}
    return [
        (depth, kind, "\\".join(record.ReferencedFileID) if kind == "IMAGE" else record.get(keys[kind], ""))
        for depth, kind, record in walked
    ]


def test_records_tree_follows_orthanc_keys(tmp_path: Path) -> None:
    files = [
        _file(0, "P1", "1.1", "1.1.1"),
        _file(1, "P1", "1.1", "1.1.2"),
        _file(2, "P2", "2.1", "2.1.1"),
        _file(3, "P1", "1.1", "1.1.1"),
        _file(4, "P3", "1.1", "1.1.9"),  # a study UID already seen under P1: joins P1's study, as Orthanc
        _file(5, "P1", "1.1", "1.1.1", SOP_INSTANCE_UID="1.1.1.0"),  # a SOP instance seen: no record
    ]
    data = dicomdir(files, False, "2.25.1", time.time())
    dataset, walked = _read(data)
    assert len(_pydicom_file_set(data, files, tmp_path)) == 5
    assert _shape(walked) == [
        (0, "PATIENT", "P1"),
        (1, "STUDY", "1.1"),
        (2, "SERIES", "1.1.1"),
        (3, "IMAGE", "IMAGES\\IM0"),
        (3, "IMAGE", "IMAGES\\IM3"),
        (2, "SERIES", "1.1.2"),
        (3, "IMAGE", "IMAGES\\IM1"),
        (2, "SERIES", "1.1.9"),
        (3, "IMAGE", "IMAGES\\IM4"),
        (0, "PATIENT", "P2"),
        (1, "STUDY", "2.1"),
        (2, "SERIES", "2.1.1"),
        (3, "IMAGE", "IMAGES\\IM2"),
    ]
    # Written depth first, as DCMTK does; the root offsets point to the first and last patients.
    assert [record.DirectoryRecordType for record in dataset.DirectoryRecordSequence] == [
        kind for _, kind, _ in walked
    ]
    patients = [
        record for record in dataset.DirectoryRecordSequence if record.DirectoryRecordType == "PATIENT"
    ]
    assert dataset.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity == patients[0].seq_item_tell
    assert dataset.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity == patients[-1].seq_item_tell
    assert dataset.FileSetID == "ORTHANC_MEDIA"
    assert dataset.FileSetConsistencyFlag == 0
    assert dataset.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    assert dataset.file_meta.MediaStorageSOPInstanceUID == "2.25.1"
    assert all(record.RecordInUseFlag == 0xFFFF for record in dataset.DirectoryRecordSequence)
    image = walked[3][2]
    assert image.ReferencedSOPClassUIDInFile == CT_IMAGE_STORAGE
    assert image.ReferencedSOPInstanceUIDInFile == "1.1.1.0"
    assert image.ReferencedTransferSyntaxUIDInFile == EXPLICIT_LITTLE


def _attributes(record: Dataset) -> dict[str, Any]:
    return {element.keyword: element.value for element in record if element.tag.group != 0x0004}


def test_copy_rules_of_each_record(tmp_path: Path) -> None:
    """Always copied (empty when absent), only when not empty, or today/now for a missing study date."""
    moment = calendar.timegm((2026, 3, 4, 5, 6, 7))
    bare = _file(
        0,
        "",
        "1.2",
        "1.2.3",
        PATIENT_NAME=None,
        INSTANCE_NUMBER=None,
        SPECIFIC_CHARACTER_SET="ISO_IR 100",
    )
    _, walked = _read(dicomdir([bare], True, "2.25.2", moment))
    patient, study, series, image = (_attributes(record) for _, _, record in walked)
    assert patient == {"SpecificCharacterSet": "ISO_IR 100", "PatientName": ""}
    assert study == {
        "SpecificCharacterSet": "ISO_IR 100",
        "StudyDate": "20260304",
        "StudyTime": "050607.000000",
        "AccessionNumber": "",
        "StudyDescription": "",
        "StudyInstanceUID": "1.2",
    }
    assert series == {"SpecificCharacterSet": "ISO_IR 100", "Modality": "", "SeriesInstanceUID": "1.2.3"}
    assert image == {"SpecificCharacterSet": "ISO_IR 100", "InstanceNumber": None}

    empty = _file(
        0,
        "P",
        "1.2",
        "1.2.3",
        STUDY_DATE="",
        STUDY_TIME="",
        STUDY_ID="",
        SERIES_NUMBER="",
        SERIES_DESCRIPTION="",
        SPECIFIC_CHARACTER_SET="",
    )
    for extended in (False, True):
        _, walked = _read(dicomdir([empty], extended, "2.25.3", moment))
        study, series = _attributes(walked[1][2]), _attributes(walked[2][2])
        assert (study["StudyDate"], study["StudyTime"], "StudyID" in study) == ("", "", False)
        assert "SeriesNumber" not in series and "SpecificCharacterSet" not in series
        # Extended: SeriesDescription whenever the file has it, even empty.
        assert ("SeriesDescription" in series) == extended


def test_values_keep_printable_ascii_only(tmp_path: Path) -> None:
    latin = _file(
        0, "ID\u00e9", "1.2", "1.2.3", PATIENT_NAME="Buc^J\u00e9r\u00f4me\t", SERIES_DESCRIPTION="s\u00e9rie"
    )
    japanese = _file(
        1,
        "J",
        "1.3",
        "1.3.4",
        PATIENT_NAME="Yamada^Tarou=\u5c71\u7530^\u592a\u90ce",
        SPECIFIC_CHARACTER_SET="\\ISO 2022 IR 87",
    )
    _, walked = _read(dicomdir([latin, japanese], True, "2.25.4", time.time()))
    records = [_attributes(record) for _, _, record in walked]
    assert records[0] == {"PatientName": "Buc^Jrme", "PatientID": "ID"}
    assert records[2]["SeriesDescription"] == "srie"
    assert records[4] == {
        "SpecificCharacterSet": ["", "ISO 2022 IR 87"],
        "PatientName": "Yamada^Tarou=^",
        "PatientID": "J",
    }


def test_empty_media_and_many_files(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(io.BytesIO(dicomdir([], False, "2.25.5", time.time())))
    assert len(dataset.DirectoryRecordSequence) == 0
    assert dataset.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity == 0
    files = [_file(n, f"P{n % 7}", f"1.{n % 7}.{n % 3}", f"1.{n % 7}.{n % 3}.{n % 5}") for n in range(1000)]
    data = dicomdir(files, False, "2.25.6", time.time())
    _, walked = _read(data)
    assert len(_pydicom_file_set(data, files, tmp_path)) == 1000
    images = sorted(int(record.ReferencedFileID[1][2:]) for _, kind, record in walked if kind == "IMAGE")
    assert images == list(range(1000))
    assert sum(kind == "PATIENT" for _, kind, _ in walked) == 7


def test_media_state_survives_a_restart() -> None:
    state = MediaState(resources=[b"\x01" * 20], output_name="abc", extended=True)
    assert _state_decoder.decode(msgspec.msgpack.encode(state)) == state


def test_file_target_is_durable_before_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An asynchronous output is fsynced before it is renamed, and its folder after."""
    events: list[str] = []
    real_fsync, real_replace = zip_stream.os.fsync, Path.replace

    def fsync(descriptor: int) -> None:
        events.append("fsync")
        real_fsync(descriptor)

    def replace(self: Path, target: Path) -> Path:
        events.append("rename")
        return real_replace(self, target)

    monkeypatch.setattr(zip_stream.os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    target = zip_stream.FileTarget(tmp_path / "out.zip")

    async def write() -> None:
        await target.open()
        await target.write(b"data")
        await target.close()

    asyncio.run(write())
    assert (tmp_path / "out.zip").read_bytes() == b"data"
    assert not (tmp_path / "out.part").exists()
    assert events == ["fsync", "rename", "fsync"]


# ---------------------------------------------------------------------------- over HTTP

UPLOADED = ("CT_small.dcm", "MR_small.dcm", "test-SR.dcm", "rtplan.dcm", "SC_rgb_rle_2frame.dcm")
STUDY_FILES = ("CT_small.dcm", "CT second series")
"""The two instances of CT_small's study."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    options = {"MediaArchiveSize": 2, "ConcurrentJobs": 1}  # one runner: a held job keeps others pending
    process = fastpacs_server(tmp_path_factory.mktemp("media"), options).start()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Any:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def stored(server: ServerProcess) -> dict[str, dict[str, str]]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        answers = {}
        for name in UPLOADED:
            answer = http.post("/instances", content=pydicom_file(name).read_bytes())
            assert answer.status_code == 200
            answers[name] = answer.json()
        second = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        second.SeriesInstanceUID, second.SOPInstanceUID = generate_uid(), generate_uid()
        second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
        buffer = io.BytesIO()
        second.save_as(buffer)
        answers["CT second series"] = http.post("/instances", content=buffer.getvalue()).json()
        return answers


def _zip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as reader:
        assert reader.testzip() is None
        return {name: reader.read(name) for name in reader.namelist()}


def _records(files: dict[str, bytes]) -> list[Dataset]:
    return list(pydicom.dcmread(io.BytesIO(files["DICOMDIR"])).DirectoryRecordSequence)


def test_study_media_layout_and_files(client: httpx.Client, stored: dict) -> None:
    study = stored["CT_small.dcm"]["ParentStudy"]
    answer = client.get(f"/studies/{study}/media")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == f'filename="{study}.zip"'
    files = _zip(answer.content)
    assert list(files) == ["IMAGES/IM0", "IMAGES/IM1", "DICOMDIR"]
    archive = _zip(client.get(f"/studies/{study}/archive").content)
    assert list(files.values())[:2] == list(archive.values())  # the same files, in the same order
    records = _records(files)
    assert [record.DirectoryRecordType for record in records] == [
        "PATIENT",
        "STUDY",
        "SERIES",
        "IMAGE",
        "SERIES",
        "IMAGE",
    ]
    for record in records[3], records[5]:
        name = "/".join(record.ReferencedFileID)
        stored_file = pydicom.dcmread(io.BytesIO(files[name]))
        assert record.ReferencedSOPInstanceUIDInFile == stored_file.SOPInstanceUID
        assert record.ReferencedSOPClassUIDInFile == stored_file.SOPClassUID
        assert record.ReferencedTransferSyntaxUIDInFile == stored_file.file_meta.TransferSyntaxUID
    assert records[0].PatientID == "1CT1"
    assert records[1].StudyDescription == "e+1"


def test_create_media_of_many_resources(client: httpx.Client, stored: dict, tmp_path: Path) -> None:
    resources = [stored[name]["ParentPatient"] for name in UPLOADED]
    answer = client.post("/tools/create-media", json={"Resources": resources})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'filename="Archive.zip"'
    files = _zip(answer.content)
    count = len(UPLOADED) + 1
    assert list(files) == [f"IMAGES/IM{index}" for index in range(count)] + ["DICOMDIR"]
    _, walked = _read(files["DICOMDIR"])
    assert sum(kind == "IMAGE" for _, kind, _ in walked) == count
    rtplan = next(record for _, kind, record in walked if kind == "IMAGE" and record.InstanceNumber is None)
    # The dataset's SOPInstanceUID, not the file meta's (they differ in rtplan.dcm), as Orthanc.
    assert rtplan.ReferencedSOPInstanceUIDInFile == pydicom.dcmread(pydicom_file("rtplan.dcm")).SOPInstanceUID
    listed = client.post("/tools/create-media", json=resources)
    assert list(_zip(listed.content)) == list(files)


def test_extended_media(client: httpx.Client, stored: dict) -> None:
    series = stored["test-SR.dcm"]["ParentSeries"]

    def has_description(answer: httpx.Response) -> bool:
        assert answer.status_code == 200, answer.text
        return any("SeriesDescription" in record for record in _records(_zip(answer.content)))

    assert not has_description(client.get(f"/series/{series}/media"))
    assert has_description(client.get(f"/series/{series}/media", params={"extended": "false"}))
    assert not has_description(client.post(f"/series/{series}/media", json={}))
    assert has_description(client.post(f"/series/{series}/media", json={"Extended": True}))
    assert has_description(client.post("/tools/create-media", json={"Resources": [series], "Extended": True}))
    assert has_description(client.post("/tools/create-media-extended", json=[series]))
    assert not has_description(
        client.post("/tools/create-media-extended", json={"Resources": [series], "Extended": False})
    )


BAD_REQUESTS = [
    ("POST /tools/create-media", b"", 400, "Expected a list of resources to archive in the body"),
    ("POST /tools/create-media", b"{}", 400, "Missing field Resources in the JSON body"),
    ("POST /tools/create-media", b'{"Resources": ["nonsense"]}', 404, None),
    ("POST /tools/create-media", b'{"Resources": [], "Extended": "yes"}', 400, None),
    ("POST /tools/create-media-extended", b'{"Resources": "x"}', 400, None),
    ("GET /studies/00000000-00000000-00000000-00000000-00000000/media", None, 404, None),
    ("POST /series/nonsense/media", b"{}", 404, None),
]


@pytest.mark.parametrize(("request_line", "body", "status", "details"), BAD_REQUESTS)
def test_bad_requests(
    client: httpx.Client, request_line: str, body: bytes | None, status: int, details: str | None
) -> None:
    method, path = request_line.split()
    answer = client.request(method, path, content=body)
    assert answer.status_code == status
    error = answer.json()
    assert error["Uri"] == path
    if details is not None:
        assert error["Details"] == details


def test_empty_media_and_instance_route(client: httpx.Client, stored: dict) -> None:
    files = _zip(client.post("/tools/create-media", json={"Resources": []}).content)
    assert list(files) == ["DICOMDIR"]
    assert _records(files) == []
    answer = client.get(f"/instances/{stored['CT_small.dcm']['ID']}/media")
    assert answer.status_code == 404
    # Any level is accepted on the resource routes, as for archives.
    files = _zip(client.get(f"/studies/{stored['MR_small.dcm']['ID']}/media").content)
    assert list(files) == ["IMAGES/IM0", "DICOMDIR"]


def _wait_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_asynchronous_media_jobs_and_their_outputs(client: httpx.Client, stored: dict) -> None:
    study = stored["CT_small.dcm"]["ParentStudy"]
    submitted = []
    for body in (
        {"Resources": [study], "Asynchronous": True},
        {"Resources": [study], "Synchronous": False, "Extended": True, "Priority": 3},
    ):
        answer = client.post("/tools/create-media", json=body)
        assert answer.status_code == 200
        submitted.append(answer.json()["ID"])
    answer = client.post(
        f"/series/{stored['MR_small.dcm']['ParentSeries']}/media", json={"Asynchronous": True}
    )
    submitted.append(answer.json()["ID"])
    jobs = [_wait_job(client, job_id) for job_id in submitted]
    sizes = [len(client.get(f"/instances/{stored[name]['ID']}/file").content) for name in STUDY_FILES]
    assert jobs[0]["Type"] == "Media"
    assert jobs[0]["State"] == "Success"
    content = jobs[0]["Content"]
    assert {key: content[key] for key in ("Description", "InstancesCount", "UncompressedSize")} == {
        "Description": "REST API",
        "InstancesCount": 2,
        "UncompressedSize": str(sum(sizes)),
    }
    assert jobs[1]["Priority"] == 3
    # MediaArchiveSize 2: the two latest outputs are kept, the oldest is gone.
    assert client.get(f"/jobs/{submitted[0]}/archive").status_code == 404
    output = client.get(f"/jobs/{submitted[1]}/archive")
    assert output.status_code == 200
    assert output.headers["content-disposition"] == 'filename="archive.zip"'
    assert jobs[1]["Content"]["ArchiveSize"] == str(len(output.content))
    files = _zip(output.content)
    assert list(files) == ["IMAGES/IM0", "IMAGES/IM1", "DICOMDIR"]
    assert any("SeriesDescription" in record for record in _records(files)) is False  # CT has none
    assert list(_zip(client.get(f"/jobs/{submitted[2]}/archive").content)) == ["IMAGES/IM0", "DICOMDIR"]
    assert client.post(f"/jobs/{submitted[2]}/resubmit").status_code == 400


def test_synchronous_media_is_a_media_job(client: httpx.Client, stored: dict) -> None:
    before = set(client.get("/jobs").json())
    assert client.get(f"/series/{stored['test-SR.dcm']['ParentSeries']}/media").status_code == 200
    deadline = time.monotonic() + TIMEOUT
    while not (fresh := set(client.get("/jobs").json()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    job = _wait_job(client, fresh.pop())
    assert (job["Type"], job["State"], job["Content"]["InstancesCount"]) == ("Media", "Success", 1)
    assert client.get(f"/jobs/{job['ID']}/archive").status_code == 404  # a synchronous job keeps no output


@pytest.mark.slow
def test_pending_media_jobs_resume_after_a_crash(
    server: ServerProcess, client: httpx.Client, stored: dict
) -> None:
    """A Media job saved as pending is planned again after a restart, and makes the same media."""
    big = [client.post("/instances", content=data).json() for data in _big_series()]
    # A synchronous media of large files whose client stops reading holds the only runner once
    # resumed from a pause (a resumed job goes through the queue), so that the next jobs wait.
    download = SlowDownload(client, f"/series/{big[0]['ParentSeries']}/media")
    _accepted(_action(client, download.job_id, "pause"))
    download.read_until("Paused")
    _accepted(_action(client, download.job_id, "resume"))
    _wait_state(client, download.job_id, "Running")
    series = stored["test-SR.dcm"]["ParentSeries"]
    answer = client.post("/tools/create-media-extended", json={"Resources": [series], "Asynchronous": True})
    job_id = answer.json()["ID"]
    assert client.get(f"/jobs/{job_id}").json()["State"] == "Pending"
    server.kill()
    download.close()
    server.start()
    with httpx.Client(base_url=server.base_url, timeout=60) as fresh:
        job = _wait_job(fresh, job_id)
        assert (job["Type"], job["State"], job["Content"]["InstancesCount"]) == ("Media", "Success", 1)
        files = _zip(fresh.get(f"/jobs/{job_id}/archive").content)
    assert list(files) == ["IMAGES/IM0", "DICOMDIR"]
    assert any("SeriesDescription" in record for record in _records(files))  # still extended
