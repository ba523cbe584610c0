"""Archives and the /jobs REST API, on a real server.

The ZIP writer and the naming rules are tested directly; everything else
goes through HTTP. Expected folder names come from Orthanc 1.10.1 (the
capture and probes of the reference server, see ORTHANC-BEHAVIOUR.md §14).

To hold a job in a given state over HTTP without a test-only job type, the
tests use a synchronous archive of large instances whose client stops
reading: the job then waits, mid-step, for the client, and the test moves it
along by reading. Resumed after a pause, such a job goes through the queue
and keeps the only runner (``ConcurrentJobs`` 1) busy for as long as the
test wants, so that asynchronous jobs stay Pending.
"""

import copy
import io
import os
import signal
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from fastpacs.services.archive import (
    ZipWriter,
    instance_filename,
    path_component,
    patient_label,
    series_label,
    study_label,
)
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

TIMEOUT = 20.0
BIG_INSTANCES = 6
BIG_PIXELS = 1600  # 1600 x 1600 x 2 bytes: 5 MB per instance, more than one chunk


# ---------------------------------------------------------------------------- the ZIP writer


def _build_zip(entries: dict[str, bytes], force_zip64: bool = False) -> bytes:
    writer = ZipWriter(time.time(), force_zip64=force_zip64)
    parts = []
    for name, data in entries.items():
        parts += [writer.local_header(name, len(data), zlib.crc32(data)), data]
    parts.append(writer.end())
    archive = b"".join(parts)
    assert writer.offset == len(archive)
    return archive


def _local_headers_complete(archive: bytes) -> None:
    """Each local header has the CRC and sizes of the central directory, and no data descriptor."""
    with zipfile.ZipFile(io.BytesIO(archive)) as reader:
        for info in reader.infolist():
            fields = struct.unpack_from("<IHHHHHIII", archive, info.header_offset)
            signature, _, flags, method, _, _, crc, compressed, size = fields
            assert signature == 0x04034B50
            assert flags & 0x08 == 0
            assert method == zipfile.ZIP_STORED
            assert crc == info.CRC
            if size != 0xFFFFFFFF:
                assert (compressed, size) == (info.file_size, info.file_size)


@pytest.mark.parametrize("force_zip64", [False, True], ids=["zip32", "zip64"])
def test_zip_writer_output_reads_back(force_zip64: bool) -> None:
    entries = {"a/b/CT000000.dcm": os.urandom(1000), "empty.dcm": b"", "é/ü.dcm": b"x" * 70000}
    archive = _build_zip(entries, force_zip64)
    with zipfile.ZipFile(io.BytesIO(archive)) as reader:
        assert reader.testzip() is None
        assert [info.filename for info in reader.infolist()] == list(entries)
        assert {name: reader.read(name) for name in entries} == entries
        assert all(info.compress_type == zipfile.ZIP_STORED for info in reader.infolist())
    _local_headers_complete(archive)


def test_zip_writer_uses_zip64_end_records_beyond_65535_entries() -> None:
    count = 65536
    writer = ZipWriter(time.time())
    parts = []
    for index in range(count):
        parts += [writer.local_header(f"{index}", 1, zlib.crc32(b"x")), b"x"]
    parts.append(writer.end())
    with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as reader:
        names = reader.namelist()
        assert len(names) == count and names[-1] == str(count - 1)
        assert reader.read(names[-1]) == b"x"


def test_empty_archive() -> None:
    archive = _build_zip({})
    assert len(archive) == 22
    assert zipfile.ZipFile(io.BytesIO(archive)).namelist() == []


