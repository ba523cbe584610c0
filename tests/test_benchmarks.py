"""The benchmark suite's own parts: corpus generator, statistics, wrk summary, process monitor, and
how workloads are selected and what they send and count (without running them)."""

import asyncio
import gc
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import pydicom
import pytest
from benchmarks import ceiling_app, procstats, wrk
from benchmarks import corpus as corpus_module
from benchmarks import run as run_module
from benchmarks.collector import collector_paused
from benchmarks.corpus import CorpusSpec, ensure_corpus, ensure_scale_set, generation_token, variant
from benchmarks.dicom_senders import set_tcp_nodelay
from benchmarks.http_client import Request
from benchmarks.procstats import ProcessTreeMonitor, measured, read_process
from benchmarks.run import (
    ISSUE_CSTORE_FILES,
    Contestant,
    Suite,
    Trial,
    cstore_files_for,
    parse_arguments,
    run_in_turns,
    run_phase,
)
from benchmarks.stats import RunResult, percentile, ratio, summarize
from benchmarks.workloads import (
    ANONYMIZE_STUDY_SLICES,
    OPTIONAL_ARCHIVES,
    SMALL_STUDY_SLICES,
    WORKLOADS,
    Context,
    ContinuingWrkPlan,
    CStorePlan,
    LoadedStudy,
    Phase,
    Settings,
    Variants,
    Workload,
    select,
)
from benchmarks.wrk import request_line, result_from_summary
from pydicom.uid import JPEGBaseline8Bit, JPEGLosslessSV1, RLELossless
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from fastpacs.testing import ServerProcess, free_port

TINY = CorpusSpec(
    patients=2, ct_slices=2, ct_rle_slices=1, mr_slices=2, mr_jpeg_lossless_slices=1, xa_runs=1, xa_frames=3
)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> corpus_module.Corpus:
    return ensure_corpus(TINY, tmp_path_factory.mktemp("cache"))


def test_corpus_is_deterministic(tiny_corpus, tmp_path: Path):
    again = ensure_corpus(TINY, tmp_path)
    assert again.directory != tiny_corpus.directory
    assert again.files == tiny_corpus.files
    for file in tiny_corpus.files:
        assert again.read(file) == tiny_corpus.read(file), file.path


def test_corpus_is_reused_from_the_cache(tiny_corpus):
    first = tiny_corpus.files[0]
    marker = tiny_corpus.directory / first.path
    before = marker.stat().st_mtime_ns
    assert ensure_corpus(TINY, tiny_corpus.directory.parent).files == tiny_corpus.files
    assert marker.stat().st_mtime_ns == before


def test_corpus_shape(tiny_corpus):
    kinds = [file.kind for file in tiny_corpus.files]
    assert kinds.count("ct") == 2 * 2 and kinds.count("ct-rle") == 2 * 1
    assert kinds.count("mr") == 2 * 2 and kinds.count("mr-jpeg-lossless") == 2 * 1
    assert kinds.count("xa-jpeg-baseline") == 2
    assert len({file.sop_uid for file in tiny_corpus.files}) == len(tiny_corpus.files)
    assert len({file.study_uid for file in tiny_corpus.files}) == 2 * 3
    assert len({file.patient_id for file in tiny_corpus.files}) == 2


EXPECTED = {
    # kind: (transfer syntax, frames, rows, dtype)
    "ct": (pydicom.uid.ExplicitVRLittleEndian, 1, 512, np.int16),
    "ct-rle": (RLELossless, 1, 512, np.int16),
    "mr": (pydicom.uid.ExplicitVRLittleEndian, 1, 256, np.uint16),
    "mr-jpeg-lossless": (JPEGLosslessSV1, 1, 256, np.uint16),
    "xa-jpeg-baseline": (JPEGBaseline8Bit, 3, 512, np.uint8),
}


