"""Plain native grayscale files read without pydicom (imaging/native.py) answer as pydicom's path does.

For every file of pydicom's data sets (and files built here to reach the
reader's corners), the reader either declines (``None``: pydicom's path
reads the file) or gives the same description, the same pixels of each
frame and the same encoded renderings, byte for byte.
"""

import errno
import io
import mmap
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from fastpacs.dicom.parse import read_dataset
from fastpacs.errors import OrthancError
from fastpacs.imaging import kernels
from fastpacs.imaging.decode import decode_frame, describe
from fastpacs.imaging.encode import encode_image
from fastpacs.imaging.formats import ImageFormat, ImagingError, Operation
from fastpacs.imaging.native import read_native
from fastpacs.imaging.render import render
from fastpacs.pool import images, tasks
from fastpacs.storage.blobs import BlobStore
from tests.differential.data import ALL_FILES

GRAYSCALE_OPERATIONS = (Operation.PREVIEW, Operation.UINT8, Operation.UINT16, Operation.INT16)


def _pydicom_view(data: bytes):
    """What pydicom's path makes of a file: its dataset and description, or ``None`` if no image."""
    try:
        dataset = read_dataset(data)
        return dataset, describe(dataset)
    except (OrthancError, ImagingError):
        return None


def _assert_alike(data: bytes) -> bool:
    """Whether the reader took the file; when it did, it answers as pydicom's path."""
    image = read_native(bytearray(data))
    if image is None:
        return False
    parsed = _pydicom_view(data)
    assert parsed is not None, "read natively, but no image for pydicom's path"
    dataset, description = parsed
    assert image.description == description
    for index in sorted({0, description.number_of_frames - 1}):
        expected = decode_frame(dataset, description, index)
        actual = image.frame(index)
        assert actual.pixels.dtype == expected.pixels.dtype
        assert actual.monochrome1 == expected.monochrome1
        np.testing.assert_array_equal(actual.pixels, expected.pixels)
        for operation in GRAYSCALE_OPERATIONS:
            for image_format in (ImageFormat.PNG, ImageFormat.PAM):
                assert encode_image(render(actual, operation), image_format) == encode_image(
                    render(expected, operation), image_format
                )
    return True


def test_every_data_set_file_is_read_as_pydicom_reads_it() -> None:
    taken = [path for path in ALL_FILES if _assert_alike(Path(path).read_bytes())]
    # Most of pydicom's grayscale files are native little-endian: the reader must take them.
    assert len(taken) >= 20, [path.name for path in taken]


def _image(syntax: str = ExplicitVRLittleEndian, **attributes: object) -> Dataset:
    """A 3-frame 6×4 signed 16-bit MONOCHROME2 image, attributes changed as asked."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.PatientID = "native"
    dataset.Rows, dataset.Columns = 6, 4
    dataset.SamplesPerPixel = 1
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.NumberOfFrames = 3
    dataset.RescaleSlope, dataset.RescaleIntercept = "2.5", "-1024"
    dataset.PixelData = np.arange(-36, 36, dtype="<i2").tobytes()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


def _file(dataset: Dataset, *, undefined_lengths: bool = False) -> bytes:
    buffer = io.BytesIO()
    syntax = dataset.file_meta.TransferSyntaxUID
    if undefined_lengths:
        for element in dataset.iterall():
            if element.VR == "SQ":
                element.is_undefined_length = True
                for item in element.value:
                    item.is_undefined_length_sequence_item = True
    dataset.save_as(
        buffer,
        implicit_vr=syntax == ImplicitVRLittleEndian,
        little_endian=syntax != ExplicitVRBigEndian,
        enforce_file_format=True,
    )
    return buffer.getvalue()


def _with_sequences(dataset: Dataset) -> Dataset:
    inner = Dataset()
    inner.CodeValue = "X"
    item = Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    item.ConceptNameCodeSequence = Sequence([inner])
    dataset.ReferencedImageSequence = Sequence([item, Dataset()])
    return dataset


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined_lengths", [False, True])
def test_built_files_with_sequences_are_read_natively(syntax: str, undefined_lengths: bool) -> None:
    data = _file(_with_sequences(_image(syntax)), undefined_lengths=undefined_lengths)
    assert _assert_alike(data)
    image = read_native(bytearray(data))
    assert image is not None and image.description.rescale_slope == 2.5
    assert image.description.rescale_intercept == -1024 and image.description.number_of_frames == 3


@pytest.mark.parametrize(
    "attributes",
    [
        {"PixelRepresentation": 0, "PhotometricInterpretation": "MONOCHROME1"},
        {"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7, "PixelData": bytes(range(72))},
        {"NumberOfFrames": None, "RescaleSlope": None, "RescaleIntercept": ""},
    ],
)
def test_variants_the_reader_takes(attributes: dict[str, object]) -> None:
    dataset = _image(**{key: value for key, value in attributes.items() if value is not None})
    for key, value in attributes.items():
        if value is None:
            delattr(dataset, key)
    if "NumberOfFrames" not in dataset:
        dataset.PixelData = dataset.PixelData[:48]
    assert _assert_alike(_file(dataset))


@pytest.mark.parametrize(
    "change",
    [
        {"BitsStored": 12},
        {"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB"},
        {"PhotometricInterpretation": "PALETTE COLOR"},
        {"NumberOfFrames": 4},  # the pixel data holds 3 frames
        {"RescaleSlope": "1\\2"},
        {"syntax": ExplicitVRBigEndian},
    ],
    ids=str,
)
def test_files_left_to_pydicom(change: dict[str, object]) -> None:
    """Anything but plain native grayscale (and odd attributes) goes pydicom's way, whatever it says."""
    attributes = dict(change)
    syntax = str(attributes.pop("syntax", ExplicitVRLittleEndian))
    data = _file(_image(syntax, **attributes))
    assert read_native(bytearray(data)) is None


