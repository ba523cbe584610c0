"""Transcoding to JPEG Lossless (process 14): round trips through the real server, decoded twice.

Each file is stored, transcoded by ``/instances/{id}/modify`` (and sent by
C-STORE to a peer accepting JPEG Lossless only), and the frames must decode
to the original's pixels exactly, both by pydicom (pylibjpeg-libjpeg) and by
DCMTK's ``dcmdjpeg``: pydicom's test files (8, 12 and 16 bits, signed and
unsigned, colour, palette, multi-frame, compressed sources) and generated
edge cases (all zero, all ones, noise over the whole range, 1×1, odd sizes,
12 signed bits in 16 with negatives, planar RGB, YBR_FULL). Pixels JPEG
Lossless cannot hold get Orthanc's 500, as a JSON error.

The byte-for-byte comparison with Orthanc's frames is in
tests/differential/test_modify_edge_cases_vs_orthanc.py (test_transcoding)
and :func:`test_frames_are_the_ones_dcmtk_writes` (frames recorded from
Orthanc 1.10.1 would be data files; the test checks the properties that
make them identical instead).
"""

import io
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames, parse_basic_offsets
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt

from fastpacs.dicom.jpeg_lossless import JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, compression_ratio_text
from fastpacs.testing import ServerProcess, fastpacs_server, free_port
from tests.conftest import pydicom_file

TEST_FILES = (
    "CT_small.dcm",  # 16 bits signed
    "MR_small_jpeg_ls_lossless.dcm",  # 16 bits signed, JPEG-LS source
    "JPEG2000.dcm",  # 16 bits signed, JPEG 2000 source
    "JPGExtended.dcm",  # 12 bits in 16, JPEG extended (lossy) source
    "examples_overlay.dcm",  # 12 bits in 16 unsigned
    "examples_palette.dcm",  # 8 bits, PALETTE COLOR
    "image_dfl.dcm",  # 8 bits, deflated source
    "MR_small_bigendian.dcm",  # 16 bits, big endian source
    "SC_rgb_small_odd.dcm",  # RGB 3×3
    "SC_rgb_rle_2frame.dcm",  # RGB, two frames, RLE source
    "SC_rgb_rle_16bit_2frame.dcm",  # 16-bit RGB, two frames
    "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL JPEG baseline source: decoded to RGB
    "examples_ybr_color.dcm",  # YBR_FULL_422 JPEG baseline, 30 frames
)


