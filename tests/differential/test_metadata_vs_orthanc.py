"""Metadata and user attachments compared with the reference Orthanc: system entries, user entries,
names declared in the configuration (UserMetadata, UserContentType), revisions, change log."""

import hashlib
import io
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from pydicom import dcmread

from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import test_file
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

LEVELS = (
    ("patients", "ParentPatient"),
    ("studies", "ParentStudy"),
    ("series", "ParentSeries"),
    ("instances", "ID"),
)
ETAG = ("content-type", "etag")
USER_METADATA = {"Reviewer": 1025, "Score": 2000}
USER_CONTENT_TYPES = {"report": 1025, "scan": [1026, "application/pdf"], "Notes": [1030, "text/plain"]}


def etag(value: bytes, revision: int = 0) -> str:
    """Orthanc's ETag of a metadata value: its revision (always 0 in its SQLite index) and MD5."""
    return f'"{revision}-{hashlib.md5(value).hexdigest()}"'


def put(name: str, path: str, value: bytes, if_match: str | None = None) -> Call:
    headers = None if if_match is None else {"If-Match": if_match}
    return Call(name, "PUT", path, body=value, headers=headers, compared_headers=ETAG)


def remove(name: str, path: str, if_match: str | None = None) -> Call:
    return Call(name, "DELETE", path, headers=None if if_match is None else {"If-Match": if_match})


def read(name: str, path: str, if_none_match: str | None = None) -> Call:
    headers = None if if_none_match is None else {"If-None-Match": if_none_match}
    return Call(name, "GET", path, headers=headers, compared_headers=ETAG)


def upload(servers: ServerPair, name: str = "CT_small.dcm") -> dict[str, str]:
    """Store a test file in both servers; Orthanc's upload answer."""
    data = test_file(name).read_bytes()
    servers.fastpacs_client.post("/instances", content=data)
    return servers.orthanc_client.post("/instances", content=data).json()


@pytest.fixture(scope="module")
def ct(pair: ServerPair) -> dict[str, str]:
    return upload(pair)


@pytest.fixture(scope="module")
def checked_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    """A second pair: ``CheckRevisions`` on, names declared in ``UserMetadata`` and ``UserContentType``."""
    options = {
        **COMMON_OPTIONS,
        "CheckRevisions": True,
        "UserMetadata": USER_METADATA,
        "UserContentType": USER_CONTENT_TYPES,
    }
    servers = ServerPair.start(tmp_path_factory.mktemp("metadata-revisions"), options)
    yield servers
    servers.stop()


def test_system_metadata_at_every_level(pair: ServerPair, ct: dict[str, str]) -> None:
    check = pair.checker()
    for level, key in LEVELS:
        base = f"/{level}/{ct[key]}/metadata"
        check.compare(get(f"metadata {level} list", base))
        check.compare(get(f"metadata {level} expand", base, expand=""))
    instance = f"/instances/{ct['ID']}/metadata"
    for name in (
        "TransferSyntax",
        "SopClassUid",
        "IndexInSeries",
        "Origin",
        "RemoteAET",
        "RemoteIP",
        "PixelDataOffset",
        "NoSuch",
        "CalledAET",
    ):
        check.compare(read(f"metadata instance {name}", f"{instance}/{name}"))
    check.compare(get("metadata unknown instance", "/instances/nonexistent/metadata"))
    mr = upload(pair, "MR_small.dcm")  # the capture's metadata-mr-implicit-ts step
    check.compare(get("metadata MR instance expand", f"/instances/{mr['ID']}/metadata", expand=""))
    check.compare(read("metadata MR TransferSyntax", f"/instances/{mr['ID']}/metadata/TransferSyntax"))
    _compare_moments(pair, f"{instance}/ReceptionDate")
    for level, key in LEVELS[:3]:
        _compare_moments(pair, f"/{level}/{ct[key]}/metadata/LastUpdate")
    check.verdict()


def _compare_moments(pair: ServerPair, path: str) -> None:
    """A timestamp read from both servers: Orthanc's format, and the same moment give or take the second
    boundary the upload to both may have straddled (JSON answers compare their timestamps by format)."""
    answers = pair.send(get(path, path))
    assert [answer.status for answer in answers] == [200, 200], path
    orthanc, fastpacs = (datetime.strptime(answer.content.decode(), "%Y%m%dT%H%M%S") for answer in answers)
    assert abs(orthanc - fastpacs) <= timedelta(seconds=2), (path, orthanc, fastpacs)


