"""Routes that act on the server's machine, compared with the reference Orthanc on a pair of their own.

POST /instances/{id}/export writes files where its body says; both servers
refuse it (403) unless ``RestApiWriteToFileSystemEnabled`` allows it. POST
/tools/reset and /tools/shutdown: fastpacs refuses them (403) unless
``RestApiResetEnabled`` and ``RestApiShutdownEnabled`` allow them, where
Orthanc 1.10.1 always obeys (tests/test_tools.py checks the refusal). This
pair enables all three and compares what both servers answer and keep; the
shutdown comes last.
"""

import time
from collections.abc import Iterator

import httpx
import pytest

from fastpacs.testing import ServerProcess
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import test_file
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

RESTART_TIMEOUT = 60.0
START_LINES = {
    "orthanc": ("orthanc-internal.log", "Orthanc has started"),
    "fastpacs": ("fastpacs.log", "fastpacs started"),
}
"""Per server: the log that says it has started, and how."""


@pytest.fixture(scope="module")
def controllable_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    options = {
        **COMMON_OPTIONS,
        "RestApiResetEnabled": True,
        "RestApiShutdownEnabled": True,
        "RestApiWriteToFileSystemEnabled": True,
    }
    servers = ServerPair.start(tmp_path_factory.mktemp("lifecycle"), options)
    yield servers
    servers.stop()


def _starts(server: ServerProcess) -> int:
    """How many times the server's log says it has started."""
    name, line = START_LINES[server.name]
    path = server.directory / name
    return path.read_text(errors="replace").count(line) if path.exists() else 0


def _restarted(server: ServerProcess, starts: int) -> bool:
    """Whether the server has started again since its log said it had ``starts`` times, and answers,
    within the restart timeout. An answer alone proves nothing: a loaded server may take seconds
    to begin its restart, and answer as it was until then (Orthanc 1.10.1 took 1.2 s in a CI run)."""
    deadline = time.monotonic() + RESTART_TIMEOUT
    while _starts(server) <= starts:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return _answers_again(server)


def _answers_again(server: ServerProcess) -> bool:
    """Whether the server answers /system within the restart timeout."""
    deadline = time.monotonic() + RESTART_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.base_url}/system", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def ct(controllable_pair: ServerPair) -> dict[str, str]:
    data = test_file("CT_small.dcm").read_bytes()
    controllable_pair.fastpacs_client.post("/instances", content=data)
    return controllable_pair.orthanc_client.post("/instances", content=data).json()


def test_export_to_the_file_system(controllable_pair: ServerPair, ct: dict[str, str]) -> None:
    """Relative paths: each server writes in its own working directory, its ServerProcess directory."""
    pair = controllable_pair
    export = f"/instances/{ct['ID']}/export"
    check = pair.checker()
    check.compare_all(
        [
            Call("export", "POST", export, body=b"exported.dcm"),
            Call("export into a missing directory", "POST", export, body=b"nosuch/exported.dcm"),
            Call("export to no path", "POST", export, body=b""),
            Call("export unknown instance", "POST", "/instances/nonexistent/export", body=b"unknown.dcm"),
            Call("export a study", "POST", f"/studies/{ct['ParentStudy']}/export", body=b"study.dcm"),
            get("export with GET", export),
        ]
    )
    check.verdict()
    expected = test_file("CT_small.dcm").read_bytes()
    for server in (pair.orthanc, pair.fastpacs):
        assert (server.directory / "exported.dcm").read_bytes() == expected, server.name
        assert not (server.directory / "unknown.dcm").exists(), server.name


def test_reset_then_shutdown(controllable_pair: ServerPair, ct: dict[str, str]) -> None:
    pair = controllable_pair
    check = pair.checker()
    starts = {server.name: _starts(server) for server in (pair.orthanc, pair.fastpacs)}
    check.compare(Call("reset", "POST", "/tools/reset"))
    assert _restarted(pair.orthanc, starts["orthanc"]), pair.orthanc.log_tail()
    assert _restarted(pair.fastpacs, starts["fastpacs"]), pair.fastpacs.log_tail()
    starts = {server.name: _starts(server) for server in (pair.orthanc, pair.fastpacs)}
    check.compare_all(
        [
            get("after reset statistics", "/statistics"),
            get("after reset instance", f"/instances/{ct['ID']}"),
            get("after reset metadata", f"/instances/{ct['ID']}/metadata", expand=""),
            Call("reset with a body", "POST", "/tools/reset", body=b'{"ignored": true}'),
        ]
    )
    assert _restarted(pair.orthanc, starts["orthanc"]), pair.orthanc.log_tail()
    assert _restarted(pair.fastpacs, starts["fastpacs"]), pair.fastpacs.log_tail()
    check.compare(Call("shutdown", "POST", "/tools/shutdown"))
    check.verdict()
    for server in (pair.orthanc, pair.fastpacs):
        assert server.process is not None
        assert server.process.wait(RESTART_TIMEOUT) == 0, server.log_tail()
