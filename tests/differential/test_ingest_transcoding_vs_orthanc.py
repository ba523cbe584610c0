"""IngestTranscoding, fastpacs against Orthanc 1.10.1: what each server stores when told to convert.

Three pairs of servers with the same options: JPEG-LS lossless (a syntax both
encode), JPEG baseline (lossy: a new SOP Instance UID, hence a new instance),
and Explicit VR Little Endian with ``IngestTranscodingOfCompressed`` off. The
same files (uncompressed in the three byte orders, RLE, JPEG-LS, JPEG 2000,
12-bit JPEG, 8-bit grayscale and colour, 32-bit, no pixel data, an RLE stream
that cannot be decoded) are uploaded to both over REST, as one ZIP archive and
by C-STORE. For each, a document is compared: the upload's status (HTTP and
``Status``, or the C-STORE status), whether the instance keeps the ID of the
file as sent, the stored transfer syntax, and the decoded pixels (the same
hash on both servers for lossless storage; for JPEG baseline, within a few
grey levels of Orthanc's). A modification's output and a create-dicom image
are compared too: Orthanc converts what they store as well.

Orthanc 1.10.1 cannot decode JPEG 2000 nor can fastpacs decode 12-bit JPEG:
each stores those files as received where the other converts them (allowed,
commented in the allow-list).
"""

import base64
import hashlib
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import numpy
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames

from tests.conftest import c_store_file, orthanc_id, pydicom_file
from tests.differential.harness import ServerPair
from tests.test_ingest_transcoding import identifiers

pytestmark = [pytest.mark.reference, pytest.mark.slow]

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
LOSSY_TOLERANCE = 8
"""Grey levels by which two JPEG baseline encoders (DCMTK's libjpeg and Pillow's) may differ."""
UID_ROOT = "1.2.826.0.1.3680043.8.498.7731"


def _saved(dataset: pydicom.Dataset) -> bytes:
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return output.getvalue()


def _variant(name: str, number: int) -> bytes:
    """A pydicom test file with a SOP Instance UID of its own (several share one)."""
    dataset = pydicom.dcmread(pydicom_file(name))
    dataset.SOPInstanceUID = f"{UID_ROOT}.{number}"
    return _saved(dataset)


