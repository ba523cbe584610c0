"""/tools/bulk-modify and /tools/bulk-anonymize compared with Orthanc 1.10.1.

Both servers store the same files and receive the same requests, in the
same order. Compared by structure, with the rules of
tests/differential/test_modify_vs_orthanc.py (what a server generates, UIDs,
resource IDs, PatientIDs, the N of ``AnonymizedN``, is replaced by
placeholders numbered in order of first appearance):

- the answers, status and body: counts, ``IsAnonymization`` and the
  ``Resources`` listed (IDs kept from the sources compare as they are, new
  ones by structure), errors included;
- every new instance: its resource JSON (which parents it has), its tags and
  its metadata, the instances ordered by what does not depend on the server;
  but not its file size (nor PixelDataOffset): the generated UIDs have
  different lengths (Orthanc's ``1.2.276.0.7230010.3.1.4.8323328....``,
  fastpacs's ``2.25.<uuid>``), as in test_modify_vs_orthanc.py, which does
  not compare them either;
- a Job's JSON for the asynchronous form.
"""

import json
import re
import time
from typing import Any

import pytest

from tests.differential.data import test_file
from tests.differential.harness import ServerPair, get
from tests.differential.test_modify_vs_orthanc import (
    FASTPACS_UID,
    ORTHANC_UID,
    UUID4,
    StructureChecker,
    known_ids,
    multi_series_study,
    post,
)

pytestmark = pytest.mark.reference

FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "test-SR.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm")
JOB_TIME = re.compile(r"^\d{8}T\d{6}\.\d{6}$")
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict]:
    """Name → Orthanc's upload answer, the same files on both servers."""
    files = {name: test_file(name).read_bytes() for name in FILES}
    for number, data in enumerate(multi_series_study()):
        files[f"multi {number}"] = data
    return pair.upload_all(files)


def _instances_made(check: StructureChecker, name: str, orthanc: Any, fastpacs: Any) -> None:
    """The new instances a bulk answer lists, on both servers: resource, tags, metadata."""
    if not all(isinstance(answer, dict) and "Resources" in answer for answer in (orthanc, fastpacs)):
        return
    documents = []
    for server_get, answer in ((check.pair.orthanc_get, orthanc), (check.pair.fastpacs_get, fastpacs)):
        made = []
        for item in answer["Resources"]:
            if item["Type"] == "Instance":
                instance = item["ID"]
                resource = server_get(f"/instances/{instance}")
                metadata = server_get(f"/instances/{instance}/metadata", expand="")
                resource.pop("FileSize"), metadata.pop("PixelDataOffset", None)  # absent without pixels
                tags = server_get(f"/instances/{instance}/tags")
                made.append({"resource": resource, "tags": tags, "metadata": metadata})
        documents.append(sorted(made, key=lambda document: _order(document, check.known_ids)))
    check.compare_structures(get(f"{name}: new instances", ""), documents[0], documents[1])


def _order(document: dict[str, Any], known_ids: set[str]) -> tuple[str, str]:
    """What orders new instances alike on both servers: their source when it was uploaded by the
    test, and their tags without the generated values."""
    metadata = document["metadata"]
    source = metadata.get("ModifiedFrom") or metadata.get("AnonymizedFrom")
    kept = {
        key: entry
        for key, entry in document["tags"].items()
        if not (
            isinstance(entry.get("Value"), str)
            and (
                ORTHANC_UID.match(entry["Value"])
                or FASTPACS_UID.match(entry["Value"])
                or UUID4.match(entry["Value"])
            )
        )
    }
    return source if source in known_ids else "", json.dumps(kept, sort_keys=True)


def _bulk(check: StructureChecker, route: str, name: str, body: Any) -> None:
    call = post(f"{route} {name}", f"/tools/{route}", body)
    orthanc, fastpacs = check.exchange(call)
    _instances_made(check, f"{route} {name}", orthanc, fastpacs)


