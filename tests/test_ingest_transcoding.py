"""IngestTranscoding: new instances converted to one transfer syntax before they are stored.

Real servers, one per configuration (module-scoped): JPEG-LS lossless with
both flags on (every producer: REST single file and ZIP, C-STORE, modification
output), JPEG baseline (lossy: new SOP Instance UID, hence a new instance),
RLE with ``IngestTranscodingOfCompressed`` off, and JPEG 2000 lossless with
``IngestTranscodingOfUncompressed`` off. Files that
cannot be converted (32-bit pixels into a compressed syntax, 16-bit into JPEG
baseline, pixel data that cannot be decoded) are stored as received with a
``Success``, as Orthanc 1.10.1 does; a file without pixel data only changes
its transfer syntax. The received blob of a converted file is not left behind.
"""

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from fastpacs.config import ConfigurationError, load_config
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import c_store_file, orthanc_id, pydicom_file, stored_blobs

pytestmark = pytest.mark.slow  # four servers

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


def _saved(dataset: pydicom.Dataset) -> bytes:
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return output.getvalue()


def sample(name: str, instance: str | None = None, series: str | None = None) -> bytes:
    """A pydicom test file, with another SOP Instance UID (and Series Instance UID) when given."""
    if instance is None:
        return pydicom_file(name).read_bytes()
    dataset = pydicom.dcmread(pydicom_file(name))
    dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{instance}"
    if series is not None:
        dataset.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.{series}"
    return _saved(dataset)


def gray8(instance: str) -> bytes:
    """CT_small's pixels scaled to 8 bits (unsigned): what JPEG baseline can hold."""
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    pixels = dataset.pixel_array.astype(numpy.int32)
    scaled = (pixels - pixels.min()) * 255 // (pixels.max() - pixels.min())
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue", "RescaleIntercept", "RescaleSlope"):
        dataset.pop(keyword, None)
    dataset.PixelData = scaled.astype(numpy.uint8).tobytes()
    dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{instance}"
    return _saved(dataset)


def broken_rle(instance: str) -> bytes:
    """MR_small_RLE whose RLE stream is cut and padded with garbage: it cannot be decoded."""
    dataset = pydicom.dcmread(pydicom_file("MR_small_RLE.dcm"))
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.PixelData = encapsulate([frame[:64] + b"\xff" * 100])
    dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{instance}"
    return _saved(dataset)


def pixels(data: bytes) -> numpy.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array


def identifiers(data: bytes) -> tuple[str, str, str, str]:
    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return (
        str(dataset.PatientID),
        str(dataset.StudyInstanceUID),
        str(dataset.SeriesInstanceUID),
        str(dataset.SOPInstanceUID),
    )


def stored_syntax(client: httpx.Client, instance_id: str) -> str:
    return client.get(f"/instances/{instance_id}/metadata/TransferSyntax").text


def upload(client: httpx.Client, data: bytes) -> dict[str, Any]:
    answer = client.post("/instances", content=data)
    assert answer.status_code == 200, answer.text
    return answer.json()


@dataclass
class Running:
    """A started server and a client of it."""

    process: ServerProcess
    client: httpx.Client


def _server(factory: pytest.TempPathFactory, options: dict[str, Any]) -> Iterator[Running]:
    process = fastpacs_server(factory.mktemp("ingest-transcoding"), options).start()
    try:
        with httpx.Client(base_url=process.base_url, timeout=60) as client:
            yield Running(process, client)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def jpeg_ls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _server(tmp_path_factory, {"IngestTranscoding": JPEG_LS_LOSSLESS})


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _server(
        tmp_path_factory, {"IngestTranscoding": JPEG_BASELINE, "DicomLossyTranscodingQuality": 75}
    )


@pytest.fixture(scope="module")
def rle_of_uncompressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _server(tmp_path_factory, {"IngestTranscoding": RLE, "IngestTranscodingOfCompressed": False})


@pytest.fixture(scope="module")
def jpeg_2000_of_compressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _server(
        tmp_path_factory, {"IngestTranscoding": JPEG_2000_LOSSLESS, "IngestTranscodingOfUncompressed": False}
    )


def test_rest_uncompressed_file_is_stored_converted(jpeg_ls: Running) -> None:
    data = sample("CT_small.dcm")
    answer = upload(jpeg_ls.client, data)
    assert answer["Status"] == "Success"
    assert answer["ID"] == orthanc_id(*identifiers(data))  # lossless: the same instance
    assert stored_syntax(jpeg_ls.client, answer["ID"]) == JPEG_LS_LOSSLESS
    stored = jpeg_ls.client.get(f"/instances/{answer['ID']}/file").content
    assert pydicom.dcmread(io.BytesIO(stored)).file_meta.TransferSyntaxUID == JPEG_LS_LOSSLESS
    numpy.testing.assert_array_equal(pixels(stored), pixels(data))
    again = upload(jpeg_ls.client, data)
    assert (again["Status"], again["ID"]) == ("AlreadyStored", answer["ID"])
    tags = jpeg_ls.client.get(f"/instances/{answer['ID']}/simplified-tags").json()
    assert tags["SOPInstanceUID"] == identifiers(data)[3]


