"""The workloads: what each one sends, with which client, at which concurrency.

A workload builds a :class:`Plan` for one server. The runner then calls
``warm_up`` once (a run whose figures are dropped; a warm-up without a single
success marks the workload n/a on that server, which is how missing features
show), and for each measured run ``before_run`` (untimed preparation),
``run`` (timed) and ``after_run`` (untimed clean-up).

The workloads run in three phases, each on its own fresh server:

- ``READ`` and ``WRITE`` share one server into which the whole corpus was
  uploaded first (the *seed*); reads run before writes, so that they see the
  same data on every server;
- ``SCALE`` runs on a server loaded with many tiny instances.

Some workloads need a generated CT study of their own
(:func:`benchmarks.corpus.ensure_ct_study`): the plan uploads it when it is
built (untimed), once per server, and the workloads that need the same study
share it. Workloads that take minutes (the archive of a 1 GB study) belong to
a ``family`` and are left out of the default suite: :func:`select` picks them
by their exact name or their family's.
"""

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from fnmatch import fnmatch
from pathlib import Path

import httpx

from benchmarks import wrk
from benchmarks.corpus import DEFAULT_CACHE, Corpus, CorpusFile, ensure_ct_study, variant
from benchmarks.dicom_senders import send_with_pynetdicom, send_with_storescu
from benchmarks.http_client import Answer, Request, RequestSource, cycling, requests_from, run_requests
from benchmarks.scale import ScaleSet
from benchmarks.stats import RunResult
from fastpacs.testing import ServerProcess

DICOM_UPLOAD = {"Content-Type": "application/dicom"}
INGEST_KINDS = ("ct",)
"""Ingest sends the 512×512 CT slices, as the reference figures were measured with."""
RENDER_KINDS = ("ct",)
"""The image workloads render 512×512 signed 16-bit CT slices (issue 5)."""

LARGE_STUDY_SLICES = 2000
"""The large generated CT study's default length: about 1 GB (issue 7), and more rendered answers than
fastpacs's cache of rendered images (64 MB) holds."""
SMALL_STUDY_SLICES = 24
"""A small study of the same kind (about 13 MB), to compare the archive's memory with the large one's."""
ANONYMIZE_STUDY_SLICES = 200
"""The study that anonymize-study anonymizes (issue 8)."""
STUDY_LOAD_CONCURRENCY = 4


class Phase(IntEnum):
    READ = 1
    WRITE = 2
    SCALE = 3


class UnavailableError(Exception):
    """The workload cannot run on this server (for example, the seed stored nothing it needs)."""


@dataclass(frozen=True)
class Settings:
    duration: float = 3.0
    warmup: float = 1.0
    runs: int = 3
    scale_instances: int = 22_000
    """The size at which issue 3 gives Orthanc's find latency (4.3 ms p50 by SOPInstanceUID)."""
    cstore_files: int | None = None
    """Files per measured C-STORE run; ``None``: ``duration`` seconds' worth, at most ``cstore_max_files``."""
    cstore_max_files: int = 3000
    large_study_slices: int = LARGE_STUDY_SLICES
    """Length of the large generated CT study (uncached renders, large archive); fewer for a trial run."""
    cache: Path = DEFAULT_CACHE
    """Where the generated CT studies are kept."""
    scratch: Path = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    """Where C-STORE files are written before a run (memory, so that the client reads no disk)."""


class Variants:
    """Hands out fresh corpus variants, so that every ingested instance is new to the server."""

    def __init__(self) -> None:
        self._next = 1

    def stream(self, payloads: list[bytes]) -> Iterator[bytes]:
        while True:
            number = self._next
            self._next += 1
            for payload in payloads:
                yield variant(payload, number)


@dataclass(frozen=True)
class SeededInstance:
    file: CorpusFile
    id: str
    study: str
    """The ID of its study."""


@dataclass(frozen=True)
class SeededStudy:
    id: str
    kinds: frozenset[str]
    instances: int