# ---------------------------------------------------------------------------- naming, as observed on Orthanc


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"PatientID": "1CT1", "PatientName": "CompressedSamples^CT1"}, "1CT1 CompressedSamples CT1"),
        ({"PatientID": "A/B\\C:*?", "PatientName": "Dö^Jöhn=ab"}, "ABC D Jhnab"),
        ({"PatientID": "", "PatientName": "Only^Name"}, "Only Name"),
        ({"PatientID": "P3", "PatientName": ""}, "P3"),
        ({"PatientID": "P5", "PatientName": " sp ^ ace"}, "P5 sp ace"),
        ({"PatientID": "Q1", "PatientName": "a  b^^c"}, "Q1 a b c"),
        ({"PatientID": "P6", "PatientName": "Tab\tName"}, "P6 TabName"),
        ({"PatientID": "R3-2", "PatientName": "a"}, "R32 a"),
        ({"PatientID": "+", "PatientName": "+"}, ""),
        ({"PatientID": "", "PatientName": ""}, "Unknown Patient"),
        ({"PatientID": "R2"}, "R2"),
    ],
)
def test_patient_folder(tags: dict[str, str], expected: str) -> None:
    assert path_component(patient_label(tags)) == expected


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("e+1", "e1"),
        ("x<y>|z\"' ~!@#$%&()_-+={}[];,.`", "xyz _."),
        ("", "Unknown Study"),
        (None, "Unknown Study"),
        ("日本語", "Unknown Study"),
        ("+++", ""),
        ("a\\b", "ab"),
        ("  lead trail", "lead trail"),
    ],
)
def test_study_folder(description: str | None, expected: str) -> None:
    tags = {} if description is None else {"StudyDescription": description}
    assert path_component(study_label(tags)) == expected


@pytest.mark.parametrize(
    ("modality", "description", "expected"),
    [
        ("CT", "Second series", "CT Second series"),
        ("CT", "", "CT"),
        ("OT", "é", "OT"),
        ("RTDOSE", "s/d\\e", "RTDOSE sde"),
        ("M", "", "M"),
        ("!!", "x", "x"),
        ("+", "", ""),
        (None, "x", "x"),
        (None, None, "Unknown Series"),
        ("mr", "S-1", "mr S1"),
        ("CT", "a..b", "CT a..b"),
    ],
)
def test_series_folder(modality: str | None, description: str | None, expected: str) -> None:
    tags = {
        key: value for key, value in (("Modality", modality), ("SeriesDescription", description)) if value
    }
    assert path_component(series_label(tags)) == expected


@pytest.mark.parametrize(
    ("modality", "index", "expected"),
    [
        ("CT", 0, "CT000000.dcm"),
        ("OT", 2, "OT000002.dcm"),
        ("RTDOSE", 0, "RT000000.dcm"),
        ("M", 0, "M0000000.dcm"),
        ("", 0, "00000000.dcm"),
        ("mr", 0, "MR000000.dcm"),
        ("!!", 0, "000000.dcm"),
        ("+", 0, "0000000.dcm"),
        ("CT", 1234567, "CT1234567.dcm"),
    ],
)
def test_instance_filename(modality: str, index: int, expected: str) -> None:
    assert instance_filename(modality, index) == expected


# ---------------------------------------------------------------------------- data


def _dataset_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _variant(**changes: Any) -> bytes:
    """CT_small with new UIDs (unless given) and some tags changed (``None`` removes a tag)."""
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.StudyInstanceUID = changes.pop("study", None) or generate_uid()
    dataset.SeriesInstanceUID = changes.pop("series", None) or generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    return _dataset_bytes(dataset)


def _big_series() -> list[bytes]:
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.PatientID, dataset.PatientName = "BIG", "Big^Images"
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.Rows = dataset.Columns = BIG_PIXELS
    files = []
    for number in range(BIG_INSTANCES):
        instance = copy.deepcopy(dataset)
        instance.SOPInstanceUID = generate_uid()
        instance.file_meta.MediaStorageSOPInstanceUID = instance.SOPInstanceUID
        instance.InstanceNumber = number + 1
        instance.PixelData = os.urandom(BIG_PIXELS * BIG_PIXELS * 2)
        files.append(_dataset_bytes(instance))
    return files


def _upload(client: httpx.Client, data: bytes) -> dict[str, str]:
    answer = client.post("/instances", content=data)
    assert answer.status_code == 200, answer.text
    return answer.json()


PYDICOM_FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "test-SR.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle_2frame.dcm",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(
        tmp_path_factory.mktemp("archives"), {"ConcurrentJobs": 1, "JobsHistorySize": 10}
    ).start()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def stored(server: ServerProcess) -> dict[str, dict[str, str]]:
    """pydicom files stored in this order (the RGB series gets its instances in upload order)."""
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        return {name: _upload(http, pydicom_file(name).read_bytes()) for name in PYDICOM_FILES}


