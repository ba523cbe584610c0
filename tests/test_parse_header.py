"""Summaries of a file from its header alone (the bytes up to its PixelData) are those of the whole file.

Ingest summarizes most images from :func:`header_prefix` while the blob is
written; whatever the header alone cannot vouch for must fall back to the
whole file, never give another summary.
"""

import io
import random

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from fastpacs.dicom.parse import header_prefix, summarize, summarize_header
from fastpacs.errors import OrthancError
from fastpacs.testing import ServerProcess
from tests.conftest import pydicom_file

PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "JPEG2000.dcm")


def ct_image(transfer_syntax: str = ExplicitVRLittleEndian, *, trailing: bool = False) -> bytes:
    """A 64×64 CT image whose PixelData ends the file (``trailing``: an element follows it)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientID = "HEADER^ONLY"
    dataset.PatientName = "Müller^Jürgen"
    dataset.SpecificCharacterSet = "ISO_IR 100"
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.InstanceNumber = "7"
    dataset.Modality = "CT"
    dataset.Rows = dataset.Columns = 64
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = bytes(range(256)) * 32
    if trailing:
        dataset.add_new(0xFFFCFFFC, "OB", b"\0" * 8)  # DataSetTrailingPadding
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True, implicit_vr=transfer_syntax == ImplicitVRLittleEndian)
    return buffer.getvalue()


def outcome(compute):
    """What a summary computation gives: the summary, or the error it raises."""
    try:
        return ("summary", compute())
    except OrthancError as error:
        return ("refused", error.code, str(error))


def variants(data: bytes, rng: random.Random) -> list[bytes]:
    """The file, cut, lengthened, and with a byte of its header flipped."""
    cuts = [data[:-1], data[: len(data) // 2], data + b"\0\0\0\0"] + [
        data[: rng.randrange(len(data))] for _ in range(4)
    ]
    flipped = []
    for _ in range(12):
        position = rng.randrange(128, min(len(data), 1500))
        changed = bytearray(data)
        changed[position] ^= 0xFF
        flipped.append(bytes(changed))
    return [data, *cuts, *flipped]


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_an_image_ending_with_its_pixels_is_summarized_from_its_header(transfer_syntax: str) -> None:
    data = ct_image(transfer_syntax)
    prefix = header_prefix(data)
    assert prefix is not None and len(prefix) < 1000
    assert summarize_header(prefix, len(data), "Latin1") == summarize(data, "Latin1")


def test_what_the_header_cannot_vouch_for_is_left_to_the_whole_file() -> None:
    trailing = ct_image(trailing=True)
    assert header_prefix(trailing) is None
    whole = ct_image()
    prefix = header_prefix(whole)
    assert prefix is not None
    assert summarize_header(prefix, len(whole) + 2, "Latin1") is None  # pixels not ending the file
    assert summarize_header(prefix[:-1], len(whole), "Latin1") is None  # the PixelData header cut


def test_header_summaries_agree_with_whole_file_summaries() -> None:
    """Over pydicom's files and generated images, intact, cut, lengthened and damaged: a summary from
    the header, when there is one, is the summary of the whole file, or the same refusal."""
    rng = random.Random(20261128)
    files = [pydicom_file(name).read_bytes() for name in PYDICOM_FILES]
    files += [ct_image(), ct_image(ImplicitVRLittleEndian), ct_image(trailing=True)]
    compared = 0
    for data in files:
        for variant in variants(data, rng):
            prefix = header_prefix(variant)
            if prefix is None:
                continue
            quick = outcome(
                lambda prefix=prefix, variant=variant: summarize_header(prefix, len(variant), "Latin1")
            )
            if quick == ("summary", None):
                continue
            compared += 1
            assert quick == outcome(lambda variant=variant: summarize(variant, "Latin1"))
    assert compared >= 10  # the header path was taken, not skipped every time


def test_uploads_summarized_from_their_header_show_every_tag(
    shared_server: ServerProcess, shared_client: httpx.Client
) -> None:
    """Over HTTP: the file summarized from its header and the one read whole are indexed alike."""
    for data in (ct_image(), ct_image(trailing=True)):
        answer = shared_client.post("/instances", content=data, headers={"Content-Type": "application/dicom"})
        assert answer.status_code == 200, answer.text
        instance = answer.json()["ID"]
        tags = shared_client.get(f"/instances/{instance}/simplified-tags").json()
        assert tags["PatientName"] == "Müller^Jürgen"
        assert tags["InstanceNumber"] == "7"
        assert "PixelData" in tags
        offset = shared_client.get(f"/instances/{instance}/metadata/PixelDataOffset")
        dataset = pydicom.dcmread(io.BytesIO(data))
        assert int(offset.text) == dataset.get_item(0x7FE00010).value_tell - 12
        stored = shared_client.get(f"/instances/{instance}/file")
        assert stored.content == data
    cut = ct_image()[:-100]
    refused = shared_client.post("/instances", content=cut, headers={"Content-Type": "application/dicom"})
    assert refused.status_code == 400
