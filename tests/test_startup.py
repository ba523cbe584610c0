"""A server that cannot start stops with an error instead of hanging without answering."""

import time
from pathlib import Path

import pytest

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
