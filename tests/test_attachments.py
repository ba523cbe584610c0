"""Attachments of a running fastpacs: the DICOM file, user attachments, revisions, blob references."""

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastpacs.dicom.ids import Level, resource_ids
from fastpacs.dicom.parse import summarize
from fastpacs.index.attachments import DICOM, Attachment, stored_attachments
from fastpacs.index.database import Database
from fastpacs.index.schema import Counter
from fastpacs.index.updates import add_instance, put_attachment, replace_attachment_blob
from fastpacs.index.writer import IndexWriter
from fastpacs.storage.blobs import BlobStore, StoredBlob
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

USER_TYPES = {"report": 1025, "scan": [1026, "application/pdf"]}
CT_INSTANCE = "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"
CT_PATIENT = "fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718"
UNKNOWN = "00000000-00000000-00000000-00000000-00000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(
        tmp_path_factory.mktemp("attachments"), {"StableAge": 1, "UserContentType": USER_TYPES}
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def ct(server: ServerProcess) -> bytes:
    data = pydicom_file("CT_small.dcm").read_bytes()
    with httpx.Client(base_url=server.base_url) as http:
        assert http.post("/instances", content=data).status_code == 200
    return data


def _stored_blobs(server: ServerProcess) -> set[str]:
    storage = server.directory / "storage"
    return {path.name for path in storage.glob("??/??/*") if path.is_file()}


def test_dicom_attachment(client: httpx.Client, ct: bytes) -> None:
    base = f"/instances/{CT_INSTANCE}/attachments"
    md5 = hashlib.md5(ct).hexdigest()
    assert client.get(base).json() == ["dicom"]
    assert client.get(base, params={"full": ""}).json() == {"dicom": 1}
    operations = client.get(f"{base}/dicom")
    assert "verify-md5" in operations.json()
    assert operations.headers["etag"] == f'"0-{md5}"'
    assert client.get(f"{base}/dicom/md5").text == md5
    assert client.get(f"{base}/1/size").text == str(len(ct))
    assert client.get(f"{base}/dicom/compressed-size").text == str(len(ct))
    assert client.get(f"{base}/dicom/is-compressed").text == "0"
    info = client.get(f"{base}/dicom/info").json()
    assert info["UncompressedMD5"] == info["CompressedMD5"] == md5
    assert info["ContentType"] == 1
    data = client.get(f"{base}/dicom/data")
    assert data.content == ct
    assert data.headers["content-type"] == "application/dicom"
    assert data.headers["content-disposition"] == f'filename="{info["Uuid"]}.dcm"'
    assert client.get(f"{base}/dicom/compressed-data").content == ct
    for action in ("verify-md5", "compress", "verify-md5", "uncompress", "verify-md5"):
        answer = client.post(f"{base}/dicom/{action}")
        assert (answer.status_code, answer.json()) == (200, {})
    assert client.get(f"{base}/dicom/is-compressed").text == "0"
    assert client.get(f"{base}/dicom/data").content == ct


def test_system_attachments_are_read_only(client: httpx.Client, ct: bytes) -> None:
    base = f"/instances/{CT_INSTANCE}/attachments"
    for name in ("dicom", "1", "2", "1000", "70000"):
        assert client.put(f"{base}/{name}", content=b"x").status_code == 403
        assert client.delete(f"{base}/{name}").status_code == 403
    assert client.put(f"{base}/nosuch", content=b"x").json()["OrthancStatus"] == 7
    assert client.get(f"{base}/report").json()["OrthancStatus"] == 17
    assert client.get(f"/patients/{CT_PATIENT}/attachments/dicom").status_code == 404
    assert client.get(f"/instances/{UNKNOWN}/attachments").json()["OrthancStatus"] == 17
    assert client.put(f"/instances/{UNKNOWN}/attachments/report", content=b"x").status_code == 404
    assert client.get(f"{base}/dicom/verify-md5").headers["allow"] == "POST"