@dataclass
class Seeded:
    """What the seed stored on one server, with the IDs the server gave it."""

    instances: list[SeededInstance] = field(default_factory=list)

    def studies(self) -> list[SeededStudy]:
        grouped: dict[str, list[SeededInstance]] = {}
        for instance in self.instances:
            grouped.setdefault(instance.study, []).append(instance)
        return [
            SeededStudy(
                id=study,
                kinds=frozenset(member.file.kind for member in members),
                instances=len(members),
            )
            for study, members in grouped.items()
        ]


@dataclass(frozen=True)
class LoadedStudy:
    """A generated CT study stored on one server, with the IDs the server gave it."""

    id: str
    instances: list[str]
    """Instance IDs, in slice order."""


@dataclass
class Context:
    """Everything a plan may need about the server it runs against."""

    server: ServerProcess
    corpus: Corpus
    settings: Settings
    variants: Variants
    seeded: Seeded | None = None
    scale: ScaleSet | None = None
    studies: dict[int, LoadedStudy] = field(default_factory=dict)
    """The generated CT studies stored on this server so far, by number of slices."""

    def payloads(self, *kinds: str) -> list[bytes]:
        return [self.corpus.read(file) for file in self.corpus.of_kind(*kinds)]

    def require_seed(self) -> Seeded:
        if not self.seeded or not self.seeded.instances:
            raise UnavailableError("the corpus could not be stored on this server")
        return self.seeded

    def require_scale(self) -> ScaleSet:
        if self.scale is None:
            raise UnavailableError("the scale set was not loaded")
        return self.scale

    def ct_study(self, slices: int) -> LoadedStudy:
        """The generated CT study of ``slices`` instances, uploaded (untimed) on first use on this server."""
        if slices not in self.studies:
            self.studies[slices] = _upload_study(self.server, slices, self.settings.cache)
        return self.studies[slices]


def _upload_study(server: ServerProcess, slices: int, cache: Path) -> LoadedStudy:
    study = ensure_ct_study(slices, cache=cache)
    names = iter(study.names)

    def source() -> Request | None:
        """Reads each file when it is sent: the large study is not held in memory."""
        name = next(names, None)
        if name is None:
            return None
        return Request("POST", "/instances", (study.directory / name).read_bytes(), DICOM_UPLOAD, label=name)

    result, answers = run_requests(server.base_url, source, STUDY_LOAD_CONCURRENCY, keep_answers=True)
    if result.errors:
        raise UnavailableError(f"storing the generated {slices}-instance study failed: {result.error_sample}")
    stored = {answer.request.label: json.loads(answer.body) for answer in answers}
    (study_id,) = {ids["ParentStudy"] for ids in stored.values()}
    return LoadedStudy(study_id, [stored[name]["ID"] for name in study.names])


class Plan:
    """How a workload is driven against one server (see the module docstring)."""

    def warm_up(self, seconds: float) -> RunResult:
        result = self.run(seconds)
        self.after_run()
        return result

    def before_run(self) -> None:
        """Untimed preparation of the next run."""

    def run(self, seconds: float) -> RunResult:
        raise NotImplementedError

    def after_run(self) -> None:
        """Untimed clean-up after a run."""


class WrkPlan(Plan):
    """Requests cycled by wrk; the warm-up first sends one request alone to see any error."""

    def __init__(
        self,
        server: ServerProcess,
        requests: list[Request],
        connections: int,
        check: Callable[[bytes], str | None] | None = None,
    ):
        """``check`` looks at the answer to the first request and says what is wrong with it, if anything."""
        if not requests:
            raise UnavailableError("nothing to request")
        self.base_url = server.base_url
        self.requests = requests
        self.connections = connections
        self.check = check

    def warm_up(self, seconds: float) -> RunResult:
        probe, answers = run_requests(self.base_url, requests_from(self.requests[:1]), 1, keep_answers=True)
        if probe.errors:
            return probe
        if self.check is not None and (problem := self.check(answers[0].body)):
            return RunResult(
                operations=0,
                errors=1,
                elapsed=probe.elapsed,
                error_sample=f"wrong answer to {self.requests[0].path}: {problem}",
            )
        return super().warm_up(seconds)

    def run(self, seconds: float) -> RunResult:
        return wrk.run_wrk(self.base_url, self.requests, connections=self.connections, duration=seconds)


