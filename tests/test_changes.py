"""The change log on fastpacs alone: paging through it, Stable* changes after StableAge, clearing it."""

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from fastpacs.testing import ServerProcess
from tests.conftest import dicom_variant

TIMESTAMP = re.compile(r"^\d{8}T\d{6}$")
PLURALS = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}


@pytest.fixture(scope="module")
def uploaded(server: ServerProcess) -> Iterator[list[dict]]:
    """Ten instances in two series of one study, then stability (the server's StableAge is 1)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        answers = [
            http.post(
                "/instances", content=dicom_variant(patient_id="CHANGES", series=str(i % 2), instance=str(i))
            ).json()
            for i in range(10)
        ]
        yield answers


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def all_changes(client: httpx.Client) -> list[dict]:
    return client.get("/changes", params={"limit": "100000"}).json()["Changes"]


def test_new_changes_are_logged_bottom_up_once_per_created_resource(client: httpx.Client, uploaded) -> None:
    new = [(c["ChangeType"], c["ID"]) for c in all_changes(client) if c["ChangeType"].startswith("New")]
    first, second = uploaded[0], uploaded[1]
    assert new[:4] == [
        ("NewInstance", first["ID"]),
        ("NewSeries", first["ParentSeries"]),
        ("NewStudy", first["ParentStudy"]),
        ("NewPatient", first["ParentPatient"]),
    ]
    assert new[4:6] == [("NewInstance", second["ID"]), ("NewSeries", second["ParentSeries"])]
    assert [change for change in new[6:] if change[0] != "NewInstance"] == []
    assert len(new) == 10 + 2 + 1 + 1


def test_resources_become_stable_after_stable_age(client: httpx.Client, uploaded) -> None:
    first = uploaded[0]
    wait_until(lambda: client.get(f"/patients/{first['ParentPatient']}").json()["IsStable"])
    for level, key in (("studies", "ParentStudy"), ("series", "ParentSeries")):
        assert client.get(f"/{level}/{first[key]}").json()["IsStable"]
    stable = [(c["ChangeType"], c["ID"]) for c in all_changes(client) if c["ChangeType"].startswith("Stable")]
    series = sorted({answer["ParentSeries"] for answer in uploaded})
    assert sorted(stable) == sorted(
        [("StableSeries", s) for s in series]
        + [("StableStudy", first["ParentStudy"]), ("StablePatient", first["ParentPatient"])]
    )
    assert stable[-1] == ("StablePatient", first["ParentPatient"])


def test_a_new_instance_makes_its_ancestors_unstable_again(client: httpx.Client, uploaded) -> None:
    first = uploaded[0]
    wait_until(lambda: client.get(f"/patients/{first['ParentPatient']}").json()["IsStable"])
    before = client.get("/changes", params={"last": ""}).json()["Last"]
    added = client.post(
        "/instances", content=dicom_variant(patient_id="CHANGES", series="0", instance="99")
    ).json()
    for level, key in (("patients", "ParentPatient"), ("studies", "ParentStudy"), ("series", "ParentSeries")):
        assert not client.get(f"/{level}/{added[key]}").json()["IsStable"]
    other_series = uploaded[1]["ParentSeries"]
    assert client.get(f"/series/{other_series}").json()["IsStable"]
    wait_until(lambda: client.get(f"/patients/{added['ParentPatient']}").json()["IsStable"])
    later = client.get("/changes", params={"since": str(before), "limit": "100"}).json()["Changes"]
    assert [(c["ChangeType"], c["ID"]) for c in later] == [
        ("NewInstance", added["ID"]),
        ("StableSeries", added["ParentSeries"]),
        ("StableStudy", added["ParentStudy"]),
        ("StablePatient", added["ParentPatient"]),
    ]


def test_paging_walks_the_whole_log(client: httpx.Client, uploaded) -> None:
    everything = client.get("/changes", params={"limit": "100000"}).json()
    assert everything["Done"] and everything["Last"] == everything["Changes"][-1]["Seq"]
    walked, since = [], 0
    while True:
        page = client.get("/changes", params={"since": str(since), "limit": "3"}).json()
        walked += page["Changes"]
        assert len(page["Changes"]) <= 3
        if page["Done"]:
            break
        assert page["Last"] == page["Changes"][-1]["Seq"]
        since = page["Last"]
    assert walked == everything["Changes"]
    sequence = [change["Seq"] for change in walked]
    assert sequence == sorted(set(sequence)) and sequence[0] == 1
    for change in walked:
        assert TIMESTAMP.match(change["Date"])
        assert change["Path"] == f"/{PLURALS[change['ResourceType']]}/{change['ID']}"
    assert client.get("/changes", params={"last": ""}).json()["Changes"] == walked[-1:]


def test_default_limit_is_100(client: httpx.Client, uploaded) -> None:
    for i in range(100, 190):
        client.post("/instances", content=dicom_variant(patient_id="CHANGES", series="0", instance=str(i)))
    page = client.get("/changes").json()
    assert len(page["Changes"]) == 100 and not page["Done"]


def test_clearing_the_log_keeps_the_numbering(client: httpx.Client, uploaded) -> None:
    last = client.get("/changes", params={"last": ""}).json()["Last"]
    answer = client.delete("/changes")
    assert (answer.status_code, answer.content) == (200, b"")
    assert client.get("/changes").json() == {"Changes": [], "Done": True, "Last": last}
    added = client.post("/instances", content=dicom_variant(patient_id="AFTER CLEAR", instance="1")).json()
    changes = client.get("/changes").json()["Changes"]
    assert [(c["Seq"], c["ChangeType"], c["ID"]) for c in changes[:2]] == [
        (last + 1, "NewInstance", added["ID"]),
        (last + 2, "NewSeries", added["ParentSeries"]),
    ]