def test_damaged_files_are_left_to_pydicom() -> None:
    data = _file(_with_sequences(_image()), undefined_lengths=True)
    for cut in (100, 200, 300, len(data) - 10):
        assert read_native(bytearray(data[:cut])) is None
    assert read_native(bytearray(data[128:])) is None  # no preamble: a bare dataset
    without_pixels = _image()
    del without_pixels.PixelData
    assert read_native(bytearray(_file(without_pixels))) is None


def test_a_native_frame_is_a_view_of_the_file() -> None:
    data = bytearray(_file(_image()))
    image = read_native(data)
    assert image is not None
    pixels = image.frame(1).pixels
    assert pixels.base is not None and pixels.flags.writeable and pixels.flags.aligned
    assert pixels[0, 0] == -36 + 24


def test_the_worker_keeps_native_files_as_bytes_and_parses_them_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = BlobStore(tmp_path / "storage")
    monkeypatch.setattr(tasks, "_storage", storage)
    data = _file(_image())
    blob = storage.put(data)
    parsed = images._ParsedFiles(maximum_bytes=10 * len(data))
    native, description = parsed.get(blob)
    assert not isinstance(native, Dataset) and description is not None
    dataset, again = parsed.get(blob, native=False)  # raw frames need pydicom's dataset
    assert isinstance(dataset, Dataset) and again == description
    assert len(parsed._entries) == 1 and parsed.size == len(data)
    png = images.render_frame(blob, 2, Operation.UINT8.value, ImageFormat.PNG.value, 90)
    expected = encode_image(render(decode_frame(dataset, description, 2), Operation.UINT8), ImageFormat.PNG)
    assert png == expected
    pydicom.dcmread(io.BytesIO(data))  # the built file is valid DICOM


