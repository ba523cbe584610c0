"""C-STORE senders: pynetdicom associations in threads, and DCMTK's storescu processes.

Both send files from disk, as modalities and gateways do: pynetdicom streams
each file's encoded dataset without decoding it
(``STORE_SEND_CHUNKED_DATASET``), storescu reads it itself. Both set
TCP_NODELAY on their sockets (pynetdicom through an ``EVT_CONN_OPEN``
handler, storescu through the ``TCP_NODELAY`` environment variable that DCMTK
honours), so that Nagle's algorithm on the client never throttles the server.

A store counts as a success when the server answers a success or warning
status; a failure status, an association that cannot be made or breaks, and
every file it could not send are errors.
"""

import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config, evt

from benchmarks.collector import collector_paused
from benchmarks.stats import RunResult, latencies_result
from fastpacs.net.scu import leave_answers_to_requests

CALLING_AET = "FASTPACSBENCH"
STORESCU = shutil.which("storescu") or "/usr/bin/storescu"
STATUS_SUCCESS = 0x0000
WARNING_STATUSES = range(0xB000, 0xB100)

_config.STORE_SEND_CHUNKED_DATASET = True
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def set_tcp_nodelay(event: evt.Event) -> None:
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _contexts(files: list[Path]) -> set[tuple[str, str]]:
    """The (SOP class, transfer syntax) pairs the files need."""
    pairs = set()
    for path in files:
        meta = read_file_meta_info(path)
        pairs.add((meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID))
    return pairs


class _Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0
        self.transferred = 0
        self.error_sample = ""

    def success(self, latency: float, size: int) -> None:
        with self.lock:
            self.latencies.append(latency)
            self.transferred += size

    def failure(self, count: int, description: str) -> None:
        with self.lock:
            self.errors += count
            self.error_sample = self.error_sample or description[:300]


def _association(
    address: tuple[str, int, str],
    contexts: set[tuple[str, str]],
    files: list[Path],
    deadline: float | None,
    tally: _Tally,
) -> None:
    host, port, called_aet = address
    ae = AE(ae_title=CALLING_AET)
    ae.maximum_pdu_size = 0
    for sop_class, syntax in sorted(contexts):
        ae.add_requested_context(sop_class, syntax)
    association = ae.associate(
        host, port, ae_title=called_aet, evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
    )
    if not association.is_established:
        tally.failure(len(files), f"association with {called_aet}@{host}:{port} not established")
        return
    leave_answers_to_requests(association)
    try:
        for sent, path in enumerate(files):
            if deadline is not None and time.perf_counter() >= deadline:
                return
            if not association.is_established:
                tally.failure(len(files) - sent, "association lost")
                return
            started = time.perf_counter()
            status = association.send_c_store(path)
            code = status.get("Status") if status else None
            if code == STATUS_SUCCESS or code in WARNING_STATUSES:
                tally.success(time.perf_counter() - started, path.stat().st_size)
            else:
                tally.failure(1, f"C-STORE of {path.name}: status {code!r}")
    finally:
        association.release()


def send_with_pynetdicom(
    host: str,
    port: int,
    called_aet: str,
    files: list[Path],
    *,
    associations: int,
    duration: float | None = None,
) -> RunResult:
    """Send ``files`` over ``associations`` parallel associations (threads), round-robin.

    With ``duration``, each association stops starting new stores after that many seconds.
    """
    contexts = _contexts(files[:1] + files[-1:])
    tally = _Tally()
    started = time.perf_counter()
    deadline = started + duration if duration is not None else None
    threads = [
        threading.Thread(
            target=_association,
            args=((host, port, called_aet), contexts, files[number::associations], deadline, tally),
        )
        for number in range(associations)
    ]
    with collector_paused():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return latencies_result(
        tally.latencies,
        operations=len(tally.latencies),
        errors=tally.errors,
        elapsed=time.perf_counter() - started,
        transferred=tally.transferred,
        error_sample=tally.error_sample,
    )


STORE_RESPONSE = re.compile(r"Received Store Response \((.*)\)")


def send_with_storescu(
    host: str, port: int, called_aet: str, files: list[Path], *, associations: int
) -> RunResult:
    """Send ``files`` with ``associations`` storescu processes at once, one association each.

    storescu reports no per-file timing, so the run has no latency figures;
    successes are counted from its verbose log.
    """
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                STORESCU,
                "-v",
                "-R",
                "-nh",
                "-aet",
                CALLING_AET,
                "-aec",
                called_aet,
                host,
                str(port),
                *map(str, files[number::associations]),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        for number in range(associations)
    ]
    outputs = [process.communicate()[0] for process in processes]
    elapsed = time.perf_counter() - started
    sizes = [path.stat().st_size for path in files]
    succeeded = errors = 0
    error_sample = ""
    for number, output in enumerate(outputs):
        responses = STORE_RESPONSE.findall(output)
        good = sum(1 for status in responses if status.startswith(("Success", "Warning")))
        succeeded += good
        errors += len(files[number::associations]) - good
        if good < len(files[number::associations]) and not error_sample:
            error_sample = next(
                (line for line in output.splitlines() if line.startswith(("E:", "F:"))), output[-300:]
            )
    return RunResult(
        operations=succeeded,
        errors=errors,
        elapsed=elapsed,
        transferred=sum(sizes) * succeeded // len(files) if files else 0,
        error_sample=error_sample[:300],
    )
