"""Access control: HTTP Basic authentication with RegisteredUsers, and where the server listens."""

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastpacs.config import load_config
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

USERS = {"alice": "s3cret:with colon", "bob": "ünïcode"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Remote access allowed, so authentication is on by default (Orthanc's rule)."""
    options = {"RemoteAccessAllowed": True, "RegisteredUsers": USERS, "StableAge": 1}
    process = fastpacs_server(tmp_path_factory.mktemp("guarded"), options).start()
    yield process
    process.stop()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("alice", "wrong"),
        basic("carol", "s3cret:with colon"),
        basic("alice", ""),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer s3cret"},
        {"Authorization": "Basic " + base64.b64encode(b"alice").decode()},
    ],
    ids=["none", "wrong password", "unknown user", "empty password", "not base64", "not basic", "no colon"],
)
@pytest.mark.parametrize("route", ["/system", "/patients", "/nonexistent"])
def test_requests_without_valid_credentials_are_refused(
    guarded: ServerProcess, headers: dict[str, str], route: str
) -> None:
    answer = httpx.get(f"{guarded.base_url}{route}", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="Orthanc Secure Area"'
    assert answer.content == b""


def test_registered_users_are_served(guarded: ServerProcess) -> None:
    for user, password in USERS.items():
        assert httpx.get(f"{guarded.base_url}/system", headers=basic(user, password)).status_code == 200
    data = pydicom_file("CT_small.dcm").read_bytes()
    with httpx.Client(base_url=guarded.base_url, auth=("alice", USERS["alice"])) as alice:
        assert alice.post("/instances", content=data).json()["Status"] in ("Success", "AlreadyStored")
        assert alice.get("/instances").json() == ["f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"]


def test_an_upload_without_credentials_stores_nothing(guarded: ServerProcess) -> None:
    answer = httpx.post(f"{guarded.base_url}/instances", content=pydicom_file("MR_small.dcm").read_bytes())
    assert answer.status_code == 401
    statistics = httpx.get(f"{guarded.base_url}/statistics", auth=("bob", USERS["bob"])).json()
    assert statistics["CountInstances"] <= 1


def test_remote_access_listens_on_every_interface(guarded: ServerProcess) -> None:
    assert listening_addresses(guarded.http_port) == {"0.0.0.0"}


def test_without_remote_access_only_loopback_listens(shared_server: ServerProcess) -> None:
    assert listening_addresses(shared_server.http_port) == {"127.0.0.1"}
    assert httpx.get(f"{shared_server.base_url}/system").status_code == 200  # and no credentials are needed


def test_authentication_follows_orthancs_defaults() -> None:
    def required(**options: object) -> bool:
        names = {"remote": "FASTPACS__REMOTE_ACCESS_ALLOWED", "auth": "FASTPACS__AUTHENTICATION_ENABLED"}
        environ = {names[key]: str(value).lower() for key, value in options.items()}
        return load_config(None, environ=environ).authentication_required

    assert not required()
    assert required(remote=True)
    assert not required(remote=True, auth=False)
    assert required(remote=False, auth=True)


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a TCP socket listening on ``port`` (Linux's /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found
