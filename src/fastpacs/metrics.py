"""The metrics of one server: Orthanc's names and meanings, plus fastpacs's own, in one registry.

Each server owns a :class:`ServerMetrics` with its own prometheus-client
``CollectorRegistry`` (never the library's global one, so that two servers
in one process, or a test, never mix their figures).

Orthanc's metrics keep Orthanc 1.10.1's names, meanings and text format
(``name value timestamp_ms``, no ``# HELP``/``# TYPE`` lines, sorted by name):

- ``orthanc_count_patients|studies|series|instances``, ``orthanc_disk_size_mb``,
  ``orthanc_uncompressed_size_mb``, ``orthanc_last_change``: read from the
  index counters at scrape time (the same counters as /statistics; nothing
  is ever scanned);
- ``orthanc_jobs_pending|running|completed|success|failed``: the jobs the job
  engine knows, counted at scrape time as Orthanc counts them (Retry counts as
  pending, Paused as running);
- ``orthanc_*_duration_ms`` and ``orthanc_rest_api_active_requests``:
  Orthanc's "maximum over the last 10 seconds" values (:class:`RecentMaximum`),
  shown once the operation has happened at least once, as Orthanc does;
- ``orthanc_dicom_cache_count|size``: fastpacs keeps no cache of parsed DICOM
  files; its cache of rendered images (/preview, /image-*, /rendered) plays that role, so
  these report its entries and its size in MB;
- ``orthanc_up_time_s``: seconds since the server started.

fastpacs's own metrics (``fastpacs_*``, standard exposition with HELP and
TYPE) are what an operator of a high-throughput server needs: request latency
histograms by route template and status, ingest latency and volume, worker
pool queue depth and busy workers, index commit batch sizes and latency,
LMDB map use, DICOM associations, what the start-up check repaired
(``fastpacs_startup_repair_*``); plus the ``process_*`` metrics of
prometheus-client.

Collection can be switched off (``MetricsEnabled``, PUT /tools/metrics):
observations are then dropped at once and the exposition is empty.
"""

import bisect
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client import Counter as PrometheusCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from fastpacs.dicom.ids import Level
from fastpacs.index.database import Database
from fastpacs.index.schema import Counter

PROMETHEUS_TEXT = "text/plain; version=0.0.4"
"""The content type of /tools/metrics-prometheus, as Orthanc sends it."""

