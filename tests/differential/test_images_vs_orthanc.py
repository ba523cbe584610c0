"""Pixel endpoints against the reference Orthanc 1.10.1, file by file.

Every pydicom test file with pixel data (found when the tests are collected,
so new files are covered without a list to keep) is uploaded to both
servers and each frame endpoint is compared: same status, same content
type, and the same content. PNG and PAM are compared as decoded pixels (the
encoders differ, the pixels must not), JPEG answers within a tolerance,
everything else byte for byte. Where fastpacs differs on purpose,
``ALLOWED`` says why; where neither server decodes a file, their error
answers must match.
"""

import gzip
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from fastpacs.testing import ServerProcess, fastpacs_server, orthanc_server
from tests.conftest import pydicom_file
from tests.differential.data import DATA_ROOT

pytestmark = [pytest.mark.reference, pytest.mark.slow]

OPERATIONS = ("preview", "image-uint8", "image-uint16", "image-int16", "matlab", "numpy", "raw", "raw.gz")

SOURCE_FOLDERS = ("test_files", "charset_files")
"""The folders of pydicom's data set that hold DICOM files."""


def _has_pixel_data(path: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deliberately broken files warn
        return "PixelData" in pydicom.dcmread(path, force=True, specific_tags=["PixelData"])


def pixel_files() -> dict[str, Path]:
    """Every pydicom test file with pixel data, by its path below its folder."""
    files = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((DATA_ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in ("", ".dcm") and _has_pixel_data(path):
                files[path.relative_to(DATA_ROOT / folder).as_posix()] = path
    return files


FILES = {**pixel_files(), "rtplan.dcm": pydicom_file("rtplan.dcm")}
"""Name -> file: every file with pixel data, and one without (for the error answers)."""
IDENTIFIERS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
INEXISTENT_TAG = 21

LOSSY_JPEG_SOURCES = {"JPGExtended.dcm"}
"""12-bit JPEG decoded by libjpeg (pylibjpeg) vs DCMTK's IJG code: inverse DCTs differ by one level."""
STORED_VALUE_TOLERANCE = 1

KNOWN_GAPS = {"JPEG-lossy.dcm"}
"""Files Orthanc decodes and fastpacs does not."""
_DECODES_WHAT_ORTHANC_CANNOT = "advantage: Orthanc 1.10.1 cannot decode this, fastpacs can"
_DECODED_OPERATIONS = ("preview", "image-uint8", "image-uint16", "image-int16", "matlab", "numpy")
_RENDERINGS = ("preview", "image-uint8", "image-uint16", "image-int16")
_COLOR_OPERATIONS = ("preview", "matlab", "numpy")
"""What a colour image gives (``image-*`` is 415 for colour on both servers)."""
GRAYSCALE_JPEG_2000_FILES = (
    "693_J2KI.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "JPEG2000.dcm",
    "MR_small_jp2klossless.dcm",
)
COLOR_JPEG_2000_FILES = ("GDCMJ2K_TextGBR.dcm", "SC_rgb_gdcm_KY.dcm", "examples_jpeg2k.dcm")
"""With the grayscale ones, decoded by fastpacs only (JPEG2000-embedded-sequence-delimiter.dcm, a cut
codestream, by neither)."""
GRAYSCALE_32_BIT_FILES = ("rtdose.dcm", "rtdose_1frame.dcm", "rtdose_expb.dcm", "rtdose_expb_1frame.dcm")
GRAYSCALE_32_BIT_RLE_FILES = ("rtdose_rle.dcm", "rtdose_rle_1frame.dcm")
"""Orthanc renders no 32-bit grayscale (415) and gives the values of these RLE ones only (matlab, numpy)."""
COLOR_16_32_BIT_FILES = (
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_32bit.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
)
_JPEG_2000 = "advantage: JPEG 2000 (pylibjpeg-openjpeg); Orthanc's core has no J2K decoder"
_GRAYSCALE_32_BIT = "advantage: 32-bit grayscale (preview stretched, image-* clamped, matlab/numpy values)"
ALLOWED: dict[tuple[str, str], str] = {
    **{
        (name, operation): _JPEG_2000
        for name in GRAYSCALE_JPEG_2000_FILES
        for operation in _DECODED_OPERATIONS
    },
    **{(name, operation): _JPEG_2000 for name in COLOR_JPEG_2000_FILES for operation in _COLOR_OPERATIONS},
    **{
        (name, operation): _GRAYSCALE_32_BIT
        for name in GRAYSCALE_32_BIT_FILES
        for operation in _DECODED_OPERATIONS
    },
    **{
        (name, operation): _GRAYSCALE_32_BIT
        for name in GRAYSCALE_32_BIT_RLE_FILES
        for operation in _RENDERINGS
    },
    **{
        (name, operation): "advantage: 16- and 32-bit RGB previewed (high bytes), values in matlab/numpy"
        for name in COLOR_16_32_BIT_FILES
        for operation in _COLOR_OPERATIONS
    },
    ("SC_ybr_full_422_uncompressed.dcm", "preview"): "advantage: native YBR_FULL_422 (Orthanc: 415)",
    ("SC_ybr_full_422_uncompressed.dcm", "matlab"): _DECODES_WHAT_ORTHANC_CANNOT,
    ("SC_ybr_full_422_uncompressed.dcm", "numpy"): _DECODES_WHAT_ORTHANC_CANNOT,
    ("SC_ybr_full_422_uncompressed.dcm", "raw"): "advantage: raw frame of native YBR_FULL_422 (Orthanc: 400)",
    ("SC_ybr_full_422_uncompressed.dcm", "raw.gz"): "advantage: as raw",
    **{
        (name, operation): "known gap: libjpeg rejects this stream's scan header (Ss/Se of a "
        "sequential scan out of range), DCMTK's decoder tolerates it"
        for name in KNOWN_GAPS
        for operation in _DECODED_OPERATIONS
    },
}


@dataclass
class Pair:
    orthanc: httpx.Client
    fastpacs: httpx.Client


def _client(server: ServerProcess) -> httpx.Client:
    # Orthanc closes idle connections after a second: no keep-alive, no race.
    return httpx.Client(
        base_url=server.base_url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from running_pair(tmp_path_factory.mktemp("images-differential"))


def running_pair(folder: Path) -> Iterator[Pair]:
    """A reference Orthanc and a fastpacs started in ``folder``, their clients, until the caller is done."""
    orthanc = orthanc_server(folder / "orthanc").start()
    try:
        fastpacs = fastpacs_server(folder / "fastpacs").start()
    except BaseException:
        orthanc.stop()
        raise
    pair = Pair(_client(orthanc), _client(fastpacs))
    yield pair
    pair.orthanc.close()
    pair.fastpacs.close()
    fastpacs.stop()
    orthanc.stop()


@pytest.fixture(scope="module")
def ct(servers: Pair) -> str:
    """CT_small stored on both servers, for the negotiation and error cases."""
    data = pydicom_file("CT_small.dcm").read_bytes()
    ids = {
        client.post("/instances", content=data).json()["ID"] for client in (servers.orthanc, servers.fastpacs)
    }
    assert len(ids) == 1
    return ids.pop()


def _pixels(body: bytes) -> np.ndarray:
    if body.startswith(b"P7\n"):
        header, _, data = body.partition(b"ENDHDR\n")
        fields = dict(line.split(" ", 1) for line in header.decode().splitlines()[1:])
        wide = int(fields["MAXVAL"]) > 255
        shape = (int(fields["HEIGHT"]), int(fields["WIDTH"]), int(fields["DEPTH"]))
        return np.frombuffer(data, ">u2" if wide else np.uint8).reshape(shape).squeeze()
    return np.asarray(Image.open(io.BytesIO(body)))


def _matlab_values(body: bytes) -> np.ndarray:
    text = body.decode().split("[", 1)[1].split("]", 1)[0].replace(";", " ")
    return np.array(text.split(), dtype=np.float64)


def compare(orthanc: httpx.Response, fastpacs: httpx.Response, what: str, tolerance: int = 0) -> None:
    """Same status and type, and the same content as each format allows."""
    assert fastpacs.status_code == orthanc.status_code, what
    if orthanc.status_code != 200:
        if orthanc.content:
            assert fastpacs.json()["OrthancStatus"] == orthanc.json()["OrthancStatus"], what
        else:
            assert fastpacs.content == b"", what
        return
    media = _media(orthanc)
    assert _media(fastpacs) == media, what
    if media == "application/json; charset=utf-8":
        assert fastpacs.json() == orthanc.json(), what
    elif media in ("image/png", "image/x-portable-arbitrarymap"):
        expected, actual = _pixels(orthanc.content), _pixels(fastpacs.content)
        assert expected.shape == actual.shape and expected.dtype == actual.dtype, what
        assert np.abs(expected.astype(np.int64) - actual.astype(np.int64)).max() <= tolerance, what
    elif media == "image/jpeg" and "/raw" not in what:
        expected, actual = _pixels(orthanc.content), _pixels(fastpacs.content)
        assert expected.shape == actual.shape, what
        error = np.abs(expected.astype(np.int64) - actual.astype(np.int64))
        assert error.mean() <= 1.0 and error.max() <= 16, what  # two JPEG encoders at the same quality
    elif tolerance and what.endswith("matlab"):
        assert np.abs(_matlab_values(orthanc.content) - _matlab_values(fastpacs.content)).max() <= tolerance
    elif tolerance and what.endswith("numpy"):
        difference = np.load(io.BytesIO(orthanc.content)) - np.load(io.BytesIO(fastpacs.content))
        assert np.abs(difference).max() <= tolerance, what
    elif what.endswith("raw.gz"):
        assert gzip.decompress(fastpacs.content) == gzip.decompress(orthanc.content), what
    else:
        assert fastpacs.content == orthanc.content, what


def _media(response: httpx.Response) -> str | None:
    return response.headers.get("content-type") if response.content else None


def _frames_to_compare(frames: httpx.Response) -> list[int]:
    """The first and the last frame (Orthanc's count); frame 0 alone when there is no frame list."""
    count = len(frames.json()) if frames.status_code == 200 else 1
    return sorted({0, max(count, 1) - 1})


def _upload(servers: Pair, data: bytes, what: str) -> httpx.Response:
    """Orthanc's answer to the upload, fastpacs's compared with it."""
    uploads = [client.post("/instances", content=data) for client in (servers.orthanc, servers.fastpacs)]
    compare(uploads[0], uploads[1], what)
    return uploads[0]


def _with_identifiers(data: bytes, name: str) -> bytes:
    """The file with the identifiers Orthanc requires to store it added where missing (pixels untouched)."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    for keyword in IDENTIFIERS:
        if keyword not in dataset:
            value = "PIXELS" if keyword == "PatientID" else generate_uid(entropy_srcs=[name, keyword])
            setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def _store(servers: Pair, name: str) -> str | None:
    """Store the file on both servers: its instance ID, or None when both refuse it.

    Files without the identifiers Orthanc requires (the JPEG-LS near-lossless
    ones, for instance) are refused with "Inexistent tag" as Orthanc does,
    then stored with identifiers added, so that their pixels are compared too.
    """
    data = FILES[name].read_bytes()
    answer = _upload(servers, data, f"{name} upload")
    if answer.status_code == 404 and answer.json()["OrthancStatus"] == INEXISTENT_TAG:
        answer = _upload(servers, _with_identifiers(data, name), f"{name} upload with identifiers")
    return answer.json()["ID"] if answer.status_code == 200 else None


@pytest.mark.parametrize("name", FILES)
def test_frames_match_orthanc(servers: Pair, name: str) -> None:
    instance = _store(servers, name)
    if instance is None:
        return  # refused by both (the upload answers are compared): no pixels to compare
    try:
        base = f"/instances/{instance}"
        frames = servers.orthanc.get(f"{base}/frames")
        compare(frames, servers.fastpacs.get(f"{base}/frames"), f"{name} frames")
        tolerance = STORED_VALUE_TOLERANCE if name in LOSSY_JPEG_SOURCES else 0
        differences = []
        for frame in _frames_to_compare(frames):
            for operation in OPERATIONS:
                path = f"{base}/frames/{frame}/{operation}"
                orthanc, fastpacs = servers.orthanc.get(path), servers.fastpacs.get(path)
                if (name, operation) in ALLOWED and orthanc.status_code != fastpacs.status_code:
                    differences.append((operation, fastpacs.status_code))
                    continue
                compare(orthanc, fastpacs, f"{name} {path}", tolerance if operation != "raw" else 0)
        for operation in ("preview", "image-uint16", "matlab", "numpy"):
            path = f"{base}/{operation}"
            if (name, operation) not in ALLOWED:
                compare(servers.orthanc.get(path), servers.fastpacs.get(path), f"{name} {path}", tolerance)
        if name not in KNOWN_GAPS:
            assert all(ours == 200 for _, ours in differences), f"{name}: a difference that is no advantage"
        allowed_here = {operation for allowed, operation in ALLOWED if allowed == name}
        stale = allowed_here - {operation for operation, _ in differences}
        assert not stale, f"{name}: allowed differences that did not occur: {sorted(stale)}"
    finally:
        for client in (servers.orthanc, servers.fastpacs):
            client.delete(f"/instances/{instance}")


ACCEPT_HEADERS = [
    None,
    "*/*",
    "image/*",
    "image/png",
    "image/jpeg",
    "image/x-portable-arbitrarymap",
    "image/jpeg;q=0.9, image/png",
    "image/jpeg;q=0.9, */*",
    "*/*, image/jpeg",
    "image/png;q=0, image/jpeg;q=0",
    "image/jpeg, image/png",
    "text/html",
    "text/html, image/*",
    "IMAGE/JPEG",
    "",
    "image/png;q=abc, image/jpeg",
]


@pytest.mark.parametrize("operation", ["preview", "image-uint8", "image-uint16", "image-int16"])
def test_accept_negotiation_matches_orthanc(servers: Pair, ct: str, operation: str) -> None:
    for accept in ACCEPT_HEADERS:
        headers = {} if accept is None else {"Accept": accept}
        path = f"/instances/{ct}/{operation}"
        compare(
            servers.orthanc.get(path, headers=headers), servers.fastpacs.get(path, headers=headers), accept
        )


ERROR_PATHS = [
    ("frames/1/preview", {}),
    ("frames/99/image-uint8", {}),
    ("frames/abc/preview", {}),
    ("frames/-1/preview", {}),
    ("frames/01/preview", {}),
    ("frames/4294967296/preview", {}),
    ("frames/0/foo", {}),
    ("frames/1/matlab", {}),
    ("frames/1/numpy", {}),
    ("frames/1/raw", {}),
    ("frames/7", {}),
    ("preview", {"quality": "0"}),
    ("preview", {"quality": "101"}),
    ("preview", {"quality": "50.5"}),
    ("numpy", {"rescale": "abc"}),
    ("numpy", {"rescale": "0"}),
    ("numpy", {"rescale": "false"}),
    ("frames/0/numpy", {"rescale": "0"}),
    ("raw", {}),
]


def test_error_cases_match_orthanc(servers: Pair, ct: str) -> None:
    for path, params in ERROR_PATHS:
        url = f"/instances/{ct}/{path}"
        compare(servers.orthanc.get(url, params=params), servers.fastpacs.get(url, params=params), url)
    unknown = "0000000a-00000000-00000000-00000000-00000000"
    for path in ("preview", "image-uint8", "frames", "frames/0/preview", "frames/0/raw", "matlab", "numpy"):
        for instance in (unknown, "not-an-id"):
            url = f"/instances/{instance}/{path}"
            compare(servers.orthanc.get(url), servers.fastpacs.get(url), url)


def test_jpeg_quality_matches_orthanc(servers: Pair, ct: str) -> None:
    headers = {"Accept": "image/jpeg"}
    for quality in ("1", "50", "100"):
        url = f"/instances/{ct}/preview"
        orthanc = servers.orthanc.get(url, params={"quality": quality}, headers=headers)
        fastpacs = servers.fastpacs.get(url, params={"quality": quality}, headers=headers)
        compare(orthanc, fastpacs, f"{url}?quality={quality}")
        assert abs(len(fastpacs.content) - len(orthanc.content)) < len(orthanc.content) // 4
