"""Fixtures of the differential tests: a fastpacs and a reference Orthanc per test module."""

from collections.abc import Iterator

import pytest

from tests.differential.allowlist import KNOWN_BUGS
from tests.differential.harness import KNOWN_BUGS_MET, ServerPair

COMMON_OPTIONS = {"StableAge": 1, "Name": "Orthanc"}
"""Options given to both servers (the Orthanc helper already sets the rest of the reference set-up)."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    servers = ServerPair.start(tmp_path_factory.mktemp("differential"), COMMON_OPTIONS)
    yield servers
    servers.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the known bugs no test met: fixed, or not exercised by the selected tests."""
    if not KNOWN_BUGS_MET:
        return
    unmet = [key for key in KNOWN_BUGS if key not in KNOWN_BUGS_MET]
    if unmet:
        terminalreporter.write_line("KNOWN_BUGS entries not met in this run (fixed? remove them):")
        for key in unmet:
            terminalreporter.write_line(f"  {key}")