def test_user_metadata_life_cycle(pair: ServerPair, ct: dict[str, str]) -> None:
    check = pair.checker()
    instance = f"/instances/{ct['ID']}/metadata"
    last = {
        name: client.get("/changes", params={"last": ""}).json()["Last"]
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client))
    }
    check.compare(Call("metadata put user", "PUT", f"{instance}/1024", body=b"hello"))
    check.compare(get("metadata get user", f"{instance}/1024"))
    check.compare(get("metadata list with user", instance, expand=""))
    check.compare(Call("metadata put system", "PUT", f"{instance}/IndexInSeries", body=b"5"))
    check.compare(Call("metadata delete system", "DELETE", f"{instance}/IndexInSeries"))
    check.compare(
        Call("metadata put ReceptionDate", "PUT", f"{instance}/ReceptionDate", body=b"20200101T000000")
    )
    check.compare(Call("metadata delete Origin", "DELETE", f"{instance}/Origin"))
    check.compare(
        Call("metadata put study LastUpdate", "PUT", f"/studies/{ct['ParentStudy']}/metadata/LastUpdate")
    )
    check.compare(
        Call(
            "metadata delete series LastUpdate", "DELETE", f"/series/{ct['ParentSeries']}/metadata/LastUpdate"
        )
    )
    check.compare(Call("metadata put system by number", "PUT", f"{instance}/3", body=b"x"))
    check.compare(Call("metadata delete user", "DELETE", f"{instance}/1024"))
    check.compare(get("metadata after delete", f"{instance}/1024"))
    check.compare(Call("metadata delete again", "DELETE", f"{instance}/1024"))
    check.compare(
        Call("metadata put on study", "PUT", f"/studies/{ct['ParentStudy']}/metadata/1025", body=b"s")
    )
    check.verdict()
    changes = [
        [
            change["ChangeType"] + " " + change["ResourceType"]
            for change in client.get("/changes", params={"since": str(last[name]), "limit": "100"}).json()[
                "Changes"
            ]
        ]
        for name, client in (("orthanc", pair.orthanc_client), ("fastpacs", pair.fastpacs_client))
    ]
    assert changes[1] == changes[0]


def test_revisions(pair: ServerPair, ct: dict[str, str]) -> None:
    """ETags and If-Match without CheckRevisions: checked when given, never required."""
    entry = f"/instances/{ct['ID']}/metadata/1030"
    check = pair.checker()
    check.compare_all(
        [
            put("revision create", entry, b"one"),
            read("revision read", entry),
            put("revision replace without if-match", entry, b"two"),
            read("revision read after replace", entry),
            put("revision replace", entry, b"three", if_match=etag(b"two")),
            put("revision unquoted", entry, b"four", if_match=etag(b"three").strip('"')),
            put("revision stale", entry, b"five", if_match=etag(b"three")),
            put("revision of a put answer", entry, b"five", if_match=etag(b"four", revision=1)),
            put("revision upper-case md5", entry, b"five", if_match=etag(b"four").upper()),
            put("revision without md5", entry, b"five", if_match='"0-"'),
            put("revision with a plus sign", entry, b"five", if_match=f'"+{etag(b"four")[1:]}'),
            read("revision read after stale", entry),
            read("revision if-none-match current", entry, if_none_match=etag(b"four")),
            read("revision if-none-match unquoted", entry, if_none_match=etag(b"four").strip('"')),
            read("revision if-none-match stale", entry, if_none_match=etag(b"three")),
            Call("revision if-none-match star", "GET", entry, headers={"If-None-Match": "*"}),
            read("revision if-none-match malformed", entry, if_none_match="abc"),
            read(
                "revision if-none-match of the system entry", f"/instances/{ct['ID']}/metadata/Origin", "0-x"
            ),
            remove("revision delete stale", entry, if_match=etag(b"three")),
            remove("revision delete", entry, if_match=etag(b"four")),
            remove("revision delete absent", entry, if_match=etag(b"four")),
            put("revision create with if-match", entry, b"six", if_match=etag(b"nothing")),
            read("revision after create with if-match", entry),
        ]
    )
    for if_match in ('"1"', "1", "abc", '""', 'W/"0-0"', '"-1-0"', '" 0-0"'):
        check.compare(put(f"revision malformed {if_match}", entry, b"x", if_match=if_match))
        check.compare(remove(f"revision delete malformed {if_match}", entry, if_match=if_match))
    check.compare_all(
        [
            put("revision malformed on unknown instance", "/instances/nonexistent/metadata/1030", b"x", "x"),
            put("revision system entry", f"/instances/{ct['ID']}/metadata/Origin", b"x", if_match="x"),
            read("revision read system entry", f"/instances/{ct['ID']}/metadata/Origin"),
        ]
    )
    check.verdict()


