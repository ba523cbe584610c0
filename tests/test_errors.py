"""Hostile input on fastpacs alone: never a 500, always Orthanc's error shape, nothing stored by mistake."""

import random

import httpx
import pytest

from tests.conftest import pydicom_file

ERROR_KEYS = {"HttpError", "HttpStatus", "Message", "Method", "OrthancError", "OrthancStatus", "Uri"}


def mutations(seed: int = 20261127) -> list[tuple[str, bytes]]:
    """CT_small cut at many places, with bytes flipped here and there, and plain noise."""
    rng = random.Random(seed)
    original = pydicom_file("CT_small.dcm").read_bytes()
    cases = [
        (f"cut at {n}", original[:n]) for n in (1, 131, 132, 140, 300, 700, 1500, 5000, len(original) - 2)
    ]
    for i in range(25):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(128, 2000)] = rng.randrange(256)
        cases.append((f"flipped {i}", bytes(data)))
    cases += [(f"noise {i}", rng.randbytes(rng.choice((10, 200, 4000)))) for i in range(6)]
    cases.append(("preamble of noise", rng.randbytes(128) + b"DICM" + rng.randbytes(600)))
    return cases


def assert_orthanc_error(answer: httpx.Response) -> None:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    if answer.content:
        body = answer.json()
        assert body.keys() >= ERROR_KEYS
        assert body["HttpStatus"] == answer.status_code


def test_damaged_uploads_never_cause_a_server_error(shared_client: httpx.Client) -> None:
    original = pydicom_file("CT_small.dcm").read_bytes()
    before = shared_client.get("/statistics").json()["CountInstances"]
    accepted = {}
    for name, data in mutations():
        answer = shared_client.post("/instances", content=data)
        if answer.status_code == 200:
            accepted.setdefault(answer.json()["ID"], data)  # later copies are AlreadyStored
        else:
            assert_orthanc_error(answer)
            assert answer.json()["Method"] == "POST", name
    for instance_id, data in accepted.items():
        assert shared_client.get(f"/instances/{instance_id}/file").content in (data, original)
    statistics = shared_client.get("/statistics").json()
    assert (
        statistics["CountInstances"] == len(shared_client.get("/instances").json()) <= before + len(accepted)
    )
    assert shared_client.post("/instances", content=original).status_code == 200  # still serving


@pytest.mark.parametrize(
    "path",
    [
        "/patients/" + "a" * 5000,
        "/patients/%00",
        "/studies/ünïcode",
        "/series/../../etc/passwd",
        "/instances/f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af/../file",
        "/instances/" + "-" * 44 + "/file",
        "/patients?since=99999999999999999999999999&limit=1",
        "/patients?since=0&limit=99999999999999999999999999",
        "/changes?since=99999999999999999999999999&limit=5",
        "/changes?since=18446744073709551615&limit=5",
        "/changes?limit=99999999999999999999999999",
        "/instances?expand&since=1&limit=1&since=2",
    ],
)
def test_odd_requests_get_a_client_error_or_an_answer(shared_client: httpx.Client, path: str) -> None:
    answer = shared_client.get(path)
    assert answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        assert_orthanc_error(answer)


@pytest.mark.parametrize(
    "body", [b"", b"\x00" * 64, "Ünïcode nobody uses\n".encode(), b"x" * 100_000, b"\xff\xfe"]
)
def test_lookup_of_anything_is_answered(shared_client: httpx.Client, body: bytes) -> None:
    answer = shared_client.post("/tools/lookup", content=body)
    assert (answer.status_code, answer.json()) == (200, [])


def test_an_unknown_route_is_orthancs_json_404(shared_client: httpx.Client) -> None:
    answer = shared_client.get("/no/such/route")
    assert answer.status_code == 404
    assert answer.json() == {
        "HttpError": "Not Found",
        "HttpStatus": 404,
        "Message": "Unknown resource",
        "Method": "GET",
        "OrthancError": "Unknown resource",
        "OrthancStatus": 17,
        "Uri": "/no/such/route",
    }


def test_a_wrong_method_is_an_empty_405_with_allow(shared_client: httpx.Client) -> None:
    answer = shared_client.put("/instances/f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af")
    assert (answer.status_code, answer.headers["allow"], answer.content) == (405, "GET,DELETE", b"")
