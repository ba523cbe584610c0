"""Content views compared with the reference Orthanc on every file both servers store.

/tags (full, ?simplify, ?short), /simplified-tags, /header (three forms),
/frames, /content navigation (paths generated from each file's structure, and
hand-written ones), /pdf, /tools/default-encoding and /tools/create-dicom.
"""

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.differential.data import ALL_FILES, file_name
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

CONTENT_PATHS = {
    "CT_small.dcm": (
        "",
        "/0010-0010",
        "/0010,0010",
        "/PatientName",
        "/0010-1002",
        "/0010-1002/",
        "/0010-1002/0",
        "/0010-1002/0/0010-0020",
        "/0010-1002/5",
        "/0010-9999",
        "/zzzz",
        "/0028-0010",
        "/0009-1001",
        "/0043-1028",
        "/7fe0-0010",
        "/7fe0-0010/0",
    ),
    "test-SR.dcm": ("/0040-a730", "/0040-a730/0/0040-a043/0", "/0040-a730/0/0040-a043/0/0008-0104"),
    "SC_rgb_jpeg_dcmtk.dcm": ("/7fe0-0010", "/7fe0-0010/0", "/7fe0-0010/1", "/7fe0-0010/2"),
}
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 100]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
PNG_4X3 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAADCAAAAACRn/EaAAAAF0lEQVR4nGNk4OLiYtTg4uJi0eDimg0ABUsB"
    "Qufg/uYAAAAASUVORK5CYII="
)


NAVIGATION_LEAVES = (6, 3)
"""Leaf values compared per dataset: at the top level, in a sequence item."""
NAVIGATION_SEQUENCES = (3, 1)
"""Sequences followed per dataset (into their first item): at the top level, in a sequence item."""
NAVIGATION_DEPTH = 3
"""Deepest sequence nesting followed."""
PIXEL_DATA = "7fe0-0010"


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, str]:
    """Upload every test file to both servers; file name → instance ID (where Orthanc stores it)."""
    instances = {}
    for path in ALL_FILES:
        name = file_name(path)
        orthanc, _ = pair.send(Call(f"upload {name}", "POST", "/instances", body=path.read_bytes()))
        if orthanc.status == 200:
            instances[name] = orthanc.json["ID"]
    return instances


def _tag_calls(name: str, instance: str) -> Iterator[Call]:
    for route in ("tags", "header"):
        yield get(f"content {name} {route}", f"/instances/{instance}/{route}")
        yield get(f"content {name} {route}?simplify", f"/instances/{instance}/{route}", simplify="")
        yield get(f"content {name} {route}?short", f"/instances/{instance}/{route}", short="")
    yield get(f"content {name} simplified-tags", f"/instances/{instance}/simplified-tags")
    yield get(f"content {name} content", f"/instances/{instance}/content")
    yield get(f"content {name} frames", f"/instances/{instance}/frames")


def test_tags_and_header_of_every_file(pair: ServerPair, stored: dict[str, str]) -> None:
    check = pair.checker()
    for name, instance in stored.items():
        check.compare_all(_tag_calls(name, instance))
    check.verdict()