class ContinuingWrkPlan(WrkPlan):
    """A WrkPlan whose every run takes up the request list where the previous run stopped.

    wrk starts each run at the top of the list; a list longer than a server's
    cache of answers then still meets the cache, since each run asks again
    what the previous one just did. Continuing the cycle instead, no request
    comes back before the whole list has been gone through.
    """

    def run(self, seconds: float) -> RunResult:
        result = super().run(seconds)
        # Requests wrk sent: those answered (or failed), plus at most one still in flight per connection.
        shift = (result.operations + result.errors + self.connections) % len(self.requests)
        self.requests = self.requests[shift:] + self.requests[:shift]
        return result


class HttpPlan(Plan):
    """Requests sent by the asyncio client; ``cleanup`` receives the answers of each run."""

    def __init__(
        self,
        server: ServerProcess,
        source: RequestSource,
        concurrency: int,
        cleanup: Callable[[list[Answer]], None] | None = None,
        probe_warms_up: bool = False,
    ):
        """``probe_warms_up``: the first request, sent alone, is the whole warm-up (requests of a minute)."""
        self.base_url = server.base_url
        self.source = source
        self.concurrency = concurrency
        self.cleanup = cleanup
        self.probe_warms_up = probe_warms_up
        self._answers: list[Answer] = []

    def warm_up(self, seconds: float) -> RunResult:
        """One request alone first: if it fails, that error is the answer, without a flood of copies."""
        first = self.source()
        if first is None:
            raise UnavailableError("nothing to send")
        probe, self._answers = run_requests(
            self.base_url, requests_from([first]), 1, keep_answers=self.cleanup is not None
        )
        self.after_run()
        if probe.errors or self.probe_warms_up:
            return probe
        return super().warm_up(seconds)

    def run(self, seconds: float) -> RunResult:
        result, self._answers = run_requests(
            self.base_url, self.source, self.concurrency, seconds, keep_answers=self.cleanup is not None
        )
        return result

    def after_run(self) -> None:
        if self.cleanup is not None:
            self.cleanup(self._answers)
        self._answers = []