ORTHANC_WINDOW_SECONDS = 10.0
MEGABYTE = 1024 * 1024

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Seconds; from 100 µs, because the hottest GET routes answer in about 50 µs."""

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
"""Operations per index commit (the writer batches at most 512)."""

DICOM_OPERATION_METRICS = {
    "C-FIND": "orthanc_find_scp_duration_ms",
    "C-MOVE": "orthanc_move_scp_duration_ms",
    "C-GET": "orthanc_get_scp_duration_ms",
}
"""The SCP operations Orthanc times, by DIMSE service name."""

ORTHANC_DURATIONS = (
    "orthanc_rest_api_duration_ms",
    "orthanc_store_dicom_duration_ms",
    "orthanc_storage_create_duration_ms",
    "orthanc_storage_remove_duration_ms",
    *DICOM_OPERATION_METRICS.values(),
)

# The _created series prometheus-client adds to every histogram and counter are
# noise here and cost scrape time; this switch is process-wide.
disable_created_metrics()

association_logger = logging.getLogger("fastpacs.dicom")


class RecentMaximum:
    """Orthanc's "maximum over the last 10 seconds" value.

    A new value replaces the current one when it is larger, or when the current
    one is older than the window; the timestamp is that of the replacement.
    Between updates the value stays as it is, so a scrape after a quiet period
    shows the last maximum with its old timestamp, as Orthanc's does.

    Not locked (it is updated on every request): each one is updated by one
    thread only, or under :attr:`ServerMetrics._lock`.
    """

    __slots__ = ("timestamp", "value", "window")

    def __init__(self, window: float = ORTHANC_WINDOW_SECONDS):
        self.window = window
        self.value: float | None = None
        self.timestamp = 0.0

    def update(self, value: float, now: float) -> None:
        """Observe ``value`` at ``now`` (``time.time()``)."""
        if self.value is None or value > self.value or now - self.timestamp > self.window:
            self.value = value
            self.timestamp = now


class RequestLatency:
    """HTTP request durations by method, route template and status, as one Prometheus histogram.

    Hand-written rather than prometheus-client's ``Histogram``, for two costs
    measured here: its ``observe`` takes a lock and costs about 2 µs, this one
    (used from the event loop only, observations and scrapes alike) about
    0.4 µs, on requests of about 50 µs; and its generic text writer validates
    and escapes every label of every line, about 20 µs a line, when this
    histogram has 20 lines per series (180 series took 90 ms to write). Here
    the labels of a series are escaped once, when it first appears.
    """

    NAME = "fastpacs_http_request_duration_seconds"
    HELP = "Time to answer HTTP requests, by method, route template and status"
    BOUNDS = (*map(floatToGoString, LATENCY_BUCKETS), "+Inf")

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], list] = {}
        """(method, route, status) → [count per bucket (the last one is +Inf), sum of seconds, labels]."""

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        series = self._series.get((method, route, status))
        if series is None:
            labels = f'method="{_label(method)}",route="{_label(route)}",status="{status}"'
            series = self._series[(method, route, status)] = [[0] * len(self.BOUNDS), 0.0, labels]
        series[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        series[1] += seconds

    def text(self) -> str:
        """The histogram in the text exposition format, HELP and TYPE included."""
        name = self.NAME
        lines = [f"# HELP {name} {self.HELP}\n# TYPE {name} histogram\n"]
        for counts, total, labels in self._series.values():
            count = 0
            for bound, count in zip(self.BOUNDS, accumulate(counts), strict=True):
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {count}\n')
            lines.append(f"{name}_count{{{labels}}} {count}\n{name}_sum{{{labels}}} {total!r}\n")
        return "".join(lines)


def _label(value: str) -> str:
    """A label value escaped as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class PoolState(Protocol):
    processes: int
    queued: int
    """Tasks submitted and not finished (running or waiting)."""


class PendingState(Protocol):
    pending: int
    """Bytes of uploads admitted and not yet stored."""
    limit: int


class RepairState(Protocol):
    """What the start-up check found and removed (see ``services.consistency.ConsistencyReport``)."""

    temporary_files_removed: int
    orphan_blobs_removed: int
    blobs_checked: int
    seconds: float


class CacheState(Protocol):
    size: int

    def __len__(self) -> int: ...


class TrackedJobState(Protocol):
    @property
    def state(self) -> str: ...


class JobsState(Protocol):
    def job_ids(self) -> list[str]: ...

    def get(self, job_id: str) -> TrackedJobState | None: ...


