"""CPU and memory of the server's whole process tree, and CPU of the benchmark client.

fastpacs runs as several processes (Granian's parent, its worker, the
spawned pool processes and their resource tracker), so one PID says little.
``fastpacs.testing`` starts every server in a new session, and every process
it spawns stays in that session: the monitor reads ``/proc/PID/stat`` of the
processes whose session is the server's, ten times a second, and keeps

- the memory of the tree, and its peak: the proportional set size (PSS) summed
  over its processes, i.e. resident memory with each shared page split among
  the processes that share it. Summing resident sizes (RSS) would count the
  pages of shared libraries and copy-on-write memory once per process; for a
  single-process server such as Orthanc, PSS and RSS are the same;
- the CPU ticks of every process ever seen, so that a window's CPU time
  counts processes that started or ended inside it.
"""

import contextlib
import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def proportional_memory(pid: int) -> int:
    """PSS of one process in bytes (``/proc/PID/smaps_rollup``); 0 if it has exited meanwhile."""
    try:
        with open(PROC / str(pid) / "smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    session: int
    start_time: int
    cpu_ticks: int


def read_process(pid: int) -> ProcessSample | None:
    """One process's line of ``/proc/PID/stat``; ``None`` if it has exited meanwhile."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    # Fields from 3 on (man 5 proc): state, ppid, pgrp, session... utime=14, stime=15, starttime=22.
    return ProcessSample(
        pid=pid,
        session=int(fields[3]),
        start_time=int(fields[19]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
    )


def session_processes(session: int) -> list[ProcessSample]:
    samples = []
    for entry in os.listdir(PROC):
        if entry.isdigit():
            sample = read_process(int(entry))
            if sample is not None and sample.session == session:
                samples.append(sample)
    return samples


@dataclass(frozen=True)
class Window:
    """The monitor's state when a measured window opened."""

    cpu_ticks: dict[tuple[int, int], int]


class ProcessTreeMonitor:
    """Samples the processes of one session in a background thread until stopped.

    Finding the session's processes means reading every process's ``stat``
    (a few milliseconds of CPU on a busy machine), so that full scan runs
    once a second and at the edges of each window; the samples in between
    read only the processes already known.
    """

    FULL_SCAN_EVERY = 10

    def __init__(self, session: int, interval: float = 0.1):
        self.session = session
        self.interval = interval
        self.lifetime_peak_rss = 0
        self._window_peak_rss = 0
        self._cpu_ticks: dict[tuple[int, int], int] = {}
        self._pids: list[int] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-tree-monitor", daemon=True)

    def start(self) -> "ProcessTreeMonitor":
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _loop(self) -> None:
        samples = 0
        while not self._stopped.wait(self.interval):
            samples += 1
            self.sample(full=samples % self.FULL_SCAN_EVERY == 0)

    def _known_processes(self) -> list[ProcessSample]:
        samples = (read_process(pid) for pid in self._pids)
        return [sample for sample in samples if sample is not None and sample.session == self.session]

    def sample(self, full: bool = True) -> int:
        """Read the tree now (``full``: look for new processes too); returns its memory (PSS) in bytes."""
        processes = session_processes(self.session) if full else self._known_processes()
        self._pids = [process.pid for process in processes]
        rss = sum(proportional_memory(process.pid) for process in processes)
        with self._lock:
            for process in processes:
                self._cpu_ticks[(process.pid, process.start_time)] = process.cpu_ticks
            self._window_peak_rss = max(self._window_peak_rss, rss)
            self.lifetime_peak_rss = max(self.lifetime_peak_rss, rss)
        return rss

    def open_window(self) -> Window:
        rss = self.sample()
        with self._lock:
            self._window_peak_rss = rss
            return Window(dict(self._cpu_ticks))

    def close_window(self, window: Window) -> tuple[float, int]:
        """CPU seconds used by the tree since ``window`` opened, and the peak memory meanwhile."""
        self.sample()
        with self._lock:
            ticks = sum(now - window.cpu_ticks.get(key, 0) for key, now in self._cpu_ticks.items())
            return ticks / CLOCK_TICKS, self._window_peak_rss


def client_cpu_seconds() -> float:
    """CPU used so far by this process and by the tools it ran and waited for (wrk, storescu)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@contextlib.contextmanager
def measured(monitor: ProcessTreeMonitor):
    """Measure the block: yields a dict filled, on exit, with elapsed, server and client CPU, peak RSS."""
    figures: dict[str, float] = {}
    window = monitor.open_window()
    client_before = client_cpu_seconds()
    started = time.perf_counter()
    try:
        yield figures
    finally:
        figures["elapsed"] = time.perf_counter() - started
        figures["client_cpu"] = client_cpu_seconds() - client_before
        figures["server_cpu"], figures["server_peak_rss"] = monitor.close_window(window)