class CStorePlan(Plan):
    """New CT instances sent by C-STORE from files in memory.

    Each run sends ``Settings.cstore_files`` files. Without that setting, as a
    sender cannot send for a set time without files for that time, the
    warm-up measures the rate and each run sends about ``duration`` seconds'
    worth of files at the last rate seen.
    """

    WARM_UP_FILES_PER_ASSOCIATION = 40

    def __init__(self, context: Context, sender: str, associations: int):
        self.server = context.server
        self.settings = context.settings
        self.sender = sender
        self.associations = associations
        self.stream = context.variants.stream(context.payloads(*INGEST_KINDS))
        self.rate: float | None = None
        self.duration = context.settings.duration
        self.files: list[Path] = []
        self.folder: Path | None = None

    def _write(self, count: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fastpacs-bench-cstore-", dir=self.settings.scratch))
        self.files = []
        for number in range(count):
            path = self.folder / f"{number:06d}.dcm"
            path.write_bytes(next(self.stream))
            self.files.append(path)

    def _send(self, duration: float | None) -> RunResult:
        host, port, aet = "127.0.0.1", self.server.dicom_port, self.server.aet
        if self.sender == "storescu":
            result = send_with_storescu(host, port, aet, self.files, associations=self.associations)
        else:
            result = send_with_pynetdicom(
                host, port, aet, self.files, associations=self.associations, duration=duration
            )
        self.rate = result.per_second or self.rate
        return result

    def warm_up(self, seconds: float) -> RunResult:
        count = self.WARM_UP_FILES_PER_ASSOCIATION * self.associations
        if self.sender == "storescu":
            count //= 4  # storescu cannot stop at a deadline: keep its warm-up short on slow servers
        self._write(count)
        try:
            return self._send(duration=seconds)
        finally:
            self.after_run()

    def before_run(self) -> None:
        if self.settings.cstore_files is not None:
            self._write(self.settings.cstore_files)
            return
        wanted = round((self.rate or 10) * self.duration)
        self._write(max(5 * self.associations, min(wanted, self.settings.cstore_max_files)))

    def run(self, seconds: float) -> RunResult:
        self.duration = seconds
        return self._send(duration=None)

    def after_run(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.files = []


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    phase: Phase
    unit: str
    """What one operation is, in the table's ops/s column."""
    build: Callable[[Context], Plan]
    goal: float | None = None
    """fastpacs's target throughput ratio against the reference (issue 3)."""
    tuned_reference: bool = False
    """Compare against Orthanc started with TCP_NODELAY=1 (C-STORE workloads)."""
    family: str | None = None
    """Set on workloads left out of the default suite (too long): they run when named, or by this name."""


OPTIONAL_ARCHIVES = "archive-sizes"
"""The family of the archives of generated studies, small and large (issue 7's memory comparison)."""


def _ingest(concurrency: int) -> Callable[[Context], Plan]:
    def build(context: Context) -> Plan:
        stream = context.variants.stream(context.payloads(*INGEST_KINDS))
        return HttpPlan(
            context.server, lambda: Request("POST", "/instances", next(stream), DICOM_UPLOAD), concurrency
        )

    return build


def _cstore(sender: str, associations: int) -> Callable[[Context], Plan]:
    return lambda context: CStorePlan(context, sender, associations)


def _instance_gets(suffix: str, connections: int, kinds: tuple[str, ...] = ()) -> Callable[[Context], Plan]:
    """GETs of ``suffix`` for every seeded instance (of ``kinds`` only, if given), cycled by wrk."""

    def build(context: Context) -> Plan:
        instances = context.require_seed().instances
        if kinds:
            instances = [instance for instance in instances if instance.file.kind in kinds]
        requests = [Request("GET", f"/instances/{instance.id}{suffix}") for instance in instances]
        return WrkPlan(context.server, requests, connections)

    return build


def _uncached_renders(suffix: str, connections: int) -> Callable[[Context], Plan]:
    """GETs of ``suffix`` going round the large CT study, more answers than fastpacs's render cache holds."""

    def build(context: Context) -> Plan:
        study = context.ct_study(context.settings.large_study_slices)
        requests = [Request("GET", f"/instances/{instance}{suffix}") for instance in study.instances]
        return ContinuingWrkPlan(context.server, requests, connections)

    return build


def _find(level: str, queries: Callable[[list[CorpusFile]], list[dict]]) -> Callable[[Context], Plan]:
    def build(context: Context) -> Plan:
        files = [instance.file for instance in context.require_seed().instances]
        return _find_plan(context.server, level, queries(files), 16)

    return build


def _finds_something(body: bytes) -> str | None:
    """A find built from stored data must match: an empty answer would be measured as fast, not as wrong."""
    try:
        answer = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:100]!r}"
    return None if isinstance(answer, list) and answer else f"expected matches, got {body[:100]!r}"


def _find_plan(server: ServerProcess, level: str, queries: list[dict], connections: int) -> WrkPlan:
    requests = [_find_request(level, query) for query in queries]
    return WrkPlan(server, requests, connections, check=_finds_something)


def _find_request(level: str, query: dict) -> Request:
    body = json.dumps({"Level": level, "Query": query}, separators=(",", ":")).encode()
    return Request("POST", "/tools/find", body, {"Content-Type": "application/json"})


def _study_queries(files: list[CorpusFile]) -> list[dict]:
    """Exact patient IDs, name prefixes (non-ASCII ones included), exact study UIDs."""
    queries: list[dict] = []
    for patient_id in sorted({file.patient_id for file in files}):
        queries.append({"PatientID": patient_id})
    for name in sorted({file.patient_name for file in files}):
        queries.append({"PatientName": name[:3] + "*"})
    for study_uid in sorted({file.study_uid for file in files}):
        queries.append({"StudyInstanceUID": study_uid})
    return queries


def _instance_queries(files: list[CorpusFile]) -> list[dict]:
    return [{"SOPInstanceUID": file.sop_uid} for file in files]


def _delete_created(server: ServerProcess) -> Callable[[list[Answer]], None]:
    """Delete the studies that anonymization created, so that later workloads see the same data."""

    def cleanup(answers: list[Answer]) -> None:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            for answer in answers:
                client.delete(f"/studies/{json.loads(answer.body)['ID']}")

    return cleanup