def test_user_attachment_life_cycle(client: httpx.Client, server: ServerProcess, ct: bytes) -> None:
    base = f"/patients/{CT_PATIENT}/attachments"
    before = client.get("/statistics").json()
    last_change = client.get("/changes", params={"last": ""}).json()["Last"]

    created = client.put(f"{base}/scan", content=b"%PDF-1.4 first")
    assert created.headers["etag"] == f'"0-{hashlib.md5(b"%PDF-1.4 first").hexdigest()}"'
    data = client.get(f"{base}/scan/data")
    assert (data.content, data.headers["content-type"]) == (b"%PDF-1.4 first", "application/pdf")
    assert "etag" in data.headers

    replaced = client.put(f"{base}/scan", content=b"second", headers={"If-Match": created.headers["etag"]})
    assert replaced.headers["etag"] == f'"1-{hashlib.md5(b"second").hexdigest()}"'
    size = client.get(f"{base}/scan/size")
    assert size.text == "6"
    assert size.headers["etag"] == f'"0-{hashlib.md5(b"second").hexdigest()}"', "stored at revision 0"
    stale = client.put(f"{base}/scan", content=b"third", headers={"If-Match": created.headers["etag"]})
    assert (stale.status_code, stale.json()["OrthancStatus"]) == (409, 43)
    malformed = client.put(f"{base}/scan", content=b"third", headers={"If-Match": '"0"'})
    assert (malformed.status_code, malformed.json()["OrthancStatus"]) == (400, 3)

    assert client.put(f"{base}/1500", content=b"by number").status_code == 200
    assert client.get(base, params={"full": ""}).json() == {"1500": 1500, "scan": 1026}
    statistics = client.get("/statistics").json()
    added = len(b"second") + len(b"by number")
    assert int(statistics["TotalDiskSize"]) == int(before["TotalDiskSize"]) + added

    assert client.delete(f"{base}/scan").status_code == 200
    assert client.delete(f"{base}/scan").json()["OrthancStatus"] == 17
    assert client.delete(f"{base}/1500").status_code == 200
    assert client.get("/statistics").json()["TotalDiskSize"] == before["TotalDiskSize"]
    changes = client.get("/changes", params={"since": str(last_change), "limit": "100"}).json()["Changes"]
    assert [change["ChangeType"] for change in changes] == ["UpdatedAttachment"] * 5
    assert {change["ResourceType"] for change in changes} == {"Patient"}


def test_identical_attachments_share_one_blob(client: httpx.Client, server: ServerProcess, ct: bytes) -> None:
    content = b"the same report, twice"
    digest = hashlib.sha256(content).hexdigest()
    for level, resource in (("instances", CT_INSTANCE), ("patients", CT_PATIENT)):
        assert client.put(f"/{level}/{resource}/attachments/report", content=content).status_code == 200
    assert digest in _stored_blobs(server)
    assert client.delete(f"/instances/{CT_INSTANCE}/attachments/report").status_code == 200
    assert digest in _stored_blobs(server), "still referenced by the patient's attachment"
    assert client.get(f"/patients/{CT_PATIENT}/attachments/report/data").content == content
    assert client.delete(f"/patients/{CT_PATIENT}/attachments/report").status_code == 200
    assert digest not in _stored_blobs(server)


def test_deleting_a_resource_releases_its_attachments(
    client: httpx.Client, server: ServerProcess, ct: bytes
) -> None:
    mr = client.post("/instances", content=pydicom_file("MR_small.dcm").read_bytes()).json()
    content = b"attached to a series that will be deleted"
    digest = hashlib.sha256(content).hexdigest()
    series = f"/series/{mr['ParentSeries']}"
    assert client.put(f"{series}/attachments/report", content=content).status_code == 200
    assert client.put(f"/instances/{mr['ID']}/attachments/1030", content=b"instance").status_code == 200
    assert digest in _stored_blobs(server)
    assert client.delete(f"/patients/{mr['ParentPatient']}").status_code == 200
    assert digest not in _stored_blobs(server)
    assert hashlib.sha256(b"instance").hexdigest() not in _stored_blobs(server)
    assert client.get(f"{series}/attachments").status_code == 404