def _gray8() -> bytes:
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    pixels = dataset.pixel_array.astype(numpy.int32)
    dataset.PixelData = (
        ((pixels - pixels.min()) * 255 // (pixels.max() - pixels.min())).astype(numpy.uint8).tobytes()
    )
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue", "RescaleIntercept", "RescaleSlope"):
        dataset.pop(keyword, None)
    dataset.SOPInstanceUID = f"{UID_ROOT}.10"
    return _saved(dataset)


def _broken_rle() -> bytes:
    dataset = pydicom.dcmread(pydicom_file("MR_small_RLE.dcm"))
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.PixelData = encapsulate([frame[:64] + b"\xff" * 100])
    dataset.SOPInstanceUID = f"{UID_ROOT}.11"
    return _saved(dataset)


FILES = {
    "CT_small": pydicom_file("CT_small.dcm").read_bytes(),
    "MR_implicit": pydicom_file("MR_small_implicit.dcm").read_bytes(),
    "MR_bigendian": _variant("MR_small_bigendian.dcm", 2),
    "MR_RLE": _variant("MR_small_RLE.dcm", 3),
    "MR_jpeg_ls": _variant("MR_small_jpeg_ls_lossless.dcm", 4),
    "MR_jpeg_2000": _variant("MR_small_jp2klossless.dcm", 5),
    "JPEG_12_bit": pydicom_file("JPEG-lossy.dcm").read_bytes(),
    "SC_rgb_rle": _variant("SC_rgb_rle.dcm", 6),
    "gray_8_bit": _gray8(),
    "rtplan": pydicom_file("rtplan.dcm").read_bytes(),
    "rtdose_32_bit": pydicom_file("rtdose_1frame.dcm").read_bytes(),
    "broken_RLE": _broken_rle(),
}
C_STORED = ("CT_small", "MR_RLE", "SC_rgb_rle", "rtdose_32_bit")


def _pixels(data: bytes) -> numpy.ndarray | None:
    """The decoded pixels of a stored file; ``None`` when pydicom cannot decode them."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    if "PixelData" not in dataset:
        return None
    try:
        return dataset.pixel_array
    except (RuntimeError, ValueError, NotImplementedError):
        return None


def _stored(client: httpx.Client, instance_id: str) -> tuple[str, bytes]:
    """The stored transfer syntax (the instance's metadata) and file of an instance."""
    syntax = client.get(f"/instances/{instance_id}/metadata/TransferSyntax").text
    return syntax, client.get(f"/instances/{instance_id}/file").content


def _pixel_fields(orthanc: bytes, fastpacs: bytes, syntax: str) -> tuple[str, str]:
    """How the decoded pixels of the two stored files compare, as values of the two documents."""
    left, right = _pixels(orthanc), _pixels(fastpacs)
    if left is None or right is None:
        return ("undecodable" if left is None else "decoded"), ("undecodable" if right is None else "decoded")
    if syntax == JPEG_BASELINE and left.shape == right.shape:
        difference = int(numpy.abs(left.astype(int) - right.astype(int)).max())
        return "lossy", "lossy" if difference <= LOSSY_TOLERANCE else f"lossy, {difference} levels apart"
    return hashlib.sha1(left.tobytes()).hexdigest(), hashlib.sha1(right.tobytes()).hexdigest()


def _documents(pair: ServerPair, sent: bytes, answers: tuple[Any, Any]) -> tuple[dict, dict]:
    """What each server made of a file: ``answers`` are the instance IDs (``None``: not stored) and
    the statuses, as each server's ``(status, instance ID)``."""
    documents: list[dict[str, Any]] = []
    stored: list[tuple[str, bytes] | None] = []
    for client, (status, instance_id) in zip(
        (pair.orthanc_client, pair.fastpacs_client), answers, strict=True
    ):
        found = None if instance_id is None else _stored(client, instance_id)
        stored.append(found)
        documents.append(
            {
                "Status": status,
                "KeepsItsID": instance_id == orthanc_id(*identifiers(sent)),
                "TransferSyntax": None if found is None else found[0],
                "KeepsItsSeries": None
                if found is None
                else identifiers(found[1])[:3] == identifiers(sent)[:3],
            }
        )
    if stored[0] is not None and stored[1] is not None:
        documents[0]["Pixels"], documents[1]["Pixels"] = _pixel_fields(
            stored[0][1], stored[1][1], stored[0][0]
        )
    return documents[0], documents[1]


def _series_instance(client: httpx.Client, data: bytes) -> str | None:
    """The one instance of the series of ``data`` (how a lossy conversion's new instance is found)."""
    series = client.post("/tools/lookup", content=identifiers(data)[2]).json()
    if not series:
        return None
    instances = client.get(f"/series/{series[0]['ID']}/instances").json()
    assert len(instances) == 1
    return instances[0]["ID"]


def _clear(pair: ServerPair) -> None:
    for client in (pair.orthanc_client, pair.fastpacs_client):
        for patient in client.get("/patients").json():
            client.delete(f"/patients/{patient}")


def _compare_uploads(pair: ServerPair, label: str) -> None:
    check = pair.checker()
    for name, data in FILES.items():
        answers = []
        for client in (pair.orthanc_client, pair.fastpacs_client):
            response = client.post("/instances", content=data)
            body = response.json()
            answers.append((f"{response.status_code} {body.get('Status')}", body.get("ID")))
        check.compare_documents(
            f"ingest-transcoding {label} rest {name}", *_documents(pair, data, tuple(answers))
        )
    check.verdict()


def _compare_zip(pair: ServerPair, label: str) -> None:
    _clear(pair)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        for name, data in FILES.items():
            writer.writestr(f"{name}.dcm", data)
    answers = []
    for client in (pair.orthanc_client, pair.fastpacs_client):
        response = client.post("/instances", content=archive.getvalue())
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert [len(answer) for answer in answers] == [len(FILES)] * 2
    check = pair.checker()
    for (name, data), orthanc, fastpacs in zip(FILES.items(), *answers, strict=True):
        statuses = ((orthanc["Status"], orthanc["ID"]), (fastpacs["Status"], fastpacs["ID"]))
        check.compare_documents(f"ingest-transcoding {label} zip {name}", *_documents(pair, data, statuses))
    check.verdict()


def _compare_c_store(pair: ServerPair, label: str) -> None:
    _clear(pair)
    check = pair.checker()
    for name in C_STORED:
        data = FILES[name]
        answers = []
        for server, client in ((pair.orthanc, pair.orthanc_client), (pair.fastpacs, pair.fastpacs_client)):
            status = c_store_file(server, data, "INGESTTC")
            answers.append((f"0x{status:04X}", _series_instance(client, data)))
        check.compare_documents(
            f"ingest-transcoding {label} c-store {name}", *_documents(pair, data, tuple(answers))
        )
    check.verdict()


@pytest.fixture(scope="module")
def jpeg_ls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    pair = ServerPair.start(
        tmp_path_factory.mktemp("ingest-jpeg-ls"), {"IngestTranscoding": JPEG_LS_LOSSLESS}
    )
    yield pair
    pair.stop()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    pair = ServerPair.start(tmp_path_factory.mktemp("ingest-baseline"), {"IngestTranscoding": JPEG_BASELINE})
    yield pair
    pair.stop()


@pytest.fixture(scope="module")
def explicit_of_uncompressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    pair = ServerPair.start(
        tmp_path_factory.mktemp("ingest-explicit"),
        {"IngestTranscoding": EXPLICIT, "IngestTranscodingOfCompressed": False},
    )
    yield pair
    pair.stop()


@pytest.mark.parametrize(
    "compare", [_compare_uploads, _compare_zip, _compare_c_store], ids=["rest", "zip", "c-store"]
)
def test_jpeg_ls(jpeg_ls: ServerPair, compare: Any) -> None:
    compare(jpeg_ls, "jpeg-ls")


@pytest.mark.parametrize(
    "compare", [_compare_uploads, _compare_zip, _compare_c_store], ids=["rest", "zip", "c-store"]
)
def test_jpeg_baseline(baseline: ServerPair, compare: Any) -> None:
    compare(baseline, "baseline")


def test_jpeg_baseline_again_makes_another_instance(baseline: ServerPair) -> None:
    """Each upload of the same file makes another lossy image, with another SOP Instance UID."""
    data = FILES["gray_8_bit"]
    for client in (baseline.orthanc_client, baseline.fastpacs_client):
        first, second = (client.post("/instances", content=data).json() for _ in range(2))
        assert (first["Status"], second["Status"]) == ("Success", "Success")
        assert len({first["ID"], second["ID"], orthanc_id(*identifiers(data))}) == 3


@pytest.mark.parametrize("compare", [_compare_uploads, _compare_c_store], ids=["rest", "c-store"])
def test_explicit_of_uncompressed_only(explicit_of_uncompressed: ServerPair, compare: Any) -> None:
    compare(explicit_of_uncompressed, "explicit")


def test_modification_output_is_converted(jpeg_ls: ServerPair) -> None:
    """A study modified with ``Transcode`` to Implicit VR is stored converted to JPEG-LS all the same."""
    _clear(jpeg_ls)
    documents = []
    for client in (jpeg_ls.orthanc_client, jpeg_ls.fastpacs_client):
        source = client.post("/instances", content=FILES["CT_small"]).json()
        modified = client.post(
            f"/studies/{source['ParentStudy']}/modify",
            json={"Replace": {"StudyDescription": "converted"}, "Transcode": IMPLICIT},
        )
        assert modified.status_code == 200, modified.text
        instances = client.get(f"/studies/{modified.json()['ID']}/instances").json()
        syntaxes = [_stored(client, instance["ID"])[0] for instance in instances]
        documents.append({"TransferSyntaxes": syntaxes})
    check = jpeg_ls.checker()
    check.compare_documents("ingest-transcoding jpeg-ls modify", *documents)
    check.verdict()


def test_create_dicom_is_converted(jpeg_ls: ServerPair) -> None:
    png = io.BytesIO()
    Image.fromarray(numpy.arange(64 * 64, dtype=numpy.uint8).reshape(64, 64)).save(png, "PNG")
    content = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    documents = []
    for client in (jpeg_ls.orthanc_client, jpeg_ls.fastpacs_client):
        created = client.post(
            "/tools/create-dicom", json={"Tags": {"PatientName": "CREATED"}, "Content": content}
        )
        assert created.status_code == 200, created.text
        documents.append({"TransferSyntax": _stored(client, created.json()["ID"])[0]})
    check = jpeg_ls.checker()
    check.compare_documents("ingest-transcoding jpeg-ls create-dicom", *documents)
    check.verdict()
