"""Metrics compared with Orthanc: the metric names after the same work, and /tools/metrics.

Both servers get the same uploads, reads, a rendered preview (which fills Orthanc's DICOM cache),
a delete (which removes a stored file) and a C-FIND from a known modality; then every metric name
Orthanc shows must be one fastpacs shows too. The names Orthanc showed in the recorded capture
(taken after a fuller session) are checked as well. The values differ by nature (timings,
timestamps) and are checked against /statistics by tests/test_metrics.py.
"""

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset
from pynetdicom import AE, build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from fastpacs.net.tcp import NO_DELAY_HANDLERS
from tests.differential.data import test_file
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

CAPTURED_NAMES = {
    "orthanc_count_instances",
    "orthanc_count_patients",
    "orthanc_count_series",
    "orthanc_count_studies",
    "orthanc_dicom_cache_count",
    "orthanc_dicom_cache_size",
    "orthanc_disk_size_mb",
    "orthanc_find_scp_duration_ms",
    "orthanc_jobs_completed",
    "orthanc_jobs_failed",
    "orthanc_jobs_pending",
    "orthanc_jobs_running",
    "orthanc_jobs_success",
    "orthanc_rest_api_active_requests",
    "orthanc_rest_api_duration_ms",
    "orthanc_storage_create_duration_ms",
    "orthanc_storage_remove_duration_ms",
    "orthanc_store_dicom_duration_ms",
    "orthanc_uncompressed_size_mb",
}
"""Step ``metrics-prometheus-names`` of the reference capture (capture-orthanc-1.10.1.json.gz)."""
FILES = ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm", "rtplan.dcm")

CALLER = {"AET": "METRICS", "Host": "127.0.0.1", "Port": 104}


def c_find_studies(port: int) -> int:
    """A study-level C-FIND of everything, as the modality ``CALLER``; the number of answers."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    model = StudyRootQueryRetrieveInformationModelFind
    assoc = AE(ae_title=CALLER["AET"]).associate(
        "127.0.0.1", port, [build_context(model)], ae_title="ORTHANC", evt_handlers=NO_DELAY_HANDLERS
    )
    assert assoc.is_established
    try:
        return sum(status.Status in (0xFF00, 0xFF01) for status, _ in assoc.send_c_find(identifier, model))
    finally:
        assoc.release()


@pytest.fixture(scope="module")
def worked(pair: ServerPair) -> ServerPair:
    """Both servers after the same uploads, reads, preview and delete."""
    answers = {}
    for name in FILES:
        orthanc, fastpacs = pair.send(
            Call(f"upload {name}", "POST", "/instances", body=test_file(name).read_bytes())
        )
        assert (orthanc.status, fastpacs.status) == (200, 200), name
        answers[name] = orthanc.json
    for call in (
        get("patients", "/patients"),
        get("instance", f"/instances/{answers['CT_small.dcm']['ID']}"),
        get("preview", f"/instances/{answers['CT_small.dcm']['ID']}/preview"),
        Call("delete", "DELETE", f"/instances/{answers['rtplan.dcm']['ID']}"),
        get("statistics", "/statistics"),
    ):
        orthanc, fastpacs = pair.send(call)
        assert orthanc.status == fastpacs.status == 200, call
    for server, client in ((pair.orthanc, pair.orthanc_client), (pair.fastpacs, pair.fastpacs_client)):
        assert client.put("/modalities/metrics-caller", json=CALLER).status_code == 200
        assert c_find_studies(server.dicom_port) == 3, server
    return pair


def orthanc_names(text: str) -> set[str]:
    """Names of Orthanc's exposition (one ``name value timestamp`` per line)."""
    return {line.split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def fastpacs_names(text: str) -> set[str]:
    """Names of fastpacs's exposition, as prometheus-client's parser reads them."""
    return {family.name for family in text_string_to_metric_families(text)}


def test_orthanc_metric_names_are_a_subset_of_fastpacs(worked: ServerPair) -> None:
    orthanc, fastpacs = worked.send(get("metrics", "/tools/metrics-prometheus"))
    assert orthanc.status == fastpacs.status == 200
    assert orthanc.headers["content-type"] == fastpacs.headers["content-type"]
    theirs, ours = orthanc_names(orthanc.content.decode()), fastpacs_names(fastpacs.content.decode())
    assert theirs >= {  # the workload ran
        "orthanc_dicom_cache_count",
        "orthanc_storage_remove_duration_ms",
        "orthanc_find_scp_duration_ms",
    }
    assert theirs - ours == set(), f"Orthanc shows metrics fastpacs does not: {sorted(theirs - ours)}"
    assert fastpacs_names(orthanc.content.decode()) == theirs  # the parser reads Orthanc's lines alike


def test_names_of_the_capture_are_a_subset_of_fastpacs(worked: ServerPair) -> None:
    ours = fastpacs_names(worked.fastpacs_client.get("/tools/metrics-prometheus").text)
    assert CAPTURED_NAMES - ours == set()


def metrics_switch_calls() -> list[Call]:
    calls = [get("metrics flag", "/tools/metrics")]
    for body in (b"false", b"maybe", b"TRUE", b"True", b"", b"yes", b"2", b" true", b"1", b"0", b"false \n"):
        calls += [
            Call(f"metrics put {body!r}", "PUT", "/tools/metrics", body=body),
            get(f"metrics flag after {body!r}", "/tools/metrics"),
        ]
    calls += [
        get("metrics exposition while off", "/tools/metrics-prometheus"),
        Call("metrics post", "POST", "/tools/metrics", body=b"true"),
        Call("metrics exposition post", "POST", "/tools/metrics-prometheus"),
        Call("metrics put true", "PUT", "/tools/metrics", body=b"true"),
        get("metrics flag at the end", "/tools/metrics"),
    ]
    return calls


def test_metrics_switch_as_orthanc(worked: ServerPair) -> None:
    check = worked.checker()
    check.compare_all(metrics_switch_calls())
    check.verdict()
