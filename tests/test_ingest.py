"""POST /instances on fastpacs alone: single files, ZIP archives, multipart forms, duplicates, concurrency."""

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pydicom
from pydicom.uid import generate_uid

from fastpacs.testing import ServerProcess
from tests.conftest import dicom_variant, orthanc_id, pydicom_file, stored_blobs
from tests.differential.data import zip_of

MR_INSTANCE = "2f859814-2cf8fe4f-c7963e7d-d32c018d-66fc8cfa"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def identifiers_of(data: bytes) -> tuple[str, str, str, str]:
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True)
    return (dataset.PatientID, dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID)


def test_single_upload_is_answered_and_stored_durably(
    shared_server: ServerProcess, shared_client: httpx.Client
) -> None:
    data = dicom_variant(patient_id="INGEST SINGLE", instance="1")
    answer = shared_client.post("/instances", content=data)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    ids = [orthanc_id(*identifiers_of(data)[:n]) for n in range(1, 5)]
    assert answer.json() == {
        "ID": ids[3],
        "ParentPatient": ids[0],
        "ParentSeries": ids[2],
        "ParentStudy": ids[1],
        "Path": f"/instances/{ids[3]}",
        "Status": "Success",
    }
    assert stored_blobs(shared_server.directory / "storage")[sha256(data)].read_bytes() == data
    file = shared_client.get(f"/instances/{ids[3]}/file")
    assert (file.content, file.headers["content-type"]) == (data, "application/dicom")
    assert shared_client.get(f"/instances/{ids[3]}").json()["FileSize"] == len(data)


def test_already_stored_keeps_the_first_file(
    shared_server: ServerProcess, shared_client: httpx.Client
) -> None:
    explicit = pydicom_file("MR_small.dcm").read_bytes()
    implicit = pydicom_file("MR_small_implicit.dcm").read_bytes()
    assert shared_client.post("/instances", content=explicit).json()["Status"] in ("Success", "AlreadyStored")
    last_change = shared_client.get("/changes", params={"last": ""}).json()["Last"]
    statistics = shared_client.get("/statistics").json()

    answer = shared_client.post("/instances", content=implicit).json()

    assert (answer["ID"], answer["Status"]) == (MR_INSTANCE, "AlreadyStored")
    assert shared_client.get(f"/instances/{MR_INSTANCE}/file").content == explicit
    assert (
        shared_client.get(f"/instances/{MR_INSTANCE}/metadata/TransferSyntax").text == "1.2.840.10008.1.2.1"
    )
    assert shared_client.get("/changes", params={"last": ""}).json()["Last"] == last_change
    assert shared_client.get("/statistics").json() == statistics
    assert sha256(implicit) not in stored_blobs(shared_server.directory / "storage")


def test_a_refused_file_leaves_no_blob(shared_server: ServerProcess, shared_client: httpx.Client) -> None:
    """The server writes a file before the workers check it: a file refused is removed again."""
    refused = b"not DICOM at all, " * 1000
    answer = shared_client.post("/instances", content=refused)
    assert answer.status_code == 400
    assert sha256(refused) not in stored_blobs(shared_server.directory / "storage")


def test_zip_upload_stores_every_dicom_entry_and_skips_the_rest(shared_client: httpx.Client) -> None:
    files = {
        "a/rtplan.dcm": dicom_variant("rtplan.dcm", instance="71"),
        "b/c/rtstruct.dcm": dicom_variant("rtstruct.dcm", instance="72"),
        "readme.txt": b"not DICOM",
        "broken.dcm": pydicom_file("MR_truncated.dcm").read_bytes(),
        "empty/": b"",
    }
    answer = shared_client.post("/instances", content=zip_of(files))
    assert answer.status_code == 200
    stored = answer.json()
    assert [item["Status"] for item in stored] == ["Success", "Success"]
    for name, item in zip(("a/rtplan.dcm", "b/c/rtstruct.dcm"), stored, strict=True):
        assert shared_client.get(f"{item['Path']}/file").content == files[name]


def test_multipart_form_upload_stores_every_part(shared_client: httpx.Client) -> None:
    parts = [
        ("files", ("sr.dcm", dicom_variant("test-SR.dcm", instance="81"), "application/dicom")),
        ("files", ("dose.dcm", dicom_variant("rtdose.dcm", instance="82"), "application/octet-stream")),
    ]
    answer = shared_client.post("/instances", files=parts)
    assert answer.status_code == 200
    stored = answer.json()
    assert [item["Status"] for item in stored] == ["Success", "Success"]
    for (_, (_, data, _)), item in zip(parts, stored, strict=True):
        assert shared_client.get(f"{item['Path']}/file").content == data


