"""Metrics: /tools/metrics-prometheus read by prometheus-client's own parser, counts against
/statistics, histograms under load, the on/off switch, request log lines; and the parts
(Orthanc's windowed maxima, the request histogram, job counting, the store lock) on their own.
"""

import logging
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from fastpacs.logs import LogfmtFormatter
from fastpacs.metrics import MEGABYTE, PROMETHEUS_TEXT, RecentMaximum, RequestLatency, ServerMetrics
from fastpacs.storage.lock import StoreInUseError, StoreLock
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

ORTHANC_ALWAYS = {
    "orthanc_count_instances",
    "orthanc_count_patients",
    "orthanc_count_series",
    "orthanc_count_studies",
    "orthanc_disk_size_mb",
    "orthanc_uncompressed_size_mb",
    "orthanc_jobs_completed",
    "orthanc_jobs_failed",
    "orthanc_jobs_pending",
    "orthanc_jobs_running",
    "orthanc_jobs_success",
    "orthanc_rest_api_active_requests",
    "orthanc_dicom_cache_count",
    "orthanc_dicom_cache_size",
}
ORTHANC_AFTER_UPLOADS_AND_DELETES = {
    "orthanc_rest_api_duration_ms",
    "orthanc_store_dicom_duration_ms",
    "orthanc_storage_create_duration_ms",
    "orthanc_storage_remove_duration_ms",
}
UPLOADED = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm", "rtstruct.dcm")
ORTHANC_LINE = re.compile(r"^orthanc_[a-z_]+ -?[0-9.e+-]+ [0-9]{13}$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(tmp_path_factory.mktemp("metrics"), {"LogLevel": "debug"}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def uploaded(http: httpx.Client) -> dict[str, dict]:
    answers = {}
    for name in UPLOADED:
        response = http.post("/instances", content=pydicom_file(name).read_bytes())
        assert response.status_code == 200, name
        answers[name] = response.json()
    return answers


@dataclass
class Scrape:
    text: str
    families: dict

    def value(self, name: str, **labels: str) -> float:
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        raise KeyError(f"{name} {labels}")

    def sum_of(self, name: str, **labels: str) -> float:
        return sum(
            sample.value
            for family in self.families.values()
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )


def scrape(http: httpx.Client) -> Scrape:
    response = http.get("/tools/metrics-prometheus")
    assert response.status_code == 200
    assert response.headers["content-type"] == PROMETHEUS_TEXT
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    return Scrape(response.text, families)


def test_parser_reads_orthanc_and_fastpacs_metrics(http: httpx.Client, uploaded: dict) -> None:
    http.delete(uploaded["rtplan.dcm"]["Path"]).raise_for_status()  # a delete removes a stored file
    result = scrape(http)
    names = set(result.families)
    assert names >= ORTHANC_ALWAYS | ORTHANC_AFTER_UPLOADS_AND_DELETES
    orthanc_lines = [line for line in result.text.splitlines() if line.startswith("orthanc_")]
    assert all(ORTHANC_LINE.match(line) for line in orthanc_lines), orthanc_lines
    assert [line.split()[0] for line in orthanc_lines] == sorted(line.split()[0] for line in orthanc_lines)
    assert not any(line.startswith("# ") and " orthanc_" in line for line in result.text.splitlines())
    assert all(name.startswith(("orthanc_", "fastpacs_", "process_")) for name in names), names
    assert result.families["fastpacs_http_request_duration_seconds"].type == "histogram"
    assert result.families["fastpacs_ingest_duration_seconds"].type == "histogram"
    assert result.value("fastpacs_worker_pool_processes") >= 1
    assert result.value("fastpacs_ingest_pending_bytes") == 0
    assert result.value("fastpacs_ingest_pending_limit_bytes") == 512 * MEGABYTE
    assert result.value("fastpacs_lmdb_map_size_bytes") == 64 << 30
    assert 0 < result.value("fastpacs_lmdb_used_bytes") == 4096 * result.value("fastpacs_lmdb_used_pages")
    assert result.value("orthanc_rest_api_active_requests") >= 1  # the scrape itself


def test_counts_and_sizes_match_statistics_after_uploads_and_deletes(
    http: httpx.Client, uploaded: dict
) -> None:
    http.delete(uploaded["SC_rgb_rle.dcm"]["Path"])  # 200 or already gone: the state is what counts
    http.delete(f"/patients/{uploaded['MR_small.dcm']['ParentPatient']}")
    statistics = http.get("/statistics").json()
    result = scrape(http)
    for level in ("Patients", "Studies", "Series", "Instances"):
        assert result.value(f"orthanc_count_{level.lower()}") == statistics[f"Count{level}"], level
    assert result.value("orthanc_disk_size_mb") * MEGABYTE == pytest.approx(int(statistics["TotalDiskSize"]))
    assert result.value("orthanc_uncompressed_size_mb") * MEGABYTE == pytest.approx(
        int(statistics["TotalUncompressedSize"])
    )
    assert statistics["CountInstances"] == len(http.get("/instances").json()) < len(UPLOADED)
    assert result.value("orthanc_last_change") == http.get("/changes", params={"last": ""}).json()["Last"]


def test_histograms_move_under_load(http: httpx.Client, uploaded: dict) -> None:
    instance = uploaded["CT_small.dcm"]["ID"]
    http.get(f"/instances/{instance}")
    before = scrape(http)
    route_of = _route_label(before, "/instances/")
    requests = 60
    with ThreadPoolExecutor(max_workers=6) as threads:
        answers = list(threads.map(lambda _: http.get(f"/instances/{instance}"), range(requests)))
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * requests
    http.post("/instances", content=pydicom_file("CT_small.dcm").read_bytes())  # AlreadyStored
    after = scrape(http)
    labels = {"method": "GET", "route": route_of, "status": "200"}
    count = "fastpacs_http_request_duration_seconds_count"
    assert after.value(count, **labels) - before.value(count, **labels) == requests
    assert after.value("fastpacs_http_request_duration_seconds_sum", **labels) > before.value(
        "fastpacs_http_request_duration_seconds_sum", **labels
    )
    inf_bucket = after.value("fastpacs_http_request_duration_seconds_bucket", le="+Inf", **labels)
    assert inf_bucket == after.value(count, **labels)
    assert after.value("fastpacs_ingest_files_total", outcome="AlreadyStored") == 1
    assert after.value("fastpacs_ingest_files_total", outcome="Success") == len(UPLOADED)
    assert after.value("fastpacs_ingest_duration_seconds_count") == len(UPLOADED) + 1
    assert after.value("fastpacs_index_commit_batch_size_count") >= 1
    assert after.value("fastpacs_index_commit_duration_seconds_count") >= 1
    assert after.value("fastpacs_storage_write_duration_seconds_count") == len(UPLOADED) + 1


def test_flushes_of_files_stored_unflushed_are_measured(http: httpx.Client, uploaded: dict) -> None:
    """An upload's file is flushed as it is written; an attachment's, by the index writer before the
    commit that references it: that flush is measured."""
    before = scrape(http)
    instance = uploaded["CT_small.dcm"]["ID"]
    answer = http.put(f"/instances/{instance}/attachments/1025", content=os.urandom(1000))
    assert answer.status_code == 200, answer.text
    after = scrape(http)
    for flushed in ("fastpacs_storage_flush_duration_seconds_count", "fastpacs_storage_flush_files_sum"):
        assert after.value(flushed) - before.value(flushed) == 1, flushed


def test_routes_are_labelled_by_template_never_by_resource(http: httpx.Client, uploaded: dict) -> None:
    http.get(f"/instances/{uploaded['CT_small.dcm']['ID']}/tags")
    http.get("/patients/unknown-id")
    routes = {
        sample.labels["route"]
        for sample in scrape(http).families["fastpacs_http_request_duration_seconds"].samples
    }
    assert not any(answer["ID"] in route for answer in uploaded.values() for route in routes)
    assert "unknown-id" not in "".join(routes)
    assert "/statistics" in routes
    assert any(route.startswith("/instances/{") and route.endswith("}/tags") for route in routes)


def test_jobs_of_the_engine_are_counted(http: httpx.Client, uploaded: dict) -> None:
    before = scrape(http)
    started = http.post(
        f"/studies/{uploaded['CT_small.dcm']['ParentStudy']}/archive", json={"Asynchronous": True}
    )
    assert started.status_code == 200, started.text
    job = started.json()["ID"]
    deadline = time.monotonic() + 30
    while http.get(f"/jobs/{job}").json()["State"] != "Success":
        assert time.monotonic() < deadline, "the archive job did not finish"
        time.sleep(0.05)
    after = scrape(http)
    for name in ("orthanc_jobs_success", "orthanc_jobs_completed"):
        assert after.value(name) == before.value(name) + 1, name
    assert after.value("orthanc_jobs_failed") == before.value("orthanc_jobs_failed")


def test_rejected_uploads_are_counted(http: httpx.Client) -> None:
    before = _or_zero(scrape(http), "fastpacs_ingest_files_total", outcome="Rejected")
    assert http.post("/instances", content=b"not DICOM at all").status_code == 400
    after = scrape(http)
    assert after.value("fastpacs_ingest_files_total", outcome="Rejected") == before + 1
    assert after.value("fastpacs_http_request_duration_seconds_count", method="POST", status="400") >= 1


def test_switching_collection_off_and_on(http: httpx.Client) -> None:
    def get_flag() -> str:
        response = http.get("/tools/metrics")
        assert response.headers["content-type"] == "text/plain"
        return response.text

    assert get_flag() == "1"
    before = scrape(http)
    answer = http.put("/tools/metrics", content=b"false")
    assert (answer.status_code, answer.content, answer.headers["content-type"]) == (200, b"", "text/plain")
    assert get_flag() == "0"
    off = http.get("/tools/metrics-prometheus")
    assert (off.status_code, off.content, off.headers["content-type"]) == (200, b"", PROMETHEUS_TEXT)
    refused = http.put("/tools/metrics", content=b"maybe")
    assert refused.status_code == 400
    assert refused.json()["Details"] == "Boolean value expected"
    assert refused.json()["OrthancStatus"] == 15
    for _ in range(5):
        http.get("/statistics")
    for body, expected in ((b"TRUE", "0"), (b"", "0"), (b" 1\n", "1"), (b"0", "0"), (b"true", "1")):
        http.put("/tools/metrics", content=body)
        assert get_flag() == expected, body
    # nothing was recorded while collection was off
    after = scrape(http)
    statistics = {"method": "GET", "route": "/statistics", "status": "200"}
    count = "fastpacs_http_request_duration_seconds_count"
    assert after.value(count, **statistics) == _or_zero(before, count, **statistics)
    refusals = {"method": "PUT", "route": "/tools/metrics", "status": "400"}
    assert _or_zero(after, count, **refusals) == _or_zero(before, count, **refusals)  # all while off
    switches = {"method": "PUT", "route": "/tools/metrics", "status": "200"}
    # a request is observed when it starts while collection is on: b"false" and b"0" only
    assert after.value(count, **switches) == _or_zero(before, count, **switches) + 2


def test_one_log_line_per_request_with_timing(server: ServerProcess, http: httpx.Client) -> None:
    http.get("/statistics", headers={"x-marker": "1"})
    http.get("/system")
    server_log = server.log_path.read_text()
    lines = [line for line in server_log.splitlines() if "logger=fastpacs.access" in line]
    statistics = [line for line in lines if "path=/statistics" in line]
    assert statistics, server_log[-2000:]
    line = statistics[-1]
    assert re.search(r"^ts=\S+Z level=debug logger=fastpacs.access msg=request method=GET ", line), line
    assert re.search(r" route=/statistics status=200 duration_ms=[0-9.]+ client=127\.0\.0\.1$", line), line


def test_dicom_associations_and_operations_are_measured(server: ServerProcess, http: httpx.Client) -> None:
    """A released association with a C-ECHO and a C-FIND, and an aborted one: counted, timed, logged."""
    caller = {"AET": "METRICS", "Host": "127.0.0.1", "Port": 104}
    assert http.put("/modalities/metrics-caller", json=caller).status_code == 200
    before = scrape(http)
    model = StudyRootQueryRetrieveInformationModelFind
    ae = AE(ae_title="METRICS")
    ae.add_requested_context(Verification)
    ae.add_requested_context(model)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    released = ae.associate("127.0.0.1", server.dicom_port, ae_title="ORTHANC")
    assert released.is_established
    assert released.send_c_echo().Status == 0
    assert [status.Status for status, _ in released.send_c_find(identifier, model)][-1] == 0
    released.release()
    aborted = ae.associate("127.0.0.1", server.dicom_port, ae_title="ORTHANC")
    assert aborted.is_established
    aborted.abort()

    def ended(result: Scrape, outcome: str) -> float:
        return _or_zero(result, "fastpacs_dicom_associations_total", outcome=outcome)

    deadline = time.monotonic() + 10
    after = scrape(http)
    while ended(after, "aborted") == ended(before, "aborted") and time.monotonic() < deadline:
        time.sleep(0.05)
        after = scrape(http)
    assert ended(after, "released") == ended(before, "released") + 1
    assert ended(after, "aborted") == ended(before, "aborted") + 1
    assert after.value("fastpacs_dicom_associations_active") == 0
    operations = "fastpacs_dicom_operation_duration_seconds_count"
    for operation in ("C-ECHO", "C-FIND"):
        grown = after.value(operations, operation=operation) - _or_zero(
            before, operations, operation=operation
        )
        assert grown == 1, operation
    assert after.value("orthanc_find_scp_duration_ms") >= 0
    lines = [line for line in server.log_path.read_text().splitlines() if "msg=association " in line]
    assert re.search(
        r"msg=association calling_aet=METRICS called_aet=ORTHANC remote=127\.0\.0\.1 outcome=released "
        r"operations=2 duration_ms=[0-9.]+$",
        lines[-2],
    ), lines[-2:]
    assert "outcome=aborted operations=0" in lines[-1], lines[-1]


# ---------------------------------------------------------------- the parts


def test_recent_maximum_is_orthancs_maximum_over_ten_seconds() -> None:
    recent = RecentMaximum()
    recent.update(5, now=100.0)
    recent.update(3, now=104.0)  # smaller, within the window: kept 5 (and its time)
    assert (recent.value, recent.timestamp) == (5, 100.0)
    recent.update(8, now=105.0)  # larger: replaces
    assert (recent.value, recent.timestamp) == (8, 105.0)
    recent.update(1, now=115.5)  # the maximum is older than 10 s: replaced, even by a smaller value
    assert (recent.value, recent.timestamp) == (1, 115.5)


def test_request_histogram_buckets_are_cumulative() -> None:
    latency = RequestLatency()
    for seconds in (0.00005, 0.0001, 0.0002, 0.003, 45.0):
        latency.observe("GET", "/x/{id}", 200, seconds)
    latency.observe("GET", 'odd "route"\\', 404, 0.5)
    (family,) = text_string_to_metric_families(latency.text())
    assert family.type == "histogram"
    samples = [s for s in family.samples if s.labels["route"] == "/x/{id}"]
    assert all(s.labels["method"] == "GET" and s.labels["status"] == "200" for s in samples)
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert buckets["0.0001"] == 2  # le is inclusive
    assert buckets["0.00025"] == 3
    assert buckets["0.005"] == 4
    assert buckets["30.0"] == 4
    assert buckets["+Inf"] == 5
    assert next(s.value for s in samples if s.name.endswith("_count")) == 5
    assert next(s.value for s in samples if s.name.endswith("_sum")) == pytest.approx(45.00335)
    odd = {s.labels["route"] for s in family.samples if s.labels["status"] == "404"}
    assert odd == {'odd "route"\\'}


@dataclass
class _Tracked:
    state: str


class _Jobs:
    def __init__(self, states: list[str]):
        self.jobs = {str(index): _Tracked(state) for index, state in enumerate(states)}

    def job_ids(self) -> list[str]:
        return list(self.jobs)

    def get(self, job_id: str) -> _Tracked | None:
        return self.jobs.get(job_id)


def _orthanc_values(metrics: ServerMetrics) -> dict[str, float]:
    return {
        line.split()[0]: float(line.split()[1])
        for line in metrics.exposition().decode().splitlines()
        if line.startswith("orthanc_")
    }


def test_jobs_are_counted_as_orthanc_counts_them() -> None:
    metrics = ServerMetrics()
    metrics.watch_jobs(_Jobs(["Pending", "Retry", "Running", "Paused", "Success", "Success", "Failure"]))
    values = _orthanc_values(metrics)
    assert values["orthanc_jobs_pending"] == 2  # Retry counts as pending
    assert values["orthanc_jobs_running"] == 2  # Paused counts as running
    assert values["orthanc_jobs_success"] == 2
    assert values["orthanc_jobs_failed"] == 1
    assert values["orthanc_jobs_completed"] == 3


def test_durations_appear_once_observed_and_nothing_when_disabled() -> None:
    metrics = ServerMetrics()
    assert "orthanc_find_scp_duration_ms" not in _orthanc_values(metrics)
    metrics.observe_dicom_operation("C-FIND", 0.0042)
    metrics.observe_dicom_operation("C-ECHO", 0.001)
    assert _orthanc_values(metrics)["orthanc_find_scp_duration_ms"] == pytest.approx(4.2)
    metrics.enabled = False
    metrics.observe_dicom_operation("C-FIND", 9.0)
    assert metrics.exposition() == b""
    metrics.enabled = True
    assert _orthanc_values(metrics)["orthanc_find_scp_duration_ms"] == pytest.approx(4.2)


def test_association_metrics_and_log_line(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServerMetrics()
    metrics.association_opened()
    logger = logging.getLogger("fastpacs.dicom")
    logger.addHandler(caplog.handler)  # directly: the fastpacs loggers may not propagate to the root
    try:
        with caplog.at_level(logging.INFO, logger="fastpacs.dicom"):
            metrics.association_closed(
                0.25,
                "released",
                calling_aet="MODALITY",
                called_aet="ORTHANC",
                remote="10.0.0.7",
                operations=3,
            )
    finally:
        logger.removeHandler(caplog.handler)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    active = families["fastpacs_dicom_associations_active"].samples[0].value
    ended = {s.labels["outcome"]: s.value for s in families["fastpacs_dicom_associations"].samples}
    assert (active, ended) == (0, {"released": 1})
    line = LogfmtFormatter().format(caplog.records[-1])
    assert line.endswith(
        "msg=association calling_aet=MODALITY called_aet=ORTHANC remote=10.0.0.7 outcome=released "
        "operations=3 duration_ms=250.0"
    ), line


def test_logfmt_quotes_what_needs_it() -> None:
    record = logging.LogRecord("fastpacs.x", logging.WARNING, __file__, 1, 'a "b" c', None, None)
    record.fields = {"path": "/a b", "empty": "", "plain": "x=1"}
    line = LogfmtFormatter().format(record)
    assert line.split(" ", 1)[1] == (
        'level=warning logger=fastpacs.x msg="a \\"b\\" c" path="/a b" empty="" plain="x=1"'
    )


def test_store_lock_admits_one_process_at_a_time(tmp_path) -> None:
    first, second = StoreLock(tmp_path / "index", tmp_path / "storage"), StoreLock(tmp_path / "index")
    first.acquire()
    with pytest.raises(StoreInUseError, match="in use by another process"):
        second.acquire(timeout=0.2)
    first.release()
    second.acquire()
    second.release()


def _route_label(result: Scrape, prefix: str) -> str:
    """The template label of the GET /instances/{id} route, as the framework writes it."""
    routes = {
        sample.labels["route"]
        for sample in result.families["fastpacs_http_request_duration_seconds"].samples
        if sample.labels["route"].startswith(prefix)
    }
    simple = [route for route in routes if route.count("/") == 2]
    assert simple, routes
    return simple[0]


def _or_zero(result: Scrape, name: str, **labels: str) -> float:
    try:
        return result.value(name, **labels)
    except KeyError:
        return 0.0
