"""Metadata compared with the reference Orthanc: system entries, user entries, change log."""

import pytest

from tests.differential.data import test_file
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

LEVELS = (
    ("patients", "ParentPatient"),
    ("studies", "ParentStudy"),
    ("series", "ParentSeries"),
    ("instances", "ID"),
)


@pytest.fixture(scope="module")
def ct(pair: ServerPair) -> dict[str, str]:
    data = test_file("CT_small.dcm").read_bytes()
    pair.fastpacs_client.post("/instances", content=data)
    return pair.orthanc_client.post("/instances", content=data).json()


def test_system_metadata_at_every_level(pair: ServerPair, ct: dict[str, str]) -> None:
    check = pair.checker()
    for level, key in LEVELS:
        base = f"/{level}/{ct[key]}/metadata"
        check.compare(get(f"metadata {level} list", base))
        check.compare(get(f"metadata {level} expand", base, expand=""))
    instance = f"/instances/{ct['ID']}/metadata"
    for name in (
        "TransferSyntax",
        "SopClassUid",
        "IndexInSeries",
        "Origin",
        "RemoteAET",
        "RemoteIP",
        "PixelDataOffset",
        "ReceptionDate",
        "NoSuch",
        "CalledAET",
    ):
        check.compare(get(f"metadata instance {name}", f"{instance}/{name}"))
    check.compare(get("metadata unknown instance", "/instances/nonexistent/metadata"))
    check.verdict()


def test_user_metadata_life_cycle(pair: ServerPair, ct: dict[str, str]) -> None:
    check = pair.checker()
    instance = f"/instances/{ct['ID']}/metadata"
    last = {
        name: client.get("/changes", params={"last": ""}).json()["Last"]
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client))
    }
    check.compare(Call("metadata put user", "PUT", f"{instance}/1024", body=b"hello"))
    check.compare(get("metadata get user", f"{instance}/1024"))
    check.compare(get("metadata list with user", instance, expand=""))
    check.compare(Call("metadata put system", "PUT", f"{instance}/IndexInSeries", body=b"5"))
    check.compare(Call("metadata delete system", "DELETE", f"{instance}/IndexInSeries"))
    check.compare(Call("metadata delete user", "DELETE", f"{instance}/1024"))
    check.compare(get("metadata after delete", f"{instance}/1024"))
    check.compare(Call("metadata delete again", "DELETE", f"{instance}/1024"))
    check.compare(
        Call("metadata put on study", "PUT", f"/studies/{ct['ParentStudy']}/metadata/1025", body=b"s")
    )
    check.verdict()
    changes = [
        [
            change["ChangeType"] + " " + change["ResourceType"]
            for change in client.get("/changes", params={"since": str(last[name]), "limit": "100"}).json()[
                "Changes"
            ]
        ]
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client))
    ]
    assert changes[1] == changes[0]