def _anonymize(context: Context) -> Plan:
    study = context.ct_study(ANONYMIZE_STUDY_SLICES)
    request = Request(
        "POST",
        f"/studies/{study.id}/anonymize",
        b"{}",
        {"Content-Type": "application/json"},
        units=len(study.instances),
    )
    return HttpPlan(context.server, cycling([request]), 1, cleanup=_delete_created(context.server))


def _archive(context: Context) -> Plan:
    studies = context.require_seed().studies()
    return HttpPlan(
        context.server, cycling([Request("GET", f"/studies/{study.id}/archive") for study in studies]), 1
    )


def _generated_archive(name: str, description: str, large: bool) -> Workload:
    """The archive of the large generated CT study, or of the small one; the warm-up is one archive.

    Both studies are stored before either is measured, so that the two rows'
    memory differs by the archive's size only, not by what the server holds.
    """

    def build(context: Context) -> Plan:
        small = context.ct_study(SMALL_STUDY_SLICES)
        large_study = context.ct_study(context.settings.large_study_slices)
        request = Request("GET", f"/studies/{(large_study if large else small).id}/archive")
        return HttpPlan(context.server, cycling([request]), 1, probe_warms_up=True)

    return Workload(name, description, Phase.READ, "zip", build, goal=5, family=OPTIONAL_ARCHIVES)