@pytest.fixture(scope="module")
def checked_ct(checked_pair: ServerPair) -> dict[str, str]:
    return upload(checked_pair)


def test_check_revisions(checked_pair: ServerPair, checked_ct: dict[str, str]) -> None:
    """With CheckRevisions, replacing or deleting an entry needs the If-Match of its current value."""
    entry = f"/instances/{checked_ct['ID']}/metadata/Reviewer"
    unknown = "/instances/00000000-00000000-00000000-00000000-00000000/metadata/Reviewer"
    check = checked_pair.checker()
    check.compare_all(
        [
            put("checked create", entry, b"alice"),
            put("checked replace without if-match", entry, b"bob"),
            put("checked replace stale", entry, b"bob", if_match=etag(b"carol")),
            put("checked replace", entry, b"bob", if_match=etag(b"alice")),
            read("checked read", entry),
            remove("checked delete without if-match", entry),
            remove("checked delete stale", entry, if_match=etag(b"alice")),
            remove("checked delete", entry, if_match=etag(b"bob")),
            remove("checked delete absent without if-match", entry),
            remove("checked delete absent", entry, if_match=etag(b"bob")),
            put("checked create again without if-match", entry, b"dave"),
            remove("checked delete on unknown instance", unknown),
            remove("checked delete on unknown instance with if-match", unknown, if_match=etag(b"bob")),
            put("checked create on unknown instance", unknown, b"x"),
        ]
    )
    check.verdict()


def test_user_metadata_names(checked_pair: ServerPair, checked_ct: dict[str, str]) -> None:
    """Names declared in UserMetadata: by name or number, listed by name; undeclared names refused."""
    instance = f"/instances/{checked_ct['ID']}/metadata"
    study = f"/studies/{checked_ct['ParentStudy']}/metadata"
    check = checked_pair.checker()
    check.compare_all(
        [
            put("user name put", f"{instance}/Score", b"7"),
            read("user name get", f"{instance}/Score"),
            read("user name get by number", f"{instance}/2000"),
            put("user name put by number", f"{instance}/2000", b"8", if_match=etag(b"7")),
            read("user name get after put by number", f"{instance}/Score"),
            put("user name put undeclared number", f"{instance}/3000", b"n"),
            put("user name put on study", f"{study}/Score", b"9"),
            get("user name list", instance),
            get("user name list expand", instance, expand=""),
            get("user name study list", study),
            get("user name study list expand", study, expand=""),
            get("user name list numeric", instance, numeric=""),
            get("user name list numeric expand", instance, numeric="", expand=""),
            get("user name attachments numeric", f"/instances/{checked_ct['ID']}/attachments", numeric=""),
        ]
    )
    for name in ("Undeclared", "score", "+5", "0x10", "1024.0", " 1025", "99999999999", "-1", "0", "70000"):
        check.compare(read(f"user name get {name!r}", f"{instance}/{name}"))
        check.compare(put(f"user name put {name!r}", f"{instance}/{name}", b"x"))
        check.compare(remove(f"user name delete {name!r}", f"{instance}/{name}"))
    unknown = "/instances/nonexistent/metadata/Undeclared"
    check.compare_all(
        [
            read("user name undeclared on unknown instance", unknown),
            put("user name put undeclared on unknown instance", unknown, b"x"),
        ]
    )
    check.verdict()


