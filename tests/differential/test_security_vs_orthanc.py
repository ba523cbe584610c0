"""HTTP Basic authentication compared with Orthanc: who is refused, and how."""

import base64
from collections.abc import Iterator

import pytest

from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import Call, ServerPair

pytestmark = pytest.mark.reference

USERS = {"alice": "s3cret"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    options = {**COMMON_OPTIONS, "AuthenticationEnabled": True, "RegisteredUsers": USERS}
    servers = ServerPair.start(tmp_path_factory.mktemp("differential-auth"), options)
    yield servers
    servers.stop()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


CALLS = [
    Call("no credentials", "GET", "/statistics"),
    Call("wrong password", "GET", "/statistics", headers=basic("alice", "nope")),
    Call("unknown user", "GET", "/statistics", headers=basic("mallory", "s3cret")),
    Call("not basic", "GET", "/statistics", headers={"Authorization": "Bearer s3cret"}),
    Call("unknown route without credentials", "GET", "/nonexistent"),
    Call("wrong method without credentials", "PUT", "/system"),
    Call("upload without credentials", "POST", "/instances", body=b"not even DICOM"),
    Call("valid credentials", "GET", "/statistics", headers=basic("alice", "s3cret")),
    Call("unknown route with credentials", "GET", "/nonexistent", headers=basic("alice", "s3cret")),
]


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_authentication(guarded: ServerPair, call: Call) -> None:
    check = guarded.checker()
    check.compare(call)
    check.verdict()