def test_corpus_files_are_valid_dicom_with_decodable_pixels(tiny_corpus):
    for file in tiny_corpus.files:
        ds = pydicom.dcmread(tiny_corpus.directory / file.path)
        syntax, frames, rows, dtype = EXPECTED[file.kind]
        assert ds.file_meta.TransferSyntaxUID == syntax == file.transfer_syntax
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == file.sop_uid
        assert ds.StudyInstanceUID == file.study_uid and ds.PatientID == file.patient_id
        assert str(ds.PatientName) == file.patient_name
        pixels = ds.pixel_array
        assert pixels.dtype == dtype
        assert pixels.shape == ((frames, rows, rows) if frames > 1 else (rows, rows))
        assert pixels.std() > 10, "the image has content, not a flat field"
        if file.kind.startswith("ct"):
            assert ds.PixelRepresentation == 1 and pixels.min() < 0 < pixels.max()


@pytest.mark.parametrize(
    ("kind", "decompressor"),
    [
        ("ct-rle", "dcmdrle"),
        ("mr-jpeg-lossless", "dcmdjpeg"),
        ("xa-jpeg-baseline", "dcmdjpeg"),
    ],
)
def test_compressed_files_decode_alike_in_dcmtk_and_pydicom(tiny_corpus, tmp_path: Path, kind, decompressor):
    """Two independent decoders agree: the encoded files are standard, not just readable by pydicom."""
    source = tiny_corpus.directory / tiny_corpus.of_kind(kind)[0].path
    subprocess.run([decompressor, str(source), str(tmp_path / "plain.dcm")], check=True)
    plain = pydicom.dcmread(tmp_path / "plain.dcm")
    assert not plain.file_meta.TransferSyntaxUID.is_compressed
    decoded = pydicom.dcmread(source).pixel_array
    if kind == "xa-jpeg-baseline":  # lossy: decoders may round differently (IDCT)
        assert np.abs(plain.pixel_array.astype(int) - decoded).max() <= 2
    else:
        assert np.array_equal(plain.pixel_array, decoded)


def test_variant_gives_a_new_valid_instance(tiny_corpus):
    file = tiny_corpus.of_kind("ct")[0]
    original = tiny_corpus.read(file)
    changed = variant(original, 42)
    assert len(changed) == len(original) and changed != original
    assert variant(original, 0) == original
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(changed))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        value = ds[keyword].value
        assert value.startswith(generation_token(42).decode()), keyword
        assert len(value) <= 64 and pydicom.uid.UID(value).is_valid
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID != file.sop_uid
    assert np.array_equal(ds.pixel_array, pydicom.dcmread(tiny_corpus.directory / file.path).pixel_array)
    with pytest.raises(ValueError):
        generation_token(corpus_module.LAST_VARIANT + 1)


def test_scale_set_hierarchy(tmp_path: Path):
    instances = ensure_scale_set(45, cache=tmp_path)
    assert len(instances) == 45 and len({instance.sop_uid for instance in instances}) == 45
    assert len({instance.patient_id for instance in instances}) == 2  # 40 instances per patient
    ds = pydicom.dcmread(instances[-1].path)
    assert ds.SOPInstanceUID == instances[-1].sop_uid and ds.PatientID == instances[-1].patient_id
    assert ensure_scale_set(45, cache=tmp_path) == instances


def test_percentile_matches_numpy():
    rng = np.random.default_rng(3)
    values = list(rng.exponential(size=101))
    for fraction in (0, 0.5, 0.9, 0.99, 1):
        assert percentile(values, fraction) == pytest.approx(np.percentile(values, fraction * 100))
    assert percentile([5.0], 0.99) == 5.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def _run(operations: int, errors: int = 0, elapsed: float = 2.0, **more) -> RunResult:
    return RunResult(operations=operations, errors=errors, elapsed=elapsed, **more)


