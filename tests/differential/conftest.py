"""Fixtures of the differential tests: a fastpacs and a reference Orthanc per test module."""

from collections.abc import Iterator

import pytest

from tests.conftest import reported_properties
from tests.differential.allowlist import KNOWN_BUGS
from tests.differential.harness import KNOWN_BUGS_MET, ServerPair

COMMON_OPTIONS = {"StableAge": 1, "Name": "Orthanc"}
"""Options given to both servers (the Orthanc helper already sets the rest of the reference set-up)."""
KNOWN_BUG = "known-bug"
"""Key of the known bugs a test met in its ``user_properties`` (reports carry them from xdist workers too)."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    servers = ServerPair.start(tmp_path_factory.mktemp("differential"), COMMON_OPTIONS)
    yield servers
    servers.stop()


@pytest.fixture(autouse=True)
def _report_known_bugs_met(request: pytest.FixtureRequest) -> Iterator[None]:
    before = set(KNOWN_BUGS_MET)
    yield
    request.node.user_properties.extend((KNOWN_BUG, bug) for bug in KNOWN_BUGS_MET - before)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the known bugs no test met: fixed, or not exercised by the selected tests."""
    met = {tuple(value) for _, value in reported_properties(terminalreporter, KNOWN_BUG)}
    if not met:
        return
    unmet = [key for key in KNOWN_BUGS if key not in met]
    if unmet:
        terminalreporter.write_line("KNOWN_BUGS entries not met in this run (fixed? remove them):")
        for key in unmet:
            terminalreporter.write_line(f"  {key}")
