"""Run the benchmark suite: ``python -m benchmarks.run [options]`` (see ``--help`` and benchmarks/README.md).

The servers (fastpacs, the reference Orthanc, and for the C-STORE workloads
Orthanc started with TCP_NODELAY=1) each get fresh storage, and run in two
phases:

1. every server is started and seeded with the corpus; then the read, then
   the write workloads run, one after the other;
2. the servers are started again, empty, and loaded with the scale set; then
   the scale workloads run in the same way.

Every workload gets a warm-up and ``--runs`` measured runs of ``--duration``
seconds on each server, the servers taking each run in turns (the others
idle meanwhile, see :func:`run_in_turns`); the table shows the median of
each figure. A server that answers a workload with errors only is reported
n/a for it, never stops the suite; a server that dies is restarted (and
re-seeded) for the next workload, except in the scale phase.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import httpx

from benchmarks import report
from benchmarks.corpus import DEFAULT_CACHE, Corpus, CorpusSpec, ensure_corpus
from benchmarks.http_client import Request, requests_from, run_requests
from benchmarks.procstats import ProcessTreeMonitor, measured
from benchmarks.report import Row
from benchmarks.scale import ScaleSet, scale_set
from benchmarks.stats import RunResult, Summary, summarize
from benchmarks.workloads import (
    DICOM_UPLOAD,
    SCALE_LOAD,
    WORKLOADS,
    Context,
    Phase,
    Plan,
    Seeded,
    SeededInstance,
    Settings,
    UnavailableError,
    Variants,
    Workload,
    select,
)
from fastpacs.testing import ServerProcess, fastpacs_server, orthanc_server

T = TypeVar("T")
RESULTS = Path(__file__).with_name("results")
ISSUE_CSTORE_FILES = 2000
"""Files per C-STORE run when the C-STORE workloads run alone: issue 9's benchmark."""
SEED_CONCURRENCY = 4
SCALE_LOAD_CONCURRENCY = 16

SERVERS: dict[str, Callable[[Path, dict], ServerProcess]] = {
    "fastpacs": fastpacs_server,
    "orthanc": orthanc_server,
    "orthanc-nodelay": lambda directory, options: orthanc_server(directory, options, tcp_nodelay=True),
}
REFERENCE, TUNED_REFERENCE = "orthanc", "orthanc-nodelay"


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def servers_for(workload: Workload) -> tuple[str, ...]:
    return ("fastpacs", REFERENCE, TUNED_REFERENCE) if workload.tuned_reference else ("fastpacs", REFERENCE)


def needs_seed(workload: Workload) -> bool:
    return workload.phase == Phase.READ


def cstore_files_for(workloads: list[Workload], asked: int | None) -> int | None:
    """Files per C-STORE run: as asked; else issue 9's count when only C-STORE workloads run (the
    default suite keeps runs of about ``--duration`` seconds, its 20 minutes would not hold 2,000 files)."""
    if asked is None and all(workload.name.startswith("cstore-") for workload in workloads):
        return ISSUE_CSTORE_FILES
    return asked


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


@dataclass
class Suite:
    """What every server's runs share."""

    corpus: Corpus
    settings: Settings
    cache: Path
    keep: bool
    options: dict[str, dict]
    servers_record: dict = field(default_factory=dict)
    """Per server: version, seed result, peak RSS over its measured windows (for the JSON record)."""
    _scale: ScaleSet | None = None

    def scale_set(self) -> ScaleSet:
        """The scale test's data, made (or read from the cache) on first use."""
        if self._scale is None:
            log("preparing the scale set")
            self._scale = scale_set(self.settings.scale_instances, self.cache)
        return self._scale


class ServerStartError(Exception):
    """The server exited during start-up or never answered."""


