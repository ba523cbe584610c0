"""The pixel pipeline: kernels and encoders on their own, then the endpoints of a running server.

The expected images are computed here from pydicom's own decoding, with
the rules of ORTHANC-BEHAVIOUR.md §7 written out in NumPy; the comparison
with the real Orthanc is in tests/differential/test_images_vs_orthanc.py.
"""

import asyncio
import gzip
import io
import json
import os
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import convert_color_space, get_decoder, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from fastpacs.api.images import negotiate
from fastpacs.errors import BareHttpError
from fastpacs.imaging import kernels, warmup
from fastpacs.imaging.cache import RenderedCache
from fastpacs.imaging.decode import decode_frame, describe
from fastpacs.imaging.encode import encode_pam
from fastpacs.imaging.formats import ImageFormat, UndecodableImageError
from fastpacs.imaging.npy import npy_file
from fastpacs.imaging.png import encode_png
from fastpacs.imaging.warmup import (
    CACHE_ENVIRONMENT_VARIABLE,
    GRAY_TYPES,
    compiled_signatures,
    prepare_kernel_cache,
)
from fastpacs.pool.pool import WorkerPool
from fastpacs.storage.blobs import BlobStore
from fastpacs.testing import fastpacs_server
from tests.conftest import pydicom_file
from tests.differential.data import TEST_FILES

# ---------------------------------------------------------------- the rules, in NumPy


def stretched(values: np.ndarray, invert: bool = False) -> np.ndarray:
    """Orthanc's preview of grayscale: ``a * v + b`` in float32 (a = 255 / (max - min), b = -min * a),
    rounded half up and clamped to 0..255."""
    values = values.astype(np.int64)
    low, high = values.min(), values.max()
    if low == high:
        return np.full(values.shape, 255 if invert else 0, np.uint8)
    scale = np.float32(255.0) / np.float32(high - low)
    scaled = scale * values.astype(np.float32) + np.float32(-low) * scale
    whole = np.floor(scaled)
    levels = np.clip(whole + (scaled - whole >= 0.5), 0, 255).astype(np.uint8)
    return 255 - levels if invert else levels


