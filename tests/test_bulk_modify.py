"""POST /tools/bulk-modify and /tools/bulk-anonymize on a running server.

Orthanc 1.10.1's semantics, observed on the reference server: ``Resources``
of any level, every instance below them modified once by one
ResourceModification job; ``Level`` (any case, singular or plural) sets the
modification's level, and when absent it is deduced from the identifiers
replaced, as for an instance (so a plain bulk modify keeps the parents and
adds new instances to them). The answer (and the job's ``Content``) lists
every resource the new instances belong to, instances first, by ID in each
level. The comparison with the reference Orthanc is in
tests/differential/test_bulk_modify_vs_orthanc.py.
"""

import time
from typing import Any

import httpx
import pytest

from tests.conftest import dicom_variant, orthanc_id

TIMEOUT = 20.0
LEVEL_ORDER = {"Instance": 0, "Series": 1, "Study": 2, "Patient": 3}


def _upload(client: httpx.Client, data: bytes) -> dict[str, str]:
    answer = client.post("/instances", content=data)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _patients(client: httpx.Client, tag: str) -> dict[str, list[dict[str, str]]]:
    """Two new patients: A with a study of two series (three instances), B with one MR instance.

    ``tag`` makes their identifiers unique to the test.
    """
    number = sum(map(ord, tag))
    return {
        "A": [
            _upload(
                client,
                dicom_variant(
                    patient_id=f"BULK-{tag}-A", study=f"7{number}", series=f"{series}", instance=f"{instance}"
                ),
            )
            for series, instance in ((1, 1), (1, 2), (2, 3))
        ],
        "B": [
            _upload(
                client,
                dicom_variant("MR_small.dcm", patient_id=f"BULK-{tag}-B", study=f"8{number}", instance="1"),
            )
        ],
    }


def _resources(answer: dict[str, Any]) -> dict[str, list[str]]:
    """The IDs the answer lists, by type, checked to be in Orthanc's order with their paths."""
    listed = answer["Resources"]
    keys = [(LEVEL_ORDER[item["Type"]], item["ID"]) for item in listed]
    assert keys == sorted(keys)
    by_type: dict[str, list[str]] = {}
    for item in listed:
        plural = {"Instance": "instances", "Series": "series", "Study": "studies", "Patient": "patients"}
        assert item["Path"] == f"/{plural[item['Type']]}/{item['ID']}"
        assert set(item) == {"ID", "Path", "Type"}
        by_type.setdefault(item["Type"], []).append(item["ID"])
    return by_type


def _tags(client: httpx.Client, instance: str) -> dict[str, Any]:
    return client.get(f"/instances/{instance}/simplified-tags").json()


def test_without_level_new_instances_join_their_parents(shared_client: httpx.Client) -> None:
    a, b = _patients(shared_client, "join").values()
    body = {
        "Resources": [a[0]["ParentStudy"], a[0]["ID"], b[0]["ParentPatient"]],  # a[0] twice: modified once
        "Replace": {"StudyDescription": "BULK"},
    }
    answer = shared_client.post("/tools/bulk-modify", json=body)
    assert answer.status_code == 200, answer.text
    content = answer.json()
    assert {key: value for key, value in content.items() if key != "Resources"} == {
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": 4,
        "IsAnonymization": False,
    }
    made = _resources(content)
    assert len(made["Instance"]) == 4
    # Instance level: only the SOPInstanceUID is new, the parents are the sources'.
    assert sorted(made["Series"]) == sorted({answer["ParentSeries"] for answer in a + b})
    assert sorted(made["Study"]) == sorted({a[0]["ParentStudy"], b[0]["ParentStudy"]})
    assert sorted(made["Patient"]) == sorted({a[0]["ParentPatient"], b[0]["ParentPatient"]})
    for instance in made["Instance"]:
        assert _tags(shared_client, instance)["StudyDescription"] == "BULK"
        metadata = shared_client.get(f"/instances/{instance}/metadata/ModifiedFrom")
        assert metadata.status_code == 200
    assert shared_client.get(f"/instances/{a[0]['ID']}").status_code == 200  # KeepSource by default


def test_level_regenerates_the_identifiers_of_that_level(shared_client: httpx.Client) -> None:
    a = _patients(shared_client, "level")["A"]
    answer = shared_client.post(
        "/tools/bulk-modify",
        json={
            "Resources": [a[0]["ParentSeries"], a[2]["ID"]],
            "Level": "series",
            "Replace": {"Manufacturer": "X"},
        },
    )
    assert answer.status_code == 200, answer.text
    made = _resources(answer.json())
    assert len(made["Instance"]) == 3 and len(made["Series"]) == 2
    assert made["Study"] == [a[0]["ParentStudy"]]  # a series-level modification keeps the study
    assert not set(made["Series"]) & {item["ParentSeries"] for item in a}

    answer = shared_client.post(
        "/tools/bulk-modify",
        json={
            "Resources": [a[0]["ParentPatient"]],
            "Level": "Patient",
            "Replace": {"PatientID": "BULK-level-A2"},
            "Force": True,
        },
    )
    assert answer.status_code == 200, answer.text
    made = _resources(answer.json())
    assert made["Patient"] == [orthanc_id("BULK-level-A2")]
    assert len(made["Study"]) == 1 and made["Study"][0] != a[0]["ParentStudy"]


