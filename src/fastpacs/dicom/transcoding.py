"""Changing the transfer syntax of a file (the ``Transcode`` option of /modify).

pydicom does the work: compressed pixel data is decoded with the installed
decoders, and encoded again when the target is a compressed syntax pydicom
can write (RLE Lossless, JPEG 2000, JPEG-LS with pyjpegls). JPEG Lossless
(process 14) is written by :mod:`fastpacs.dicom.jpeg_lossless`. JPEG baseline,
which makes a new lossy image, is written by :mod:`fastpacs.dicom.jpeg_baseline`
where the caller allows it (/modify does, C-STORE does not, as in Orthanc).
Pixels a target cannot hold (floating point pixel data in any compressed
syntax, 32-bit cells in JPEG Lossless...) get a 500 "Cannot transcode to
transfer syntax", as in Orthanc.
Runs in the worker pool.
"""

import io

import numpy
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import dcmread
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, AllTransferSyntaxes

from fastpacs.dicom import jpeg_baseline, jpeg_lossless
from fastpacs.dicom.parse import EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, transfer_syntax_of
from fastpacs.dicom.writer import file_meta, part10_file, sop_uids
from fastpacs.errors import ErrorCode, OrthancError

PIXEL_DATA = 0x7FE00010
_FLOAT_PIXEL_DATA = ("FloatPixelData", "DoubleFloatPixelData")
"""Pixel data no compressed transfer syntax can hold."""
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
"""Binary VRs made of words, whose bytes are swapped when the byte order changes."""
_FAILURES = (
    InvalidDicomError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    NotImplementedError,
    RuntimeError,
)
"""What pydicom's decoders and encoders raise on a conversion they cannot do."""


def is_transfer_syntax(uid: str) -> bool:
    """Whether the text is a transfer syntax UID fastpacs knows."""
    return uid in AllTransferSyntaxes


def transcode(
    data: bytes,
    transfer_syntax: str,
    *,
    lossy: bool = False,
    new_instance_uid: bool = False,
    quality: int = jpeg_baseline.QUALITY,
) -> bytes:
    """``data`` in ``transfer_syntax`` (unchanged when already there). ``lossy``: JPEG baseline may be
    written, of the IJG ``quality``, a derived image, given a new SOP Instance UID when
    ``new_instance_uid``."""
    target = UID(transfer_syntax)
    dataset = dcmread(io.BytesIO(data), force=True)
    current = UID(transfer_syntax_of(dataset))
    if current == target:
        return data
    try:
        if current.is_compressed:
            dataset.decompress(generate_instance_uid=False)
        if current.is_little_endian != target.is_little_endian:
            _swap_words(dataset)
            # The values are now in the target's byte order: say so, for the encoders.
            order = EXPLICIT_VR_BIG_ENDIAN if current.is_little_endian else EXPLICIT_VR_LITTLE_ENDIAN
            dataset.file_meta = file_meta(*sop_uids(dataset), order)
        if target.is_compressed and any(keyword in dataset for keyword in _FLOAT_PIXEL_DATA):
            raise ValueError("floating point pixel data cannot be compressed")
        if target.is_compressed and "PixelData" in dataset:
            if lossy and target == jpeg_baseline.JPEG_BASELINE:
                jpeg_baseline.compress(dataset, new_instance_uid=new_instance_uid, quality=quality)
            elif target in jpeg_lossless.SELECTION_VALUES:
                jpeg_lossless.compress(dataset, target)
            else:
                dataset.compress(target, generate_instance_uid=False)
        bare = Dataset(dataset)  # the elements only: part10_file writes the file meta group
        # Elements never decoded are then written as read, when the target encodes them alike
        # (pydicom compares these with the target's encoding); the rest is encoded again.
        bare.set_original_encoding(*dataset.original_encoding, dataset.original_character_set)
        output = io.BytesIO()
        dcmwrite(
            output,
            bare,
            implicit_vr=target.is_implicit_VR,
            little_endian=target.is_little_endian,
            force_encoding=True,
        )
    except _FAILURES as error:
        raise OrthancError(
            ErrorCode.INTERNAL_ERROR, f"Cannot transcode to transfer syntax: {target}"
        ) from error
    return part10_file(*sop_uids(dataset), str(target), [output.getvalue()])


def _swap_words(dataset: Dataset) -> None:
    """Convert every element (pydicom then encodes them in the new byte order) and swap the bytes of
    the binary values made of words, which pydicom writes as they are.

    Native pixel data of 32 or 64 bits per pixel cell is swapped by pixel cells, as pydicom (and the
    Big Endian files of its test data) read it, although its VR (OW) says 16-bit words; with 1, 8 or
    16 bits, by its VR, as any element.
    """
    pixel_cell = {32: 4, 64: 8}.get(int(dataset.get("BitsAllocated", 0)))
    pixels = dataset.get(PIXEL_DATA)  # the element (a tag, not a keyword, is asked for)
    for element in dataset.iterall():
        size = pixel_cell if element is pixels and pixel_cell else _WORD_SIZES.get(element.VR)
        if size and isinstance(element.value, bytes) and len(element.value) % size == 0:
            element.value = numpy.frombuffer(element.value, dtype=f"u{size}").byteswap().tobytes()
