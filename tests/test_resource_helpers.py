"""Resource helpers of a running fastpacs: protection across restarts, statistics, slices, tags, reconstruct.

Their answers are compared with Orthanc's in
tests/differential/test_api_rest_vs_orthanc.py; these tests check what the
comparison cannot: persistence, clean-up on deletion, larger series.
"""

import copy
import io
from collections.abc import Iterator

import httpx
import msgspec
import pydicom
import pytest

from fastpacs.index.database import Database
from fastpacs.index.schema import encode
from fastpacs.index.updates import IndexUpdate
from fastpacs.index.view import IndexView
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

CT_PATIENT = "fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(tmp_path_factory.mktemp("helpers"), {"StableAge": 1}).start()
    yield process
    process.stop()


def _slices(count: int) -> list[bytes]:
    """A series of ``count`` CT slices uploaded in shuffled order of position."""
    base = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    files = []
    for index in range(count):
        dataset = copy.deepcopy(base)
        dataset.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.99"
        dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.99.{index}"
        dataset.InstanceNumber = index + 1
        dataset.ImagePositionPatient = [0, 0, (index * 7) % count]
        dataset.ImageComments = f"slice {index}"
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append(buffer.getvalue())
    return files


def test_protection_survives_a_restart_and_goes_with_the_patient(server: ServerProcess) -> None:
    data = pydicom_file("CT_small.dcm").read_bytes()
    with httpx.Client(base_url=server.base_url) as http:
        http.post("/instances", content=data)
        assert http.put(f"/patients/{CT_PATIENT}/protected", content=b"1").status_code == 200
    server.stop()
    server.start()
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get(f"/patients/{CT_PATIENT}/protected").text == "1"
        assert http.delete(f"/patients/{CT_PATIENT}").status_code == 200
        http.post("/instances", content=data)
        assert http.get(f"/patients/{CT_PATIENT}/protected").text == "0"


def test_statistics_count_descendants_and_attachments(client: httpx.Client) -> None:
    files = _slices(5)
    answers = [client.post("/instances", content=data).json() for data in files]
    series, study = answers[0]["ParentSeries"], answers[0]["ParentStudy"]
    assert client.put(f"/studies/{study}/attachments/1025", content=b"12345").status_code == 200
    statistics = client.get(f"/studies/{study}/statistics").json()
    dicom = sum(len(data) for data in files) + len(pydicom_file("CT_small.dcm").read_bytes())
    assert statistics["CountSeries"] == 2
    assert statistics["CountInstances"] == 6
    assert statistics["DicomDiskSize"] == str(dicom)
    assert statistics["DiskSize"] == str(dicom + 5)
    assert client.get(f"/series/{series}/statistics").json()["CountInstances"] == 5


def test_ordered_slices_and_shared_tags_of_a_series(client: httpx.Client) -> None:
    answers = [client.post("/instances", content=data).json() for data in _slices(5)]
    series = answers[0]["ParentSeries"]
    slices = client.get(f"/series/{series}/ordered-slices").json()
    assert slices["Type"] == "Volume"
    positions = [
        float(
            client.get(f"/instances/{instance}")
            .json()["MainDicomTags"]["ImagePositionPatient"]
            .split("\\")[2]
        )
        for instance, _, _ in slices["SlicesShort"]
    ]
    assert positions == sorted(positions) == [0.0, 1.0, 2.0, 3.0, 4.0]
    shared = client.get(f"/series/{series}/shared-tags", params={"simplify": ""}).json()
    assert shared["SeriesInstanceUID"] == "1.2.826.0.1.3680043.8.498.99"
    assert "ImageComments" not in shared and "InstanceNumber" not in shared
    every = client.get(f"/series/{series}/instances-tags", params={"short": ""}).json()
    assert sorted(every) == sorted(answer["ID"] for answer in answers)
    assert {tags["0020,4000"] for tags in every.values()} == {f"slice {index}" for index in range(5)}


def test_reconstruct_repairs_what_the_index_derives_from_files(server: ServerProcess) -> None:
    """An index entry damaged while the server is stopped is rewritten from the stored file."""
    data = pydicom_file("MR_small.dcm").read_bytes()
    with httpx.Client(base_url=server.base_url) as http:
        mr = http.post("/instances", content=data).json()
        expected = http.get(f"/instances/{mr['ID']}").json()
        expected_study = http.get(f"/studies/{mr['ParentStudy']}").json()["MainDicomTags"]
        expected_tags = http.get(f"/instances/{mr['ID']}/tags").json()
    server.stop()
    database = Database(server.directory / "storage", 1)
    rid, study = bytes.fromhex(mr["ID"].replace("-", "")), bytes.fromhex(mr["ParentStudy"].replace("-", ""))
    with database.env.begin(write=True) as txn:
        view = IndexView(txn, database.dbs)
        for resource in (rid, study):
            record = view.resource(resource)
            assert record is not None
            damaged = msgspec.structs.replace(record, main_tags={"Damaged": "yes"})
            txn.put(resource, encode(damaged), db=database.dbs["resources"])
        txn.delete(rid, db=database.dbs["tags"])
    database.close()
    server.start()
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get(f"/instances/{mr['ID']}").json()["MainDicomTags"] == {"Damaged": "yes"}
        answer = http.post(f"/series/{mr['ParentSeries']}/reconstruct")
        assert (answer.status_code, answer.content) == (200, b"")
        assert http.get(f"/instances/{mr['ID']}").json() == expected
        assert http.get(f"/studies/{mr['ParentStudy']}").json()["MainDicomTags"] == expected_study
        assert http.get(f"/instances/{mr['ID']}/tags").json() == expected_tags
        tag, value = next((tag, value) for tag, value in expected_study.items() if value and "UID" not in tag)
        found = http.post("/tools/find", json={"Level": "Study", "Query": {tag: value}}).json()
        assert mr["ParentStudy"] in found, "the find indexes follow the reconstructed tags"
        assert (
            http.post("/instances/00000000-00000000-00000000-00000000-00000000/reconstruct").status_code
            == 404
        )
        assert http.post("/tools/invalidate-tags").status_code == 200


def test_an_instance_without_sop_class_has_no_sop_class_uid_metadata(server: ServerProcess) -> None:
    """As Orthanc: SopClassUid comes from the dataset's SOPClassUID alone, never from the file meta's
    MediaStorageSOPClassUID; and /reconstruct drops one recorded otherwise (by an older fastpacs)."""
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    del dataset.SOPClassUID
    assert dataset.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=False)
    with httpx.Client(base_url=server.base_url) as http:
        stored = http.post("/instances", content=buffer.getvalue()).json()
        metadata = f"/instances/{stored['ID']}/metadata"
        assert "SopClassUid" not in http.get(metadata).json()
        assert "TransferSyntax" in http.get(metadata).json()
    server.stop()
    database = Database(server.directory / "storage", 1)
    with database.env.begin(write=True) as txn:
        rid = bytes.fromhex(stored["ID"].replace("-", ""))
        IndexUpdate(txn, database.dbs, lambda digest: True).set_metadata(rid, {"SopClassUid": "1.2.3"})
    database.close()
    server.start()
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get(f"{metadata}/SopClassUid").text == "1.2.3"
        assert http.post(f"/instances/{stored['ID']}/reconstruct").status_code == 200
        assert "SopClassUid" not in http.get(metadata).json()
        assert http.get(f"{metadata}/TransferSyntax").text == "1.2.840.10008.1.2.1"