class _Families:
    """A ready list of metric families, in the shape ``generate_latest`` reads."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _orthanc_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.9g}"


class ServerMetrics:
    """Every metric of one server, and the observation calls the components make."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        self._database: Database | None = None
        self._pool: PoolState | None = None
        self._cache: CacheState | None = None
        self._jobs: JobsState | None = None
        self._pending: PendingState | None = None
        self._repair: RepairState | None = None

        self.durations = {name: RecentMaximum() for name in ORTHANC_DURATIONS}
        self._rest_api_duration = self.durations["orthanc_rest_api_duration_ms"]
        self._lock = threading.Lock()
        """Serializes the updates made from several threads (the DICOM associations)."""
        self.active_requests = 0
        self.recent_active_requests = RecentMaximum()
        self.requests = RequestLatency()

        registry = self.registry
        self.ingest_seconds = Histogram(
            "fastpacs_ingest_duration_seconds",
            "Time to store one DICOM file, from its bytes to its committed index entry",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ingest_files = PrometheusCounter(
            "fastpacs_ingest_files",
            "DICOM files offered for storage, by outcome (Success, AlreadyStored, Rejected)",
            ("outcome",),
            registry=registry,
        )
        self.ingest_bytes = PrometheusCounter(
            "fastpacs_ingest_bytes",
            "Bytes of the DICOM files offered for storage, by outcome",
            ("outcome",),
            registry=registry,
        )
        self.storage_write_seconds = Histogram(
            "fastpacs_storage_write_duration_seconds",
            "Time to store a new file (hash, write, link; the flush too for an upload of one file)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.storage_flush_seconds = Histogram(
            "fastpacs_storage_flush_duration_seconds",
            "Time to make a group of files stored unflushed durable (by workers, or the index writer's)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.storage_flush_files = Histogram(
            "fastpacs_storage_flush_files",
            "New files made durable by one flush",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.commit_batch_size = Histogram(
            "fastpacs_index_commit_batch_size",
            "Write operations grouped in one index commit",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "fastpacs_index_commit_duration_seconds",
            "Time to apply and commit one batch of index operations (fsync included)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.associations_active = Gauge(
            "fastpacs_dicom_associations_active",
            "DICOM associations open now",
            registry=registry,
        )
        self.associations = PrometheusCounter(
            "fastpacs_dicom_associations",
            "DICOM associations ended, by outcome (released, aborted, rejected)",
            ("outcome",),
            registry=registry,
        )
        self.association_seconds = Histogram(
            "fastpacs_dicom_association_duration_seconds",
            "Lifetime of DICOM associations",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dicom_operation_seconds = Histogram(
            "fastpacs_dicom_operation_duration_seconds",
            "Time to serve one DIMSE request, by service (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET)",
            ("operation",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        ProcessCollector(registry=registry)
        registry.register(_StateCollector(self))

    def watch(self, database: Database, pool: PoolState, cache: CacheState) -> None:
        """The components whose state is read at scrape time."""
        self._database, self._pool, self._cache = database, pool, cache

    def watch_ingest(self, pending: PendingState) -> None:
        """The uploads being stored, bounded by ``MaximumPendingIngestSize`` (503 beyond)."""
        self._pending = pending

    def watch_startup_repair(self, report: RepairState) -> None:
        """The start-up check's report, shown as ``fastpacs_startup_repair_*`` until the next start."""
        self._repair = report

    def watch_jobs(self, jobs: JobsState) -> None:
        """The job engine, whose jobs give ``orthanc_jobs_*``."""
        self._jobs = jobs

    # ------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        """The body of /tools/metrics-prometheus: Orthanc's lines first, then fastpacs's; empty when off."""
        if not self.enabled:
            return b""
        orthanc: list[Metric] = []
        own: list[Metric] = []
        for family in self.registry.collect():
            (orthanc if family.name.startswith("orthanc_") else own).append(family)
        lines = [
            f"{sample.name} {_orthanc_number(sample.value)} {int((sample.timestamp or 0) * 1000)}\n"
            for family in sorted(orthanc, key=lambda family: family.name)
            for sample in family.samples
        ]
        return "".join(lines).encode() + generate_latest(_Families(own)) + self.requests.text().encode()

    # ------------------------------------------------------------ HTTP

    def request_started(self) -> None:
        """A request arrived (the caller checked :attr:`enabled`; event loop only)."""
        self.active_requests += 1
        self.recent_active_requests.update(self.active_requests, time.time())

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        """The request announced by :meth:`request_started` was answered (even if metrics are off now)."""
        now = time.time()
        self.active_requests -= 1
        self.recent_active_requests.update(self.active_requests, now)
        self._rest_api_duration.update(seconds * 1000, now)
        self.requests.observe(method, route, status, seconds)

    def request_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """:meth:`request_started` and :meth:`request_finished` at once, for a request counted once
        answered (the fast lane): one clock read instead of two, the same observations."""
        now = time.time()
        self.recent_active_requests.update(self.active_requests + 1, now)
        self._rest_api_duration.update(seconds * 1000, now)
        self.requests.observe(method, route, status, seconds)

    # ------------------------------------------------------------ ingest, storage, index

    def observe_ingest(self, outcome: str, size: int, seconds: float | None, write_seconds: float) -> None:
        """One file stored (``outcome`` Success or AlreadyStored); ``seconds`` None when not timed alone."""
        if not self.enabled:
            return
        self.ingest_files.labels(outcome).inc()
        self.ingest_bytes.labels(outcome).inc(size)
        self.observe_storage_write(write_seconds)
        if seconds is not None:
            self.ingest_seconds.observe(seconds)
            self.durations["orthanc_store_dicom_duration_ms"].update(seconds * 1000, time.time())

    def observe_rejected(self, size: int) -> None:
        if self.enabled:
            self.ingest_files.labels("Rejected").inc()
            self.ingest_bytes.labels("Rejected").inc(size)

    def observe_storage_write(self, seconds: float) -> None:
        if self.enabled and seconds > 0:  # 0: the blob was already stored, nothing written
            self.storage_write_seconds.observe(seconds)
            self.durations["orthanc_storage_create_duration_ms"].update(seconds * 1000, time.time())

    def observe_storage_flush(self, files: int, seconds: float) -> None:
        """One flush of files stored unflushed (the group flush of ingest, or the index writer's own)."""
        if self.enabled:
            self.storage_flush_files.observe(files)
            self.storage_flush_seconds.observe(seconds)

    def observe_storage_remove(self, seconds: float) -> None:
        if self.enabled:
            self.durations["orthanc_storage_remove_duration_ms"].update(seconds * 1000, time.time())

    def observe_index_commit(self, operations: int, seconds: float) -> None:
        if self.enabled:
            self.commit_batch_size.observe(operations)
            self.commit_seconds.observe(seconds)

    # ------------------------------------------------------------ DICOM network

    def association_opened(self) -> None:
        self.associations_active.inc()

    def association_closed(
        self,
        seconds: float,
        outcome: str,
        *,
        calling_aet: str,
        called_aet: str,
        remote: str,
        operations: int,
    ) -> None:
        """An association ended (``outcome``: released, aborted, rejected): metrics and its log line.

        Call once per association, after :meth:`association_opened` (a rejected
        association may skip that call: it was never open).
        """
        if outcome != "rejected":
            self.associations_active.dec()
        if self.enabled:
            self.associations.labels(outcome).inc()
            self.association_seconds.observe(seconds)
        association_logger.info(
            "association",
            extra={
                "fields": {
                    "calling_aet": calling_aet,
                    "called_aet": called_aet,
                    "remote": remote,
                    "outcome": outcome,
                    "operations": operations,
                    "duration_ms": round(seconds * 1000, 3),
                }
            },
        )

    def observe_dicom_operation(self, operation: str, seconds: float) -> None:
        """One DIMSE request served (``operation``: C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET)."""
        if not self.enabled:
            return
        self.dicom_operation_seconds.labels(operation).observe(seconds)
        orthanc_name = DICOM_OPERATION_METRICS.get(operation)
        if orthanc_name is not None:
            with self._lock:
                self.durations[orthanc_name].update(seconds * 1000, time.time())


class _StateCollector(Collector):
    """The metrics read from the components at scrape time."""

    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # computed at each scrape: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        now = time.time()
        yield from self._index(now)
        yield from self._jobs(now)
        for name, recent in metrics.durations.items():
            if recent.value is not None:
                yield _orthanc_gauge(name, recent.value, recent.timestamp)
        active = metrics.recent_active_requests
        if active.value is not None:
            yield _orthanc_gauge("orthanc_rest_api_active_requests", active.value, active.timestamp)
        yield _orthanc_gauge("orthanc_up_time_s", int(now - metrics.started), now)
        if metrics._cache is not None:
            yield _orthanc_gauge("orthanc_dicom_cache_count", len(metrics._cache), now)
            yield _orthanc_gauge("orthanc_dicom_cache_size", metrics._cache.size / MEGABYTE, now)
        if metrics._pool is not None:
            processes, queued = metrics._pool.processes, metrics._pool.queued
            yield GaugeMetricFamily("fastpacs_worker_pool_processes", "Worker processes", processes)
            yield GaugeMetricFamily(
                "fastpacs_worker_pool_busy", "Worker processes running a task now", min(queued, processes)
            )
            yield GaugeMetricFamily(
                "fastpacs_worker_pool_queue_depth",
                "Tasks waiting for a free worker process",
                max(0, queued - processes),
            )
        yield GaugeMetricFamily(
            "fastpacs_http_requests_in_flight", "HTTP requests being answered now", metrics.active_requests
        )
        if metrics._pending is not None:
            yield GaugeMetricFamily(
                "fastpacs_ingest_pending_bytes", "Bytes of uploads being stored now", metrics._pending.pending
            )
            yield GaugeMetricFamily(
                "fastpacs_ingest_pending_limit_bytes",
                "Uploads in flight beyond which new ones are answered 503 (MaximumPendingIngestSize)",
                metrics._pending.limit,
            )
        if metrics._repair is not None:
            yield from _repair_families(metrics._repair)

    def _index(self, now: float) -> Iterator[Metric]:
        database = self.metrics._database
        if database is None:
            return
        with database.read() as view:
            counts = {level: view.count(level) for level in Level}
            disk = view.counter(Counter.DISK_SIZE)
            uncompressed = view.counter(Counter.UNCOMPRESSED_SIZE)
            last_change = view.counter(Counter.LAST_CHANGE)
        for level in Level:
            yield _orthanc_gauge(f"orthanc_count_{level.plural}", counts[level], now)
        yield _orthanc_gauge("orthanc_disk_size_mb", disk / MEGABYTE, now)
        yield _orthanc_gauge("orthanc_uncompressed_size_mb", uncompressed / MEGABYTE, now)
        yield _orthanc_gauge("orthanc_last_change", last_change, now)
        info, stat = database.env.info(), database.env.stat()
        pages = info["last_pgno"] + 1
        yield GaugeMetricFamily(
            "fastpacs_lmdb_map_size_bytes", "Size reserved for the index", info["map_size"]
        )
        yield GaugeMetricFamily("fastpacs_lmdb_used_pages", "Pages of the index file in use", pages)
        yield GaugeMetricFamily(
            "fastpacs_lmdb_used_bytes", "Bytes of the index file in use", pages * stat["psize"]
        )
        yield GaugeMetricFamily("fastpacs_lmdb_readers", "LMDB reader slots in use", info["num_readers"])

    def _jobs(self, now: float) -> Iterator[Metric]:
        counts = {"pending": 0, "running": 0, "success": 0, "failed": 0}
        jobs = self.metrics._jobs
        if jobs is not None:
            for job_id in jobs.job_ids():
                tracked = jobs.get(job_id)
                if tracked is not None:
                    counts[_JOB_STATE_COUNTS[str(tracked.state)]] += 1
        for key, value in counts.items():
            yield _orthanc_gauge(f"orthanc_jobs_{key}", value, now)
        yield _orthanc_gauge("orthanc_jobs_completed", counts["success"] + counts["failed"], now)


def _repair_families(report: RepairState) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "fastpacs_startup_repair_temporary_files_removed",
        "Half-written files a crash left in the storage, removed at start-up",
        report.temporary_files_removed,
    )
    yield GaugeMetricFamily(
        "fastpacs_startup_repair_orphan_blobs_removed",
        "Stored files no instance referred to (their index entry never committed), removed at start-up",
        report.orphan_blobs_removed,
    )
    yield GaugeMetricFamily(
        "fastpacs_startup_repair_blobs_checked", "Stored files checked at start-up", report.blobs_checked
    )
    yield GaugeMetricFamily("fastpacs_startup_repair_seconds", "Time the start-up check took", report.seconds)


_JOB_STATE_COUNTS = {
    "Pending": "pending",
    "Retry": "pending",
    "Running": "running",
    "Paused": "running",
    "Success": "success",
    "Failure": "failed",
}
"""How Orthanc's job statistics count each job state."""


def _orthanc_gauge(name: str, value: float, timestamp: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, name)
    family.add_metric((), value, timestamp=timestamp)
    return family


DISABLED_METRICS = ServerMetrics(enabled=False)
"""What components observe into when no server metrics were given to them (tools, tests)."""