def _generated(
    pixels: numpy.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    stored: int | None = None,
    planar: int = 0,
    frames: int | None = None,
) -> bytes:
    """A Secondary Capture file holding ``pixels`` (frames first when ``frames``, samples last)."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.PatientID, dataset.Modality = "JPEG-LOSSLESS", "OT"
    image = pixels.shape[1:] if frames else pixels.shape  # (rows, columns[, samples])
    dataset.Rows, dataset.Columns = image[:2]
    samples = 3 if len(image) == 3 else 1
    dataset.SamplesPerPixel = samples
    dataset.PhotometricInterpretation = photometric
    if samples == 3:
        dataset.PlanarConfiguration = planar
        if planar:
            pixels = numpy.moveaxis(pixels, -1, -3)
    if frames:
        dataset.NumberOfFrames = frames
    dataset.BitsAllocated = pixels.dtype.itemsize * 8
    dataset.BitsStored = stored or dataset.BitsAllocated
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = int(pixels.dtype.kind == "i")
    data = numpy.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    dataset.PixelData = data + b"\0" * (len(data) % 2)
    dataset["PixelData"].VR = "OW" if dataset.BitsAllocated > 8 else "OB"
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return output.getvalue()


_RANDOM = numpy.random.default_rng(20261128)
EDGE_FILES = {
    "all zero": _generated(numpy.zeros((16, 16), numpy.uint16)),
    "all max 16": _generated(numpy.full((16, 17), 65535, numpy.uint16)),
    "all max 8": _generated(numpy.full((5, 7), 255, numpy.uint8)),
    "noise 16": _generated(_RANDOM.integers(0, 65536, (64, 63), dtype=numpy.uint16)),
    "noise 16 signed": _generated(_RANDOM.integers(-32768, 32768, (31, 33), dtype=numpy.int16)),
    "noise 8": _generated(_RANDOM.integers(0, 256, (33, 31), dtype=numpy.uint8)),
    "noise 8 signed": _generated(_RANDOM.integers(-128, 128, (8, 9), dtype=numpy.int8)),
    "1x1": _generated(numpy.array([[1234]], numpy.uint16)),
    "1x1 rgb": _generated(numpy.array([[[1, 2, 250]]], numpy.uint8), photometric="RGB"),
    "odd 3x5": _generated(_RANDOM.integers(0, 256, (3, 5), dtype=numpy.uint8)),
    "12 signed in 16": _generated(_RANDOM.integers(-2048, 2048, (20, 21), dtype=numpy.int16), stored=12),
    "12 unsigned in 16": _generated(_RANDOM.integers(0, 4096, (20, 21), dtype=numpy.uint16), stored=12),
    "2 bits in 16": _generated(_RANDOM.integers(0, 4, (9, 10), dtype=numpy.uint16), stored=2),
    "6 bits in 8": _generated(_RANDOM.integers(0, 64, (9, 9), dtype=numpy.uint8), stored=6),
    "monochrome1": _generated(_RANDOM.integers(0, 256, (8, 8), dtype=numpy.uint8), photometric="MONOCHROME1"),
    "ybr full": _generated(_RANDOM.integers(0, 256, (10, 12, 3), dtype=numpy.uint8), photometric="YBR_FULL"),
    "rgb 16": _generated(_RANDOM.integers(0, 65536, (10, 12, 3), dtype=numpy.uint16), photometric="RGB"),
    "rgb planar": _generated(
        _RANDOM.integers(0, 256, (10, 11, 3), dtype=numpy.uint8), photometric="RGB", planar=1
    ),
    "frames 16": _generated(_RANDOM.integers(0, 4000, (3, 12, 10), dtype=numpy.uint16), frames=3),
    "frames rgb": _generated(
        _RANDOM.integers(0, 256, (2, 7, 9, 3), dtype=numpy.uint8), photometric="RGB", frames=2
    ),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """fastpacs sending JPEG Lossless to peers that accept it (DicomScuPreferredTransferSyntax)."""
    options = {"DicomScuPreferredTransferSyntax": JPEG_LOSSLESS_SV1}
    process = fastpacs_server(tmp_path_factory.mktemp("jpeg-lossless"), options).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        yield http


def _with_new_uids(data: bytes) -> bytes:
    """The file as another instance (pydicom's test files share UIDs), its pixel data untouched."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    output = io.BytesIO()
    dataset.save_as(output)
    return output.getvalue()


def _upload(client: httpx.Client, data: bytes) -> str:
    answer = client.post("/instances", content=data)
    assert answer.status_code == 200, answer.text
    return answer.json()["ID"]


def _transcoded(client: httpx.Client, data: bytes, syntax: str = JPEG_LOSSLESS_SV1) -> bytes:
    answer = client.post(f"/instances/{_upload(client, data)}/modify", json={"Transcode": syntax})
    assert answer.status_code == 200, answer.text
    return answer.content


def _by_dcmdjpeg(data: bytes, folder: Path) -> Dataset:
    """The file decompressed by DCMTK, the samples as they are (no conversion of YBR_FULL to RGB)."""
    (folder / "in.dcm").write_bytes(data)
    command = ["dcmdjpeg", "+cn", str(folder / "in.dcm"), str(folder / "out.dcm")]
    subprocess.run(command, check=True, timeout=60)
    return pydicom.dcmread(folder / "out.dcm")


def _check_round_trip(original: bytes, transcoded: bytes, folder: Path, syntax: str) -> None:
    """The transcoded file is JPEG Lossless, one fragment per frame behind a basic offset table, and
    decodes to the original's pixels by pydicom and by DCMTK; the other attributes are unchanged but
    PlanarConfiguration (colour-by-pixel) and PhotometricInterpretation of a JPEG baseline source (RGB,
    which pydicom and DCMTK decode it to)."""
    source = pydicom.dcmread(io.BytesIO(original))
    result = pydicom.dcmread(io.BytesIO(transcoded))
    assert result.file_meta.TransferSyntaxUID == syntax
    count = int(source.get("NumberOfFrames") or 1)
    fragments = list(generate_frames(result.PixelData, number_of_frames=count))
    assert len(fragments) == count
    assert all(fragment[:2] == b"\xff\xd8" and fragment[-2:] == b"\xff\xd9" for fragment in fragments)
    assert all(len(fragment) % 2 == 0 for fragment in fragments)
    offsets = parse_basic_offsets(result.PixelData)
    assert offsets == [sum(len(fragment) + 8 for fragment in fragments[:index]) for index in range(count)]
    for keyword in ("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel"):
        assert result.get(keyword) == source.get(keyword), keyword
    assert "LossyImageCompression" not in result or result.LossyImageCompression == source.get(
        "LossyImageCompression"
    )
    sizes = sum(len(fragment) for fragment in fragments)
    selection_value = 1 if syntax == JPEG_LOSSLESS_SV1 else 6
    description = (
        f"Lossless JPEG compression, selection value {selection_value}, point transform 0, "
        f"compression ratio {compression_ratio_text(source.pixel_array.nbytes / sizes)}"
    )
    previous = source.get("DerivationDescription")
    assert result.DerivationDescription == (f"{description} [{previous}]" if previous else description)
    expected = source.pixel_array
    assert numpy.array_equal(result.pixel_array, expected)
    decompressed = _by_dcmdjpeg(transcoded, folder)
    assert numpy.array_equal(decompressed.pixel_array, expected)
    native = source.file_meta.TransferSyntaxUID
    if not native.is_compressed and native.is_little_endian and source.get("PlanarConfiguration", 0) == 0:
        cells = len(decompressed.PixelData)
        assert decompressed.PixelData == source.PixelData[:cells]  # every bit of every cell


@pytest.mark.parametrize("name", TEST_FILES)
def test_test_files_come_back_exactly(client: httpx.Client, tmp_path: Path, name: str) -> None:
    original = _with_new_uids(pydicom_file(name).read_bytes())
    _check_round_trip(original, _transcoded(client, original), tmp_path, JPEG_LOSSLESS_SV1)


@pytest.mark.parametrize("name", list(EDGE_FILES))
def test_edge_cases_come_back_exactly(client: httpx.Client, tmp_path: Path, name: str) -> None:
    original = EDGE_FILES[name]
    _check_round_trip(original, _transcoded(client, original), tmp_path, JPEG_LOSSLESS_SV1)


@pytest.mark.parametrize("name", ["noise 16 signed", "ybr full", "frames rgb"])
def test_jpeg_lossless_with_dcmtks_predictor_comes_back_exactly(
    client: httpx.Client, tmp_path: Path, name: str
) -> None:
    """…4.57 is written with selection value 6, as Orthanc (DCMTK) writes it."""
    original = EDGE_FILES[name]
    transcoded = _transcoded(client, original, JPEG_LOSSLESS)
    _check_round_trip(original, transcoded, tmp_path, JPEG_LOSSLESS)
    fragment = next(generate_frames(pydicom.dcmread(io.BytesIO(transcoded)).PixelData, number_of_frames=1))
    scan = fragment.index(b"\xff\xda")
    components = fragment[scan + 4]
    assert fragment[scan + 5 + 2 * components] == 6


def test_frames_are_the_ones_dcmtk_writes(client: httpx.Client) -> None:
    """The markers DCMTK writes: JFIF for grayscale and YBR_FULL, component identifiers 0, 1, 2 for RGB
    with one Huffman table, 1, 2, 3 for YBR_FULL with a second table for chrominance, precision
    BitsAllocated, selection value 1, and the optimal Huffman table (a one-value image: the category 0
    code is one bit long)."""
    expectations = {
        "all zero": (b"\xff\xd8\xff\xe0", b"\x10\x00\x10\x00\x10\x01\x01\x11\x00",
                     b"\x01\x01\x00\x01\x00\x00"),
        "rgb 16": (b"\xff\xd8\xff\xc3", b"\x10\x00\x0a\x00\x0c\x03\x00\x11\x00\x01\x11\x00\x02\x11\x00",
                   b"\x03\x00\x00\x01\x00\x02\x00\x01\x00\x00"),
        "ybr full": (b"\xff\xd8\xff\xe0", b"\x08\x00\x0a\x00\x0c\x03\x01\x11\x00\x02\x11\x01\x03\x11\x01",
                     b"\x03\x01\x00\x02\x11\x03\x11\x01\x00\x00"),
    }  # fmt: skip
    for name, (start, frame_header, scan_header) in expectations.items():
        result = pydicom.dcmread(io.BytesIO(_transcoded(client, EDGE_FILES[name])))
        fragment = next(generate_frames(result.PixelData, number_of_frames=1))
        assert fragment.startswith(start), name
        assert b"\xff\xc3" + (len(frame_header) + 2).to_bytes(2, "big") + frame_header in fragment, name
        assert b"\xff\xda" + (len(scan_header) + 2).to_bytes(2, "big") + scan_header in fragment, name
    result = pydicom.dcmread(io.BytesIO(_transcoded(client, EDGE_FILES["all zero"])))
    zero = next(generate_frames(result.PixelData, number_of_frames=1))
    # 255 differences of category 0 and the first one, -32768 (0 predicted as 2^15), of category 16:
    # category 0 gets the 1-bit code, category 16 a 2-bit one (its sibling is the reserved code).
    assert b"\xff\xc4\x00\x15\x00\x01\x01" + bytes(14) + b"\x00\x10" in zero


def test_a_lossless_transcoding_makes_no_derived_image(client: httpx.Client) -> None:
    """SOPInstanceUID kept: the file keeps it, as in Orthanc (probed), ImageType unchanged, no lossy
    compression marks or source image (unlike JPEG baseline)."""
    original = _with_new_uids(pydicom_file("CT_small.dcm").read_bytes())
    body = {"Transcode": JPEG_LOSSLESS_SV1, "Keep": ["SOPInstanceUID"], "Force": True}
    answer = client.post(f"/instances/{_upload(client, original)}/modify", json=body)
    assert answer.status_code == 200, answer.text
    source, result = pydicom.dcmread(io.BytesIO(original)), pydicom.dcmread(io.BytesIO(answer.content))
    assert result.SOPInstanceUID == result.file_meta.MediaStorageSOPInstanceUID == source.SOPInstanceUID
    assert result.ImageType == source.ImageType
    absent = ("LossyImageCompression", "SourceImageSequence", "DerivationCodeSequence")
    assert not [keyword for keyword in absent if keyword in result]


def test_study_anonymization_transcodes_the_stored_copies(client: httpx.Client, tmp_path: Path) -> None:
    """``Transcode`` at the study level: the anonymized instances are stored in JPEG Lossless (Orthanc
    ignores it for a single instance's /anonymize, and so does fastpacs)."""
    original = _with_new_uids(pydicom_file("CT_small.dcm").read_bytes())
    study = client.get(f"/instances/{_upload(client, original)}/study").json()["ID"]
    answer = client.post(f"/studies/{study}/anonymize", json={"Transcode": JPEG_LOSSLESS_SV1})
    assert answer.status_code == 200, answer.text
    (instance,) = client.get(f"/studies/{answer.json()['ID']}/instances").json()
    assert client.get(f"/instances/{instance['ID']}/metadata/TransferSyntax").text == JPEG_LOSSLESS_SV1
    numpy_url = f"/instances/{instance['ID']}/frames/0/numpy"
    rendered = client.get(numpy_url, params={"rescale": "false"})  # fastpacs decodes its own frames
    assert rendered.status_code == 200, rendered.text
    expected = pydicom.dcmread(io.BytesIO(original)).pixel_array
    assert numpy.array_equal(numpy.load(io.BytesIO(rendered.content)).reshape(expected.shape), expected)
    _check_round_trip(
        original, client.get(f"/instances/{instance['ID']}/file").content, tmp_path, JPEG_LOSSLESS_SV1
    )


def _float_pixels() -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(EDGE_FILES["1x1"]))
    del dataset.PixelData
    dataset.BitsAllocated = 32
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(dataset, keyword)
    dataset.FloatPixelData = numpy.array([1.5], "<f4").tobytes()
    output = io.BytesIO()
    dataset.save_as(output)
    return _with_new_uids(output.getvalue())


