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

from collections.abc import Iterator
from pathlib import Path

import pytest

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