def _chosen_leaves(tags: dict[str, Any], count: int) -> list[str]:
    """Up to ``count`` leaves of a dataset, in its order: the first of each kind (Type, public or
    private), then leaves spread evenly over the dataset."""
    leaves = [key for key, entry in tags.items() if entry["Type"] != "Sequence"]
    first_of_kind: dict[tuple[str, bool], str] = {}
    for key in leaves:
        first_of_kind.setdefault((tags[key]["Type"], int(key[:4], 16) % 2 == 1), key)
    chosen = set(list(first_of_kind.values())[:count])
    for index in range(count):
        if len(chosen) >= count or index >= len(leaves):
            break
        chosen.add(leaves[index * len(leaves) // count])
    return [key for key in leaves if key in chosen]


def _navigation_paths(tags: dict[str, Any], prefix: str = "", depth: int = 0) -> Iterator[str]:
    """Paths below /content chosen from a dataset's full-form tags (Orthanc's /tags): the dataset's
    listing, some leaves (raw values), and some sequences (their item listing, the index past their
    last item, and their first item, recursively)."""
    level = min(depth, 1)
    if prefix:  # the root listing is among the tag calls
        yield prefix
    for key in _chosen_leaves(tags, NAVIGATION_LEAVES[level]):
        yield f"{prefix}/{key.replace(',', '-')}"
    sequences = [key for key, entry in tags.items() if entry["Type"] == "Sequence"]
    for key in sequences[: NAVIGATION_SEQUENCES[level]]:
        path, items = f"{prefix}/{key.replace(',', '-')}", tags[key]["Value"]
        yield path
        yield f"{path}/{len(items)}"
        if items and depth < NAVIGATION_DEPTH:
            yield from _navigation_paths(items[0], f"{path}/0", depth + 1)


def test_content_navigation_of_every_file(pair: ServerPair, stored: dict[str, str]) -> None:
    """Generated /content paths of every file: listings, leaves, sequences, items, pixel data."""
    check = pair.checker()
    for name, instance in stored.items():
        base = f"/instances/{instance}/content"
        paths = list(_navigation_paths(pair.orthanc_get(f"/instances/{instance}/tags")))
        if PIXEL_DATA in pair.orthanc_get(base):  # not in /tags
            paths += [f"/{PIXEL_DATA}", f"/{PIXEL_DATA}/0"]
        for path in paths:
            check.compare(get(f"content-path {name} {path}", f"{base}{path}"))
    check.verdict()


def test_content_navigation(pair: ServerPair, stored: dict[str, str]) -> None:
    check = pair.checker()
    for name, paths in CONTENT_PATHS.items():
        for path in paths:
            check.compare(get(f"content-path {name} {path}", f"/instances/{stored[name]}/content{path}"))
    check.compare(get("content-path unknown instance", "/instances/nonexistent/content"))
    check.compare(get("tags unknown instance", "/instances/nonexistent/tags"))
    check.compare(
        get(
            "tags ignore-length",
            f"/instances/{stored['CT_small.dcm']}/tags",
            **{"ignore-length": "0010-0010"},
        )
    )
    check.verdict()


def test_default_encoding(pair: ServerPair, stored: dict[str, str]) -> None:
    check = pair.checker()
    check.compare(get("default-encoding get", "/tools/default-encoding"))
    check.compare(Call("default-encoding put bad", "PUT", "/tools/default-encoding", body=b"Klingon"))
    check.compare(Call("default-encoding put utf8", "PUT", "/tools/default-encoding", body=b"Utf8"))
    check.compare(get("default-encoding after put", "/tools/default-encoding"))
    # Files without SpecificCharacterSet are decoded with the new default.
    for name in ("ExplVR_BigEndNoMeta.dcm", "CT_small.dcm"):
        check.compare(get(f"default-encoding utf8 {name} tags", f"/instances/{stored[name]}/simplified-tags"))
    check.compare(Call("default-encoding restore", "PUT", "/tools/default-encoding", body=b"Latin1"))
    check.verdict()


GENERATED = re.compile(  # UIDs, dates, times, UUIDs
    r"^(\d+(\.\d+)+|\d{8}|\d{6}\.\d{6}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
GENERATED_TAGS = frozenset(
    {
        "SOPInstanceUID",
        "SeriesInstanceUID",
        "StudyInstanceUID",
        "MediaStorageSOPInstanceUID",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "ContentDate",
        "ContentTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "SeriesDate",
        "SeriesTime",
        "StudyDate",
        "StudyTime",
        "PatientID",
    }
)


def _without_generated(tags: dict[str, Any]) -> dict[str, Any]:
    """Simplified tags with the values a server generates (UIDs, today's dates, random IDs) masked."""
    return {
        key: "<generated>"
        if key in GENERATED_TAGS and isinstance(value, str) and GENERATED.match(value)
        else value
        for key, value in tags.items()
    }


CREATE_REQUESTS = {
    "pdf": {
        "Tags": {
            "PatientName": "PDF^Test",
            "PatientID": "PDF1",
            "Modality": "DOC",
            "StudyDescription": "Doc",
        },
        "Content": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
    },
    "png": {
        "Tags": {"PatientName": "PNG^Test", "PatientID": "PNG1"},
        "Content": "data:image/png;base64," + base64.b64encode(PNG_4X3).decode(),
    },
    "no tags": {"Tags": {}},
    "sequence": {
        "Tags": {"PatientID": "SEQ", "OtherPatientIDsSequence": [{"PatientID": "A"}, {"PatientID": "B"}]},
    },
}


@pytest.mark.parametrize("kind", CREATE_REQUESTS)
def test_create_dicom(pair: ServerPair, kind: str) -> None:
    request = CREATE_REQUESTS[kind]
    answers = []
    for client in (pair.orthanc_client, pair.fastpacs_client):
        created = client.post("/tools/create-dicom", json=request)
        assert created.status_code == 200, created.text
        tags = client.get(f"/instances/{created.json()['ID']}/simplified-tags").json()
        answers.append(_without_generated(tags))
    assert answers[1] == answers[0]


def test_create_dicom_pdf_round_trip(pair: ServerPair) -> None:
    created = pair.fastpacs_client.post("/tools/create-dicom", json=CREATE_REQUESTS["pdf"]).json()
    document = pair.fastpacs_client.get(f"/instances/{created['ID']}/pdf")
    assert document.headers["content-type"] == "application/pdf"
    assert document.content == PDF


def test_create_dicom_with_parent(pair: ServerPair, stored: dict[str, str]) -> None:
    answers = []
    for client in (pair.orthanc_client, pair.fastpacs_client):
        study = client.get(f"/instances/{stored['rtstruct.dcm']}/study").json()["ID"]
        created = client.post(
            "/tools/create-dicom",
            json={"Parent": study, "Tags": {"SeriesDescription": "Child", "Modality": "OT"}},
        ).json()
        assert created["ParentStudy"] == study
        answers.append(_without_generated(client.get(f"/instances/{created['ID']}/simplified-tags").json()))
    assert answers[1] == answers[0]


def test_create_dicom_errors(pair: ServerPair, stored: dict[str, str]) -> None:
    check = pair.checker()
    for name, body in (
        ("unknown tag", b'{"Tags": {"NoSuchTag": "x"}}'),
        ("bad content", b'{"Tags": {}, "Content": "not a data uri"}'),
    ):
        check.compare(Call(f"create-dicom {name}", "POST", "/tools/create-dicom", body=body))
    check.compare(get("pdf of a CT", f"/instances/{stored['CT_small.dcm']}/pdf"))
    check.verdict()