def test_a_large_stored_file_is_mapped_copy_on_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker maps a large blob instead of copying it; writing into a frame never reaches the file."""
    storage = BlobStore(tmp_path / "storage")
    monkeypatch.setattr(tasks, "_storage", storage)
    pixels = np.tile(np.arange(-128, 128, dtype="<i2"), 512)
    data = _file(_image(Rows=512, Columns=256, NumberOfFrames=1, PixelData=pixels.tobytes()))
    assert len(data) >= tasks.MAPPED_MIN_SIZE
    large, small = storage.put(data), storage.put(_file(_image()))
    assert isinstance(tasks.read_blob_writeable(small), bytearray)
    mapped = tasks.read_blob_writeable(large)
    assert isinstance(mapped, mmap.mmap) and mapped[:] == data
    image = read_native(mapped)
    assert image is not None
    frame = image.frame(0).pixels
    assert frame.flags.writeable and frame[0, 1] == -127
    frame[:] = 0
    assert storage.read(large) == data
    png = images.render_frame(large, 0, Operation.UINT8.value, ImageFormat.PNG.value, 90)
    expected = render(decode_frame(*_pydicom_view(data), 0), Operation.UINT8)
    assert png == encode_image(expected, ImageFormat.PNG)

    def unmappable(*_: object, **__: object) -> mmap.mmap:
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(mmap, "mmap", unmappable)  # a file system that cannot map files: read instead
    read = tasks.read_blob_writeable(large)
    assert isinstance(read, bytearray) and read == data


def _nested_sequences(levels: int) -> Dataset:
    """The image with a chain of ``levels`` sequences, each in the only item of the one before."""
    dataset = _image()
    inner = Dataset()
    inner.CodeValue = "deepest"
    for _ in range(levels):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    dataset.ContentSequence = inner.ContentSequence
    return dataset


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_nested_sequences_are_skipped_down_to_a_limit(syntax: str) -> None:
    deepest = kernels.MAX_SEQUENCE_DEPTH + 1  # the top-level sequence is at depth 0
    assert _assert_alike(_file(_nested_sequences(deepest), undefined_lengths=True))
    assert read_native(bytearray(_file(_nested_sequences(deepest + 1), undefined_lengths=True))) is None


def _after_delimiters(data: bytes, start: int, count: int) -> int:
    """Where the ``count``-th sequence delimiter after ``start`` ends."""
    for _ in range(count):
        start = data.index(b"\xfe\xff\xdd\xe0", start) + 8
    return start


def _as_unknown(explicit: bytes, implicit: bytes, tag: bytes, delimiters: int) -> bytes:
    """``explicit`` with its sequence ``tag`` (of undefined length, ending at its ``delimiters``-th
    sequence delimiter) written as UN, its items taken from ``implicit`` (the same structure in
    implicit VR), as a file may carry a sequence it cannot name."""
    start = explicit.index(tag + b"SQ")
    end = _after_delimiters(explicit, start, delimiters)
    items_start = implicit.index(tag + b"\xff\xff\xff\xff") + 8
    items_end = _after_delimiters(implicit, items_start, delimiters)
    unknown = tag + b"UN\x00\x00\xff\xff\xff\xff" + implicit[items_start:items_end]
    return explicit[:start] + unknown + explicit[end:]


REFERENCED_IMAGE_SEQUENCE = b"\x08\x00\x40\x11"
CONCEPT_NAME_CODE_SEQUENCE = b"\x40\x00\x43\xa0"


@pytest.mark.parametrize(
    ("tag", "delimiters"),
    [(REFERENCED_IMAGE_SEQUENCE, 2), (CONCEPT_NAME_CODE_SEQUENCE, 1)],
    ids=["top", "nested"],
)
def test_a_sequence_of_unknown_vr_is_skipped_as_implicit_vr(tag: bytes, delimiters: int) -> None:
    """An explicit VR file may carry a sequence as UN of undefined length, its items in implicit VR."""
    explicit = _file(_with_sequences(_image()), undefined_lengths=True)
    implicit = _file(_with_sequences(_image(ImplicitVRLittleEndian)), undefined_lengths=True)
    assert _assert_alike(_as_unknown(explicit, implicit, tag, delimiters))


def test_a_wanted_attribute_of_undefined_length_is_left_to_pydicom() -> None:
    data = _file(_image(ImplicitVRLittleEndian))
    start = data.index(b"\x28\x00\x53\x10")  # RescaleSlope, implicit VR: tag, 4-byte length, value
    end = start + 8 + int.from_bytes(data[start + 4 : start + 8], "little")
    empty_sequence = b"\x28\x00\x53\x10\xff\xff\xff\xff\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    assert read_native(bytearray(data)) is not None
    assert read_native(bytearray(data[:start] + empty_sequence + data[end:])) is None


def test_damaged_headers_never_fail_the_reader() -> None:
    """Random truncations and changed bytes in the header: declined or read, never an error."""
    data = _file(_with_sequences(_image()), undefined_lengths=True)
    header_end = data.index(b"\xe0\x7f\x10\x00")
    random = np.random.default_rng(20261129)
    taken = 0
    for attempt in range(2000):
        damaged = bytearray(data)
        if attempt % 2:
            del damaged[random.integers(140, len(data)) :]
        else:
            for position in random.integers(132, header_end, size=random.integers(1, 4)):
                damaged[position] = random.integers(0, 256)
        image = read_native(damaged)
        if image is not None:
            image.frame(0)
            taken += 1
    assert 0 < taken < 1000  # some changed bytes are in values, and leave a readable file


def test_elements_out_of_order_or_in_an_unusual_vr_are_left_to_pydicom() -> None:
    data = _file(_image())
    start = data.index(b"\x10\x00\x20\x00LO")  # PatientID: tag, VR, 2-byte length, value
    end = start + 8 + int.from_bytes(data[start + 6 : start + 8], "little")
    assert read_native(bytearray(data)) is not None
    assert read_native(bytearray(data[:end] + data[start:end] + data[end:])) is None  # twice
    rows = data.index(b"\x28\x00\x10\x00US")
    assert read_native(bytearray(data[: rows + 4] + b"SS" + data[rows + 6 :])) is None