@pytest.fixture(scope="module")
def big(server: ServerProcess) -> dict[str, Any]:
    """A series of large instances: its archive takes many chunks, each instance two."""
    files = _big_series()
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        answers = [_upload(http, data) for data in files]  # one by one: the archive keeps this order
    return {"series": answers[0]["ParentSeries"], "files": files, "size": sum(map(len, files))}


def _zip_listing(content: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(content)) as reader:
        assert reader.testzip() is None
        return reader.namelist()


def _zip_files(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as reader:
        return {name: reader.read(name) for name in reader.namelist()}


def _wait(condition, what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code == 200
    return answer.json()


def _wait_state(client: httpx.Client, job_id: str, *states: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def reached() -> dict[str, Any] | None:
        seen[:] = [_job(client, job_id)]
        return seen[0] if seen[0]["State"] in states else None

    try:
        return _wait(reached, f"{job_id} in {states}")
    except AssertionError as timeout:  # say where the job was instead
        raise AssertionError(f"{timeout}; last seen: {seen[0] if seen else None}") from None


def _action(client: httpx.Client, job_id: str, action: str) -> httpx.Response:
    return client.post(f"/jobs/{job_id}/{action}", content=b"")


def _accepted(answer: httpx.Response) -> None:
    assert (answer.status_code, answer.content) == (200, b"{}")
    assert answer.headers["content-type"] == "application/json"


def _refused(answer: httpx.Response, status: int = 400) -> None:
    assert (answer.status_code, answer.content) == (status, b"")


def _submit(client: httpx.Client, resources: list[str], **options: Any) -> str:
    answer = client.post(
        "/tools/create-archive", json={"Resources": resources, "Asynchronous": True, **options}
    )
    assert answer.status_code == 200
    job_id = answer.json()["ID"]
    assert answer.json() == {"ID": job_id, "Path": f"/jobs/{job_id}"}
    return job_id


class SlowDownload:
    """A synchronous archive whose client reads only when told to: its job waits for it."""

    def __init__(self, client: httpx.Client, path: str):
        known = set(client.get("/jobs").json())
        self.client = client
        self.context = client.stream("GET", path)
        self.response = self.context.__enter__()
        assert self.response.status_code == 200
        self.chunks = self.response.iter_raw(64 * 1024)
        self.received = bytearray(next(self.chunks))
        self.job_id = _wait(lambda: self._new_job(known), "the job of the synchronous archive")

    def _new_job(self, known: set[str]) -> str | None:
        fresh = [job_id for job_id in self.client.get("/jobs").json() if job_id not in known]
        return fresh[0] if len(fresh) == 1 else None

    def state(self) -> str:
        return _job(self.client, self.job_id)["State"]

    def wait_until_stalled(self) -> None:
        """Until the job waits for the client (the archive stops growing), in the middle of a step."""
        sizes: list[str] = []

        def stalled() -> bool:
            sizes.append(_job(self.client, self.job_id)["Content"]["ArchiveSize"])
            time.sleep(0.05)
            return len(sizes) >= 4 and len(set(sizes[-4:])) == 1

        _wait(stalled, "the synchronous archive to wait for its client")

    def read_until(self, state: str) -> None:
        """Read until the job reaches ``state`` (it can only move at the end of a step)."""
        while self.state() != state:
            self.received += next(self.chunks)

    def read_all(self) -> bytes:
        for chunk in self.chunks:
            self.received += chunk
        self.close()
        return bytes(self.received)

    def close(self) -> None:
        self.context.__exit__(None, None, None)


# ---------------------------------------------------------------------------- layout and content


def test_layout_and_bytes_of_a_study_and_a_patient(client: httpx.Client, stored: dict) -> None:
    ct = stored["CT_small.dcm"]
    answer = client.get(f"/studies/{ct['ParentStudy']}/archive")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == f'filename="{ct["ParentStudy"]}.zip"'
    assert _zip_files(answer.content) == {
        "1CT1 CompressedSamples CT1/e1/CT/CT000000.dcm": pydicom_file("CT_small.dcm").read_bytes()
    }
    rgb = stored["SC_rgb_small_odd.dcm"]
    files = _zip_files(client.get(f"/patients/{rgb['ParentPatient']}/archive").content)
    assert files == {
        "ID1 Lestrade G/Unknown Study/OT/OT000000.dcm": pydicom_file("SC_rgb_small_odd.dcm").read_bytes(),
        "ID1 Lestrade G/Unknown Study/OT/OT000001.dcm": pydicom_file("SC_rgb_jpeg_dcmtk.dcm").read_bytes(),
        "ID1 Lestrade G/Unknown Study/OT/OT000002.dcm": pydicom_file("SC_rgb_rle_2frame.dcm").read_bytes(),
    }
    sr = stored["test-SR.dcm"]
    assert _zip_listing(client.get(f"/studies/{sr['ParentStudy']}/archive").content) == [
        "Test S R/OFFIS Structured Reporting Test Document/SR Demonstration of SR Features/SR000000.dcm"
    ]


def test_create_archive_orders_patients_by_id_and_merges_overlaps(client: httpx.Client, stored: dict) -> None:
    ct, mr, rgb = stored["CT_small.dcm"], stored["MR_small.dcm"], stored["SC_rgb_small_odd.dcm"]
    resources = [ct["ParentStudy"], mr["ID"], rgb["ParentSeries"], rgb["ID"], rgb["ParentPatient"]]
    answer = client.post("/tools/create-archive", json={"Resources": resources})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'filename="Archive.zip"'
    assert _zip_listing(answer.content) == [  # the order of Orthanc's capture (create-archive-sync)
        "4MR1 CompressedSamples MR1/Unknown Study/MR/MR000000.dcm",
        "ID1 Lestrade G/Unknown Study/OT/OT000000.dcm",
        "ID1 Lestrade G/Unknown Study/OT/OT000001.dcm",
        "ID1 Lestrade G/Unknown Study/OT/OT000002.dcm",
        "1CT1 CompressedSamples CT1/e1/CT/CT000000.dcm",
    ]
    _local_headers_complete(answer.content)
    assert client.post("/tools/create-archive", json=[mr["ID"]]).status_code == 200  # a bare list works too


def test_names_are_filtered_and_same_names_numbered(client: httpx.Client) -> None:
    study = generate_uid()
    same = {"PatientID": "DUP", "PatientName": "X", "StudyDescription": "S", "Modality": "CT"}
    series_a = _upload(client, _variant(study=study, SeriesDescription="", **same))
    series_b = _upload(client, _variant(study=study, SeriesDescription="", **same))
    single = _upload(client, _variant(SeriesDescription="", **same))
    other = _upload(client, _variant(SeriesDescription="", **{**same, "PatientID": "D/UP"}))
    odd = _upload(
        client,
        _variant(
            PatientID="A/B\\C:*?",
            PatientName="Dö^Jöhn=ab",
            SpecificCharacterSet="ISO_IR 100",
            StudyDescription="x<y>|z\"' ~!@#$%&()_-+={}[];,.`",
            SeriesDescription="s/d\\e",
            Modality="RTDOSE",
        ),
    )
    # Siblings with the same name are numbered in the order of their IDs (probe of the reference server).
    two_series, one_series = series_a["ParentStudy"], single["ParentStudy"]
    study_names = dict(zip(sorted([two_series, one_series]), ["S", "S-2"], strict=True))
    series_names = dict(
        zip(sorted([series_a["ParentSeries"], series_b["ParentSeries"]]), ["CT", "CT-2"], strict=True)
    )
    patients = sorted([series_a["ParentPatient"], other["ParentPatient"]])
    patient_names = dict(zip(patients, ["DUP X", "DUP X-2"], strict=True))
    dup = patient_names[series_a["ParentPatient"]]
    expected = [
        f"{dup}/{study_names[two_series]}/{series_names[series_a['ParentSeries']]}/CT000000.dcm",
        f"{dup}/{study_names[two_series]}/{series_names[series_b['ParentSeries']]}/CT000000.dcm",
        f"{dup}/{study_names[one_series]}/CT/CT000000.dcm",
        f"{patient_names[other['ParentPatient']]}/S/CT/CT000000.dcm",
        "ABC D Jhnab/xyz _./RTDOSE sde/RT000000.dcm",
    ]
    resources = [series_a["ParentPatient"], other["ParentPatient"], odd["ParentPatient"]]
    listing = _zip_listing(client.post("/tools/create-archive", json={"Resources": resources}).content)
    assert sorted(listing) == sorted(expected)


def test_large_instances_are_archived_intact(client: httpx.Client, big: dict) -> None:
    answer = client.get(f"/series/{big['series']}/archive")
    files = _zip_files(answer.content)
    assert list(files.values()) == big["files"]
    assert list(files) == [f"BIG Big Images/e1/CT/CT{index:06d}.dcm" for index in range(BIG_INSTANCES)]
    _local_headers_complete(answer.content)


# ---------------------------------------------------------------------------- requests and errors


def test_empty_and_unknown(client: httpx.Client, stored: dict) -> None:
    empty = client.post("/tools/create-archive", json={"Resources": []})
    assert empty.status_code == 200 and _zip_listing(empty.content) == []
    for resources in (["00000000-00000000-00000000-00000000-00000000"], ["nonsense"]):
        answer = client.post("/tools/create-archive", json={"Resources": resources})
        assert answer.status_code == 404
        assert answer.json()["OrthancStatus"] == 17
        assert answer.json()["Uri"] == "/tools/create-archive"
        assert "Details" not in answer.json()
    for path in ("/studies/00000000-00000000-00000000-00000000-00000000/archive", "/series/nonsense/archive"):
        assert client.get(path).status_code == 404
        assert client.get(path).json()["OrthancStatus"] == 17
    instance = stored["CT_small.dcm"]["ID"]
    assert client.get(f"/instances/{instance}/archive").status_code == 404
    # As Orthanc, the archive routes take a resource of any level.
    assert _zip_listing(client.get(f"/studies/{instance}/archive").content) == [
        "1CT1 CompressedSamples CT1/e1/CT/CT000000.dcm"
    ]


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (b"", "Expected a list of resources to archive in the body"),
        (b"nope", "Expected a list of resources to archive in the body"),
        (b"{}", "Missing field Resources in the JSON body"),
        (b'{"Resources": "x"}', "Expected a list of strings (Orthanc identifiers)"),
        (b'{"Resources": [1]}', "Expected a list of strings (Orthanc identifiers)"),
        (b"[1]", "Expected a list of strings (Orthanc identifiers)"),
        (b'"x"', None),
        (b'{"Resources": [], "Synchronous": "yes"}', "Boolean value expected in field: Synchronous"),
        (b'{"Resources": [], "Asynchronous": 1}', "Boolean value expected in field: Asynchronous"),
        (b'{"Resources": [], "Priority": "high"}', "Integer value expected in field: Priority"),
    ],
)
def test_create_archive_bad_bodies(client: httpx.Client, body: bytes, details: str | None) -> None:
    answer = client.post("/tools/create-archive", content=body)
    assert answer.status_code == 400
    error = answer.json()
    assert (error["OrthancStatus"], error["Message"]) == (15, "Bad file format")
    assert error.get("Details") == details


def test_synchronous_flags(client: httpx.Client, stored: dict) -> None:
    series = stored["SC_rgb_small_odd.dcm"]["ParentSeries"]
    cases = [
        ({"Synchronous": False}, "job"),
        ({"Asynchronous": True, "Synchronous": True}, "zip"),
        ({"Asynchronous": False, "Synchronous": False}, "job"),
        ({"Asynchronous": False}, "zip"),
        ({}, "zip"),
    ]
    for options, expected in cases:
        answer = client.post("/tools/create-archive", json={"Resources": [series], **options})
        kind = "zip" if answer.headers["content-type"] == "application/zip" else "job"
        assert (options, kind) == (options, expected)
        if kind == "job":
            _wait_state(client, answer.json()["ID"], "Success")


def test_post_resource_archive(client: httpx.Client, stored: dict) -> None:
    series = stored["SC_rgb_small_odd.dcm"]["ParentSeries"]
    for body in (b"{}", b"[]", b'"x"', b"null"):  # as Orthanc, JSON that is not an object is ignored
        answer = client.post(f"/series/{series}/archive", content=body)
        assert answer.headers["content-disposition"] == f'filename="{series}.zip"'
        assert len(_zip_listing(answer.content)) == 3
    for body in (b"", b"garbage"):
        answer = client.post(f"/series/{series}/archive", content=body)
        assert (answer.status_code, answer.json()["OrthancStatus"]) == (400, 15)
    job_id = client.post(f"/series/{series}/archive", json={"Asynchronous": True, "Priority": 3}).json()["ID"]
    job = _wait_state(client, job_id, "Success")
    assert job["Priority"] == 3
    assert len(_zip_listing(client.get(f"/jobs/{job_id}/archive").content)) == 3
    transcode = client.post(f"/series/{series}/archive", json={"Transcode": "1.2.840.10008.1.2.1"})
    assert transcode.status_code == 500 and transcode.json()["OrthancStatus"] == 2


# ---------------------------------------------------------------------------- jobs


def test_asynchronous_archive_job(client: httpx.Client, stored: dict) -> None:
    rgb = stored["SC_rgb_small_odd.dcm"]
    job_id = _submit(client, [rgb["ParentSeries"]])
    job = _wait_state(client, job_id, "Success")
    output = client.get(f"/jobs/{job_id}/archive")
    assert output.status_code == 200
    assert output.headers["content-type"] == "application/zip"
    assert output.headers["content-disposition"] == 'filename="archive.zip"'
    assert len(_zip_listing(output.content)) == 3
    assert job["Content"] == {
        "ArchiveSize": str(len(output.content)),
        "ArchiveSizeMB": 0,
        "Description": "REST API",
        "InstancesCount": 3,
        "UncompressedSize": "7564",
        "UncompressedSizeMB": 0,
    }
    assert (job["Type"], job["Progress"], job["ErrorCode"], job["ErrorDescription"]) == (
        "Archive",
        100,
        0,
        "Success",
    )
    assert job["ErrorDetails"] == "" and job["Priority"] == 0
    assert job["CreationTime"] <= job["CompletionTime"] <= job["Timestamp"]
    assert isinstance(job["EffectiveRuntime"], float)
    missing = client.get(f"/jobs/{job_id}/nosuch")
    assert missing.status_code == 404
    assert missing.json()["Details"] == "Job has no such output: nosuch"
    assert missing.json()["OrthancStatus"] == 7

    # Actions on a finished job (capture: job-finished-*).
    _accepted(_action(client, job_id, "cancel"))
    _accepted(_action(client, job_id, "pause"))
    _refused(_action(client, job_id, "resume"))
    _refused(_action(client, job_id, "resubmit"))
    after = _job(client, job_id)
    assert {key: value for key, value in after.items() if key != "Timestamp"} == {
        key: value for key, value in job.items() if key != "Timestamp"
    }


def test_jobs_listing_and_unknown_job(client: httpx.Client, stored: dict) -> None:
    client.get(f"/series/{stored['SC_rgb_small_odd.dcm']['ParentSeries']}/archive")
    _wait(  # the job of that synchronous archive ends just after its last byte
        lambda: all(job["State"] != "Running" for job in client.get("/jobs", params={"expand": ""}).json()),
        "the end of the synchronous archive's job",
    )
    listing = client.get("/jobs").json()
    assert listing == sorted(listing) and listing
    expanded = [job["ID"] for job in client.get("/jobs", params={"expand": ""}).json()]
    assert expanded == sorted(expanded) and expanded
    # A job may leave the bounded history meanwhile (other tests' jobs finishing), even between the
    # listing and the look at it: a job not found must no longer be listed; every other is an archive.
    answers = {job_id: client.get(f"/jobs/{job_id}") for job_id in set(expanded) & set(listing)}
    still_listed = set(client.get("/jobs").json())
    found = {job_id: answer for job_id, answer in answers.items() if answer.status_code != 404}
    assert found and not (set(answers) - set(found)) & still_listed
    assert all(answer.status_code == 200 and answer.json()["Type"] == "Archive" for answer in found.values())
    _refused(client.get("/jobs/nosuchjob"), 404)
    for action in ("pause", "resume", "cancel", "resubmit"):
        _refused(_action(client, "nosuchjob", action))
    unknown_output = client.get("/jobs/nosuchjob/archive")
    assert (unknown_output.status_code, unknown_output.json()["Details"]) == (
        404,
        "Job has no such output: archive",
    )
    assert client.post("/jobs/nosuchjob/nosuch").status_code == 405


def test_only_the_latest_archive_file_is_kept(client: httpx.Client, stored: dict) -> None:
    series = stored["SC_rgb_small_odd.dcm"]["ParentSeries"]
    first = _submit(client, [series])
    _wait_state(client, first, "Success")
    assert client.get(f"/jobs/{first}/archive").status_code == 200
    second = _submit(client, [series])
    _wait_state(client, second, "Success")
    assert client.get(f"/jobs/{first}/archive").status_code == 404  # as Orthanc's MediaArchiveSize 1
    assert client.get(f"/jobs/{second}/archive").status_code == 200
    assert _job(client, first)["State"] == "Success"


def test_job_states_and_actions_over_http(client: httpx.Client, stored: dict, big: dict) -> None:
    rgb_series = stored["SC_rgb_small_odd.dcm"]["ParentSeries"]
    download = SlowDownload(client, f"/series/{big['series']}/archive")
    try:
        # Running (a synchronous archive waiting for its client).
        download.wait_until_stalled()
        running = _job(client, download.job_id)
        assert running["State"] == "Running" and "CompletionTime" not in running
        assert running["Content"]["InstancesCount"] == BIG_INSTANCES
        _refused(_action(client, download.job_id, "resume"))
        _refused(_action(client, download.job_id, "resubmit"))
        _accepted(_action(client, download.job_id, "pause"))
        download.read_until("Paused")  # the pause takes effect at the end of the current step
        paused = _job(client, download.job_id)
        assert 0 < paused["Progress"] < 100 and "CompletionTime" not in paused
        _accepted(_action(client, download.job_id, "pause"))
        _refused(_action(client, download.job_id, "resubmit"))
        _accepted(_action(client, download.job_id, "resume"))
        _wait_state(client, download.job_id, "Running")  # back through the queue: it holds the only runner

        # Pending, behind it.
        queued = _submit(client, [rgb_series])
        pending = _job(client, queued)
        assert (pending["State"], pending["Progress"]) == ("Pending", 0)
        assert pending["Content"]["ArchiveSize"] == "0" and pending["Content"]["InstancesCount"] == 3
        _refused(_action(client, queued, "resume"))
        _refused(_action(client, queued, "resubmit"))
        _accepted(_action(client, queued, "pause"))
        assert _job(client, queued)["State"] == "Paused"
        _accepted(_action(client, queued, "resume"))
        assert _job(client, queued)["State"] == "Pending"
        _accepted(_action(client, queued, "pause"))
        _accepted(_action(client, queued, "cancel"))
        canceled = _job(client, queued)
        assert (canceled["State"], canceled["ErrorCode"], canceled["ErrorDescription"]) == (
            "Failure",
            37,
            "This job was canceled",
        )
        assert "CompletionTime" in canceled
        _accepted(_action(client, queued, "cancel"))
        _accepted(_action(client, queued, "pause"))
        _refused(_action(client, queued, "resume"))
        resubmit = _action(client, queued, "resubmit")  # Orthanc cannot resubmit an archive either
        assert resubmit.status_code == 500
        assert resubmit.json()["Details"] == "Cannot resubmit the creation of an archive"
        assert resubmit.json()["OrthancStatus"] == 6
        assert client.get(f"/jobs/{queued}/archive").status_code == 404

        # Priorities, and an instance deleted while its archive waits.
        victim = _upload(client, _variant(PatientID="VICTIM"))
        kept = _upload(client, _variant(PatientID="VICTIM", study=None))
        low = _submit(client, [victim["ParentPatient"]])
        high = _submit(client, [rgb_series], Priority=5)
        assert client.delete(f"/instances/{victim['ID']}").status_code == 200
        assert _job(client, low)["Content"]["InstancesCount"] == 2

        received = download.read_all()
    finally:
        download.close()
    finished = _wait_state(client, download.job_id, "Success")
    assert finished["Progress"] == 100 and finished["Content"]["ArchiveSize"] == str(len(received))
    assert list(_zip_files(received).values()) == big["files"]
    low_job, high_job = _wait_state(client, low, "Success"), _wait_state(client, high, "Success")
    assert high_job["CompletionTime"] < low_job["CompletionTime"]
    names = _zip_listing(client.get(f"/jobs/{low}/archive").content)
    assert len(names) == 1 and kept["ID"]  # the deleted instance is skipped, as Orthanc does


def test_cancel_of_a_running_synchronous_archive(client: httpx.Client, big: dict) -> None:
    download = SlowDownload(client, f"/series/{big['series']}/archive")
    try:
        download.wait_until_stalled()
        _accepted(_action(client, download.job_id, "cancel"))
        assert download.state() == "Running"  # until the current step ends
        with pytest.raises(httpx.HTTPError):
            download.read_all()  # the client gets a broken transfer, never a truncated ZIP that looks whole
    finally:
        download.close()
    job = _wait_state(client, download.job_id, "Failure")
    assert job["ErrorCode"] == 37


def test_a_client_that_goes_away_cancels_its_archive(client: httpx.Client, big: dict) -> None:
    download = SlowDownload(client, f"/series/{big['series']}/archive")
    download.close()
    job = _wait_state(client, download.job_id, "Failure")
    assert job["ErrorCode"] == 37
    assert job["Progress"] < 100


# ------------------------------------------------------------------------ restarts (last: they restart it)


def _hold_the_runner(client: httpx.Client, series: str) -> SlowDownload:
    download = SlowDownload(client, f"/series/{series}/archive")
    _accepted(_action(client, download.job_id, "pause"))
    download.read_until("Paused")
    _accepted(_action(client, download.job_id, "resume"))
    _wait_state(client, download.job_id, "Running")
    return download


def _check_resumed(
    server: ServerProcess, jobs: list[str], before: dict[str, dict], paused: str, stopped: str
) -> None:
    """After a restart: every job finishes, keeps its identity, and the paused one waits for resume."""
    with httpx.Client(base_url=server.base_url, timeout=60) as fresh:
        finished = {job_id: _wait_state(fresh, job_id, "Success") for job_id in jobs}
        for job_id, job in finished.items():
            assert job["CreationTime"] == before[job_id]["CreationTime"]
            assert job["Priority"] == before[job_id]["Priority"]
            assert job["Content"]["InstancesCount"] == before[job_id]["Content"]["InstancesCount"]
        assert any(job["CompletionTime"] > stopped for job in finished.values())  # done after the restart
        last = max(jobs, key=lambda job_id: finished[job_id]["CompletionTime"])
        assert (
            len(_zip_listing(fresh.get(f"/jobs/{last}/archive").content))
            == (finished[last]["Content"]["InstancesCount"])
        )
        assert _job(fresh, paused)["State"] == "Paused"
        _accepted(_action(fresh, paused, "resume"))
        _wait_state(fresh, paused, "Success")


def _job_timestamp_now() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())