def test_bulk_modify(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    ct, mr, sr = stored["CT_small.dcm"], stored["MR_small.dcm"], stored["test-SR.dcm"]
    rgb, rtplan, nm = stored["SC_rgb_rle_2frame.dcm"], stored["rtplan.dcm"], stored["JPEG2000.dcm"]
    multi = stored["multi 0"]
    requests = [
        ("no level", {"Resources": [ct["ParentStudy"], mr["ID"], mr["ID"]],
                      "Replace": {"StudyDescription": "B"}}),
        ("level study", {"Resources": [multi["ParentStudy"], rtplan["ParentSeries"]], "Level": "Study",
                         "Replace": {"StudyDescription": "Bulk study"}}),
        ("level series", {"Resources": [multi["ParentSeries"], rgb["ID"]], "Level": "SERIES",
                          "Replace": {"SeriesDescription": "Bulk series"}, "Remove": ["InstitutionName"]}),
        ("level patients", {"Resources": [nm["ParentPatient"]], "Level": "patients",
                            "Replace": {"PatientID": "BULKNM"}, "Force": True}),
        ("deduced patient level", {"Resources": [rgb["ParentStudy"]], "Replace": {"PatientID": "BULKRGB"},
                                   "Force": True}),
        ("keep source false", {"Resources": [sr["ParentSeries"]], "Level": "Series", "KeepSource": False,
                               "Replace": {"SeriesDescription": "Moved"}}),
        ("nothing", {"Resources": []}),
    ]  # fmt: skip
    for name, body in requests:
        _bulk(check, "bulk-modify", name, body)
    check.exchange(get("source of keep source false", f"/series/{sr['ParentSeries']}"))
    check.verdict()


def test_bulk_anonymize(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    ct, mr, rtplan = stored["CT_small.dcm"], stored["MR_small.dcm"], stored["rtplan.dcm"]
    multi = stored["multi 1"]
    requests = [
        ("two patients", {"Resources": [ct["ParentPatient"], mr["ParentStudy"]]}),
        ("keep study uid", {"Resources": [multi["ParentSeries"]], "Level": "Series",
                            "Keep": ["StudyInstanceUID"], "Force": True}),
        ("2017c named", {"Resources": [rtplan["ID"]], "DicomVersion": "2017c",
                         "Replace": {"PatientName": "Anon^Bulk"}}),
    ]  # fmt: skip
    for name, body in requests:
        _bulk(check, "bulk-anonymize", name, body)
    check.verdict()


ERRORS = {
    "bulk-modify": [
        b"",
        b"[]",
        {"Replace": {"StudyDescription": "x"}},
        {"Resources": "x"},
        {"Resources": ["nonsense"]},
        {"Resources": ["00000000-00000000-00000000-00000000-00000000"]},
        {"Resources": [], "Level": "nonsense"},
        {"Resources": [], "Level": 3},
        {"Resources": [], "Level": "Patient", "Replace": {"StudyDescription": "x"}},
        {"Resources": [], "Level": "Study", "Replace": {"PatientID": "x"}, "Force": True},
        {"Resources": [], "Level": "Instance", "Replace": {"PatientID": "x"}, "Force": True},
        {"Resources": [], "Level": "Instance", "Replace": {"StudyInstanceUID": "1.2"}, "Force": True},
        {"Resources": [], "Level": "Instance", "Replace": {"SeriesInstanceUID": "1.2"}, "Force": True},
        {"Resources": [], "Replace": {"StudyInstanceUID": "1.2"}},
        {"Resources": [], "Replace": {"NoSuchTag": "x"}},
        {"Resources": [], "KeepSource": "x"},
    ],
    "bulk-anonymize": [
        b"",
        b"[]",
        {"Resources": "x"},
        {"Resources": ["nonsense"]},
        {"Resources": [], "DicomVersion": "1999"},
        {"Resources": [], "Keep": ["PatientID"]},
        {"Resources": [], "Level": "nonsense"},
    ],
}


def test_bulk_errors(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    for route, bodies in ERRORS.items():
        for body in bodies:
            name = body.decode() if isinstance(body, bytes) else json.dumps(body)
            check.exchange(post(f"{route} error {name}", f"/tools/{route}", body))
    check.verdict()


def _job_when_done(pair: ServerPair, server_get: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        job = server_get(f"/jobs/{job_id}")
        if job["State"] in ("Success", "Failure"):
            for key in ("CreationTime", "CompletionTime", "Timestamp"):
                assert JOB_TIME.match(job[key]), (key, job[key])
                job[key] = "<time>"
            assert isinstance(job["EffectiveRuntime"], float)
            job["EffectiveRuntime"] = "<runtime>"
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_asynchronous_bulk_job(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    body = {"Resources": [stored["multi 2"]["ParentSeries"]], "Asynchronous": True, "Priority": 4}
    orthanc, fastpacs = check.exchange(post("bulk-modify asynchronous", "/tools/bulk-modify", body))
    jobs = [
        _job_when_done(pair, server_get, answer["ID"])
        for server_get, answer in ((pair.orthanc_get, orthanc), (pair.fastpacs_get, fastpacs))
    ]
    check.compare_structures(get("bulk-modify job", "/jobs"), jobs[0], jobs[1])
    _instances_made(check, "bulk-modify job", jobs[0]["Content"], jobs[1]["Content"])
    check.verdict()
