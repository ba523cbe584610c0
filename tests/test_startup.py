"""A server that cannot start stops with an error, leaving no process behind, instead of hanging."""

import time
from pathlib import Path

import pytest
from benchmarks.procstats import session_processes

from fastpacs.testing import fastpacs_server


def test_a_component_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    broken = tmp_path / "broken.lua"
    broken.write_text("this is not Lua (")
    server = fastpacs_server(tmp_path / "server", {"LuaScripts": [str(broken)]})
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited during start-up"):
        server.start(timeout=120)
    assert time.monotonic() - started < 60
    assert server.process is not None and server.process.returncode != 0
    assert "fastpacs could not start" in server.log_path.read_text()
    deadline = time.monotonic() + 10
    while session_processes(server.process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)  # the pool's fork server ends with the server, its workers with it (PDEATHSIG)
    assert session_processes(server.process.pid) == []