@pytest.mark.slow
def test_archive_jobs_resume_after_a_graceful_restart(
    server: ServerProcess, client: httpx.Client, stored: dict, big: dict
) -> None:
    rgb_series = stored["SC_rgb_small_odd.dcm"]["ParentSeries"]
    download = _hold_the_runner(client, big["series"])
    jobs = [_submit(client, [big["series"]]), _submit(client, [rgb_series]), _submit(client, [rgb_series])]
    paused = _submit(client, [rgb_series])
    _accepted(_action(client, paused, "pause"))
    before = {job_id: _job(client, job_id) for job_id in jobs}
    client.close()
    # The server stops once its requests have ended: the download is ended after the signal, and
    # the jobs still queued (or running) when the job engine stops are saved as pending.
    os.killpg(server.process.pid, signal.SIGTERM)
    download.close()
    server.process.wait(60)
    stopped = _job_timestamp_now()
    server.start()
    _check_resumed(server, jobs, before, paused, stopped)


@pytest.mark.slow
def test_pending_archive_jobs_resume_after_a_crash(
    server: ServerProcess, client: httpx.Client, stored: dict, big: dict
) -> None:
    rgb_series = stored["SC_rgb_small_odd.dcm"]["ParentSeries"]
    download = _hold_the_runner(client, big["series"])
    jobs = [_submit(client, [rgb_series]), _submit(client, [big["series"]], Priority=1)]
    paused = _submit(client, [rgb_series])
    _accepted(_action(client, paused, "pause"))
    before = {job_id: _job(client, job_id) for job_id in jobs}
    assert [before[job_id]["State"] for job_id in jobs] == ["Pending", "Pending"]
    server.kill()
    stopped = _job_timestamp_now()
    download.close()
    server.start()
    with httpx.Client(base_url=server.base_url, timeout=60) as fresh:
        assert download.job_id not in fresh.get("/jobs").json()  # its client is gone with the old process
    _check_resumed(server, jobs, before, paused, stopped)
    with httpx.Client(base_url=server.base_url, timeout=60) as fresh:
        low, high = (_job(fresh, job_id) for job_id in jobs)
        assert high["CompletionTime"] < low["CompletionTime"]  # the priority was kept