def test_identifiers_are_hashed_as_orthanc_does(shared_client: httpx.Client) -> None:
    """Trailing spaces of PatientID are dropped, leading ones kept; an empty PatientID is hashed as ''."""
    for patient_id, hashed in (("  SP ID ", "  SP ID"), ("", ""), ("Ünï", "Ünï")):
        data = dicom_variant(patient_id=patient_id, study=f"9{len(patient_id)}", series="1", instance="1")
        answer = shared_client.post("/instances", content=data).json()
        uids = identifiers_of(data)[1:]
        assert answer["ParentPatient"] == orthanc_id(hashed)
        assert answer["ID"] == orthanc_id(hashed, *uids)


def test_a_large_multiframe_file_is_stored_byte_for_byte(shared_client: httpx.Client) -> None:
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    frames = 200  # 128 × 128 × 2 bytes × 200 ≈ 6.5 MB
    dataset.NumberOfFrames = frames
    dataset.PixelData = dataset.PixelData * frames
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = pydicom.filebase.DicomBytesIO()
    dataset.save_as(buffer)
    data = buffer.getvalue()
    answer = shared_client.post("/instances", content=data).json()
    assert answer["Status"] == "Success"
    assert shared_client.get(f"/instances/{answer['ID']}").json()["FileSize"] == len(data)
    assert sha256(shared_client.get(f"/instances/{answer['ID']}/file").content) == sha256(data)


def test_concurrent_uploads_are_all_acknowledged_and_counted(shared_server: ServerProcess) -> None:
    files = [dicom_variant(patient_id="CONCURRENT", series="7", instance=str(i)) for i in range(50)]
    with httpx.Client(base_url=shared_server.base_url, timeout=60) as http:
        before = http.get("/statistics").json()["CountInstances"]

        def upload(data: bytes) -> dict:
            answer = http.post("/instances", content=data)
            assert answer.status_code == 200, answer.text
            return answer.json()

        with ThreadPoolExecutor(max_workers=8) as threads:
            answers = list(threads.map(upload, files))
        assert {answer["Status"] for answer in answers} == {"Success"}
        assert len({answer["ID"] for answer in answers}) == 50
        assert len({answer["ParentSeries"] for answer in answers}) == 1
        assert http.get("/statistics").json()["CountInstances"] == before + 50
        series = http.get(f"/series/{answers[0]['ParentSeries']}").json()
        assert sorted(series["Instances"]) == sorted(answer["ID"] for answer in answers)
        for answer, data in zip(answers[::10], files[::10], strict=True):
            assert http.get(f"/instances/{answer['ID']}/file").content == data


def test_a_series_is_logged_completed_once_its_expected_instances_are_all_there(
    shared_client: httpx.Client,
) -> None:
    def instance(number: int) -> bytes:
        dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"), force=True)
        dataset.PatientID = "INGEST COMPLETION"
        dataset.SeriesInstanceUID = f"{dataset.SeriesInstanceUID}.77"
        dataset.SOPInstanceUID = f"{dataset.SOPInstanceUID}.77.{number}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = str(number)
        dataset.CardiacNumberOfImages = "3"
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        return buffer.getvalue()

    def completions_since(last: int) -> list[str]:
        changes = shared_client.get("/changes", params={"since": last, "limit": 100}).json()["Changes"]
        return [change["ID"] for change in changes if change["ChangeType"] == "CompletedSeries"]

    start = shared_client.get("/changes", params={"last": ""}).json()["Last"]
    for number in (3, 1):
        assert shared_client.post("/instances", content=instance(number)).json()["Status"] == "Success"
    assert completions_since(start) == []

    answer = shared_client.post("/instances", content=instance(2)).json()
    assert completions_since(start) == [answer["ParentSeries"]]
    series = shared_client.get(f"/series/{answer['ParentSeries']}").json()
    assert (series["ExpectedNumberOfInstances"], series["Status"]) == (3, "Complete")

    # A fourth instance makes the series inconsistent, and is not logged as completing it again.
    assert shared_client.post("/instances", content=instance(4)).json()["Status"] == "Success"
    assert completions_since(start) == [answer["ParentSeries"]]
    assert shared_client.get(f"/series/{answer['ParentSeries']}").json()["Status"] == "Inconsistent"
