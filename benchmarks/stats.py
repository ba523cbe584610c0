"""What one measured run produced, and how runs are summed up into one figure per workload.

A run counts successful operations and errors separately: an error never
adds to throughput. Several runs of a workload are summarised by the median
of each figure, which is robust to one run disturbed by other work on the
machine.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) with linear interpolation between ranks, as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction {fraction} outside 0..1")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    below, above = math.floor(position), math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def median(values: Sequence[float]) -> float:
    return percentile(values, 0.5)


def median_or_none(values: Sequence[float | None]) -> float | None:
    """The median of the known values, ``None`` if none is known."""
    known = [value for value in values if value is not None]
    return median(known) if known else None


@dataclass
class RunResult:
    """One measured run of one workload against one server."""

    operations: int
    """Successful operations, in the workload's unit (requests, instances...)."""
    errors: int
    elapsed: float
    """Seconds of wall-clock time the run took."""
    transferred: int = 0
    """Bytes moved by successful operations (uploaded or downloaded)."""
    p50: float | None = None
    """Latency of one request, in seconds; ``None`` when the client cannot tell."""
    p99: float | None = None
    server_cpu: float = 0.0
    """CPU seconds used by the server's processes during the run."""
    client_cpu: float = 0.0
    """CPU seconds used by the benchmark client (this process and its child tools)."""
    server_peak_rss: int = 0
    """Largest resident memory of the server's process tree seen during the run, in bytes."""
    error_sample: str = ""
    """What the first error looked like, to tell a missing feature from a failure under load."""

    @property
    def per_second(self) -> float | None:
        return self.operations / self.elapsed if self.operations and self.elapsed > 0 else None

    @property
    def megabytes_per_second(self) -> float | None:
        return self.transferred / 1e6 / self.elapsed if self.operations and self.elapsed > 0 else None

    def cpu_percent(self, seconds: float) -> float | None:
        """CPU use as a percentage of one core (200 % is both cores of this machine)."""
        return 100 * seconds / self.elapsed if self.elapsed > 0 else None


def latencies_result(latencies: Sequence[float], **counts) -> RunResult:
    """A run measured by an in-process client that timed every successful operation."""
    return RunResult(
        p50=percentile(latencies, 0.5) if latencies else None,
        p99=percentile(latencies, 0.99) if latencies else None,
        **counts,
    )


@dataclass
class Summary:
    """The figures of one workload on one server: medians over its runs."""

    runs: int
    per_second: float | None
    megabytes_per_second: float | None
    p50: float | None
    p99: float | None
    errors: int
    server_cpu_percent: float | None
    client_cpu_percent: float | None
    server_peak_rss: int
    notes: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        """Whether there is a throughput to compare (some operation succeeded)."""
        return self.per_second is not None


def summarize(runs: Sequence[RunResult], notes: Sequence[str] = ()) -> Summary:
    """Median of each figure over ``runs``; errors add up; the peak is the largest seen."""
    samples = [run.error_sample for run in runs if run.error_sample]
    return Summary(
        runs=len(runs),
        per_second=median_or_none([run.per_second for run in runs]),
        megabytes_per_second=median_or_none([run.megabytes_per_second for run in runs]),
        p50=median_or_none([run.p50 for run in runs]),
        p99=median_or_none([run.p99 for run in runs]),
        errors=sum(run.errors for run in runs),
        server_cpu_percent=median_or_none([run.cpu_percent(run.server_cpu) for run in runs]),
        client_cpu_percent=median_or_none([run.cpu_percent(run.client_cpu) for run in runs]),
        server_peak_rss=max((run.server_peak_rss for run in runs), default=0),
        notes=[*notes, *samples[:1]],
    )


def ratio(candidate: Summary | None, reference: Summary | None) -> float | None:
    """How many times the candidate's throughput is the reference's; ``None`` unless both have one."""
    if candidate is None or reference is None or not candidate.available or not reference.available:
        return None
    return candidate.per_second / reference.per_second
