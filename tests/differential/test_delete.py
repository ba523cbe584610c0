"""DELETE at every level, and the change log, compared with Orthanc on a small set of files.

The files are uploaded in one short burst (well under StableAge), so both
servers log every New* change before any Stable* one and /changes can be
compared exactly, Seq numbers included. The tests then delete resources one
level after the other, in file order, and compare the answer
(RemainingAncestor) and the state left behind: /statistics, /changes (the
changes of deleted resources disappear), the listings, and 404s for what is
gone.
"""

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import test_file
from tests.differential.harness import Call, Checker, ServerPair, get

pytestmark = pytest.mark.reference

BURST = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",  # the same SOP instance as MR_small: AlreadyStored, nothing logged
    "SC_rgb_small_odd.dcm",  # } one series
    "SC_rgb_jpeg_dcmtk.dcm",  # } of three
    "SC_rgb_rle_2frame.dcm",  # } instances
    "test-SR.dcm",  # } empty PatientID: one patient
    "ExplVR_BigEndNoMeta.dcm",  # } with two studies
    "rtplan.dcm",
)
CT_SECOND_SERIES = "CT_small second series"
STABLE_AGE = 5
"""Seconds without a new instance before a resource is stable: the burst must end well within it on
both servers. With the other modules' 1 s, a loaded machine's slow uploads let Orthanc log a
StableSeries between two New* changes and not fastpacs (or the reverse), and every later /changes
differed."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    servers = ServerPair.start(tmp_path_factory.mktemp("delete"), {**COMMON_OPTIONS, "StableAge": STABLE_AGE})
    yield servers
    servers.stop()


def ct_second_series() -> bytes:
    """CT_small as a second series of its study (new series and SOP instance UIDs)."""
    dataset = pydicom.dcmread(test_file("CT_small.dcm"))
    dataset.SeriesInstanceUID = dataset.SeriesInstanceUID + ".2"
    dataset.SOPInstanceUID = dataset.SOPInstanceUID + ".2"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.SeriesDescription = "Second series"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def uploaded(pair: ServerPair) -> dict[str, dict[str, str]]:
    """File name → Orthanc's upload answer, once both servers are stable."""
    files: dict[str, bytes] = {name: test_file(name).read_bytes() for name in BURST}
    files[CT_SECOND_SERIES] = ct_second_series()
    answers = pair.upload_all(files)
    pair.wait_until_stable()
    return answers


def state_calls(step: str) -> list[Call]:
    """Everything a deletion may change."""
    return [
        get(f"{step}: statistics", "/statistics"),
        get(f"{step}: changes", "/changes", limit="1000"),
        get(f"{step}: changes last", "/changes", last=""),
        *(get(f"{step}: {level}", f"/{level}", expand="") for level in ("patients", "studies", "series")),
        get(f"{step}: instances", "/instances", expand=""),
    ]


def gone_calls(step: str, level: str, resource_id: str) -> list[Call]:
    """A deleted resource: unknown everywhere."""
    below = {"patients": "studies", "studies": "series", "series": "instances", "instances": "series"}[level]
    return [
        get(f"{step}: gone {level}", f"/{level}/{resource_id}"),
        get(f"{step}: gone {level} relatives", f"/{level}/{resource_id}/{below}"),
        Call(f"{step}: delete again", "DELETE", f"/{level}/{resource_id}"),
    ]


def delete_and_compare(
    pair: ServerPair, step: str, level: str, resource_id: str, gone: dict[str, str]
) -> Checker:
    check = pair.checker()
    answer = check.compare(Call(f"{step}: delete", "DELETE", f"/{level}/{resource_id}"))
    assert answer.orthanc.status == 200, "the reference refused the deletion: the scenario is wrong"
    check.compare_all(state_calls(step))
    for gone_level, gone_id in gone.items():
        check.compare_all(gone_calls(step, gone_level, gone_id))
    return check


