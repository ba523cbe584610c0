"""A stored file missing when a request reads it, compared with Orthanc 1.10.1.

The file is removed from both storages behind the servers' backs (as a
delete committed between a request's index lookup and its read of the file
does, or a disk losing it). Orthanc answers the routes that read the file
with 500 "The specified path does not point to a regular file" (2006)
naming the path, and its image renderings with an empty 415; fastpacs must
answer the same, not a 500 "Internal error" with a traceback in its log.

Routes fastpacs answers from its index (tags, header, module, frames list,
instances-tags, statistics) still answer there, where Orthanc reads the file
and fails: they are not compared. Orthanc is started without its storage
cache, which would otherwise keep serving the file it just received.
"""

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from tests.conftest import pydicom_file, stored_blobs
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

READ_ROUTES = (
    "file",
    "frames/0/raw",
    "frames/0/raw.gz",
    "matlab",
    "frames/0/matlab",
    "numpy",
    "content/0010-0010",
    "attachments/dicom/data",
    "attachments/dicom/compressed-data",
)
IMAGE_ROUTES = ("preview", "image-uint8", "image-uint16", "image-int16", "frames/0/preview", "rendered")


@pytest.fixture(scope="module")
def lost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerPair, dict[str, str]]]:
    """Both servers holding CT_small, whose stored file is then removed from both storages."""
    pair = ServerPair.start(
        tmp_path_factory.mktemp("lost-files"), {**COMMON_OPTIONS, "MaximumStorageCacheSize": 0}
    )
    try:
        data = Path(pydicom_file("CT_small.dcm")).read_bytes()
        uploaded = [
            client.post("/instances", content=data) for client in (pair.orthanc_client, pair.fastpacs_client)
        ]
        assert [answer.status_code for answer in uploaded] == [200, 200]
        orthanc_files = [path for path in (pair.orthanc.directory / "db").glob("??/??/*") if path.is_file()]
        fastpacs_files = list(stored_blobs(pair.fastpacs.directory / "storage").values())
        assert len(orthanc_files) == len(fastpacs_files) == 1
        for path in orthanc_files + fastpacs_files:
            path.unlink()
        yield pair, uploaded[0].json()
    finally:
        pair.stop()


def test_reading_a_missing_file_is_orthancs_error_naming_it(lost: tuple[ServerPair, dict[str, str]]) -> None:
    pair, instance = lost
    checker = pair.checker()
    for route in READ_ROUTES:
        exchange = checker.compare(get(f"lost file {route}", f"/instances/{instance['ID']}/{route}"))
        assert exchange.fastpacs.status == 500
        assert exchange.fastpacs.json["OrthancStatus"] == 2006
        assert exchange.fastpacs.json["Details"].startswith("The path does not point to a regular file: /")
    checker.compare(get("lost file series numpy", f"/series/{instance['ParentSeries']}/numpy"))
    checker.compare(
        Call(
            "lost file verify-md5",
            "POST",
            f"/instances/{instance['ID']}/attachments/dicom/verify-md5",
            body=b"",
        )
    )
    checker.compare(
        Call(
            "lost file modify",
            "POST",
            f"/instances/{instance['ID']}/modify",
            body=b'{"Replace": {"PatientName": "LOST"}, "Force": true}',
        )
    )
    checker.verdict()


def test_renderings_of_a_missing_file_are_an_empty_415(lost: tuple[ServerPair, dict[str, str]]) -> None:
    pair, instance = lost
    checker = pair.checker()
    for route in IMAGE_ROUTES:
        exchange = checker.compare(get(f"lost file {route}", f"/instances/{instance['ID']}/{route}"))
        assert (exchange.fastpacs.status, exchange.fastpacs.content) == (415, b"")
    checker.verdict()


def _finished_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """What a finished job says of its outcome (its ID and times differ by nature)."""
    deadline = time.monotonic() + 30
    while (job := client.get(f"/jobs/{job_id}").json())["State"] not in ("Success", "Failure"):
        assert time.monotonic() < deadline, f"job {job_id} did not finish"
        time.sleep(0.05)
    return {key: job[key] for key in ("State", "ErrorCode", "ErrorDescription", "ErrorDetails", "Content")}


def test_modifications_of_a_missing_file_fail_unless_permissive(
    lost: tuple[ServerPair, dict[str, str]],
) -> None:
    """Without ``Permissive`` the job fails (-1 "Internal error", a 500 when synchronous); with it,
    the instance is counted in FailedInstancesCount and the job succeeds."""
    pair, instance = lost
    checker = pair.checker()
    study, series = instance["ParentStudy"], instance["ParentSeries"]
    for name, path, body in (
        ("anonymize", f"/studies/{study}/anonymize", b"{}"),
        ("modify", f"/studies/{study}/modify", b'{"Replace": {"PatientName": "LOST"}}'),
        (
            "permissive modify",
            f"/series/{series}/modify",
            b'{"Replace": {"StudyID": "9"}, "Permissive": true}',
        ),
        ("permissive anonymize", f"/studies/{study}/anonymize", b'{"Permissive": true}'),
    ):
        exchange = checker.compare(Call(f"lost file study {name}", "POST", path, body=body))
        assert exchange.fastpacs.status == (200 if name.startswith("permissive") else 500)
    for name, body in (
        ("job", b'{"Asynchronous": true}'),
        ("permissive job", b'{"Asynchronous": true, "Permissive": true}'),
    ):
        answers = [
            client.post(f"/studies/{study}/anonymize", content=body)
            for client in (pair.orthanc_client, pair.fastpacs_client)
        ]
        orthanc, fastpacs = (
            _finished_job(client, answer.json()["ID"])
            for client, answer in zip((pair.orthanc_client, pair.fastpacs_client), answers, strict=True)
        )
        checker.compare_documents(f"lost file study anonymize {name}", orthanc, fastpacs)
        assert fastpacs["State"] == ("Success" if name.startswith("permissive") else "Failure")
    checker.verdict()


def test_media_leaves_a_missing_file_out_of_its_dicomdir(lost: tuple[ServerPair, dict[str, str]]) -> None:
    """The DICOMDIR has no record of a file the media could not include (both have an empty one)."""
    pair, instance = lost
    for client in (pair.orthanc_client, pair.fastpacs_client):
        answer = client.get(f"/studies/{instance['ParentStudy']}/media")
        assert answer.status_code == 200
        with zipfile.ZipFile(io.BytesIO(answer.content)) as media:
            assert media.namelist() == ["DICOMDIR"]
            dicomdir = dcmread(io.BytesIO(media.read("DICOMDIR")))
        assert len(dicomdir.DirectoryRecordSequence) == 0, client.base_url