def test_summary_takes_medians_and_never_counts_errors_as_throughput():
    runs = [
        _run(100, p50=0.010, transferred=10_000_000, server_cpu=1.0, server_peak_rss=100),
        _run(300, errors=2, p50=0.030, transferred=30_000_000, server_cpu=3.0, server_peak_rss=300),
        _run(
            200,
            p50=0.020,
            transferred=20_000_000,
            server_cpu=2.0,
            server_peak_rss=200,
            error_sample="HTTP 503",
        ),
    ]
    summary = summarize(runs)
    assert summary.per_second == 100  # median of 50, 150, 100
    assert summary.megabytes_per_second == 10
    assert summary.p50 == 0.020
    assert summary.errors == 2
    assert summary.server_cpu_percent == 100
    assert summary.server_peak_rss == 300
    assert summary.notes == ["HTTP 503"]

    failing = summarize([_run(0, errors=50), _run(0, errors=70)])
    assert failing.per_second is None and failing.errors == 120 and not failing.available
    assert ratio(summary, failing) is None
    assert ratio(summary, summarize([_run(50)])) == 4


def test_wrk_summary_counts_status_and_socket_errors_as_errors():
    result = result_from_summary(
        {
            "requests": 1000,
            "duration_us": 2_000_000,
            "bytes": 100_000,
            "connect": 0,
            "read": 1,
            "write": 0,
            "status": 200,
            "timeout": 3,
            "p50_us": 1500,
            "p99_us": 9000,
        }
    )
    assert result.operations == 800 and result.errors == 204
    assert result.per_second == 400
    assert result.transferred == 80_000
    assert (result.p50, result.p99) == (0.0015, 0.009)


def test_wrk_request_lines():
    assert request_line(Request("GET", "/instances/a/tags?simplify")) == "GET\t/instances/a/tags?simplify"
    assert (
        request_line(Request("POST", "/tools/find", b'{"Level":"Study"}'))
        == 'POST\t/tools/find\t{"Level":"Study"}'
    )
    with pytest.raises(ValueError):
        request_line(Request("POST", "/tools/find", b'{\n"Level":"Study"}'))


def test_monitor_measures_the_cpu_of_a_whole_session():
    """A child that burns CPU in a grandchild process: both are counted, and the memory of both."""
    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"],
        start_new_session=True,
    )
    monitor = ProcessTreeMonitor(parent.pid, interval=0.02).start()
    window = monitor.open_window()
    parent.wait()
    cpu, peak, _ = monitor.close_window(window)
    monitor.stop()
    assert cpu >= 0.35
    assert peak > 4_000_000  # two Python interpreters (PSS: their shared pages counted once)
    own = read_process(os.getpid())
    assert own is not None and own.pid == os.getpid()


def test_a_monitor_without_idle_sampling_samples_only_in_windows_and_its_cpu_is_not_the_clients():
    """Between windows it takes no sample; inside one it samples, and ``measured`` leaves the CPU of
    those samples out of the client's (here the client only sleeps)."""
    monitor = ProcessTreeMonitor(os.getpid(), interval=0.005, idle_sampling=False).start()
    try:
        time.sleep(0.3)
        assert monitor.sampling_cpu == 0.0
        with measured(monitor) as figures:
            time.sleep(0.5)
        sampled = monitor.sampling_cpu
        time.sleep(0.3)
    finally:
        monitor.stop()
    assert sampled > 0.0 and monitor.sampling_cpu == sampled
    assert figures["client_cpu"] < sampled / 2


