"""Transcoding to JPEG baseline (lossy): what can be encoded, the frames, the derived image's attributes.

The byte-for-byte comparison with the frames Orthanc (DCMTK) writes is in
tests/differential/test_modify_edge_cases_vs_orthanc.py (test_transcoding).
"""

import io

import numpy
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames

from fastpacs.dicom.jpeg_baseline import JPEG_BASELINE
from fastpacs.dicom.transcoding import transcode
from fastpacs.errors import OrthancError
from tests.conftest import pydicom_file


def _lossy(name: str, *, new_instance_uid: bool = False):
    data = pydicom_file(name).read_bytes()
    return dcmread(io.BytesIO(data)), dcmread(
        io.BytesIO(transcode(data, JPEG_BASELINE, lossy=True, new_instance_uid=new_instance_uid))
    )


def test_a_colour_multiframe_image_becomes_ybr_full_422_frames_close_to_the_original() -> None:
    source, lossy = _lossy("SC_rgb_rle_2frame.dcm")
    assert lossy.file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert (lossy.PhotometricInterpretation, lossy.PlanarConfiguration) == ("YBR_FULL_422", 0)
    assert len(list(generate_frames(lossy.PixelData, number_of_frames=2))) == 2
    difference = numpy.abs(source.pixel_array.astype(int) - lossy.pixel_array.astype(int))
    assert difference.max() <= 8 and difference.mean() < 1


def test_the_lossy_image_is_marked_derived_and_names_its_predecessor() -> None:
    source, lossy = _lossy("SC_rgb_rle_2frame.dcm", new_instance_uid=True)
    assert lossy.SOPInstanceUID != source.SOPInstanceUID
    assert lossy.file_meta.MediaStorageSOPInstanceUID == lossy.SOPInstanceUID
    predecessor = lossy.SourceImageSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert predecessor.PurposeOfReferenceCodeSequence[0].CodeValue == "121320"
    assert lossy.DerivationCodeSequence[0].CodeValue == "113040"
    assert (lossy.LossyImageCompression, lossy.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
    assert lossy.DerivationDescription.endswith(f"compression ratio {lossy.LossyImageCompressionRatio}")
    assert float(lossy.LossyImageCompressionRatio) > 1
    _, kept = _lossy("SC_rgb_rle_2frame.dcm")
    assert kept.SOPInstanceUID == source.SOPInstanceUID  # the caller gave the image its UID


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_images_of_more_than_8_bits_cannot_be_jpeg_baseline(name: str) -> None:
    with pytest.raises(OrthancError) as refused:
        transcode(pydicom_file(name).read_bytes(), JPEG_BASELINE, lossy=True)
    assert refused.value.details == f"Cannot transcode to transfer syntax: {JPEG_BASELINE}"


def test_without_lossy_allowed_jpeg_baseline_is_refused() -> None:
    """The C-STORE SCU's transcoding may not make a new image (Orthanc then sends an uncompressed one)."""
    with pytest.raises(OrthancError):
        transcode(pydicom_file("SC_rgb_rle_2frame.dcm").read_bytes(), JPEG_BASELINE)