def test_bulk_anonymize_maps_each_patient(shared_client: httpx.Client) -> None:
    a, b = _patients(shared_client, "anonymize").values()
    answer = shared_client.post(
        "/tools/bulk-anonymize", json={"Resources": [a[0]["ParentStudy"], b[0]["ID"]], "KeepSource": True}
    )
    assert answer.status_code == 200, answer.text
    content = answer.json()
    assert content["IsAnonymization"] is True
    assert content["InstancesCount"] == 4
    made = _resources(content)
    assert len(made["Patient"]) == 2  # one new PatientID per original patient
    names = {_tags(shared_client, instance)["PatientName"] for instance in made["Instance"]}
    assert len(names) == 1 and names.pop().startswith("Anonymized")  # one generated name per request
    for instance in made["Instance"]:
        assert shared_client.get(f"/instances/{instance}/metadata/AnonymizedFrom").status_code == 200


def test_keep_source_false_deletes_the_sources(shared_client: httpx.Client) -> None:
    source = _patients(shared_client, "move")["A"][2]
    answer = shared_client.post(
        "/tools/bulk-modify",
        json={"Resources": [source["ParentSeries"]], "Level": "Study", "KeepSource": False, "Replace": {}},
    )
    assert answer.status_code == 200, answer.text
    assert shared_client.get(f"/instances/{source['ID']}").status_code == 404
    made = _resources(answer.json())
    assert shared_client.get(f"/instances/{made['Instance'][0]}").status_code == 200


def _job_when_done(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_asynchronous_bulk_requests_answer_a_job(shared_client: httpx.Client) -> None:
    b = _patients(shared_client, "async")["B"]
    answer = shared_client.post(
        "/tools/bulk-anonymize",
        json={"Resources": [b[0]["ParentSeries"]], "Asynchronous": True, "Priority": 2},
    )
    assert answer.status_code == 200
    job_id = answer.json()["ID"]
    assert answer.json() == {"ID": job_id, "Path": f"/jobs/{job_id}"}
    job = _job_when_done(shared_client, job_id)
    assert (job["Type"], job["State"], job["Priority"]) == ("ResourceModification", "Success", 2)
    assert job["Content"]["IsAnonymization"] is True
    assert len(_resources(job["Content"])["Instance"]) == 1


@pytest.mark.parametrize(
    ("route", "body", "status", "details"),
    [
        (
            "bulk-modify",
            {"Replace": {"StudyDescription": "x"}},
            400,
            "List of strings expected in field: Resources",
        ),
        ("bulk-modify", {"Resources": "x"}, 400, "List of strings expected in field: Resources"),
        ("bulk-modify", {"Resources": ["nonsense"]}, 404, None),
        ("bulk-modify", {"Resources": [], "Level": "nonsense"}, 400, None),
        ("bulk-modify", {"Resources": [], "Level": 3}, 400, "String value expected in field: Level"),
        (
            "bulk-modify",
            {"Resources": [], "Replace": {"StudyInstanceUID": "1.2"}},
            400,
            'Marking tag "StudyInstanceUID" as to be replaced requires the "Force" option to be set to true',
        ),
        ("bulk-anonymize", [], 400, None),
        ("bulk-anonymize", {"Resources": [], "DicomVersion": "1999"}, 400, None),
    ],
)
def test_bad_requests(
    shared_client: httpx.Client, route: str, body: Any, status: int, details: str | None
) -> None:
    answer = shared_client.post(f"/tools/{route}", json=body)
    assert answer.status_code == status, answer.text
    if details is not None:
        assert answer.json()["Details"] == details


LEVEL_RULES = [
    (
        {"Level": "Patient", "Replace": {"StudyDescription": "x"}},
        "When modifying a patient, her PatientID is required to be modified",
    ),
    (
        {"Level": "Study", "Replace": {"PatientID": "x"}, "Force": True},
        "When modifying a study, the parent PatientID cannot be manually modified",
    ),
    (
        {"Level": "Instance", "Replace": {"SeriesInstanceUID": "1.2"}, "Force": True},
        "When modifying an instance, the parent SeriesInstanceUID cannot be manually modified",
    ),
]


def test_the_rules_of_a_level_refuse_instances(shared_client: httpx.Client) -> None:
    """As Orthanc, whose job applies them to each instance: with nothing to modify, nothing is refused."""
    instance = _patients(shared_client, "rules")["B"][0]["ID"]
    for body, details in LEVEL_RULES:
        answer = shared_client.post("/tools/bulk-modify", json={"Resources": [instance], **body})
        assert answer.status_code == 400, answer.text
        assert answer.json()["Details"] == details
        answer = shared_client.post("/tools/bulk-modify", json={"Resources": [], **body})
        assert answer.status_code == 200, answer.text


def test_nothing_to_modify(shared_client: httpx.Client) -> None:
    for route in ("bulk-modify", "bulk-anonymize"):
        answer = shared_client.post(f"/tools/{route}", json={"Resources": []})
        assert answer.status_code == 200
        assert answer.json()["Resources"] == [] and answer.json()["InstancesCount"] == 0