REFUSED = {
    "float pixels": _float_pixels(),
    "32 bits": _with_new_uids(pydicom_file("rtdose.dcm").read_bytes()),
    "24 of 32 bits": _generated(_RANDOM.integers(0, 1 << 24, (4, 4), dtype=numpy.uint32), stored=24),
    "1 bit": _with_new_uids(pydicom_file("liver_1frame.dcm").read_bytes()),
    "ybr full 422": _with_new_uids(pydicom_file("SC_ybr_full_422_uncompressed.dcm").read_bytes()),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_pixels_jpeg_lossless_cannot_hold_get_orthancs_error(client: httpx.Client, name: str) -> None:
    """As Orthanc 1.10.1 answers (probed): a 500 JSON error, no traceback."""
    for syntax in (JPEG_LOSSLESS_SV1, JPEG_LOSSLESS):
        answer = client.post(
            f"/instances/{_upload(client, REFUSED[name])}/modify", json={"Transcode": syntax}
        )
        assert answer.status_code == 500
        error = answer.json()
        assert error["Details"] == f"Cannot transcode to transfer syntax: {syntax}"
        assert (error["HttpStatus"], error["OrthancStatus"], error["Message"]) == (500, -1, "Internal error")


@pytest.fixture
def jpeg_lossless_peer(client: httpx.Client) -> Iterator[list[tuple[str, Dataset]]]:
    """A pynetdicom storage SCP accepting JPEG Lossless SV1 only, registered as modality "lossless"."""
    received: list[tuple[str, Dataset]] = []
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with lock:
            received.append((str(event.context.transfer_syntax), dataset))
        return 0x0000

    ae = AE(ae_title="LOSSLESS")
    for context in StoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, [JPEG_LOSSLESS_SV1])
    port = free_port()
    scp = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    client.put("/modalities/lossless", json={"AET": "LOSSLESS", "Host": "127.0.0.1", "Port": port})
    yield received
    client.delete("/modalities/lossless")
    scp.shutdown()


