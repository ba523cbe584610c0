"""The change log on fastpacs alone: paging through it, Stable* changes after StableAge, clearing it.

The shared server has StableAge 1; the tests look at the changes logged since
their own uploads started.
"""

import re
import time

import httpx
import pytest

from fastpacs.index.updates import orthanc_timestamp
from fastpacs.testing import ServerProcess
from tests.conftest import STABLE_WAIT, dicom_variant

TIMESTAMP = re.compile(r"^\d{8}T\d{6}$")
PLURALS = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}


class Uploaded:
    """Ten instances in two series of one study, and where the change log stood before them."""

    def __init__(self, client: httpx.Client):
        self.start = client.get("/changes", params={"last": ""}).json()["Last"]
        self.answers = [
            client.post(
                "/instances", content=dicom_variant(patient_id="CHANGES", series=str(i % 2), instance=str(i))
            )
            .raise_for_status()
            .json()
            for i in range(10)
        ]
        self.first = self.answers[0]


@pytest.fixture(scope="module")
def uploaded(shared_server: ServerProcess) -> Uploaded:
    with httpx.Client(base_url=shared_server.base_url, timeout=60) as http:
        return Uploaded(http)


def wait_until(condition, timeout: float = STABLE_WAIT, explain=lambda: "") -> None:
    """Wait for ``condition``; ``explain`` says what is wrong when it never comes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out\n{explain()}"
        time.sleep(0.1)


def stability_report(server: ServerProcess, client: httpx.Client, patient: str) -> str:
    """What to look at when a resource never becomes stable: the patient (its LastUpdate), the
    server's clock, the newest changes and the server's log (a slow or failed stability check)."""
    last = client.get("/changes", params={"last": ""}).json()["Last"]
    newest = changes_since(client, max(0, last - 5))
    record = client.get(f"/patients/{patient}").json()
    now = client.get("/tools/now").text
    return f"patient: {record}\nserver now: {now}\nnewest changes: {newest}\n{server.log_tail()}"


def changes_since(client: httpx.Client, since: int) -> list[dict]:
    return client.get("/changes", params={"since": str(since), "limit": "100000"}).json()["Changes"]


def test_new_changes_are_logged_bottom_up_once_per_created_resource(
    shared_client: httpx.Client, uploaded: Uploaded
) -> None:
    logged = changes_since(shared_client, uploaded.start)
    new = [(c["ChangeType"], c["ID"]) for c in logged if c["ChangeType"].startswith("New")]
    # nothing else uploads meanwhile: the tests of a session run one after the other
    first, second = uploaded.answers[0], uploaded.answers[1]
    assert new[:6] == [
        ("NewInstance", first["ID"]),
        ("NewSeries", first["ParentSeries"]),
        ("NewStudy", first["ParentStudy"]),
        ("NewPatient", first["ParentPatient"]),
        ("NewInstance", second["ID"]),
        ("NewSeries", second["ParentSeries"]),
    ]
    assert new[6:] == [("NewInstance", answer["ID"]) for answer in uploaded.answers[2:]]


def test_resources_become_stable_after_stable_age(
    shared_server: ServerProcess, shared_client: httpx.Client, uploaded: Uploaded
) -> None:
    first = uploaded.first
    wait_until(
        lambda: shared_client.get(f"/patients/{first['ParentPatient']}").json()["IsStable"],
        explain=lambda: stability_report(shared_server, shared_client, first["ParentPatient"]),
    )
    for level, key in (("studies", "ParentStudy"), ("series", "ParentSeries")):
        assert shared_client.get(f"/{level}/{first[key]}").json()["IsStable"]
    series = sorted({answer["ParentSeries"] for answer in uploaded.answers})
    ours = {*series, first["ParentStudy"], first["ParentPatient"]}
    stable = [
        (c["ChangeType"], c["ID"])
        for c in changes_since(shared_client, uploaded.start)
        if c["ChangeType"].startswith("Stable") and c["ID"] in ours
    ]
    assert sorted(stable) == sorted(
        [("StableSeries", s) for s in series]
        + [("StableStudy", first["ParentStudy"]), ("StablePatient", first["ParentPatient"])]
    )
    assert stable[-1] == ("StablePatient", first["ParentPatient"])


def test_a_new_instance_makes_its_ancestors_unstable_again(
    shared_server: ServerProcess, shared_client: httpx.Client, uploaded: Uploaded
) -> None:
    first = uploaded.first
    wait_until(
        lambda: shared_client.get(f"/patients/{first['ParentPatient']}").json()["IsStable"],
        explain=lambda: stability_report(shared_server, shared_client, first["ParentPatient"]),
    )
    before = shared_client.get("/changes", params={"last": ""}).json()["Last"]
    data = dicom_variant(patient_id="CHANGES", series="0", instance="99")
    added = shared_client.post("/instances", content=data).json()
    for level, key in (("patients", "ParentPatient"), ("studies", "ParentStudy"), ("series", "ParentSeries")):
        assert not shared_client.get(f"/{level}/{added[key]}").json()["IsStable"]
    assert shared_client.get(f"/series/{uploaded.answers[1]['ParentSeries']}").json()["IsStable"]
    wait_until(
        lambda: shared_client.get(f"/patients/{added['ParentPatient']}").json()["IsStable"],
        explain=lambda: stability_report(shared_server, shared_client, added["ParentPatient"]),
    )
    ours = {added["ID"], added["ParentSeries"], added["ParentStudy"], added["ParentPatient"]}
    later = [(c["ChangeType"], c["ID"]) for c in changes_since(shared_client, before) if c["ID"] in ours]
    assert later == [
        ("NewInstance", added["ID"]),
        ("StableSeries", added["ParentSeries"]),
        ("StableStudy", added["ParentStudy"]),
        ("StablePatient", added["ParentPatient"]),
    ]


def test_paging_walks_the_whole_log(shared_client: httpx.Client, uploaded: Uploaded) -> None:
    everything = shared_client.get("/changes", params={"limit": "100000"}).json()
    assert everything["Done"] and everything["Last"] == everything["Changes"][-1]["Seq"]
    walked, since = [], 0
    while True:
        page = shared_client.get("/changes", params={"since": str(since), "limit": "3"}).json()
        walked += page["Changes"]
        assert len(page["Changes"]) <= 3
        if page["Done"]:
            break
        assert page["Last"] == page["Changes"][-1]["Seq"]
        since = page["Last"]
    assert walked == everything["Changes"]
    sequence = [change["Seq"] for change in walked]
    assert sequence == sorted(set(sequence))
    for change in walked:
        assert TIMESTAMP.match(change["Date"])
        assert change["Path"] == f"/{PLURALS[change['ResourceType']]}/{change['ID']}"
    assert shared_client.get("/changes", params={"last": ""}).json()["Changes"] == walked[-1:]


def test_default_limit_is_100(shared_client: httpx.Client, uploaded: Uploaded) -> None:
    start = shared_client.get("/changes", params={"last": ""}).json()["Last"]
    for i in range(100, 160):
        shared_client.post(
            "/instances", content=dicom_variant(patient_id="CHANGES", series=str(i), instance=str(i))
        )
    page = shared_client.get("/changes", params={"since": str(start)}).json()
    assert len(page["Changes"]) == 100 and not page["Done"]


def test_clearing_the_log_keeps_the_numbering(
    shared_server: ServerProcess, shared_client: httpx.Client, uploaded: Uploaded
) -> None:
    def unstable() -> list[dict]:
        patients = shared_client.get("/patients", params={"expand": ""}).json()
        return [patient for patient in patients if not patient["IsStable"]]

    def explain() -> str:
        last = shared_client.get("/changes", params={"last": ""}).json()
        return f"unstable: {unstable()}\nlast change: {last}\n{shared_server.log_tail()}"

    wait_until(lambda: not unstable(), explain=explain)  # no Stable* change may slip in after ours
    last = shared_client.get("/changes", params={"last": ""}).json()["Last"]
    answer = shared_client.delete("/changes")
    assert (answer.status_code, answer.content) == (200, b"")
    assert shared_client.get("/changes").json() == {"Changes": [], "Done": True, "Last": last}
    added = shared_client.post(
        "/instances", content=dicom_variant(patient_id="AFTER CLEAR", instance="1")
    ).json()
    changes = shared_client.get("/changes").json()["Changes"]
    assert [(c["Seq"], c["ChangeType"], c["ID"]) for c in changes[:2]] == [
        (last + 1, "NewInstance", added["ID"]),
        (last + 2, "NewSeries", added["ParentSeries"]),
    ]


def test_change_dates_are_local_seconds_formatted_once_per_second() -> None:
    """orthanc_timestamp keeps a few formatted seconds: the same text as formatting each moment."""
    now = time.time()
    for moment in (0.0, 1.999, -0.5, now, now + 0.999, now + 1.0, 1_000_000_000.7):
        assert orthanc_timestamp(moment) == time.strftime("%Y%m%dT%H%M%S", time.localtime(moment)), moment
