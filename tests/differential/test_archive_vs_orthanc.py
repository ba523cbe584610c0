"""Archives and Archive jobs, fastpacs against the reference Orthanc.

Both servers store the same files (pydicom's, plus variants with fixed UIDs
whose names exercise Orthanc's character filtering and the numbering of
same-named folders), then answer the same archive requests. Compared: the
status and headers, the list of files in each ZIP (names and order) and
their bytes, the JSON of a finished Archive job and the answers to the job
actions. Errors go through the harness's checker.

Allowed differences, by design:

- ZIP bytes: Orthanc deflates its entries, fastpacs stores them (see
  fastpacs.services.archive), so only the files inside are compared, and
  the job's ``ArchiveSize``/``ArchiveSizeMB`` are not.
- Job IDs, times and ``EffectiveRuntime`` vary by nature; their format is checked.
"""

import io
import time
import zipfile
from typing import Any

import pydicom
import pytest

from tests.differential.archive_jobs import JOB_TIMEOUT, normalized_job, wait_success
from tests.differential.data import test_file
from tests.differential.harness import Call, ServerPair

pytestmark = pytest.mark.reference

UPLOADED = (
    "CT_small.dcm",
    "MR_small.dcm",
    "test-SR.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle_2frame.dcm",
    "rtplan.dcm",
)


def _variant(number: int, **tags: Any) -> bytes:
    """CT_small with fixed UIDs (same IDs on both servers) and some tags changed."""
    dataset = pydicom.dcmread(test_file("CT_small.dcm"))
    study = tags.pop("study", number)
    dataset.StudyInstanceUID = f"2.25.7007{study}"
    dataset.SeriesInstanceUID = f"2.25.7007{number}1"
    dataset.SOPInstanceUID = f"2.25.7007{number}2"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword, value in tags.items():
        if value is None:
            if keyword in dataset:
                delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _variants() -> list[bytes]:
    return [
        _variant(1, PatientID="DUP", PatientName="X", StudyDescription="S", SeriesDescription="", study=1),
        _variant(2, PatientID="DUP", PatientName="X", StudyDescription="S", SeriesDescription="", study=1),
        _variant(3, PatientID="DUP", PatientName="X", StudyDescription="S", SeriesDescription=""),
        _variant(4, PatientID="D/UP", PatientName="X", StudyDescription="S", SeriesDescription=""),
        _variant(
            5,
            PatientID="A/B\\C:*?",
            PatientName="Dö^Jöhn=ab",
            SpecificCharacterSet="ISO_IR 100",
            StudyDescription="x<y>|z\"' ~!@#$%&()_-+={}[];,.`",
            SeriesDescription="s/d\\e",
            Modality="RTDOSE",
        ),
        _variant(
            6, PatientID="", PatientName="", StudyDescription=None, SeriesDescription=None, Modality=None
        ),
        _variant(7, PatientID="Q1", PatientName="a  b^^c", StudyDescription="日本語", Modality="mr"),
    ]


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict[str, str]]:
    """Upload answers by name (the variants as ``variant-N``), checked identical on both servers."""
    answers = {}
    uploads = [(name, test_file(name).read_bytes()) for name in UPLOADED]
    uploads += [(f"variant-{number}", data) for number, data in enumerate(_variants(), start=1)]
    for name, data in uploads:
        orthanc, fastpacs = pair.send(Call(f"upload {name}", "POST", "/instances", body=data))
        assert orthanc.status == fastpacs.status == 200, name
        assert orthanc.json == fastpacs.json, name
        answers[name] = orthanc.json
    return answers


def _zip_files(content: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as reader:
        assert reader.testzip() is None
        return [(name, reader.read(name)) for name in reader.namelist()]


def _compare_zips(pair: ServerPair, method: str, path: str, body: Any = None) -> list[str]:
    """Same status, type, name and files (in the same order) from both servers; the file names."""
    answers = [
        client.request(method, path, json=body) for client in (pair.orthanc_client, pair.fastpacs_client)
    ]
    orthanc, fastpacs = answers
    assert orthanc.status_code == fastpacs.status_code == 200, path
    for header in ("content-type", "content-disposition"):
        assert orthanc.headers.get(header) == fastpacs.headers.get(header), (path, header)
    files = _zip_files(orthanc.content)
    assert _zip_files(fastpacs.content) == files, path
    return [name for name, _ in files]


def test_resource_archives(pair: ServerPair, stored: dict) -> None:
    ct, rgb, sr = stored["CT_small.dcm"], stored["SC_rgb_small_odd.dcm"], stored["test-SR.dcm"]
    paths = [
        f"/studies/{ct['ParentStudy']}/archive",
        f"/patients/{rgb['ParentPatient']}/archive",
        f"/series/{rgb['ParentSeries']}/archive",
        f"/studies/{sr['ParentStudy']}/archive",
        f"/studies/{ct['ID']}/archive",  # any level is accepted
    ]
    for path in paths:
        assert _compare_zips(pair, "GET", path)
    assert _compare_zips(pair, "POST", f"/series/{rgb['ParentSeries']}/archive", {}) == [
        f"ID1 Lestrade G/Unknown Study/OT/OT00000{index}.dcm" for index in range(3)
    ]


def test_create_archive_layout(pair: ServerPair, stored: dict) -> None:
    everything = [answer["ParentPatient"] for answer in stored.values()]
    names = _compare_zips(pair, "POST", "/tools/create-archive", {"Resources": everything})
    assert len(names) == len({answer["ID"] for answer in stored.values()})
    mixed = [
        stored["CT_small.dcm"]["ParentStudy"],
        stored["MR_small.dcm"]["ID"],
        stored["SC_rgb_small_odd.dcm"]["ParentSeries"],
        stored["SC_rgb_jpeg_dcmtk.dcm"]["ID"],
    ]
    _compare_zips(pair, "POST", "/tools/create-archive", mixed)
    assert _compare_zips(pair, "POST", "/tools/create-archive", {"Resources": []}) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"nope",
        b"{}",
        b'"x"',
        b"[1]",
        b'{"Resources": "x"}',
        b'{"Resources": ["00000000-00000000-00000000-00000000-00000000"]}',
        b'{"Resources": ["nonsense"]}',
        b'{"Resources": [], "Synchronous": "yes"}',
        b'{"Resources": [], "Priority": "high"}',
    ],
)
def test_create_archive_errors(pair: ServerPair, body: bytes) -> None:
    check = pair.checker()
    check.compare(Call(f"create-archive {body!r}", "POST", "/tools/create-archive", body=body))
    check.verdict()


