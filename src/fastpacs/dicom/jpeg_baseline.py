"""Lossy compression to JPEG Baseline (Process 1), as Orthanc 1.10.1 (DCMTK) writes it.

pydicom has no JPEG encoder; Pillow (libjpeg) encodes the frames with the
settings Orthanc's DCMTK uses: IJG quality factor 90, colour as YCbCr with
4:2:2 chroma subsampling (PhotometricInterpretation ``YBR_FULL_422``), one
fragment per frame after a basic offset table. Only 8-bit unsigned
grayscale and RGB images can be written, as in Orthanc: anything else is
refused.

The result is a derived image, marked as DICOM requires for lossy
compression (PS3.3 C.7.6.1.1.5, C.7.6.1.1.3): the image compressed named in
SourceImageSequence ("Uncompressed predecessor"), ImageType DERIVED,
DerivationDescription and DerivationCodeSequence ("Lossy Compression"),
LossyImageCompression 01 with its ratio and method, the pixel value ranges
removed. Orthanc's /modify gives it the SOP Instance UID the modification
chose (so that it names itself as its predecessor), or DCMTK's new one
when the request keeps the UID.
"""

import io

import numpy
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

from fastpacs.dicom.jpeg_lossless import compression_ratio_text
from fastpacs.dicom.modification import new_uid
from fastpacs.dicom.writer import sop_uids

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
QUALITY = 90
"""IJG quality factor: DCMTK's default, and Orthanc's ``DicomLossyTranscodingQuality`` default."""
_MODES = {"MONOCHROME1": "L", "MONOCHROME2": "L", "RGB": "RGB"}
"""Pillow's image mode by PhotometricInterpretation of the images that can be encoded."""
_SUBSAMPLING = {"L": 0, "RGB": 1}
"""Pillow's ``subsampling`` by mode: a grayscale component sampled 1x1, colour 4:2:2 (two luminance
samples per chrominance one, horizontally), as DCMTK writes them."""


_RANGE_KEYWORDS = (
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
)


class NotEncodableError(ValueError):
    """The pixel data is not 8-bit unsigned grayscale or RGB, which JPEG baseline cannot hold."""


def compress(dataset: Dataset, *, new_instance_uid: bool, quality: int = QUALITY) -> None:
    """Replace the native pixel data of ``dataset`` by JPEG baseline frames of the IJG ``quality``
    (``DicomLossyTranscodingQuality``), as a derived image (with a new SOP Instance UID when
    ``new_instance_uid``: a caller that gave the image its UID keeps it)."""
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    mode = _MODES.get(photometric)
    bits = (dataset.get("BitsAllocated"), dataset.get("BitsStored"), dataset.get("PixelRepresentation"))
    if mode is None or bits != (8, 8, 0):
        raise NotEncodableError(f"{photometric} with (allocated, stored, signed) bits {bits}")
    pixels = dataset.pixel_array
    frames = pixels.reshape((-1, *pixels.shape[-3 if mode == "RGB" else -2 :]))
    encoded = [_encode(frame, mode, quality) for frame in frames]
    ratio = len(dataset.PixelData) / sum(len(frame) for frame in encoded)
    source = sop_uids(dataset)
    dataset.PixelData = encapsulate(encoded, has_bot=True)
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    if mode == "RGB":
        dataset.PhotometricInterpretation = "YBR_FULL_422"
        dataset.PlanarConfiguration = 0
    for keyword in _RANGE_KEYWORDS:  # the compression changed the values they describe
        if keyword in dataset:
            del dataset[keyword]
    _mark_lossy(dataset, source, ratio, quality)
    if new_instance_uid:
        dataset.SOPInstanceUID = new_uid()


def _encode(frame: numpy.ndarray, mode: str, quality: int) -> bytes:
    output = io.BytesIO()
    image = Image.fromarray(numpy.ascontiguousarray(frame), mode)
    image.save(output, "JPEG", quality=quality, subsampling=_SUBSAMPLING[mode])
    return output.getvalue()


def _mark_lossy(dataset: Dataset, source: tuple[str, str], ratio: float, quality: int) -> None:
    """The attributes of an image derived from ``source`` by lossy compression of the given ratio."""
    formatted_ratio = compression_ratio_text(ratio)
    image_type = list(dataset.get("ImageType") or [])
    dataset.ImageType = ["DERIVED", *image_type[1:]] if image_type else "DERIVED"
    dataset.LossyImageCompression = "01"
    dataset.LossyImageCompressionRatio = formatted_ratio
    dataset.LossyImageCompressionMethod = "ISO_10918_1"
    dataset.DerivationDescription = (
        f"Lossy compression with JPEG baseline, IJG quality factor {quality}, "
        f"compression ratio {formatted_ratio}"
    )
    dataset.DerivationCodeSequence = [_code("113040", "Lossy Compression")]
    predecessor = Dataset()
    predecessor.ReferencedSOPClassUID, predecessor.ReferencedSOPInstanceUID = source
    predecessor.PurposeOfReferenceCodeSequence = [_code("121320", "Uncompressed predecessor")]
    dataset.SourceImageSequence = [predecessor]


def _code(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = meaning
    return code
