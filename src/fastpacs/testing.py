"""Start fastpacs and the reference Orthanc as real server processes (for tests and benchmarks).

Both servers get a fresh folder, free ports and a configuration file; the
helpers wait until ``GET /system`` answers. The reference is Debian's
Orthanc 1.10.1 (``apt-get install orthanc``), run with the settings the
behaviour notes were captured with.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORTHANC_BINARY = os.environ.get("ORTHANC_BIN", "/usr/sbin/Orthanc")
START_TIMEOUT = 90.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def orthanc_installed() -> bool:
    return Path(ORTHANC_BINARY).exists() or shutil.which("Orthanc") is not None


@dataclass
class ServerProcess:
    """A server started by this module; ``base_url`` has no trailing slash."""

    name: str
    command: list[str]
    directory: Path
    http_port: int
    dicom_port: int
    aet: str
    environment: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def start(self, timeout: float = START_TIMEOUT) -> "ServerProcess":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.environment},
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.log_tail()}")
            try:
                answered = self._answers()
            except RuntimeError:
                self.kill()
                raise
            if answered:
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        """Whether this server answers; ``RuntimeError`` if another one holds its port.

        Ports come from :func:`free_port`, and between that probe and the start
        another process (another test run) can take the same port: the DICOM
        port in /system tells the servers apart.
        """
        try:
            with urllib.request.urlopen(f"{self.base_url}/system", timeout=2) as response:
                system = json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code == 401
        except (OSError, ValueError):
            return False
        if system.get("DicomPort") != self.dicom_port:
            raise RuntimeError(
                f"port {self.http_port} is answered by another server (DICOM port {system.get('DicomPort')}, "
                f"{self.name} was given {self.dicom_port}): start it again on other ports"
            )
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully (SIGTERM to the whole process group), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and its children, as a crash would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def fastpacs_server(directory: Path, options: dict[str, Any] | None = None) -> ServerProcess:
    """A fastpacs server (not started) with its storage under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "StorageDirectory": str(directory / "storage"),
        "IndexDirectory": str(directory / "storage"),
        **(options or {}),
    }
    (directory / "fastpacs.json").write_text(json.dumps(config, indent=2))
    return ServerProcess(
        name="fastpacs",
        command=[sys.executable, "-m", "fastpacs", "serve", "--config", str(directory / "fastpacs.json")],
        directory=directory,
        http_port=config["HttpPort"],
        dicom_port=config["DicomPort"],
        aet=config.get("DicomAet", "ORTHANC"),
    )


def orthanc_server(
    directory: Path, options: dict[str, Any] | None = None, tcp_nodelay: bool = False
) -> ServerProcess:
    """The reference Orthanc (not started), configured as for the captured behaviour notes."""
    if not orthanc_installed():
        raise RuntimeError(f"{ORTHANC_BINARY} is missing: apt-get install -y orthanc")
    directory.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "Orthanc",
        "StorageDirectory": str(directory / "db"),
        "IndexDirectory": str(directory / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "ExecuteLuaEnabled": True,
        "HttpDescribeErrors": True,
        "Plugins": [],
        "LuaScripts": [],
        "DicomModalities": {},
        "OrthancPeers": {},
        **(options or {}),
    }
    (directory / "orthanc.json").write_text(json.dumps(config, indent=2))
    binary = ORTHANC_BINARY if Path(ORTHANC_BINARY).exists() else shutil.which("Orthanc") or ORTHANC_BINARY
    return ServerProcess(
        name="orthanc",
        command=[binary, f"--logfile={directory / 'orthanc-internal.log'}", str(directory / "orthanc.json")],
        directory=directory,
        http_port=config["HttpPort"],
        dicom_port=config["DicomPort"],
        aet=config["DicomAet"],
        environment={"TCP_NODELAY": "1"} if tcp_nodelay else {},
    )