def test_archive_route_errors(pair: ServerPair, stored: dict) -> None:
    check = pair.checker()
    series = stored["SC_rgb_small_odd.dcm"]["ParentSeries"]
    check.compare(
        Call("archive unknown", "GET", "/studies/00000000-00000000-00000000-00000000-00000000/archive")
    )
    check.compare(
        Call("archive of an instance route", "GET", f"/instances/{stored['CT_small.dcm']['ID']}/archive")
    )
    check.compare(Call("archive post empty body", "POST", f"/series/{series}/archive", body=b""))
    check.compare(Call("archive post garbage", "POST", f"/series/{series}/archive", body=b"garbage"))
    check.verdict()


def test_archive_job(pair: ServerPair, stored: dict) -> None:
    resources = [stored["SC_rgb_small_odd.dcm"]["ParentSeries"], stored["CT_small.dcm"]["ParentStudy"]]
    clients = (pair.orthanc_client, pair.fastpacs_client)
    submitted = [
        client.post("/tools/create-archive", json={"Resources": resources, "Asynchronous": True})
        for client in clients
    ]
    for answer in submitted:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        assert answer.json() == {"ID": answer.json()["ID"], "Path": f"/jobs/{answer.json()['ID']}"}
    ids = [answer.json()["ID"] for answer in submitted]
    jobs = [wait_success(client, job_id) for client, job_id in zip(clients, ids, strict=True)]
    assert normalized_job(jobs[1]) == normalized_job(jobs[0])
    assert jobs[1]["Content"]["UncompressedSize"] == jobs[0]["Content"]["UncompressedSize"]

    outputs = [client.get(f"/jobs/{job_id}/archive") for client, job_id in zip(clients, ids, strict=True)]
    for header in ("content-type", "content-disposition"):
        assert outputs[0].headers.get(header) == outputs[1].headers.get(header)
    assert _zip_files(outputs[1].content) == _zip_files(outputs[0].content)
    assert jobs[1]["Content"]["ArchiveSize"] == str(len(outputs[1].content))

    for path_suffix, method in (("nosuch", "GET"), ("cancel", "POST"), ("pause", "POST"), ("resume", "POST")):
        answers = [
            client.request(method, f"/jobs/{job_id}/{path_suffix}", content=b"")
            for client, job_id in zip(clients, ids, strict=True)
        ]
        assert answers[0].status_code == answers[1].status_code, path_suffix
        if answers[0].content[:1] == b"{" and answers[0].status_code == 200:
            assert answers[0].json() == answers[1].json() == {}
        elif answers[0].status_code >= 400 and answers[0].content:
            error = dict(answers[0].json())
            mine = dict(answers[1].json())
            assert (error.pop("Uri"), mine.pop("Uri")) == (
                f"/jobs/{ids[0]}/{path_suffix}",
                f"/jobs/{ids[1]}/{path_suffix}",
            )
            assert mine == error
        else:
            assert answers[0].content == answers[1].content == b""
    resubmit = [client.post(f"/jobs/{job_id}/resubmit") for client, job_id in zip(clients, ids, strict=True)]
    assert resubmit[0].status_code == resubmit[1].status_code == 400
    after = [client.get(f"/jobs/{job_id}").json() for client, job_id in zip(clients, ids, strict=True)]
    assert normalized_job(after[1]) == normalized_job(after[0])


def test_synchronous_archive_job_in_the_list(pair: ServerPair, stored: dict) -> None:
    series = stored["SC_rgb_small_odd.dcm"]["ParentSeries"]
    latest = []
    for client in (pair.orthanc_client, pair.fastpacs_client):
        before = set(client.get("/jobs").json())
        assert client.get(f"/series/{series}/archive").status_code == 200
        deadline = time.monotonic() + JOB_TIMEOUT
        while not (fresh := set(client.get("/jobs").json()) - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fresh) == 1
        latest.append(wait_success(client, fresh.pop()))
    assert normalized_job(latest[1]) == normalized_job(latest[0])


def test_unknown_job(pair: ServerPair) -> None:
    check = pair.checker()
    check.compare(Call("job unknown", "GET", "/jobs/nosuchjob"))
    for action in ("pause", "resume", "cancel", "resubmit"):
        check.compare(Call(f"job unknown {action}", "POST", f"/jobs/nosuchjob/{action}", body=b""))
    check.compare(Call("job unknown output", "GET", "/jobs/nosuchjob/archive"))
    check.verdict()
