"""POST /instances on fastpacs alone: single files, ZIP archives, multipart forms, duplicates, concurrency."""

import hashlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pydicom
from pydicom.uid import generate_uid

from fastpacs.testing import ServerProcess
from tests.conftest import dicom_variant, orthanc_id, pydicom_file, stored_blobs
from tests.differential.data import zip_of

CT_IDENTIFIERS = (
    "1CT1",
    "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
    "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322",
    "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
)
MR_INSTANCE = "2f859814-2cf8fe4f-c7963e7d-d32c018d-66fc8cfa"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_single_upload_is_answered_and_stored_durably(server: ServerProcess, client: httpx.Client) -> None:
    data = pydicom_file("CT_small.dcm").read_bytes()
    answer = client.post("/instances", content=data)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    ids = [orthanc_id(*CT_IDENTIFIERS[:n]) for n in range(1, 5)]
    assert answer.json() == {
        "ID": ids[3],
        "ParentPatient": ids[0],
        "ParentSeries": ids[2],
        "ParentStudy": ids[1],
        "Path": f"/instances/{ids[3]}",
        "Status": "Success",
    }
    assert stored_blobs(server.directory / "storage")[sha256(data)].read_bytes() == data
    file = client.get(f"/instances/{ids[3]}/file")
    assert (file.content, file.headers["content-type"]) == (data, "application/dicom")
    assert client.get(f"/instances/{ids[3]}").json()["FileSize"] == len(data)


def test_already_stored_keeps_the_first_file(server: ServerProcess, client: httpx.Client) -> None:
    explicit = pydicom_file("MR_small.dcm").read_bytes()
    implicit = pydicom_file("MR_small_implicit.dcm").read_bytes()
    assert client.post("/instances", content=explicit).json()["Status"] in ("Success", "AlreadyStored")
    last_change = client.get("/changes", params={"last": ""}).json()["Last"]
    statistics = client.get("/statistics").json()

    answer = client.post("/instances", content=implicit).json()

    assert (answer["ID"], answer["Status"]) == (MR_INSTANCE, "AlreadyStored")
    assert client.get(f"/instances/{MR_INSTANCE}/file").content == explicit
    assert client.get(f"/instances/{MR_INSTANCE}/metadata/TransferSyntax").text == "1.2.840.10008.1.2.1"
    assert client.get("/changes", params={"last": ""}).json()["Last"] == last_change
    assert client.get("/statistics").json() == statistics
    assert sha256(implicit) not in stored_blobs(server.directory / "storage")


def test_zip_upload_stores_every_dicom_entry_and_skips_the_rest(client: httpx.Client) -> None:
    files = {
        "a/rtplan.dcm": pydicom_file("rtplan.dcm").read_bytes(),
        "b/c/rtstruct.dcm": pydicom_file("rtstruct.dcm").read_bytes(),
        "readme.txt": b"not DICOM",
        "broken.dcm": pydicom_file("MR_truncated.dcm").read_bytes(),
        "empty/": b"",
    }
    answer = client.post("/instances", content=zip_of(files))
    assert answer.status_code == 200
    stored = answer.json()
    assert [item["Status"] for item in stored] == ["Success", "Success"]
    for name, item in zip(("a/rtplan.dcm", "b/c/rtstruct.dcm"), stored, strict=True):
        assert client.get(f"{item['Path']}/file").content == files[name]


def test_multipart_form_upload_stores_every_part(client: httpx.Client) -> None:
    parts = [
        ("files", ("sr.dcm", pydicom_file("test-SR.dcm").read_bytes(), "application/dicom")),
        ("files", ("dose.dcm", pydicom_file("rtdose.dcm").read_bytes(), "application/octet-stream")),
    ]
    answer = client.post("/instances", files=parts)
    assert answer.status_code == 200
    stored = answer.json()
    assert [item["Status"] for item in stored] == ["Success", "Success"]
    for (_, (_, data, _)), item in zip(parts, stored, strict=True):
        assert client.get(f"{item['Path']}/file").content == data


def test_identifiers_are_hashed_as_orthanc_does(client: httpx.Client) -> None:
    """Trailing spaces of PatientID are dropped, leading ones kept; an empty PatientID is hashed as ''."""
    for patient_id, hashed in (("  SP ID ", "  SP ID"), ("", ""), ("Ünï", "Ünï")):
        data = dicom_variant(patient_id=patient_id, study=f"9{len(patient_id)}", series="1", instance="1")
        dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        answer = client.post("/instances", content=data).json()
        uids = (dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID)
        assert answer["ParentPatient"] == orthanc_id(hashed)
        assert answer["ID"] == orthanc_id(hashed, *uids)


def test_a_large_multiframe_file_is_stored_byte_for_byte(client: httpx.Client) -> None:
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    frames = 200  # 128 × 128 × 2 bytes × 200 ≈ 6.5 MB
    dataset.NumberOfFrames = frames
    dataset.PixelData = dataset.PixelData * frames
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = pydicom.filebase.DicomBytesIO()
    dataset.save_as(buffer)
    data = buffer.getvalue()
    answer = client.post("/instances", content=data).json()
    assert answer["Status"] == "Success"
    assert client.get(f"/instances/{answer['ID']}").json()["FileSize"] == len(data)
    assert sha256(client.get(f"/instances/{answer['ID']}/file").content) == sha256(data)


def test_concurrent_uploads_are_all_acknowledged_and_counted(server: ServerProcess) -> None:
    files = [dicom_variant(patient_id="CONCURRENT", series="7", instance=str(i)) for i in range(50)]
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
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
