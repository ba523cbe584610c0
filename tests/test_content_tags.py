"""The stored tag JSON of an instance (/tags, its ?short and ?simplify forms, /simplified-tags).

The forms are computed at ingest and answered from the index (the fast lane);
a file whose strings depend on DefaultEncoding is decoded again once that
setting changes. Orthanc's answers themselves are compared in
tests/differential/test_content_vs_orthanc.py.
"""

import io
import zlib
from collections.abc import Iterator

import httpx
import pydicom
import pytest

from fastpacs.services.content import InflatedForms, TagForm
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

FORMS = ("/tags", "/tags?short", "/tags?simplify", "/simplified-tags")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own: these tests change DefaultEncoding, a setting of the whole server."""
    process = fastpacs_server(tmp_path_factory.mktemp("tags"), {"DefaultEncoding": "Latin1"}).start()
    yield process
    process.stop()


def _without_character_set(name: bytes) -> bytes:
    """CT_small with a PatientName of raw (non-ASCII) bytes and no SpecificCharacterSet."""
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del dataset.SpecificCharacterSet
    dataset.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.4242"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset["PatientName"].value = name
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def test_tags_follow_a_change_of_default_encoding(client: httpx.Client) -> None:
    """0xE8 is "è" in Latin-1 and "č" in Latin-2: every form shows the name as the current setting
    decodes it, and the same answers again once the setting is back."""
    instance = client.post("/instances", content=_without_character_set(b"Bl\xe8k")).json()["ID"]

    def names() -> list[str]:
        answers = [client.get(f"/instances/{instance}{form}") for form in FORMS]
        assert [answer.status_code for answer in answers] == [200] * len(FORMS)
        full, short, simplified, simplified_route = (answer.json() for answer in answers)
        assert simplified == simplified_route
        return [full["0010,0010"]["Value"], short["0010,0010"], simplified["PatientName"]]

    before = {form: client.get(f"/instances/{instance}{form}").content for form in FORMS}
    assert names() == ["Blèk"] * 3
    assert client.put("/tools/default-encoding", content="Latin2").status_code == 200
    try:
        assert names() == ["Blčk"] * 3
    finally:
        client.put("/tools/default-encoding", content="Latin1")
    assert {form: client.get(f"/instances/{instance}{form}").content for form in FORMS} == before


def test_tags_of_unknown_resources_are_not_found(client: httpx.Client) -> None:
    """An ID that is not an instance's (here a patient's) has no tags: 404, as an unknown ID."""
    answer = client.post("/instances", content=pydicom_file("MR_small.dcm").read_bytes()).json()
    for resource in (answer["ParentPatient"], "00000000-00000000-00000000-00000000-00000000"):
        for form in FORMS:
            assert client.get(f"/instances/{resource}{form}").status_code == 404, form


def test_inflated_forms_answer_only_for_the_bytes_they_were_inflated_from() -> None:
    """The memo of inflated JSON: a hit for the same compressed bytes, a fresh inflate for others
    under the same key, the least recently used entries out past the budget."""
    first, second = b'{"a": "1"}' * 10, b'{"a": "2"}' * 10
    forms = InflatedForms(budget=3 * (len(zlib.compress(first)) + len(first)))
    ids = [bytes([n]) * 20 for n in range(4)]

    assert forms.inflate(ids[0], TagForm.FULL, zlib.compress(first)) == first
    assert forms.inflate(ids[0], TagForm.FULL, zlib.compress(first)) == first
    assert forms.inflate(ids[0], TagForm.FULL, zlib.compress(second)) == second
    assert forms.inflate(ids[0], TagForm.SHORT, zlib.compress(first)) == first
    for rid in ids[1:]:
        forms.inflate(rid, TagForm.FULL, zlib.compress(first))
    assert list(forms._entries) == [(rid, TagForm.FULL) for rid in ids[1:]]
    assert forms._size <= forms.budget