def test_rest_compressed_file_is_stored_converted(jpeg_ls: Running) -> None:
    data = sample("MR_small_RLE.dcm", "101")
    answer = upload(jpeg_ls.client, data)
    assert answer["Status"] == "Success"
    assert stored_syntax(jpeg_ls.client, answer["ID"]) == JPEG_LS_LOSSLESS
    numpy.testing.assert_array_equal(
        pixels(jpeg_ls.client.get(f"/instances/{answer['ID']}/file").content), pixels(data)
    )


@pytest.mark.parametrize(
    ("name", "data", "syntax"),
    [
        ("32-bit pixels", sample("rtdose_1frame.dcm"), IMPLICIT),
        ("undecodable RLE", broken_rle("102"), RLE),
    ],
)
def test_file_that_cannot_be_converted_is_stored_as_received(
    jpeg_ls: Running, name: str, data: bytes, syntax: str
) -> None:
    answer = upload(jpeg_ls.client, data)
    assert answer["Status"] == "Success", name
    assert stored_syntax(jpeg_ls.client, answer["ID"]) == syntax
    assert jpeg_ls.client.get(f"/instances/{answer['ID']}/file").content == data


def test_file_without_pixel_data_takes_the_transfer_syntax(jpeg_ls: Running) -> None:
    data = sample("rtplan.dcm")
    answer = upload(jpeg_ls.client, data)
    assert stored_syntax(jpeg_ls.client, answer["ID"]) == JPEG_LS_LOSSLESS
    stored = pydicom.dcmread(io.BytesIO(jpeg_ls.client.get(f"/instances/{answer['ID']}/file").content))
    assert stored.RTPlanLabel == pydicom.dcmread(io.BytesIO(data)).RTPlanLabel


def test_not_dicom_is_still_refused(jpeg_ls: Running) -> None:
    answer = jpeg_ls.client.post("/instances", content=b"not a DICOM file" * 20)
    assert answer.status_code == 400
    assert answer.json()["OrthancError"] == "Bad file format"