def test_a_monitor_reads_the_costly_pss_only_when_resident_memory_reaches_a_new_high(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process whose memory stays flat is sampled by its resident size alone; memory it then takes
    shows in the peak, read from the PSS as soon as the resident size passes its last high."""
    grow = (
        "import sys\nblocks = []\n"
        "for line in sys.stdin:\n    blocks.append(b'x' * int(line))\n    print(flush=True)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", grow],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pss_reads = 0
    real_proportional_memory = procstats.proportional_memory

    def counted(pid: int) -> int:
        nonlocal pss_reads
        pss_reads += 1
        return real_proportional_memory(pid)

    monkeypatch.setattr(procstats, "proportional_memory", counted)
    monitor = ProcessTreeMonitor(child.pid, interval=0.01).start()
    try:
        time.sleep(0.5)
        flat_reads, flat_peak = pss_reads, monitor.lifetime_peak_rss
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(f"{60 << 20}\n")
        child.stdin.flush()
        child.stdout.readline()
        time.sleep(0.3)
    finally:
        monitor.stop()
        child.kill()
        child.wait()
    assert flat_reads <= 10  # of about 50 samples: the start's, and the odd page the interpreter touches
    assert monitor.lifetime_peak_rss >= flat_peak + (55 << 20)


def test_pynetdicom_sender_sockets_have_tcp_nodelay():
    """Nagle's algorithm on the client would throttle every server alike: the sender turns it off."""
    scp = AE()
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", free_port()), block=False)
    try:
        requestor = AE()
        requestor.add_requested_context(Verification)
        association = requestor.associate(
            *server.server_address, evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
        )
        assert association.is_established
        raw_socket = association.dul.socket.socket
        assert raw_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        association.release()
    finally:
        server.shutdown()


def _stub_server(tmp_path: Path) -> ServerProcess:
    """A server that is never started: plans only read its address."""
    return ServerProcess("stub", [], tmp_path, http_port=1, dicom_port=2, aet="STUB")


def _context(
    tiny_corpus: corpus_module.Corpus,
    tmp_path: Path,
    studies: dict[int, LoadedStudy] | None = None,
    **settings: int,
) -> Context:
    return Context(
        _stub_server(tmp_path),
        tiny_corpus,
        Settings(scratch=tmp_path, cache=tmp_path, **settings),
        Variants(),
        studies=studies or {},
    )


def _names(workloads: list[Workload]) -> list[str]:
    return [workload.name for workload in workloads]


def test_optional_workloads_run_only_when_named_or_by_family():
    everything = _names(select(["*"]))
    optional = [workload.name for workload in WORKLOADS if workload.family]
    assert optional == ["archive-small", "archive-large"]
    assert not set(optional) & set(everything)
    assert {"preview-uncached", "frame-uint8-uncached", "anonymize-study"} <= set(everything)
    assert _names(select([OPTIONAL_ARCHIVES])) == optional
    assert _names(select(["archive-large"])) == ["archive-large"]
    assert _names(select(["archive-*"])) == ["archive-study"]
    assert _names(select(["archive-large", "get-*"])) == ["get-instance", "get-tags", "archive-large"]
    with pytest.raises(ValueError, match="archive-huge"):
        select(["archive-huge"])


class _RecordedTrial:
    """Stands for a :class:`benchmarks.run.Trial`: records what it is asked, in order."""

    def __init__(self, server: str, events: list[tuple[str, str]]):
        self.server = server
        self.events = events

    def warm_up(self, settings: Settings) -> None:
        self.events.append(("warm-up", self.server))

    def run(self, settings: Settings) -> None:
        self.events.append(("run", self.server))

    def finish(self) -> str:
        return self.server


def test_servers_take_each_measured_run_in_turn_and_the_first_alternates():
    """Every server warms up, then each run of one server is followed by the same run on the others
    (the machine's drift falls on all alike), the first of a turn alternating from run to run and
    from one workload (``number``) to the next."""
    events: list[tuple[str, str]] = []
    servers = ["fastpacs", "orthanc", "orthanc-nodelay"]
    trials = [_RecordedTrial(server, events) for server in servers]
    assert run_in_turns(trials, Settings(runs=3), 0) == servers
    assert events == [
        *(("warm-up", server) for server in servers),
        *(("run", server) for server in servers),
        *(("run", server) for server in reversed(servers)),
        *(("run", server) for server in servers),
    ]
    events.clear()
    run_in_turns(trials[:2], Settings(runs=1), 1)
    assert events == [
        ("warm-up", "orthanc"),
        ("warm-up", "fastpacs"),
        ("run", "orthanc"),
        ("run", "fastpacs"),
    ]


class _FlakyPlan:
    """A plan whose measured runs succeed until the ``fails_at``-th, which raises."""

    def __init__(self, fails_at: int | None):
        self.fails_at = fails_at
        self.runs = 0

    def warm_up(self, seconds: float) -> RunResult:
        return RunResult(operations=1, errors=0, elapsed=seconds)

    def before_run(self) -> None:
        pass

    def run(self, seconds: float) -> RunResult:
        self.runs += 1
        if self.runs == self.fails_at:
            raise RuntimeError("the client broke")
        return RunResult(operations=10, errors=0, elapsed=1.0)

    def after_run(self) -> None:
        pass


class _IdleServer:
    """Stands for a running server: this test process, monitored.

    Not its session, whose leader may be another user's process (pid 1 in CI).
    """

    name = "fastpacs"
    server = None

    def __init__(self) -> None:
        self.monitor = ProcessTreeMonitor(os.getpid())

    def alive(self) -> bool:
        return True


def test_a_run_that_fails_makes_its_server_n_a_and_leaves_the_others_measured():
    plans = {"fails": _FlakyPlan(fails_at=2), "works": _FlakyPlan(fails_at=None)}
    trials = []
    for name, plan in plans.items():
        workload = Workload(name, "", Phase.READ, "req", lambda context, plan=plan: plan)
        trials.append(Trial(workload, Contestant(_IdleServer(), context=None)))
    failed, measured = run_in_turns(trials, Settings(runs=3, duration=1.0, warmup=0.0), 0)
    assert failed.runs == [] and failed.summary.per_second is None
    assert failed.summary.notes == ["n/a: the benchmark failed: RuntimeError: the client broke"]
    assert plans["fails"].runs == 2  # no run after the failure
    assert len(measured.runs) == 3 and measured.summary.per_second == 10.0


def test_a_scale_set_that_cannot_be_made_leaves_its_phase_na_not_the_suite_stopped(
    tiny_corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def broken(count: int, cache: Path):
        raise ImportError("the bulk loader is broken")

    monkeypatch.setattr(run_module, "scale_set", broken)
    suite = Suite(tiny_corpus, Settings(), tmp_path, keep=False, options={})
    workloads = [workload for workload in WORKLOADS if workload.name.startswith("scale-")]
    rows = run_phase(["fastpacs", "orthanc"], workloads, suite, scale=True)
    assert sorted((row.workload, row.server) for row in rows) == sorted(
        (workload.name, server) for workload in workloads for server in ("fastpacs", "orthanc")
    )
    assert all("the bulk loader is broken" in row.summary.notes[0] for row in rows)
    assert not suite.servers_record  # no server was started


def test_cstore_runs_send_issue_9s_count_when_they_run_alone():
    assert cstore_files_for(select(["cstore-*"]), None) == ISSUE_CSTORE_FILES == 2000
    assert cstore_files_for(select(["*"]), None) is None  # the default suite: --duration seconds' worth
    assert cstore_files_for(select(["*"]), 50) == 50
    assert parse_arguments(["--cstore-files", "7"]).cstore_files == 7
    for option in ("--cstore-files", "--large-study-slices"):
        with pytest.raises(SystemExit):
            parse_arguments([option, "0"])


def test_cstore_plan_writes_the_asked_number_of_new_files(tiny_corpus, tmp_path: Path):
    plan = CStorePlan(_context(tiny_corpus, tmp_path, cstore_files=7), "pynetdicom", 8)
    plan.before_run()
    assert len(plan.files) == 7
    assert len({path.read_bytes() for path in plan.files}) == 7, "every file is a new instance"
    folder = plan.files[0].parent
    plan.after_run()
    assert not folder.exists() and not plan.files


def test_continuing_wrk_plan_takes_up_the_list_where_the_last_run_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """wrk starts every run at the list's second request (its Lua script counts from 1): the next run
    starts past every request the last one sent, answered, failed or still in flight."""
    sent: list[list[str]] = []
    outcomes = iter([(6, 1), (30, 0)])

    def fake_wrk(base_url: str, requests: list[Request], connections: int, duration: float) -> RunResult:
        operations, errors = next(outcomes)
        sent.append([request.path for request in requests])
        return RunResult(operations=operations, errors=errors, elapsed=duration)

    monkeypatch.setattr(wrk, "run_wrk", fake_wrk)
    requests = [Request("GET", f"/instances/{number}/preview") for number in range(20)]
    plan = ContinuingWrkPlan(_stub_server(tmp_path), requests, connections=2)
    plan.run(1)
    plan.run(1)
    first, second = sent
    assert first[1] == "/instances/1/preview"
    assert second[1] == "/instances/10/preview"  # the first run sent at most 6 + 1 + 2 (in flight): 1 to 9
    assert sorted(second) == sorted(first)
    assert plan.requests[1].path == "/instances/2/preview"  # 10 + 32 requests, round the list of 20


def test_anonymize_counts_every_instance_of_the_generated_study(tiny_corpus, tmp_path: Path):
    study = LoadedStudy("study-200", [f"instance-{number}" for number in range(ANONYMIZE_STUDY_SLICES)])
    (anonymize,) = select(["anonymize-study"])
    plan = anonymize.build(_context(tiny_corpus, tmp_path, {ANONYMIZE_STUDY_SLICES: study}))
    request = plan.source()
    assert (request.method, request.path) == ("POST", "/studies/study-200/anonymize")
    assert request.units == 200


def test_large_and_small_archives_are_measured_on_the_same_stored_data(tiny_corpus, tmp_path: Path):
    studies = {SMALL_STUDY_SLICES: LoadedStudy("small", []), 30: LoadedStudy("large", [])}
    context = _context(tiny_corpus, tmp_path, studies, large_study_slices=30)
    (small, large) = select([OPTIONAL_ARCHIVES])
    assert small.build(context).source().path == "/studies/small/archive"
    assert large.build(context).source().path == "/studies/large/archive"
    assert set(context.studies) == {SMALL_STUDY_SLICES, 30}


def test_the_ceiling_app_answers_what_was_recorded_by_path_and_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bare application of ``benchmarks.ceiling`` tells ``/tags`` from ``/tags?simplify``; else 404."""
    recorded = {
        "/instances/a/tags": ([(b"content-type", b"application/json")], b"{}"),
        "/instances/a/tags?simplify": ([(b"content-type", b"application/json")], b"[]"),
    }
    answers = tmp_path / "answers.msgpack"
    answers.write_bytes(msgspec.msgpack.encode(recorded))
    monkeypatch.setenv("CEILING_ANSWERS", str(answers))
    app = ceiling_app.create_app()

    def answer(path: str, query: bytes) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        asyncio.run(app({"type": "http", "path": path, "query_string": query}, None, send))
        return sent[0]["status"], sent[1]["body"]

    assert answer("/instances/a/tags", b"") == (200, b"{}")
    assert answer("/instances/a/tags", b"simplify") == (200, b"[]")
    assert answer("/instances/b/tags", b"") == (404, b"")


def test_the_client_runs_without_cyclic_collections_and_collects_its_garbage_after() -> None:
    """Full collections of the runner's large heap stalled the load client (see benchmarks.collector)."""

    class Cycle:
        def __init__(self) -> None:
            self.itself = self

    collected: list[int] = []

    def on_collection(phase: str, info: dict) -> None:
        if phase == "stop":
            collected.append(info["collected"])

    gc.callbacks.append(on_collection)
    try:
        with collector_paused():
            assert not gc.isenabled()
            for _ in range(100_000):  # allocations that would trigger collections
                Cycle()
            assert collected == []
        assert gc.isenabled()
        assert sum(collected) >= 100_000
    finally:
        gc.callbacks.remove(on_collection)