def _scale_find_instance(context: Context) -> Plan:
    uids = context.require_scale().sop_uids
    stride = max(1, len(uids) // 997)  # spread the queries over the whole set
    queries = [{"SOPInstanceUID": uid} for uid in uids[::stride]]
    return _find_plan(context.server, "Instance", queries, 1)


def _scale_find_study(context: Context) -> Plan:
    patients = context.require_scale().patient_ids
    stride = max(1, len(patients) // 499)
    queries = [{"PatientID": patient} for patient in patients[::stride]]
    return _find_plan(context.server, "Study", queries, 1)


def _scale_list_studies(context: Context) -> Plan:
    context.require_scale()
    return WrkPlan(context.server, [Request("GET", "/studies")], 1)


def _scale_list_instances(context: Context) -> Plan:
    count = context.require_scale().count
    pages = [
        Request("GET", f"/instances?limit=100&since={since}")
        for since in range(0, count, max(100, count // 50))
    ]
    return WrkPlan(context.server, pages, 1)


WORKLOADS: list[Workload] = [
    Workload(
        "ingest-rest-c1",
        "POST /instances of new 512×512 CT instances, 1 client",
        Phase.WRITE,
        "inst",
        _ingest(1),
        goal=1.5,
    ),
    Workload("ingest-rest-c4", "same, 4 concurrent clients", Phase.WRITE, "inst", _ingest(4), goal=1.5),
    Workload("ingest-rest-c16", "same, 16 concurrent clients", Phase.WRITE, "inst", _ingest(16), goal=1.5),
    Workload(
        "cstore-pynetdicom-a1",
        "C-STORE of CT instances, pynetdicom, 1 association",
        Phase.WRITE,
        "inst",
        _cstore("pynetdicom", 1),
        goal=1.5,
        tuned_reference=True,
    ),
    Workload(
        "cstore-pynetdicom-a8",
        "same, 8 parallel associations",
        Phase.WRITE,
        "inst",
        _cstore("pynetdicom", 8),
        goal=1.5,
        tuned_reference=True,
    ),
    Workload(
        "cstore-storescu-a1",
        "C-STORE of CT instances, DCMTK storescu, 1 association",
        Phase.WRITE,
        "inst",
        _cstore("storescu", 1),
        goal=1.5,
        tuned_reference=True,
    ),
    Workload(
        "cstore-storescu-a8",
        "same, 8 storescu processes",
        Phase.WRITE,
        "inst",
        _cstore("storescu", 8),
        goal=1.5,
        tuned_reference=True,
    ),
    Workload(
        "get-instance",
        "GET /instances/{id}, wrk, 16 connections",
        Phase.READ,
        "req",
        _instance_gets("", 16),
        goal=1.5,
    ),
    Workload(
        "get-tags",
        "GET /instances/{id}/tags?simplify, wrk, 16 connections",
        Phase.READ,
        "req",
        _instance_gets("/tags?simplify", 16),
        goal=1.5,
    ),
    Workload(
        "preview",
        "GET /instances/{id}/preview of the corpus's CT slices (fastpacs: cached answers), wrk, 8",
        Phase.READ,
        "req",
        _instance_gets("/preview", 8, RENDER_KINDS),
        goal=5,
    ),
    Workload(
        "preview-uncached",
        "same, going round the slices of the large CT study (rendered each time)",
        Phase.READ,
        "req",
        _uncached_renders("/preview", 8),
        goal=5,
    ),
    Workload(
        "frame-uint8",
        "GET /instances/{id}/frames/0/image-uint8 of the corpus's CT slices (fastpacs: cached), wrk, 8",
        Phase.READ,
        "req",
        _instance_gets("/frames/0/image-uint8", 8, RENDER_KINDS),
        goal=5,
    ),
    Workload(
        "frame-uint8-uncached",
        "same, going round the slices of the large CT study (rendered each time)",
        Phase.READ,
        "req",
        _uncached_renders("/frames/0/image-uint8", 8),
        goal=5,
    ),
    Workload(
        "file",
        "GET /instances/{id}/file, wrk, 16 connections",
        Phase.READ,
        "req",
        _instance_gets("/file", 16),
        goal=1.5,
    ),
    Workload(
        "find-study",
        "POST /tools/find, Level Study (PatientID, PatientName*, StudyInstanceUID), wrk, 16",
        Phase.READ,
        "req",
        _find("Study", _study_queries),
        goal=1.5,
    ),
    Workload(
        "find-instance",
        "POST /tools/find, Level Instance (SOPInstanceUID), wrk, 16",
        Phase.READ,
        "req",
        _find("Instance", _instance_queries),
        goal=1.5,
    ),
    Workload(
        "archive-study", "GET /studies/{id}/archive (ZIP), 1 client", Phase.READ, "zip", _archive, goal=5
    ),
    _generated_archive(
        "archive-small",
        f"GET /studies/{{id}}/archive of a {SMALL_STUDY_SLICES}-slice CT study (13 MB), 1 client",
        large=False,
    ),
    _generated_archive(
        "archive-large",
        f"same, of the large CT study ({LARGE_STUDY_SLICES:,} slices, 1 GB, by default): same memory?",
        large=True,
    ),
    Workload(
        "anonymize-study",
        f"POST /studies/{{id}}/anonymize of a {ANONYMIZE_STUDY_SLICES}-instance CT study, synchronous, 1",
        Phase.WRITE,
        "inst",
        _anonymize,
        goal=2,
    ),
    Workload(
        "scale-find-instance",
        "after the scale load: /tools/find by SOPInstanceUID, 1 connection",
        Phase.SCALE,
        "req",
        _scale_find_instance,
        goal=10,
    ),
    Workload(
        "scale-find-study",
        "after the scale load: /tools/find Study by PatientID, 1 connection",
        Phase.SCALE,
        "req",
        _scale_find_study,
        goal=10,
    ),
    Workload(
        "scale-list-studies",
        "after the scale load: GET /studies (all), 1 connection",
        Phase.SCALE,
        "req",
        _scale_list_studies,
    ),
    Workload(
        "scale-list-instances",
        "after the scale load: GET /instances?limit=100&since=N, 1 connection",
        Phase.SCALE,
        "req",
        _scale_list_instances,
    ),
]

SCALE_LOAD = "scale-load"
"""The row that reports how fast the scale set was loaded (it runs first whenever a scale workload runs)."""


def matches(workload: Workload, pattern: str) -> bool:
    """Whether ``pattern`` selects ``workload``: a shell-style match of its name, or for a workload
    left out of the default suite, its exact name or its family's (``archive-sizes``)."""
    if workload.family is not None:
        return pattern in (workload.name, workload.family)
    return fnmatch(workload.name, pattern)


def select(patterns: list[str]) -> list[Workload]:
    """The workloads that one of the ``patterns`` selects (see :func:`matches`), in the table's order."""
    chosen = [workload for workload in WORKLOADS if any(matches(workload, pattern) for pattern in patterns)]
    unknown = [pattern for pattern in patterns if not any(matches(w, pattern) for w in WORKLOADS)]
    if unknown:
        raise ValueError(f"no workload matches {', '.join(unknown)}; see --list")
    return chosen
