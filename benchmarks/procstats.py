"""CPU and memory of the server's whole process tree, and CPU of the benchmark client.

fastpacs runs as several processes (Granian's parent, its worker, the
pool's fork server, its workers and the resource tracker), so one PID says little.
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

Sampling is not free: the PSS of a fastpacs tree (the page tables of each
process walked by the kernel) costs 5-10 ms of CPU, up to a tenth of a core
at ten samples a second, taken from the server being measured on a 2-core
machine. So a sample between a window's edges reads the PSS only when the
tree's resident size (``/proc/PID/statm``, 0.1 ms for the tree) exceeds the
largest one for which the PSS was read in the window: memory cannot have
risen above the peak PSS found so far without the resident size rising too
(PSS is the resident size less the shares of pages that other processes
hold, a part that changes little while a server runs). The benchmark runner
samples each server only inside its measured windows
(``idle_sampling=False``): otherwise an idle fastpacs's monitor takes CPU
from the Orthanc being measured beside it. And the CPU the monitor spends
is left out of the client's.
"""

import contextlib
import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
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


def resident_memory(pid: int) -> int:
    """RSS of one process in bytes (``/proc/PID/statm``, which walks no page table); 0 if it has exited."""
    try:
        with open(PROC / str(pid) / "statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (FileNotFoundError, ProcessLookupError):
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
    sampling_cpu: float


class ProcessTreeMonitor:
    """Samples the processes of one session in a background thread until stopped.

    Finding the session's processes means reading every process's ``stat``
    (a few milliseconds of CPU on a busy machine), so that full scan runs
    once a second and at the edges of each window; the samples in between
    read only the processes already known.
    """

    FULL_SCAN_EVERY = 10

    def __init__(self, session: int, interval: float = 0.1, idle_sampling: bool = True):
        """``idle_sampling``: sample between windows too (else only while one is open)."""
        self.session = session
        self.interval = interval
        self.lifetime_peak_rss = 0
        self.sampling_cpu = 0.0
        """CPU seconds the background samples took (this process's, not the tree's)."""
        self._window_peak_rss = 0
        self._window_checked_resident = 0
        """The largest resident size of the tree for which the window's samples read the PSS."""
        self._cpu_ticks: dict[tuple[int, int], int] = {}
        self._pids: list[int] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._sampling = threading.Event()
        if idle_sampling:
            self._sampling.set()
        self._idle_sampling = idle_sampling
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
            if not self._sampling.is_set():
                continue
            samples += 1
            started = time.thread_time()
            self.sample(full=samples % self.FULL_SCAN_EVERY == 0, exact=False)
            with self._lock:
                self.sampling_cpu += time.thread_time() - started

    def _known_processes(self) -> list[ProcessSample]:
        samples = (read_process(pid) for pid in self._pids)
        return [sample for sample in samples if sample is not None and sample.session == self.session]

    def sample(self, full: bool = True, exact: bool = True) -> tuple[int, int] | None:
        """Read the tree now (``full``: look for new processes too): its memory (PSS) and resident
        size in bytes; unless ``exact``, ``None`` instead of reading the PSS when the resident size
        is not above the window's largest so far (see the module's documentation)."""
        processes = session_processes(self.session) if full else self._known_processes()
        self._pids = [process.pid for process in processes]
        resident = sum(resident_memory(process.pid) for process in processes)
        with self._lock:
            for process in processes:
                self._cpu_ticks[(process.pid, process.start_time)] = process.cpu_ticks
            if not exact and resident <= self._window_checked_resident:
                return None
        memory = sum(proportional_memory(process.pid) for process in processes)
        with self._lock:
            self._window_checked_resident = max(self._window_checked_resident, resident)
            self._window_peak_rss = max(self._window_peak_rss, memory)
            self.lifetime_peak_rss = max(self.lifetime_peak_rss, memory)
        return memory, resident

    def open_window(self) -> Window:
        sampled = self.sample()
        assert sampled is not None
        with self._lock:
            self._window_peak_rss, self._window_checked_resident = sampled
            window = Window(dict(self._cpu_ticks), self.sampling_cpu)
        self._sampling.set()
        return window

    def close_window(self, window: Window) -> tuple[float, int, float]:
        """CPU seconds used by the tree since ``window`` opened, the peak memory meanwhile, and the CPU
        seconds the monitor's background samples took meanwhile."""
        if not self._idle_sampling:
            self._sampling.clear()
        self.sample()
        with self._lock:
            ticks = sum(now - window.cpu_ticks.get(key, 0) for key, now in self._cpu_ticks.items())
            return ticks / CLOCK_TICKS, self._window_peak_rss, self.sampling_cpu - window.sampling_cpu


def client_cpu_seconds() -> float:
    """CPU used so far by this process and by the tools it ran and waited for (wrk, storescu);
    :func:`measured` leaves out the monitor's part."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@contextlib.contextmanager
def measured(monitor: ProcessTreeMonitor):
    """Measure the block: yields a dict filled, on exit, with elapsed, server and client CPU (the
    monitor's samples left out), peak RSS."""
    figures: dict[str, float] = {}
    window = monitor.open_window()
    client_before = client_cpu_seconds()
    started = time.perf_counter()
    try:
        yield figures
    finally:
        figures["elapsed"] = time.perf_counter() - started
        client_cpu = client_cpu_seconds() - client_before
        figures["server_cpu"], figures["server_peak_rss"], sampling_cpu = monitor.close_window(window)
        figures["client_cpu"] = max(0.0, client_cpu - sampling_cpu)