def decoded(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


# ---------------------------------------------------------------- kernels and encoders


@pytest.mark.parametrize("gray", GRAY_TYPES, ids=lambda gray: gray.__name__)
def test_min_max_kernel_over_the_whole_range_of_each_pixel_type(gray: type) -> None:
    info = np.iinfo(gray)
    values = np.random.default_rng(2).integers(info.min, info.max, 4099, endpoint=True).astype(gray)
    for sample in (
        values,
        values[:1],
        np.array([info.max, info.min], gray),
        np.array([info.min, info.max], gray),
    ):
        low, high = kernels.min_max(sample)
        assert (low, high) == (sample.min(), sample.max()) and type(low) is type(high) is int


def test_stretch_kernel_follows_orthanc_rounding() -> None:
    values = np.random.default_rng(1).integers(-2000, 3000, 5000).astype(np.int16)
    low, high = kernels.min_max(values)
    assert (low, high) == (values.min(), values.max())
    assert np.array_equal(kernels.stretch_to_uint8(values, low, high, False), stretched(values))
    assert np.array_equal(kernels.stretch_to_uint8(values, low, high, True), stretched(values, invert=True))
    constant = np.full(10, 7, np.uint16)
    assert set(kernels.stretch_to_uint8(constant, 7, 7, False)) == {0}
    # (644 - 280) * 255 / 520 is 178.5 exactly, but Orthanc's a * v + b gives 178.49998 (MR1/5641)
    levels = kernels.stretch_to_uint8(np.array([280, 644, 800], np.int16), 280, 800, False)
    assert levels.tolist() == [0, 178, 255]


def test_clip_kernel_clamps_to_the_target_type() -> None:
    values = np.array([-40000, -5, 0, 200, 300, 70000], np.int32)
    assert kernels.clip_into(values, np.empty(6, np.uint8), 0, 255).tolist() == [0, 0, 0, 200, 255, 255]
    assert kernels.clip_into(values, np.empty(6, np.int16), -32768, 32767).tolist() == [
        -32768, -5, 0, 200, 300, 32767,
    ]  # fmt: skip


def test_ybr_kernel_matches_pydicom() -> None:
    ybr = np.random.default_rng(2).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    expected = convert_color_space(ybr.copy(), "YBR_FULL", "RGB")
    actual = kernels.ybr_full_to_rgb(ybr.copy().reshape(-1)).reshape(ybr.shape)
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1


def _native_grayscale_files() -> list[Path]:
    """pydicom's test files of native little-endian grayscale data whose samples fill 8 or 16 bits."""
    found = []
    for path in TEST_FILES:
        dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        if (
            syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
            and dataset.get("PhotometricInterpretation") in ("MONOCHROME1", "MONOCHROME2")
            and dataset.get("BitsAllocated") in (8, 16)
            and dataset.get("BitsStored") == dataset.get("BitsAllocated")
        ):
            found.append(path)
    return found


@pytest.mark.parametrize("path", _native_grayscale_files(), ids=lambda path: path.name)
def test_native_grayscale_is_read_as_pydicom_decodes_it(path: Path) -> None:
    """decode_frame reads such frames straight from the file: the same pixels as pydicom's decoder."""
    dataset = pydicom.dcmread(path, force=True)
    description = describe(dataset)
    for index in {0, description.number_of_frames - 1}:
        try:
            expected, _ = get_decoder(description.transfer_syntax).as_array(dataset, index=index, raw=True)
        except (ValueError, AttributeError):  # pixel data the decoder refuses: so does decode_frame
            with pytest.raises(UndecodableImageError):
                decode_frame(dataset, description, index)
            continue
        actual = decode_frame(dataset, description, index).pixels
        assert actual.dtype == expected.dtype.newbyteorder("=")
        assert actual.flags.writeable
        np.testing.assert_array_equal(actual, expected)


def test_rescale_kernel_floors_in_single_precision() -> None:
    values = np.array([-210, 90, 1994], np.int16)
    expected = np.floor(values.astype(np.float32) * np.float32(0.37) + np.float32(-3.3))
    assert np.array_equal(kernels.rescale_to_float32(values, 0.37, -3.3), expected)


@pytest.mark.parametrize(
    "pixels",
    [
        np.random.default_rng(3).integers(0, 256, (37, 53)).astype(np.uint8),
        np.random.default_rng(4).integers(0, 65536, (20, 30)).astype(np.uint16),
        np.random.default_rng(5).integers(0, 256, (9, 7, 3)).astype(np.uint8),
    ],
    ids=["gray8", "gray16", "rgb"],
)
def test_png_round_trip(pixels: np.ndarray) -> None:
    assert np.array_equal(decoded(encode_png(pixels)), pixels)


def test_png_of_int16_carries_the_twos_complement_bits() -> None:
    pixels = np.array([[-1, 0, 1, -32768]], np.int16)
    assert decoded(encode_png(pixels)).tolist() == [[65535, 0, 1, 32768]]


def test_pam_header_and_big_endian_samples() -> None:
    body = encode_pam(np.array([[1, 256]], np.uint16))
    assert (
        body == b"P7\nWIDTH 2\nHEIGHT 1\nDEPTH 1\nMAXVAL 65535\nTUPLTYPE GRAYSCALE\nENDHDR\n\x00\x01\x01\x00"
    )


def test_npy_has_orthancs_header_and_loads() -> None:
    array = np.arange(128 * 128, dtype=np.float32).reshape(1, 128, 128, 1)
    body = npy_file(array)
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 128,128,1), }"
    assert body[10 : 10 + len(header)] == header and len(body) == 128 + array.nbytes
    assert np.array_equal(np.load(io.BytesIO(body)), array)


def test_rendered_cache_stays_within_its_budget() -> None:
    cache = RenderedCache(maximum_bytes=10)
    cache.put("a", b"12345", "image/png")
    cache.put("b", b"12345", "image/png")
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("c", b"123", "image/png")
    assert cache.get("b") is None and cache.get("a") is not None and cache.size == 8
    cache.put("huge", b"x" * 11, "image/png")
    assert cache.get("huge") is None and len(cache) == 2


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ImageFormat.PNG),
        ("*/*", ImageFormat.PNG),
        ("image/*", ImageFormat.PNG),
        ("image/jpeg", ImageFormat.JPEG),
        ("image/x-portable-arbitrarymap, image/png", ImageFormat.PAM),
        ("image/jpeg;q=0.9, image/png", ImageFormat.PNG),
        ("image/jpeg;q=0.9, */*", ImageFormat.JPEG),  # an exact type beats a wildcard whatever q says
        ("image/png;q=0, image/jpeg;q=0", ImageFormat.PNG),
        ("text/html, image/*", ImageFormat.PNG),
    ],
)
def test_accept_negotiation(accept: str | None, expected: ImageFormat) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(("accept", "status"), [("text/html", 404), ("", 404), ("image/png;q=x", 415)])
def test_unacceptable_accept(accept: str, status: int) -> None:
    with pytest.raises(BareHttpError) as raised:
        negotiate(accept)
    assert raised.value.http_status == status


