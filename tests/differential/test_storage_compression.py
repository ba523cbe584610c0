"""StorageCompression compared with the reference Orthanc: attachments stored zlib-compressed.

Both servers run with ``StorageCompression: true``. The stored bytes must be
Orthanc's, of each DICOM file and of its ``dicom-until-pixel-data``
attachment (``compressed-data``, ``compressed-md5``, ``compressed-size``),
every reader must get the original file back (``/file``, ``/preview``,
``/archive``, C-GET), the statistics must count stored and content sizes
apart, and ``/uncompress`` and ``/compress`` must convert in place.
A client that accepts deflate gets a compressed file as it is stored (its
zlib stream, ``Content-Encoding: deflate``), as from Orthanc. ``/compress``
and ``/uncompress`` without the option are compared in
test_api_rest_vs_orthanc.py.
"""

import gzip
import io
import zipfile
import zlib
from collections.abc import Iterator

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

from tests.conftest import c_get_association
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import test_file
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

FILES = ("CT_small.dcm", "JPEG2000.dcm", "rtdose.dcm", "SC_rgb_rle_2frame.dcm", "rtplan.dcm")
"""Native CT, a compressed transfer syntax (JPEG 2000), multi-frame 32-bit, multi-frame RLE colour, and
a file without pixel data."""
VIEWS = ("/info", "/is-compressed", "/compressed-data", "/compressed-md5", "/compressed-size")
VIEWS += ("/data", "/md5", "/size")
ETAG = ("content-type", "etag")
USER_ATTACHMENT = bytes(range(256)) * 40
GETTER_AET = "COMPRESSION"
OPTIONS = {
    **COMMON_OPTIONS,
    "StorageCompression": True,
    "DicomModalities": {"getter": [GETTER_AET, "127.0.0.1", 104]},
}
"""The option, and a modality allowed to C-GET."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    servers = ServerPair.start(tmp_path_factory.mktemp("compression"), OPTIONS)
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict[str, str]]:
    """The test files uploaded to both servers: file name → Orthanc's upload answer."""
    return pair.upload_all({name: test_file(name).read_bytes() for name in FILES})


def _attachment_calls(label: str, base: str) -> list[Call]:
    return [
        Call(f"{label} attachment{view}", "GET", f"{base}{view}", compared_headers=ETAG) for view in VIEWS
    ]