def test_zip_upload_is_converted(jpeg_ls: Running) -> None:
    files = {
        "implicit.dcm": sample("MR_small_implicit.dcm", "111"),
        "jpeg2000.dcm": sample("MR_small_jp2klossless.dcm", "112"),
        "dose.dcm": sample("rtdose_1frame.dcm", "113"),
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        for name, data in files.items():
            writer.writestr(name, data)
    answers = upload(jpeg_ls.client, archive.getvalue())
    assert [answer["Status"] for answer in answers] == ["Success"] * 3
    syntaxes = [stored_syntax(jpeg_ls.client, answer["ID"]) for answer in answers]
    assert syntaxes == [JPEG_LS_LOSSLESS, JPEG_LS_LOSSLESS, IMPLICIT]
    for answer, data in zip(answers[:2], files.values(), strict=False):
        stored = jpeg_ls.client.get(f"/instances/{answer['ID']}/file").content
        numpy.testing.assert_array_equal(pixels(stored), pixels(data))


def test_c_store_is_converted(jpeg_ls: Running) -> None:
    data = sample("MR_small_bigendian.dcm", "121")
    assert c_store_file(jpeg_ls.process, data, "TRANSCODER") == 0x0000
    instance_id = orthanc_id(*identifiers(data))
    assert stored_syntax(jpeg_ls.client, instance_id) == JPEG_LS_LOSSLESS
    assert jpeg_ls.client.get(f"/instances/{instance_id}/metadata/Origin").text == "DicomProtocol"
    numpy.testing.assert_array_equal(
        pixels(jpeg_ls.client.get(f"/instances/{instance_id}/file").content), pixels(data)
    )


def test_modified_instances_are_converted(jpeg_ls: Running) -> None:
    """As in Orthanc, what a modification stores goes through ingest transcoding too."""
    source = upload(jpeg_ls.client, sample("MR_small_implicit.dcm", "131", series="132"))
    modified = jpeg_ls.client.post(
        f"/series/{source['ParentSeries']}/modify",
        json={"Replace": {"SeriesDescription": "converted"}, "Transcode": IMPLICIT},
    )
    assert modified.status_code == 200, modified.text
    instances = jpeg_ls.client.get(f"/series/{modified.json()['ID']}/instances").json()
    assert [stored_syntax(jpeg_ls.client, instance["ID"]) for instance in instances] == [JPEG_LS_LOSSLESS]


def test_received_blobs_of_converted_files_are_released(jpeg_ls: Running) -> None:
    """Every blob left in the storage is the file of an instance: none is a received file's."""
    storage = jpeg_ls.process.directory / "storage"
    statistics = jpeg_ls.client.get("/statistics").json()
    assert len(stored_blobs(storage)) == statistics["CountInstances"]


def test_jpeg_baseline_makes_new_instances(baseline: Running) -> None:
    data = gray8("201")
    first = upload(baseline.client, data)
    assert first["Status"] == "Success"
    assert first["ID"] != orthanc_id(*identifiers(data))
    stored = baseline.client.get(f"/instances/{first['ID']}/file").content
    written = pydicom.dcmread(io.BytesIO(stored))
    assert written.file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert "IJG quality factor 75," in written.DerivationDescription  # DicomLossyTranscodingQuality
    assert identifiers(stored)[:3] == identifiers(data)[:3]
    assert identifiers(stored)[3] != identifiers(data)[3]
    difference = numpy.abs(pixels(stored).astype(int) - pixels(data).astype(int))
    assert difference.max() <= 16
    again = upload(baseline.client, data)  # a new lossy image each time, as in Orthanc
    assert again["Status"] == "Success"
    assert again["ID"] not in (first["ID"], orthanc_id(*identifiers(data)))


def test_jpeg_baseline_keeps_what_it_cannot_hold(baseline: Running) -> None:
    data = sample("CT_small.dcm")  # 16-bit signed
    answer = upload(baseline.client, data)
    assert (answer["Status"], answer["ID"]) == ("Success", orthanc_id(*identifiers(data)))
    assert stored_syntax(baseline.client, answer["ID"]) == EXPLICIT


def test_jpeg_baseline_by_c_store(baseline: Running) -> None:
    data = sample("SC_rgb_rle.dcm", "211")
    assert c_store_file(baseline.process, data, "TRANSCODER") == 0x0000
    assert baseline.client.post("/tools/lookup", content=identifiers(data)[3]).json() == []
    series = baseline.client.post("/tools/lookup", content=identifiers(data)[2]).json()
    instances = baseline.client.get(f"/series/{series[0]['ID']}/instances").json()
    assert [stored_syntax(baseline.client, instance["ID"]) for instance in instances] == [JPEG_BASELINE]


def test_of_compressed_off_keeps_compressed_files(rle_of_uncompressed: Running) -> None:
    client = rle_of_uncompressed.client
    compressed = upload(client, sample("MR_small_jpeg_ls_lossless.dcm", "301"))
    assert stored_syntax(client, compressed["ID"]) == JPEG_LS_LOSSLESS
    for data in (sample("CT_small.dcm"), sample("MR_small_implicit.dcm", "302")):
        converted = upload(client, data)
        assert stored_syntax(client, converted["ID"]) == RLE
        stored = client.get(f"/instances/{converted['ID']}/file").content
        numpy.testing.assert_array_equal(pixels(stored), pixels(data))


def test_of_uncompressed_off_keeps_uncompressed_files(jpeg_2000_of_compressed: Running) -> None:
    client = jpeg_2000_of_compressed.client
    uncompressed = upload(client, sample("CT_small.dcm"))
    assert stored_syntax(client, uncompressed["ID"]) == EXPLICIT
    for data in (sample("MR_small_RLE.dcm", "401"), sample("MR_small_jpeg_ls_lossless.dcm", "402")):
        converted = upload(client, data)
        assert stored_syntax(client, converted["ID"]) == JPEG_2000_LOSSLESS
        stored = client.get(f"/instances/{converted['ID']}/file").content
        numpy.testing.assert_array_equal(pixels(stored), pixels(data))


@pytest.mark.parametrize("value", ["1.2.3.4", "foo", ""])
def test_unknown_transfer_syntax_is_refused_at_start(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(f'{{"IngestTranscoding": "{value}"}}')
    with pytest.raises(ConfigurationError, match=f"Unknown transfer syntax for ingest transcoding: {value}"):
        load_config(path, environ={})


def test_options_are_read(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        '{"IngestTranscoding": "1.2.840.10008.1.2.5", "IngestTranscodingOfUncompressed": false,'
        ' "IngestTranscodingOfCompressed": false, "DicomLossyTranscodingQuality": 90}'
    )
    config = load_config(path, environ={})
    assert (config.ingest_transcoding, config.ingest_transcoding_of_uncompressed) == (RLE, False)
    assert not config.ingest_transcoding_of_compressed
    path.write_text('{"DicomLossyTranscodingQuality": 0}')
    with pytest.raises(ConfigurationError, match="DicomLossyTranscodingQuality"):
        load_config(path, environ={})