def test_kernels_are_compiled_when_the_pool_starts(tmp_path: Path) -> None:
    """Every kernel signature is in each worker right after start-up: no request compiles."""
    folder = prepare_kernel_cache()
    assert any(folder.rglob("*.nbi")), f"no Numba index files in {folder}"
    assert str(folder) == os.environ[CACHE_ENVIRONMENT_VARIABLE]
    pool = WorkerPool(1, BlobStore(tmp_path))
    try:
        pool.warm_up()
        signatures = asyncio.run(pool.run(compiled_signatures))
    finally:
        pool.close()
    assert signatures == {
        "min_max": 6,
        "stretch_to_uint8": 6,
        "clip_into": 18,
        "rescale_to_float32": 6,
        "ybr_full_to_rgb": 1,
        "palette_to_rgb": 6,
        "png_up_filter": 1,
        "walk_file_meta": 1,
        "walk_elements": 1,
    }


def test_an_up_to_date_kernel_cache_starts_no_compiling_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stamp beside the cache skips the throw-away process until what the kernels depend on changes."""
    monkeypatch.setenv(CACHE_ENVIRONMENT_VARIABLE, str(tmp_path))
    compiles: list[bool] = []
    monkeypatch.setattr(warmup, "compile_in_child", lambda: compiles.append(True))
    prepare_kernel_cache()
    assert compiles == [True], "an empty cache is filled"
    (tmp_path / "kernels.min_max-15.py311.nbi").touch()  # what the compiling process leaves
    stamp = tmp_path / warmup.STAMP_NAME
    assert stamp.read_text() == warmup.cache_key()
    prepare_kernel_cache()
    assert compiles == [True]
    stamp.write_text(warmup.cache_key().replace(version("numba"), "0.0.0"))
    prepare_kernel_cache()
    assert compiles == [True, True]
    assert stamp.read_text() == warmup.cache_key()


# ---------------------------------------------------------------- the endpoints


def _signed_ct() -> bytes:
    """CT_small with signed stored values -1072..991 (as the capture's derived file)."""
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.PixelData = (dataset.pixel_array.astype(np.int16) - 1200).tobytes()
    dataset.RescaleIntercept = 0
    dataset.SOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


ACCEPTS = ("image/png", "image/jpeg", "image/x-portable-arbitrarymap")
ACCEPTS_16_BIT = ("image/png", "image/x-portable-arbitrarymap")
"""Formats of 16-bit renderings (no 16-bit JPEG)."""
FIRST_REQUEST_FILES = (
    "CT_small.dcm",  # signed 16-bit
    "dicomdirtests/77654033/CR1/6154",  # MONOCHROME1, unsigned 16-bit, rescaled
    "liver_1frame.dcm",  # 1-bit, unpacked to 8-bit
    "rtdose.dcm",  # unsigned 32-bit, multi-frame
    "examples_palette.dcm",  # palette color
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # YBR_FULL_422 JPEG
    "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422
    "SC_rgb_rle_32bit.dcm",  # 32-bit colour
)
"""A file of every pixel type and colour model the kernels see."""
FIRST_REQUESTS = [
    *((f"frames/0/{operation}", accept) for operation in ("preview", "image-uint8") for accept in ACCEPTS),
    *((operation, accept) for operation in ("image-uint16", "image-int16") for accept in ACCEPTS_16_BIT),
    *(("matlab", None), ("numpy", None), ("frames/0/numpy?rescale=0", None), ("frames/0/raw", None)),
]
"""Each rendering, in each format it has."""


COMPILING_START_TIMEOUT = 300.0
"""Seconds for a start-up that compiles every kernel (about 10 s of CPU, much longer on a busy machine)."""


def _cache_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Numba's cache folder: file -> (size, modification time)."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.mark.slow
def test_first_requests_after_start_compile_no_kernel(tmp_path: Path) -> None:
    """The first request of every rendering after start-up finds its kernels compiled.

    Structural rather than timed (a request on a loaded machine can take as
    long as a compile): the server gets a Numba cache folder of its own, and
    a kernel compiled on a request would be saved there (``cache=True``), so
    the folder must not change from the end of start-up to the last answer.
    The folder starts empty, so that its filling proves the server uses it.
    """
    cache = tmp_path / "numba"
    process = fastpacs_server(tmp_path / "server")
    process.environment[CACHE_ENVIRONMENT_VARIABLE] = str(cache)
    process.start(timeout=COMPILING_START_TIMEOUT)
    try:
        after_start = _cache_files(cache)
        assert any(name.endswith(".nbi") for name in after_start), "the server did not fill its cache folder"
        with httpx.Client(base_url=process.base_url, timeout=60) as http:
            for name in FIRST_REQUEST_FILES:
                instance = http.post("/instances", content=pydicom_file(name).read_bytes()).json()["ID"]
                for path, accept in FIRST_REQUESTS:
                    headers = {} if accept is None else {"Accept": accept}
                    answer = http.get(f"/instances/{instance}/{path}", headers=headers)
                    assert answer.status_code in (200, 415), f"{name} {path}"  # 415: colour as grayscale
                assert http.get(f"/instances/{instance}/preview").status_code == 200, name
    finally:
        process.stop()
    assert _cache_files(cache) == after_start, "a request compiled a kernel"


@pytest.fixture(scope="module")
def stored(server) -> dict[str, str]:
    names = [
        "CT_small.dcm",
        "rtdose.dcm",
        "SC_rgb_rle_2frame.dcm",
        "dicomdirtests/77654033/CR1/6154",
        "JPEG2000.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "examples_palette.dcm",
        "SC_rgb_rle_16bit.dcm",
        "SC_rgb_rle_32bit.dcm",
        "rtplan.dcm",
    ]
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        ids = {
            name: http.post("/instances", content=pydicom_file(name).read_bytes()).json()["ID"]
            for name in names
        }
        ids["signed"] = http.post("/instances", content=_signed_ct()).json()["ID"]
    return ids


def test_frame_listings(client: httpx.Client, stored: dict[str, str]) -> None:
    assert client.get(f"/instances/{stored['CT_small.dcm']}/frames").json() == [0]
    assert client.get(f"/instances/{stored['rtdose.dcm']}/frames").json() == list(range(15))
    assert client.get(f"/instances/{stored['rtplan.dcm']}/frames").json() == [0]
    operations = client.get(f"/instances/{stored['CT_small.dcm']}/frames/0").json()
    assert operations == sorted(operations) and "preview" in operations and "raw.gz" in operations
    unknown = client.get("/instances/0000000a-00000000-00000000-00000000-00000000/frames")
    assert unknown.status_code == 404 and unknown.json()["OrthancStatus"] == 17


def test_grayscale_renderings(client: httpx.Client, stored: dict[str, str]) -> None:
    stored_values = pixel_array(pydicom_file("CT_small.dcm"))
    base = f"/instances/{stored['CT_small.dcm']}"
    preview = client.get(f"{base}/preview")
    assert preview.headers["content-type"] == "image/png"
    assert np.array_equal(decoded(preview.content), stretched(stored_values))
    assert np.array_equal(
        decoded(client.get(f"{base}/frames/0/image-uint8").content), np.clip(stored_values, 0, 255)
    )
    assert np.array_equal(decoded(client.get(f"{base}/image-uint16").content), stored_values)
    jpeg = client.get(f"{base}/preview", headers={"Accept": "image/jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert np.abs(decoded(jpeg.content).astype(int) - stretched(stored_values)).mean() < 2


def test_signed_values(client: httpx.Client, stored: dict[str, str]) -> None:
    values = pixel_array(pydicom_file("CT_small.dcm")).astype(np.int16) - 1200
    base = f"/instances/{stored['signed']}"
    assert np.array_equal(decoded(client.get(f"{base}/image-uint16").content), np.clip(values, 0, None))
    assert np.array_equal(decoded(client.get(f"{base}/image-int16").content), values.view(np.uint16))
    assert np.array_equal(decoded(client.get(f"{base}/preview").content), stretched(values))
    matlab = client.get(f"{base}/matlab")
    assert matlab.headers["content-type"] == "text/plain"
    assert matlab.text.startswith(f"double([ {values[0, 0]} {values[0, 1]} ") and " ; " in matlab.text
    rescaled = np.load(io.BytesIO(client.get(f"{base}/numpy").content))
    assert rescaled.shape == (1, 128, 128, 1) and rescaled.dtype == np.float32
    raw = np.load(io.BytesIO(client.get(f"{base}/frames/0/numpy", params={"rescale": "0"}).content))
    assert raw.shape == (128, 128, 1) and np.array_equal(raw[:, :, 0], values)


def test_monochrome1_preview_is_inverted(client: httpx.Client, stored: dict[str, str]) -> None:
    values = pixel_array(pydicom_file("dicomdirtests/77654033/CR1/6154"))
    preview = decoded(client.get(f"/instances/{stored['dicomdirtests/77654033/CR1/6154']}/preview").content)
    assert np.array_equal(preview, stretched(values, invert=True))


def test_color_renderings(client: httpx.Client, stored: dict[str, str]) -> None:
    for name in ("SC_rgb_dcmtk_+eb+cy+np.dcm", "examples_palette.dcm"):
        expected = pixel_array(pydicom_file(name))  # YBR_FULL_422 JPEG converted, palette applied
        if name == "examples_palette.dcm":
            dataset = pydicom.dcmread(pydicom_file(name))
            expected = (pydicom.pixels.apply_color_lut(expected, dataset) >> 8).astype(np.uint8)
        preview = decoded(client.get(f"/instances/{stored[name]}/preview").content)
        assert preview.shape == expected.shape
        assert np.abs(preview.astype(int) - expected.astype(int)).max() <= 3, name
        assert client.get(f"/instances/{stored[name]}/image-uint8").status_code == 415
    second = decoded(client.get(f"/instances/{stored['SC_rgb_rle_2frame.dcm']}/frames/1/preview").content)
    assert np.array_equal(second, pixel_array(pydicom_file("SC_rgb_rle_2frame.dcm"), index=1))


def test_wide_color_previews_keep_the_high_byte(client: httpx.Client, stored: dict[str, str]) -> None:
    """16- and 32-bit RGB previewed by the high byte of each sample (Orthanc 1.10.1 answers 415)."""
    for name, shift in (("SC_rgb_rle_16bit.dcm", 8), ("SC_rgb_rle_32bit.dcm", 24)):
        expected = (pixel_array(pydicom_file(name)) >> shift).astype(np.uint8)
        preview = decoded(client.get(f"/instances/{stored[name]}/preview").content)
        assert np.array_equal(preview, expected), name


def test_jpeg2000_is_decoded(client: httpx.Client, stored: dict[str, str]) -> None:
    """An advantage over Orthanc 1.10.1, which answers 415."""
    values = pixel_array(pydicom_file("JPEG2000.dcm"))
    base = f"/instances/{stored['JPEG2000.dcm']}"
    assert np.array_equal(decoded(client.get(f"{base}/preview").content), stretched(values))
    raw = client.get(f"{base}/frames/0/raw")
    assert raw.headers["content-type"] == "image/jp2"
    assert gzip.decompress(client.get(f"{base}/frames/0/raw.gz").content) == raw.content


def test_multi_frame_32_bit(client: httpx.Client, stored: dict[str, str]) -> None:
    values = pixel_array(pydicom_file("rtdose.dcm"), index=7)
    base = f"/instances/{stored['rtdose.dcm']}"
    assert np.array_equal(decoded(client.get(f"{base}/frames/7/preview").content), stretched(values))
    assert client.get(f"{base}/frames/7/raw").content == values.astype("<u4").tobytes()
    every = np.load(io.BytesIO(client.get(f"{base}/numpy", params={"compress": "1"}).content))["arr_0"]
    assert every.shape == (15, 10, 10, 1)


def test_error_answers(client: httpx.Client, stored: dict[str, str]) -> None:
    ct, dose, rgb = stored["CT_small.dcm"], stored["rtdose.dcm"], stored["SC_rgb_rle_2frame.dcm"]
    expectations = [
        (f"/instances/{ct}/frames/abc/preview", {}, 404),
        (f"/instances/{ct}/frames/1/preview", {}, 404),  # native pixel data: 404
        (f"/instances/{rgb}/frames/2/preview", {}, 415),  # encapsulated (RLE): 415
        (f"/instances/{dose}/frames/15/image-uint8", {}, 415),
        (f"/instances/{ct}/frames/1/raw", {}, 400),
        (f"/instances/{ct}/preview?quality=0", {}, 415),
        (f"/instances/{ct}/preview", {"Accept": "text/html"}, 404),
        (f"/instances/{ct}/image-int16", {"Accept": "image/jpeg"}, 404),
        (f"/instances/{ct}/numpy?rescale=abc", {}, 400),
        (f"/instances/{stored['rtplan.dcm']}/preview", {}, 415),
        (f"/instances/{stored['rtplan.dcm']}/matlab", {}, 500),
        (f"/instances/{stored['rtplan.dcm']}/frames/0/raw", {}, 500),
        ("/instances/0000000a-00000000-00000000-00000000-00000000/preview", {}, 404),
    ]
    for path, headers, status in expectations:
        answer = client.get(path, headers=headers)
        assert answer.status_code == status, path
        if status == 500:
            assert json.loads(answer.content)["OrthancStatus"] == 2
