"""Shared fixtures: real fastpacs servers started as subprocesses, pydicom's test files."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.data import get_testdata_file

from fastpacs.testing import ServerProcess, fastpacs_server


def pydicom_file(name: str) -> Path:
    """A file of pydicom's own test data (shipped with pydicom, never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is missing"
    return Path(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A fastpacs server shared by the tests of one module."""
    process = fastpacs_server(tmp_path_factory.mktemp("fastpacs"), {"StableAge": 1}).start()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http