def test_c_store_to_a_peer_accepting_jpeg_lossless_only(
    client: httpx.Client, jpeg_lossless_peer: list[tuple[str, Dataset]], tmp_path: Path
) -> None:
    """DicomScuPreferredTransferSyntax JPEG Lossless: what the peer receives decodes to the original."""
    originals = [
        _with_new_uids(pydicom_file(name).read_bytes())
        for name in ("CT_small.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm")
    ]
    originals.append(EDGE_FILES["12 signed in 16"])
    identifiers = [_upload(client, original) for original in originals]
    answer = client.post("/modalities/lossless/store", json={"Resources": identifiers, "Synchronous": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["FailedInstancesCount"] == 0
    assert len(jpeg_lossless_peer) == len(originals)
    by_uid = {str(dataset.SOPInstanceUID): (syntax, dataset) for syntax, dataset in jpeg_lossless_peer}
    for original in originals:
        syntax, dataset = by_uid[str(pydicom.dcmread(io.BytesIO(original)).SOPInstanceUID)]
        assert syntax == JPEG_LOSSLESS_SV1
        received = io.BytesIO()
        dataset.save_as(received, enforce_file_format=True)
        _check_round_trip(original, received.getvalue(), tmp_path, JPEG_LOSSLESS_SV1)


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (32768 / 14886, "2.2013"),  # CT_small.dcm, as Orthanc 1.10.1 writes its DerivationDescription
        (512 / 102, "5.01961"),  # a zero opening the fraction is not counted (DCMTK's ftoa)
        (6912000 / 2250896, "3.07078"),
        (360 / 514, "0.70039"),
        (1 / 35, "0.028571"),
        (15 / 88, "0.17045"),
        (9.999996, "10"),
        (16.0, "16"),
    ],
)
def test_compression_ratios_are_written_as_dcmtk_writes_them(ratio: float, text: str) -> None:
    assert compression_ratio_text(ratio) == text
