"""Resources on fastpacs alone: JSON shapes and links, DELETE cascade and the removal of stored files."""

import hashlib

import httpx

from fastpacs.testing import ServerProcess
from tests.conftest import dicom_variant, stored_blobs

LEVELS = ("patients", "studies", "series", "instances")


def upload(client: httpx.Client, data: bytes) -> dict[str, str]:
    answer = client.post("/instances", content=data)
    assert answer.status_code == 200, answer.text
    return answer.json()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_parents_and_children_link_up(shared_client: httpx.Client) -> None:
    answers = [
        upload(shared_client, dicom_variant(patient_id="LINKS", series=str(s), instance=f"{s + 1}{i}"))
        for s in range(2)
        for i in range(3)
    ]
    patient = shared_client.get(f"/patients/{answers[0]['ParentPatient']}").json()
    (study_id,) = patient["Studies"]
    study = shared_client.get(f"/studies/{study_id}").json()
    assert study["ParentPatient"] == patient["ID"]
    assert study["PatientMainDicomTags"] == patient["MainDicomTags"]
    assert study["Series"] == [answers[0]["ParentSeries"], answers[3]["ParentSeries"]]
    for series_id, instances in zip(study["Series"], (answers[:3], answers[3:]), strict=True):
        series = shared_client.get(f"/series/{series_id}").json()
        assert series["ParentStudy"] == study_id
        assert series["Instances"] == [answer["ID"] for answer in instances]
        for answer in instances:
            instance = shared_client.get(f"/instances/{answer['ID']}").json()
            assert instance["ParentSeries"] == series_id
            assert shared_client.get(f"/instances/{answer['ID']}/patient").json()["ID"] == patient["ID"]


def test_deleting_a_patient_removes_everything_below_and_its_files(
    shared_server: ServerProcess, shared_client: httpx.Client
) -> None:
    files = [dicom_variant(patient_id="CASCADE", series=str(i % 2), instance=str(i)) for i in range(4)]
    answers = [upload(shared_client, data) for data in files]
    storage = shared_server.directory / "storage"
    assert {sha256(data) for data in files} <= stored_blobs(storage).keys()
    before = shared_client.get("/statistics").json()

    answer = shared_client.delete(f"/patients/{answers[0]['ParentPatient']}")

    assert (answer.status_code, answer.json()) == (200, {"RemainingAncestor": None})
    gone = (
        {answers[0]["ParentPatient"], answers[0]["ParentStudy"]}
        | {a["ParentSeries"] for a in answers}
        | {a["ID"] for a in answers}
    )
    for level in LEVELS:
        assert gone.isdisjoint(shared_client.get(f"/{level}").json())
    for resource_id in gone:
        for level in LEVELS:
            assert shared_client.get(f"/{level}/{resource_id}").status_code == 404
    assert {sha256(data) for data in files}.isdisjoint(stored_blobs(storage))
    after = shared_client.get("/statistics").json()
    assert after["CountInstances"] == before["CountInstances"] - 4
    assert int(after["TotalDiskSize"]) == int(before["TotalDiskSize"]) - sum(map(len, files))


def test_deleting_the_last_instance_removes_empty_ancestors(
    shared_server: ServerProcess, shared_client: httpx.Client
) -> None:
    keep = upload(shared_client, dicom_variant(patient_id="LAST", series="1", instance="1"))
    data = dicom_variant(patient_id="LAST", study="2", series="2", instance="2")
    lone = upload(shared_client, data)
    answer = shared_client.delete(f"/instances/{lone['ID']}").json()
    assert answer == {
        "RemainingAncestor": {
            "ID": keep["ParentPatient"],
            "Path": f"/patients/{keep['ParentPatient']}",
            "Type": "Patient",
        }
    }
    for level, key in (("series", "ParentSeries"), ("studies", "ParentStudy")):
        assert shared_client.get(f"/{level}/{lone[key]}").status_code == 404
    assert shared_client.get(f"/patients/{keep['ParentPatient']}").json()["Studies"] == [keep["ParentStudy"]]
    assert sha256(data) not in stored_blobs(shared_server.directory / "storage")


def test_a_deleted_instance_can_be_stored_again(
    shared_server: ServerProcess, shared_client: httpx.Client
) -> None:
    data = dicom_variant(patient_id="AGAIN", instance="1")
    first = upload(shared_client, data)
    assert shared_client.delete(f"/instances/{first['ID']}").status_code == 200
    assert shared_client.delete(f"/instances/{first['ID']}").status_code == 404
    second = upload(shared_client, data)
    assert (second["ID"], second["Status"]) == (first["ID"], "Success")
    assert shared_client.get(f"/instances/{second['ID']}/file").content == data
    assert sha256(data) in stored_blobs(shared_server.directory / "storage")


def test_statistics_count_every_level(shared_client: httpx.Client) -> None:
    statistics = shared_client.get("/statistics").json()
    for level, key in zip(
        LEVELS, ("CountPatients", "CountStudies", "CountSeries", "CountInstances"), strict=True
    ):
        assert statistics[key] == len(shared_client.get(f"/{level}").json())
    sizes = [
        shared_client.get(f"/instances/{i}").json()["FileSize"]
        for i in shared_client.get("/instances").json()
    ]
    assert int(statistics["TotalDiskSize"]) == int(statistics["TotalUncompressedSize"]) == sum(sizes)
    assert statistics["TotalDiskSizeMB"] == sum(sizes) // (1024 * 1024)


def test_modified_and_anonymized_resources_show_their_origin(shared_client: httpx.Client) -> None:
    """ModifiedFrom and AnonymizedFrom (metadata) are keys of the resource's JSON at every level, as in
    Orthanc; a resource stored as received has neither."""
    source = upload(shared_client, dicom_variant(patient_id="ORIGIN", series="1", instance="1"))
    modified = shared_client.post(
        f"/studies/{source['ParentStudy']}/modify", json={"Replace": {"StudyDescription": "Modified"}}
    ).json()
    anonymized = shared_client.post(f"/studies/{source['ParentStudy']}/anonymize", json={}).json()

    plain = shared_client.get(f"/instances/{source['ID']}").json()
    assert "ModifiedFrom" not in plain and "AnonymizedFrom" not in plain
    for made, key in ((modified, "ModifiedFrom"), (anonymized, "AnonymizedFrom")):
        study = shared_client.get(made["Path"]).json()
        series = shared_client.get(f"/series/{study['Series'][0]}").json()
        instance = shared_client.get(f"/instances/{series['Instances'][0]}").json()
        assert (study[key], series[key], instance[key]) == (
            source["ParentStudy"], source["ParentSeries"], source["ID"]
        )  # fmt: skip
        other = "AnonymizedFrom" if key == "ModifiedFrom" else "ModifiedFrom"
        assert other not in study and other not in series and other not in instance