def test_change_log_of_a_burst_of_uploads(pair: ServerPair, uploaded: dict[str, dict[str, str]]) -> None:
    check = pair.checker()
    check.compare_all(state_calls("after upload"))
    check.compare_all(
        [
            get("changes default", "/changes"),
            get("changes limit 3", "/changes", limit="3"),
            get("changes since 3 limit 5", "/changes", since="3", limit="5"),
            get("changes since the last", "/changes", since="1000", limit="5"),
            get("changes limit 0", "/changes", limit="0"),
            get("changes non-numeric limit", "/changes", limit="many"),
            get("changes non-numeric since", "/changes", since="x", limit="2"),
            get("changes negative since", "/changes", since="-3", limit="2"),
            get("changes negative limit", "/changes", limit="-1"),
            get("changes limit with plus sign", "/changes", limit="+3"),
            get("changes limit with a space", "/changes", limit=" 3"),
            get("changes decimal since", "/changes", since="1.5", limit="2"),
            get("changes since beyond 64 bits", "/changes", since="99999999999999999999", limit="2"),
            get("changes limit beyond 32 bits", "/changes", limit="4294967296"),
        ]
    )
    check.verdict()


def test_already_stored_keeps_the_first_file(pair: ServerPair, uploaded: dict[str, dict[str, str]]) -> None:
    mr = uploaded["MR_small.dcm"]["ID"]
    check = pair.checker()
    check.compare(get("MR_small_implicit file", f"/instances/{mr}/file"))
    check.verdict()
    assert pair.fastpacs_client.get(f"/instances/{mr}/file").content == test_file("MR_small.dcm").read_bytes()


def test_delete_instance_of_a_series_that_keeps_others(pair: ServerPair, uploaded) -> None:
    instance = uploaded["SC_rgb_jpeg_dcmtk.dcm"]["ID"]
    delete_and_compare(pair, "instance", "instances", instance, {"instances": instance}).verdict()


def test_delete_series_of_a_study_that_keeps_others(pair: ServerPair, uploaded) -> None:
    answer = uploaded[CT_SECOND_SERIES]
    gone = {"series": answer["ParentSeries"], "instances": answer["ID"]}
    delete_and_compare(pair, "series", "series", answer["ParentSeries"], gone).verdict()


def test_delete_study_of_a_patient_that_keeps_others(pair: ServerPair, uploaded) -> None:
    answer = uploaded["test-SR.dcm"]
    gone = {"studies": answer["ParentStudy"], "series": answer["ParentSeries"], "instances": answer["ID"]}
    delete_and_compare(pair, "study", "studies", answer["ParentStudy"], gone).verdict()


def test_delete_the_only_instance_of_a_patient(pair: ServerPair, uploaded) -> None:
    answer = uploaded["MR_small.dcm"]
    gone = {
        "patients": answer["ParentPatient"],
        "studies": answer["ParentStudy"],
        "series": answer["ParentSeries"],
        "instances": answer["ID"],
    }
    delete_and_compare(pair, "only instance", "instances", answer["ID"], gone).verdict()


def test_delete_patient_with_a_series_of_several_instances(pair: ServerPair, uploaded) -> None:
    answer = uploaded["SC_rgb_small_odd.dcm"]
    gone = {
        "patients": answer["ParentPatient"],
        "series": answer["ParentSeries"],
        "instances": uploaded["SC_rgb_rle_2frame.dcm"]["ID"],
    }
    delete_and_compare(pair, "patient", "patients", answer["ParentPatient"], gone).verdict()


def test_delete_the_last_series_of_a_patient(pair: ServerPair, uploaded) -> None:
    answer = uploaded["CT_small.dcm"]
    gone = {"patients": answer["ParentPatient"], "studies": answer["ParentStudy"]}
    delete_and_compare(pair, "last series", "series", answer["ParentSeries"], gone).verdict()


def test_clear_the_change_log_then_upload(pair: ServerPair, uploaded) -> None:
    check = pair.checker()
    check.compare(Call("clear changes", "DELETE", "/changes"))
    check.compare_all(state_calls("after clearing"))
    check.compare(
        Call("upload after clearing", "POST", "/instances", body=test_file("CT_small.dcm").read_bytes())
    )
    check.compare_all(state_calls("after clearing and uploading"))
    check.verdict()


def test_files_are_gone_from_storage(pair: ServerPair, uploaded) -> None:
    """Only the blobs of what remains are on disk (SC_rgb_* and MR_small were deleted)."""
    remaining = {p.read_bytes() for p in _blobs(pair.fastpacs.directory / "storage")}
    assert test_file("rtplan.dcm").read_bytes() in remaining
    for name in ("SC_rgb_small_odd.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small.dcm", "test-SR.dcm"):
        assert test_file(name).read_bytes() not in remaining, name


def _blobs(storage: Path) -> list[Path]:
    return [path for path in storage.glob("??/??/*") if path.is_file()]
