"""fastpacs's own DICOM sockets never wait on Nagle's algorithm: TCP_NODELAY on both ends it owns.

The option is read on the server's side of a live connection: the test
finds the socket in the server's process (through /proc) and takes a copy of
it with ``pidfd_getfd`` (Linux 5.6+; the server is a child of the test, so
no extra privilege is needed), then asks it with ``getsockopt``.
"""

import ctypes
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from fastpacs.testing import ServerProcess, fastpacs_server, free_port

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
_LIBC = ctypes.CDLL(None, use_errno=True)


def _proc_address(address: tuple[str, int]) -> str:
    """An IPv4 address as /proc/net/tcp writes it (host byte order, hex)."""
    packed = socket.inet_aton(address[0])
    return f"{int.from_bytes(packed, 'little'):08X}:{address[1]:04X}"


def _inode_of(local: tuple[str, int], remote: tuple[str, int]) -> int:
    wanted = (_proc_address(local), _proc_address(remote))
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            return int(fields[9])
    raise LookupError(f"no TCP socket {local} -> {remote}")


def _holder_of(inode: int) -> tuple[int, int]:
    """A process holding the socket and its descriptor number there."""
    target = f"socket:[{inode}]"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for descriptor in (entry / "fd").iterdir():
                if os.readlink(descriptor) == target:
                    return int(entry.name), int(descriptor.name)
        except (PermissionError, FileNotFoundError, ProcessLookupError):
            continue
    raise LookupError(f"no process holds {target}")


def _syscall(number: int, *arguments: int) -> int:
    result = _LIBC.syscall(number, *arguments)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def peer_has_no_delay(connection: socket.socket) -> bool:
    """Whether the other end of a loopback TCP connection has TCP_NODELAY set, in whichever process."""
    inode = _inode_of(local=connection.getpeername(), remote=connection.getsockname())
    pid, descriptor = _holder_of(inode)
    pidfd = _syscall(SYS_PIDFD_OPEN, pid, 0)
    try:
        copy = _syscall(SYS_PIDFD_GETFD, pidfd, descriptor, 0)
    finally:
        os.close(pidfd)
    with socket.socket(fileno=copy) as peer:
        return peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(tmp_path_factory.mktemp("nodelay")).start()
    yield process
    process.stop()


def test_the_probe_sees_a_socket_without_the_option() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        with client, accepted:
            assert not peer_has_no_delay(client)
            accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert peer_has_no_delay(client)


def test_accepted_associations_have_no_delay(server: ServerProcess) -> None:
    ae = AE(ae_title="NAGLE")  # the caller sets nothing: the server must set the option itself
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title="ORTHANC")
    assert assoc.is_established
    try:
        assert peer_has_no_delay(assoc.dul.socket.socket)
    finally:
        assoc.release()


def test_associations_fastpacs_opens_have_no_delay(server: ServerProcess) -> None:
    seen: list[bool] = []

    def on_echo(event: evt.Event) -> int:
        seen.append(peer_has_no_delay(event.assoc.dul.socket.socket))
        return 0x0000

    scp = AE(ae_title="PROBE")
    scp.add_supported_context(Verification)
    port = free_port()
    listener = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            modality = {"AET": "PROBE", "Host": "127.0.0.1", "Port": port}
            assert http.put("/modalities/probe", json=modality).status_code == 200
            assert http.post("/modalities/probe/echo", content=b"{}").status_code == 200
    finally:
        listener.shutdown()
    assert seen == [True]