def test_stored_files_are_orthancs_bytes(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    check = pair.checker()
    for name, answer in stored.items():
        instance = f"/instances/{answer['ID']}"
        check.compare(get(f"{name} attachments", f"{instance}/attachments"))
        check.compare_all(_attachment_calls(name, f"{instance}/attachments/dicom"))
        check.compare_all(
            _attachment_calls(f"{name} until", f"{instance}/attachments/dicom-until-pixel-data")
        )
        check.compare(Call(f"{name} verify-md5", "POST", f"{instance}/attachments/dicom/verify-md5"))
        check.compare(get(f"{name} file", f"{instance}/file"))
        assert pair.fastpacs_client.get(f"{instance}/file").content == test_file(name).read_bytes()
        assert pair.fastpacs_client.get(f"{instance}/attachments/dicom/is-compressed").text == "1"
    check.verdict()


def test_statistics_count_stored_and_content_sizes(
    pair: ServerPair, stored: dict[str, dict[str, str]]
) -> None:
    check = pair.checker()
    check.compare(get("statistics", "/statistics"))
    for name, answer in stored.items():
        check.compare(get(f"statistics {name} instance", f"/instances/{answer['ID']}/statistics"))
        check.compare(get(f"statistics {name} patient", f"/patients/{answer['ParentPatient']}/statistics"))
    check.verdict()


def test_user_attachment_is_compressed(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    base = f"/series/{stored['CT_small.dcm']['ParentSeries']}/attachments/1030"
    check = pair.checker()
    check.compare(Call("user attachment put", "PUT", base, body=USER_ATTACHMENT, compared_headers=ETAG))
    check.compare_all(_attachment_calls("user", base))
    check.compare(Call("user attachment empty put", "PUT", f"{base[:-4]}1031", body=b""))
    check.compare_all(_attachment_calls("user empty", f"{base[:-4]}1031"))
    check.verdict()
    assert pair.fastpacs_client.get(f"{base}/data").content == USER_ATTACHMENT


def test_uncompress_then_compress_in_place(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    check = pair.checker()
    for label, base in (
        ("dicom", f"/instances/{stored['rtdose.dcm']['ID']}/attachments/dicom"),
        ("user", f"/series/{stored['CT_small.dcm']['ParentSeries']}/attachments/1030"),
    ):
        for step in ("uncompress", "uncompress", "compress", "compress"):
            check.compare(Call(f"{label} {step}", "POST", f"{base}/{step}"))
            check.compare_all(_attachment_calls(f"{label} {step}", base))
            check.compare(Call(f"{label} {step} verify-md5", "POST", f"{base}/verify-md5"))
            check.compare(get(f"{label} {step} statistics", "/statistics"))
    check.verdict()


def test_readers_get_the_original_file(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    """Preview (a worker decodes), archive (streamed from the storage) and C-GET (the DICOM server)."""
    original = test_file("CT_small.dcm").read_bytes()
    answer = stored["CT_small.dcm"]
    previews = [
        np.asarray(Image.open(io.BytesIO(client.get(f"/instances/{answer['ID']}/preview").content)))
        for client in (pair.orthanc_client, pair.fastpacs_client)
    ]
    assert np.array_equal(previews[0], previews[1])
    archive = pair.fastpacs_client.get(f"/studies/{answer['ParentStudy']}/archive")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as files:
        assert [files.read(entry) for entry in files.namelist()] == [original]
    received: list[Dataset] = []

    def on_store(event) -> int:
        received.append(event.dataset)
        return 0x0000

    expected = pydicom.dcmread(io.BytesIO(original))
    association = c_get_association(pair.fastpacs, GETTER_AET, on_store)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = expected.StudyInstanceUID
    try:
        responses = association.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
        statuses = [status.Status for status, _ in responses]
    finally:
        association.release()
    assert statuses[-1] == 0x0000
    assert [(item.SOPInstanceUID, item.PixelData) for item in received] == [
        (expected.SOPInstanceUID, expected.PixelData)
    ]


def test_files_a_worker_stores_are_compressed_alike(
    pair: ServerPair, stored: dict[str, dict[str, str]]
) -> None:
    """A study anonymized by a job: the worker processes store the new files (compressed, with their
    bytes before the pixel data), not the server's ingest thread."""
    answers = [
        client.post(f"/studies/{stored['CT_small.dcm']['ParentStudy']}/anonymize", json={}).json()
        for client in (pair.orthanc_client, pair.fastpacs_client)
    ]
    instances = [
        client.get(f"{answer['Path']}/instances").json()[0]["ID"]
        for client, answer in zip((pair.orthanc_client, pair.fastpacs_client), answers, strict=True)
    ]
    lists = [
        client.get(f"/instances/{instance}/attachments").json()
        for client, instance in zip((pair.orthanc_client, pair.fastpacs_client), instances, strict=True)
    ]
    assert lists[1] == lists[0] == ["dicom", "dicom-until-pixel-data"]
    client, base = pair.fastpacs_client, f"/instances/{instances[1]}"
    file = client.get(f"{base}/file").content
    offset = int(client.get(f"{base}/metadata/PixelDataOffset").text)
    assert client.get(f"{base}/attachments/dicom/is-compressed").text == "1"
    assert client.get(f"{base}/attachments/dicom-until-pixel-data/data").content == file[:offset]
    assert client.get(f"{base}/attachments/dicom-until-pixel-data/is-compressed").text == "1"


def test_compressed_files_survive_a_restart(pair: ServerPair, stored: dict[str, dict[str, str]]) -> None:
    pair.fastpacs.stop()
    pair.fastpacs.start()
    client = httpx.Client(base_url=pair.fastpacs.base_url, timeout=60)
    with client:
        for name, answer in stored.items():
            instance = f"/instances/{answer['ID']}"
            assert client.get(f"{instance}/attachments/dicom/is-compressed").text == "1"
            assert client.get(f"{instance}/file").content == test_file(name).read_bytes()
            assert client.post(f"{instance}/attachments/dicom/verify-md5").status_code == 200


ACCEPTED_ENCODINGS = ("identity", "gzip", "deflate", "gzip, deflate", "deflate, gzip", "deflate;q=0")
"""Not ``*``: Orthanc matches codings by their exact names, and gzips nothing for ``*``, which fastpacs
reads as accepting gzip."""


def _raw(client: httpx.Client, path: str, accepted: str) -> tuple[int, str | None, bytes]:
    """Status, Content-Encoding and the body as it came over the wire (gzip inflated: its bytes are
    the compressor's own)."""
    with client.stream("GET", path, headers={"Accept-Encoding": accepted}) as answer:
        body = b"".join(answer.iter_raw())
        encoding = answer.headers.get("content-encoding")
        return answer.status_code, encoding, gzip.decompress(body) if encoding == "gzip" else body


def test_a_client_taking_deflate_gets_the_stored_zlib_stream(
    pair: ServerPair, stored: dict[str, dict[str, str]]
) -> None:
    for name in ("CT_small.dcm", "JPEG2000.dcm"):
        instance = f"/instances/{stored[name]['ID']}"
        for path in (f"{instance}/file", f"{instance}/attachments/dicom/data"):
            for accepted in ACCEPTED_ENCODINGS:
                expected = _raw(pair.orthanc_client, path, accepted)
                assert _raw(pair.fastpacs_client, path, accepted) == expected, (name, path, accepted)
        deflated = _raw(pair.fastpacs_client, f"{instance}/file", "deflate")[2]
        assert zlib.decompress(deflated) == test_file(name).read_bytes()
