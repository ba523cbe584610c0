"""An asyncio HTTP load client for the workloads wrk cannot drive (uploads, long downloads).

``concurrency`` coroutines share one connection pool on a uvloop event loop;
each takes the next request from the workload's source, sends it, streams the
answer (counting bytes without keeping them) and records the latency of every
success. The pool is httpcore's, the transport under httpx, used directly:
httpx's request and response models double the client's CPU per upload
(about 1.4 against 0.7 ms for 512 KB here), CPU taken from the server on a
2-core machine. No Accept-Encoding is sent, so bodies come as any client
(and wrk) gets them by default. A request is a success when the server answers
2xx; anything else, including a refused connection or a time-out, is an
error and never counts as throughput.
Requests run with the garbage collector paused (:mod:`benchmarks.collector`).
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpcore
import uvloop

from benchmarks.collector import collector_paused
from benchmarks.stats import RunResult, latencies_result

REQUEST_TIMEOUT = 120.0


@dataclass
class Request:
    method: str
    path: str
    body: bytes | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    units: int = 1
    """How many of the workload's operations one success counts for (instances of a study...)."""
    label: str = ""
    """What the request is about, for whoever reads its answer (the corpus file it uploads...)."""


@dataclass
class Answer:
    """What a successful request gave back, for the workloads that need it (IDs to delete...)."""

    request: Request
    body: bytes = field(repr=False)


RequestSource = Callable[[], Request | None]
"""Gives the next request, or ``None`` when there is nothing left to send."""


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    operations: int = 0
    errors: int = 0
    transferred: int = 0
    error_sample: str = ""
    answers: list[Answer] = field(default_factory=list)

    def error(self, description: str) -> None:
        self.errors += 1
        if not self.error_sample:
            self.error_sample = description[:300]


TRANSPORT_ERRORS = (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError)
TIMEOUTS = {
    "timeout": {
        "connect": REQUEST_TIMEOUT,
        "read": REQUEST_TIMEOUT,
        "write": REQUEST_TIMEOUT,
        "pool": REQUEST_TIMEOUT,
    }
}


async def _send(
    pool: httpcore.AsyncConnectionPool, base_url: str, request: Request, tally: _Tally, keep: bool
) -> None:
    headers = [(name.encode(), value.encode()) for name, value in request.headers.items()]
    if request.body is not None:
        headers.append((b"Content-Length", str(len(request.body)).encode()))
    started = time.perf_counter()
    received = 0
    chunks: list[bytes] = []
    try:
        async with pool.stream(
            request.method,
            base_url + request.path,
            headers=headers,
            content=request.body,
            extensions=TIMEOUTS,
        ) as response:
            async for chunk in response.aiter_stream():
                received += len(chunk)
                if keep or response.status >= 300:
                    chunks.append(chunk)
    except TRANSPORT_ERRORS as failure:
        tally.error(f"{request.method} {request.path}: {type(failure).__name__} {failure}")
        return
    if response.status >= 300:
        body = b"".join(chunks)[:200]
        tally.error(f"{request.method} {request.path}: HTTP {response.status} {body!r}")
        return
    tally.latencies.append(time.perf_counter() - started)
    tally.operations += request.units
    tally.transferred += received + len(request.body or b"")
    if keep:
        tally.answers.append(Answer(request, b"".join(chunks)))


async def _load(
    base_url: str, source: RequestSource, concurrency: int, duration: float | None, keep_answers: bool
) -> tuple[_Tally, float]:
    tally = _Tally()
    async with httpcore.AsyncConnectionPool(max_connections=concurrency) as pool:
        started = time.perf_counter()
        deadline = started + duration if duration is not None else None

        async def worker() -> None:
            while deadline is None or time.perf_counter() < deadline:
                request = source()
                if request is None:
                    return
                await _send(pool, base_url, request, tally, keep_answers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return tally, elapsed


def run_requests(
    base_url: str,
    source: RequestSource,
    concurrency: int,
    duration: float | None = None,
    keep_answers: bool = False,
) -> tuple[RunResult, list[Answer]]:
    """Send requests until ``duration`` seconds have passed or the source runs dry.

    Requests started before the deadline finish and count. With ``keep_answers``
    the bodies of successful answers are returned too.
    """
    with collector_paused(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        tally, elapsed = runner.run(_load(base_url, source, concurrency, duration, keep_answers))
    result = latencies_result(
        tally.latencies,
        operations=tally.operations,
        errors=tally.errors,
        elapsed=elapsed,
        transferred=tally.transferred,
        error_sample=tally.error_sample,
    )
    return result, tally.answers


def requests_from(requests: list[Request]) -> RequestSource:
    """A source that sends each of ``requests`` once."""
    remaining = iter(requests)
    return lambda: next(remaining, None)


def cycling(requests: list[Request]) -> RequestSource:
    """A source that goes round ``requests`` for as long as it is asked."""
    position = -1

    def next_request() -> Request:
        nonlocal position
        position = (position + 1) % len(requests)
        return requests[position]

    return next_request