class RunningServer:
    """One server under test: fresh folder, process-tree monitor, restart after a crash."""

    def __init__(self, name: str, options: dict, keep: bool):
        self.name = name
        self.options = options
        self.keep = keep
        self.server: ServerProcess | None = None
        self.monitor: ProcessTreeMonitor | None = None
        self.directory: Path | None = None
        self.lifetime_peak_rss = 0
        self.version = ""
        self.preloaded: RunResult | None = None

    def start(self, prepare: Callable[[Path], RunResult] | None = None) -> ServerProcess:
        """Start in a fresh folder, which ``prepare`` may fill first (a bulk-loaded index)."""
        self.directory = Path(tempfile.mkdtemp(prefix=f"fastpacs-bench-{self.name}-"))
        if prepare is not None:
            try:
                self.preloaded = prepare(self.directory)
            except Exception as failure:  # whatever the loader raises, this server's scale phase is n/a
                self.stop()
                raise ServerStartError(
                    f"preparing its storage failed: {type(failure).__name__}: {failure}"
                ) from failure
        self.server = SERVERS[self.name](self.directory, self.options)
        try:
            self.server.start()
        except RuntimeError as failure:  # it exited or never answered: the message holds its log
            self.stop()
            raise ServerStartError(str(failure)[-500:]) from failure
        self.monitor = ProcessTreeMonitor(self.server.process.pid, idle_sampling=False).start()
        self.version = httpx.get(f"{self.server.base_url}/system", timeout=10).json().get("Version", "")
        return self.server

    def alive(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.monitor is not None:
            self.monitor.stop()
            self.lifetime_peak_rss = max(self.lifetime_peak_rss, self.monitor.lifetime_peak_rss)
        if self.directory is not None and not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.server = self.monitor = self.directory = None


@contextmanager
def running(
    name: str, suite: Suite, prepare: Callable[[Path], RunResult] | None = None
) -> Iterator[RunningServer]:
    server = RunningServer(name, suite.options.get(name, {}), suite.keep)
    log(f"starting {name}")
    server.start(prepare)
    try:
        yield server
    finally:
        server.stop()
        entry = suite.servers_record.setdefault(name, {})
        entry["version"] = server.version
        entry["peak_rss"] = max(entry.get("peak_rss", 0), server.lifetime_peak_rss)


def _measure_once(monitor: ProcessTreeMonitor, action: Callable[[], RunResult]) -> RunResult:
    with measured(monitor) as window:
        result = action()
    return replace(
        result,
        server_cpu=window["server_cpu"],
        client_cpu=window["client_cpu"],
        server_peak_rss=window["server_peak_rss"],
    )


def seed(server: RunningServer, corpus: Corpus) -> tuple[Seeded, RunResult]:
    """Upload the whole corpus; the answers give each file's instance and study IDs."""
    requests = [
        Request("POST", "/instances", corpus.read(file), DICOM_UPLOAD, label=file.path)
        for file in corpus.files
    ]
    by_path = {file.path: file for file in corpus.files}
    answers = []

    def upload() -> RunResult:
        result, kept = run_requests(
            server.server.base_url, requests_from(requests), SEED_CONCURRENCY, keep_answers=True
        )
        answers.extend(kept)
        return result

    result = _measure_once(server.monitor, upload)
    seeded = Seeded()
    for answer in answers:
        try:
            ids = json.loads(answer.body)
            instance = SeededInstance(
                file=by_path[answer.request.label],
                id=ids["ID"],
                study=ids["ParentStudy"],
            )
        except (ValueError, KeyError, TypeError):
            log(f"{server.name}: unexpected answer to {answer.request.label}: {answer.body[:200]!r}")
            result.errors += 1
            continue
        seeded.instances.append(instance)
    seeded.instances.sort(key=lambda instance: instance.file.path)
    return seeded, result


def load_scale(server: RunningServer, scale: ScaleSet) -> RunResult:
    """Upload the scale set through POST /instances with 16 clients (reported as the ``scale-load`` row)."""
    requests = (Request("POST", "/instances", payload, DICOM_UPLOAD) for payload in scale.payloads)
    return _measure_once(
        server.monitor,
        lambda: run_requests(server.server.base_url, lambda: next(requests, None), SCALE_LOAD_CONCURRENCY)[0],
    )


@dataclass
class Contestant:
    """A server started for a phase, with what its workloads need to know of it."""

    server: RunningServer
    context: Context
    seeded: bool = False
    """Whether it holds the corpus (uploaded again if it has to be restarted)."""


class Trial:
    """One workload on one server: its plan, warm-up and measured runs, and at the end its row.

    A failure (the workload unavailable on this server, the client or the
    server failing) ends the trial: its row is n/a, with the reason; the
    trials of the other servers go on.
    """

    def __init__(self, workload: Workload, contestant: Contestant):
        self.workload = workload
        self.server = contestant.server
        self.context = contestant.context
        self.plan: Plan | None = None
        """Set by a successful warm-up, dropped when the trial fails."""
        self.runs: list[RunResult] = []
        self.notes: list[str] = []
        self.warm_up_errors = 0

    def warm_up(self, settings: Settings) -> None:
        """Build the plan and warm up; a warm-up without a success makes the workload n/a here."""
        with self._failures_noted():
            plan = self.workload.build(self.context)
            warm = plan.warm_up(settings.warmup)
            if warm.operations:
                self.plan = plan
            else:
                self.warm_up_errors = warm.errors
                self.notes.append(f"n/a: {warm.error_sample or 'no operation succeeded in the warm-up'}")

    def run(self, settings: Settings) -> None:
        """One measured run, unless the warm-up or an earlier run failed."""
        plan, self.plan = self.plan, None  # given back once the run went through
        if plan is None:
            return
        with self._failures_noted():
            assert self.server.monitor is not None
            plan.before_run()
            self.runs.append(_measure_once(self.server.monitor, lambda: plan.run(settings.duration)))
            plan.after_run()
            self.plan = plan

    @contextmanager
    def _failures_noted(self) -> Iterator[None]:
        try:
            yield
        except UnavailableError as reason:
            self.notes.append(f"n/a: {reason}")
            self.runs = []
        except Exception as failure:  # noqa: BLE001 - one workload's failure is reported, the suite goes on
            self.notes.append(f"n/a: the benchmark failed: {type(failure).__name__}: {failure}"[:400])
            self.runs = []

    def finish(self) -> Row:
        """The row: the medians of the runs, and what went wrong if anything did."""
        workload = self.workload
        row = _row(workload, self.server.name, summarize(self.runs, notes=self.notes), self.runs)
        if not self.runs:
            row.summary.errors = self.warm_up_errors
        elif row.summary.errors and not any(run.error_sample for run in self.runs):
            row.summary.notes.append(f"{row.summary.errors} errors under load (wrk does not say which)")
        if not self.server.alive():
            tail = self.server.server.log_tail(5) if self.server.server is not None else ""
            row.summary.notes.append(f"the server died during this workload: {tail}"[:600])
        per_second = row.summary.per_second
        figure = f"{per_second:,.1f} {workload.unit}/s" if per_second else "n/a"
        log(f"{self.server.name} {workload.name}: {figure}, {row.summary.errors} errors")
        return row


def _restart_if_dead(server: RunningServer, context: Context, suite: Suite, seeded: bool) -> None:
    if server.alive():
        return
    log(f"{server.name} died; restarting it with fresh storage")
    server.stop()
    context.server = server.start()
    context.variants = Variants()
    context.studies.clear()
    if seeded:
        context.seeded, _ = seed(server, suite.corpus)


def _unready(contestant: Contestant, suite: Suite, scale: bool) -> str | None:
    """Why a server cannot take the next workload (``None``: it can). One that died is started
    again (and seeded again), except in the scale phase, whose load is too long to repeat."""
    if contestant.server.alive():
        return None
    if scale:
        return "n/a: the server died earlier in the scale phase"
    try:
        _restart_if_dead(contestant.server, contestant.context, suite, contestant.seeded)
    except ServerStartError as failure:
        log(f"{contestant.server.name} could not start again: {failure}")
        return f"n/a: the server could not start: {failure}"[:600]
    return None


def _prepare_main(
    server: RunningServer, workloads: list[Workload], suite: Suite, rows: list[Row]
) -> Contestant:
    """The read and write phase: the server seeded with the corpus if any of its workloads needs it."""
    corpus = suite.corpus
    context = Context(server.server, corpus, suite.settings, Variants())
    contestant = Contestant(server, context, seeded=any(needs_seed(workload) for workload in workloads))
    if contestant.seeded:
        size = corpus.total_size / 1e6
        log(f"{server.name}: uploading the corpus ({len(corpus.files)} files, {size:.0f} MB)")
        context.seeded, seeding = seed(server, corpus)
        log(f"{server.name}: seed stored {seeding.operations} files, {seeding.errors} errors")
        suite.servers_record.setdefault(server.name, {})["seed"] = asdict(seeding)
    return contestant


def _prepare_scale(
    server: RunningServer, workloads: list[Workload], suite: Suite, rows: list[Row]
) -> Contestant:
    """The scale phase: the scale set loaded (reported as its own row)."""
    scale = suite.scale_set()
    context = Context(server.server, suite.corpus, suite.settings, Variants(), scale=scale)
    if server.preloaded is not None:
        loading = server.preloaded
        note = "written offline by benchmarks/bulk_index.py before the server started: not REST ingest"
        rows.append(Row(SCALE_LOAD, server.name, "bulk", summarize([loading], notes=[note]), [loading]))
    else:
        log(f"{server.name}: loading {scale.count} small instances ({scale.origin}) through POST /instances")
        loading = load_scale(server, scale)
        rows.append(Row(SCALE_LOAD, server.name, "inst", summarize([loading]), [loading]))
    log(f"{server.name} {SCALE_LOAD}: {loading.per_second or 0:,.1f} inst/s, {loading.errors} errors")
    return Contestant(server, context)


def turns(servers: list[T], number: int) -> list[T]:
    """The servers' order for the ``number``-th turn: as given, then reversed, and so on."""
    return servers if number % 2 == 0 else servers[::-1]


def run_in_turns(trials: list[Trial], settings: Settings, number: int) -> list[Row]:
    """Warm up each server, then give the servers the measured runs in turns.

    Each measured run of one server is followed by the same run on the
    others, and the first of a turn alternates: the shared machine's drift
    (from run to run, over the suite's minutes) falls on every server alike
    instead of on whichever ran later, and what a run leaves behind (the disk
    writing back an ingest's files) weighs on each server's next run in turn.
    """
    for trial in turns(trials, number):
        trial.warm_up(settings)
    for run in range(settings.runs):
        for trial in turns(trials, number + run):
            trial.run(settings)
    return [trial.finish() for trial in trials]


def _row(workload: Workload, server: str, summary: Summary, runs: list[RunResult]) -> Row:
    reference = TUNED_REFERENCE if workload.tuned_reference else REFERENCE
    return Row(workload.name, server, workload.unit, summary, runs, goal=workload.goal, reference=reference)


def _unavailable_row(workload: Workload, server: str, note: str) -> Row:
    return _row(workload, server, summarize([], notes=[note]), [])


def _scale_set_failure(suite: Suite) -> str | None:
    """Why the scale set could not be made or read, if it could not: its phase is then n/a, and the
    rows of the other phase are still reported."""
    try:
        suite.scale_set()
    except Exception as failure:  # noqa: BLE001 - whatever the generator or the bulk loader raises
        log(f"the scale set could not be prepared: {type(failure).__name__}: {failure}")
        return f"{type(failure).__name__}: {failure}"
    return None


def run_phase(servers: list[str], workloads: list[Workload], suite: Suite, *, scale: bool) -> list[Row]:
    """Start every server the workloads of a phase name, seed each (or load the scale set), then run
    the workloads one after the other, each :func:`run_in_turns` on its servers; a server that
    cannot start has its workloads n/a, the others go on (and :func:`_unready` says what becomes of
    one that dies)."""
    rows: list[Row] = []
    if scale and (failure := _scale_set_failure(suite)) is not None:
        note = f"n/a: the scale set could not be prepared: {failure}"[:600]
        return [
            _unavailable_row(workload, name, note)
            for name in servers
            for workload in workloads
            if name in servers_for(workload)
        ]
    prepare = _prepare_scale if scale else _prepare_main
    with ExitStack() as stack:
        contestants: dict[str, Contestant] = {}
        for name in servers:
            own = [workload for workload in workloads if name in servers_for(workload)]
            if not own:
                continue
            preload = suite.scale_set().preload if scale and name == "fastpacs" else None
            try:
                server = stack.enter_context(running(name, suite, preload))
            except ServerStartError as failure:
                log(f"{name} could not start: {failure}")
                note = f"n/a: the server could not start: {failure}"[:600]
                rows.extend(_unavailable_row(workload, name, note) for workload in own)
                continue
            contestants[name] = prepare(server, own, suite, rows)
        for number, workload in enumerate(workloads):
            trials = []
            for name, contestant in contestants.items():
                if name not in servers_for(workload):
                    continue
                if (refusal := _unready(contestant, suite, scale)) is not None:
                    rows.append(_unavailable_row(workload, name, refusal))
                    continue
                trials.append(Trial(workload, contestant))
            rows += run_in_turns(trials, suite.settings, number)
    return rows


def order_rows(rows: list[Row]) -> list[Row]:
    """Suite order (issue order), with the scale load before the scale workloads, servers in start order."""
    names = [workload.name for workload in WORKLOADS]
    names.insert(next(i for i, workload in enumerate(WORKLOADS) if workload.phase == Phase.SCALE), SCALE_LOAD)
    servers = list(SERVERS)
    return sorted(rows, key=lambda row: (names.index(row.workload), servers.index(row.server)))


def _option(text: str) -> tuple[str, str, object]:
    """``fastpacs:WorkerProcesses=2`` → ("fastpacs", "WorkerProcesses", 2); the value is JSON or a string."""
    server, _, assignment = text.partition(":")
    key, _, value = assignment.partition("=")
    if server not in SERVERS or not key:
        raise argparse.ArgumentTypeError(f"expected SERVER:Option=VALUE with SERVER in {', '.join(SERVERS)}")
    try:
        return server, key, json.loads(value)
    except json.JSONDecodeError:
        return server, key, value


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n", 1)[1].strip(),
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "-w",
        "--workloads",
        default="*",
        help="comma-separated names or patterns (default: all but the optional ones, see --list)",
    )
    parser.add_argument(
        "-s", "--servers", default=",".join(SERVERS), help=f"comma-separated, from {', '.join(SERVERS)}"
    )
    parser.add_argument(
        "--runs", type=int, default=Settings.runs, help="measured runs per workload (median shown)"
    )
    parser.add_argument("--duration", type=float, default=Settings.duration, help="seconds per measured run")
    parser.add_argument(
        "--warmup", type=float, default=Settings.warmup, help="seconds of warm-up per workload"
    )
    parser.add_argument(
        "--patients", type=int, default=CorpusSpec.patients, help="corpus size (3 studies each)"
    )
    parser.add_argument(
        "--scale-instances", type=int, default=Settings.scale_instances, help="size of the scale test's set"
    )
    parser.add_argument(
        "--cstore-files",
        type=_positive,
        help=f"files per C-STORE run (default: {ISSUE_CSTORE_FILES} when only C-STORE workloads run, "
        "otherwise about --duration seconds' worth)",
    )
    parser.add_argument(
        "--large-study-slices",
        type=_positive,
        default=Settings.large_study_slices,
        help="length of the large generated CT study (about 0.5 MB a slice): uncached renders, archive-large",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 run of 1 s, 2000 scale instances: a smoke test"
    )
    parser.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="SERVER:Option=VALUE",
        help="extra configuration option for one server, e.g. fastpacs:WorkerProcesses=2",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the corpus is generated")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON records")
    parser.add_argument("--keep", action="store_true", help="keep the servers' storage folders")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    arguments = parser.parse_args(argv)
    options: dict[str, dict] = {}
    for server, key, value in arguments.option:
        options.setdefault(server, {})[key] = value
    arguments.option = options
    if arguments.quick:
        arguments.runs, arguments.duration, arguments.warmup, arguments.scale_instances = 1, 1, 1, 2000
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.list:
        for workload in WORKLOADS:
            optional = f" [not in the default suite: -w {workload.family}]" if workload.family else ""
            print(f"{workload.name:22} {workload.description}{optional}")
        return 0
    workloads = select(arguments.workloads.split(","))
    servers = [name.strip() for name in arguments.servers.split(",")]
    unknown = [name for name in servers if name not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown server {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    settings = Settings(
        duration=arguments.duration,
        warmup=arguments.warmup,
        runs=arguments.runs,
        scale_instances=arguments.scale_instances,
        cstore_files=cstore_files_for(workloads, arguments.cstore_files),
        large_study_slices=arguments.large_study_slices,
        cache=arguments.cache,
    )
    started = time.monotonic()
    info = report.machine()
    log("preparing the corpus (generated once, then read from the cache)")
    corpus = ensure_corpus(CorpusSpec(patients=arguments.patients), arguments.cache)
    suite = Suite(corpus, settings, arguments.cache, arguments.keep, arguments.option)
    main_workloads = sorted((w for w in workloads if w.phase != Phase.SCALE), key=lambda w: w.phase)
    rows = run_phase(servers, main_workloads, suite, scale=False)
    rows += run_phase(servers, [w for w in workloads if w.phase == Phase.SCALE], suite, scale=True)
    rows = order_rows(rows)
    recorded_settings = {
        "runs": settings.runs,
        "duration_s": settings.duration,
        "warmup_s": settings.warmup,
        "corpus_files": len(corpus.files),
        "corpus_mb": round(corpus.total_size / 1e6),
        "scale_instances": settings.scale_instances,
        "cstore_files": settings.cstore_files or "auto",
        "large_study_slices": settings.large_study_slices,
        "wall_clock_s": round(time.monotonic() - started),
    }
    print(report.header(info, recorded_settings))
    print()
    print(report.table(rows))
    peaks = ", ".join(
        f"{name} {entry['peak_rss'] / 1e6:.0f} MB" for name, entry in suite.servers_record.items()
    )
    print(f"\npeak memory (PSS) over each server's measured windows: {peaks}")
    if notes := report.notes(rows):
        print(f"\nnotes:\n{notes}")
    path = arguments.results / f"{datetime.now():%Y%m%d-%H%M%S}-{info['commit'] or 'nocommit'}.json"
    report.write_json(path, info, recorded_settings, suite.servers_record, rows)
    print(f"\nrecorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