def test_user_content_types(checked_pair: ServerPair, checked_ct: dict[str, str]) -> None:
    """Attachments named in UserContentType: by name or number, their MIME type, revisions checked."""
    instance = f"/instances/{checked_ct['ID']}/attachments"
    study = f"/studies/{checked_ct['ParentStudy']}/attachments"
    report_etag = etag(b"first report")
    check = checked_pair.checker()
    check.compare_all(
        [
            put("content type put by name", f"{instance}/report", b"first report"),
            put("content type put with MIME", f"{instance}/scan", b"%PDF-1.4 scan"),
            put("content type put by number", f"{instance}/1030", b"notes"),
            get("content type list", instance),
            get("content type list full", instance, full=""),
            read("content type operations", f"{instance}/report"),
            read("content type data", f"{instance}/report/data"),
            read("content type data with MIME", f"{instance}/scan/data"),
            read("content type data by number", f"{instance}/1026/data"),
            read("content type data text MIME", f"{instance}/Notes/data"),
            read("content type size", f"{instance}/report/size"),
            read("content type md5", f"{instance}/report/md5"),
            get("content type attachment info", f"{instance}/scan/info"),
            read("content type undeclared number", f"{instance}/1027"),
            read("content type wrong case", f"{instance}/Report/data"),
            put("content type put undeclared name", f"{instance}/Undeclared", b"x"),
            put("content type put wrong case", f"{instance}/notes", b"x"),
            put("content type replace without if-match", f"{instance}/report", b"second report"),
            put("content type replace stale", f"{instance}/report", b"second", if_match=etag(b"other")),
            put("content type replace", f"{instance}/report", b"second report", if_match=report_etag),
            read("content type after replace", f"{instance}/report/data"),
            put(
                "content type replace with the etag of the put answer",
                f"{instance}/report",
                b"third report",
                if_match=etag(b"second report", revision=1),
            ),
            put(
                "content type replace again",
                f"{instance}/report",
                b"third report",
                if_match=etag(b"second report"),
            ),
            read("content type after second replace", f"{instance}/report"),
            read(
                "content type if-none-match current",
                f"{instance}/report",
                if_none_match=etag(b"third report"),
            ),
            read(
                "content type data if-none-match",
                f"{instance}/report/data",
                if_none_match=etag(b"third report"),
            ),
            read("content type if-none-match stale", f"{instance}/report/size", if_none_match=report_etag),
            read("content type dicom if-none-match", f"{instance}/dicom/md5", if_none_match='"0-x"'),
            *(
                read(
                    f"content type {view} if-none-match current",
                    f"{instance}/report/{view}",
                    etag(b"third report"),
                )
                for view in ("size", "md5", "info", "is-compressed", "compressed-data", "compressed-size")
            ),
            read(
                "content type if-none-match unquoted",
                f"{instance}/report/data",
                etag(b"third report").strip('"'),
            ),
            read("content type if-none-match malformed", f"{instance}/report/data", if_none_match="abc"),
            read("content type if-none-match star", f"{instance}/report/data", if_none_match="*"),
            remove("content type delete without if-match", f"{instance}/scan"),
            remove("content type delete stale", f"{instance}/scan", if_match=report_etag),
            remove("content type delete", f"{instance}/scan", if_match=etag(b"%PDF-1.4 scan")),
            get("content type list after delete", instance, full=""),
            put("content type put on study", f"{study}/report", b"study report"),
            get("content type study list", study, full=""),
            read("content type study data", f"{study}/report/data"),
            remove("content type delete undeclared", f"{instance}/Undeclared"),
        ]
    )
    check.verdict()


@pytest.mark.parametrize("text", ["007", " 12 ", "+3", "1.5", "abc", ""])
def test_index_in_series_is_the_instance_numbers_text(pair: ServerPair, text: str) -> None:
    """IndexInSeries (metadata) is InstanceNumber's text without its spaces, an integer or not; the
    resource's IndexInSeries is the integer it may be."""
    dataset = dcmread(test_file("CT_small.dcm"))
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = (
        f"1.2.826.0.1.3680043.9.77.{ord(text[:1] or '0')}{len(text)}"
    )
    dataset.InstanceNumber = "7777"  # replaced in the bytes by the text, which need not be a valid IS
    written = io.BytesIO()
    dataset.save_as(written, enforce_file_format=True)
    padded = text.encode() + b" " * (len(text) % 2)
    data = written.getvalue().replace(b"IS\x04\x007777", b"IS" + len(padded).to_bytes(2, "little") + padded)
    ids = [
        client.post("/instances", content=data).json()["ID"]
        for client in (pair.orthanc_client, pair.fastpacs_client)
    ]
    assert ids[0] == ids[1]
    check = pair.checker()
    check.compare(get(f"index in series {text!r} metadata", f"/instances/{ids[0]}/metadata", expand=""))
    check.compare(get(f"index in series {text!r} instance", f"/instances/{ids[0]}"))
    check.verdict()