def test_verify_md5_detects_corruption(client: httpx.Client, server: ServerProcess, ct: bytes) -> None:
    content = b"a report that the disk will damage"
    base = f"/instances/{CT_INSTANCE}/attachments/1040"
    assert client.put(base, content=content).status_code == 200
    assert client.post(f"{base}/verify-md5").status_code == 200
    digest = hashlib.sha256(content).hexdigest()
    path = next((server.directory / "storage").glob(f"??/??/{digest}"))
    path.write_bytes(b"A report that the disk will damage")
    damaged = client.post(f"{base}/verify-md5")
    assert (damaged.status_code, damaged.json()["OrthancStatus"]) == (500, 20)
    path.unlink()
    # A missing file: as Orthanc (tests/differential/test_lost_files_vs_orthanc.py).
    missing = client.post(f"{base}/verify-md5")
    assert (missing.status_code, missing.json()["OrthancStatus"]) == (500, 2006)
    Path(path).write_bytes(content)
    assert client.delete(base).status_code == 200


@pytest.fixture(scope="module")
def checked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(
        tmp_path_factory.mktemp("attachments-revisions"),
        {"CheckRevisions": True, "UserContentType": USER_TYPES},
    ).start()
    yield process
    process.stop()


def test_check_revisions_requires_if_match(checked_server: ServerProcess) -> None:
    with httpx.Client(base_url=checked_server.base_url) as http:
        http.post("/instances", content=pydicom_file("CT_small.dcm").read_bytes())
        base = f"/instances/{CT_INSTANCE}/attachments/report"
        created = http.put(base, content=b"a", headers={"If-Match": '"7-ignored-for-a-new-one"'})
        assert created.status_code == 200
        assert http.put(base, content=b"b").status_code == 409
        refused = http.delete(base)
        assert (refused.status_code, refused.json()["Details"]) == (
            409,
            'HTTP header "If-Match" is missing, as "CheckRevisions" is "true"',
        )
        replaced = http.put(base, content=b"b", headers={"If-Match": created.headers["etag"]})
        assert replaced.status_code == 200
        # As in Orthanc, the revision named by the answer to a replacement is not the one kept.
        assert http.delete(base, headers={"If-Match": replaced.headers["etag"]}).status_code == 409
        current = http.get(base).headers["etag"]
        assert http.delete(base, headers={"If-Match": current}).status_code == 200


def test_a_conversion_of_an_attachment_changed_meanwhile_changes_nothing(tmp_path: Path) -> None:
    """/compress of an attachment replaced meanwhile: nothing changes and the new blob is released; of the
    current one: the new blob replaces the old in the record (the DICOM file's: the instance's own), the
    old is released, and the disk size counts the stored bytes."""
    storage = BlobStore(tmp_path / "storage")
    database = Database(tmp_path / "index", map_size_gb=1)
    writer = IndexWriter(database, storage)
    data = pydicom_file("CT_small.dcm").read_bytes()
    summary = summarize(data, "Latin1")
    rid = resource_ids(summary.identifiers)[Level.INSTANCE]

    def convert(kind: int, current: bytes) -> tuple[bool, Attachment]:
        compressed = Attachment(blob=storage.put(data, compression=True))
        done = writer.run(lambda update: replace_attachment_blob(update, rid, kind, current, compressed))
        return asyncio.run(done), compressed

    def stored_blob(kind: int) -> StoredBlob:
        with database.read() as view:
            record = view.resource(rid)
            stored = stored_attachments(view.txn, view.dbs, rid)
        return record.blob if kind == DICOM else stored[kind].blob

    def disk_size() -> int:
        with database.read() as view:
            return view.counter(Counter.DISK_SIZE)

    writer.start()
    try:
        plain = storage.put(data)
        asyncio.run(writer.run(lambda update: add_instance(update, summary, plain, {}, 0.0)))
        user = Attachment(blob=plain)
        asyncio.run(
            writer.run(
                lambda update: put_attachment(
                    update, Level.INSTANCE, rid, 1025, user, if_match=None, check_revisions=False
                )
            )
        )
        assert disk_size() == len(data)  # one blob for both
        for kind in (DICOM, 1025):
            done, compressed = convert(kind, bytes(32))  # changed meanwhile
            assert not done and stored_blob(kind) == plain
            # released, unless referenced: for the user attachment, the DICOM file holds the same bytes
            assert storage.exists(compressed.blob.digest) == (kind != DICOM)
            done, compressed = convert(kind, plain.digest)
            assert done and stored_blob(kind) == compressed.blob and storage.read(compressed.blob) == data
        assert not storage.exists(plain.digest)  # released with its last reference
        assert disk_size() == compressed.blob.stored_size < len(data)
    finally:
        writer.stop()
        database.close()
