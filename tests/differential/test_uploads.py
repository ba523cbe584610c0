"""Every file of pydicom's test data, uploaded to both servers: same answer, same resources.

Each test uploads one file (in the order of ``ALL_FILES``, so later files meet
what earlier ones stored: ``MR_small_implicit.dcm`` is the SOP instance of
``MR_small.dcm`` in another transfer syntax and must be ``AlreadyStored``), then
compares the instance, its series, study and patient, and the stored file.
Files Orthanc refuses (the DICOMDIRs, broken files) must be refused alike.
Stability is not compared here: a resource last touched about StableAge ago
may flip between the two GETs.

Crafted files then probe what pydicom's data does not reach: the attributes
that give a series its ExpectedNumberOfInstances, values whose text is just
below or above Orthanc's 256-byte limit, and files without identifiers.
"""

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from tests.differential.data import ALL_FILES, file_name
from tests.differential.harness import Call, Checker, Exchange, ServerPair, get

pytestmark = pytest.mark.reference

RESOURCES_OF_UPLOAD = (
    ("instance", "instances", "ID"),
    ("series", "series", "ParentSeries"),
    ("study", "studies", "ParentStudy"),
    ("patient", "patients", "ParentPatient"),
)


def _compare_stored(check: Checker, name: str, upload: Exchange) -> None:
    """The resources of an upload and its file, when Orthanc stored it."""
    if upload.orthanc.status != 200:
        return
    stored = upload.orthanc.json
    for label, level, key in RESOURCES_OF_UPLOAD:
        check.compare(get(f"after-upload {name} {label} {stored[key]}", f"/{level}/{stored[key]}"))
    check.compare(get(f"after-upload {name} file", f"/instances/{stored['ID']}/file"))


@pytest.mark.parametrize("path", ALL_FILES, ids=file_name)
def test_upload_gives_same_answer_and_resources(pair: ServerPair, path: Path) -> None:
    check = pair.checker()
    name = file_name(path)
    _compare_stored(
        check, name, check.compare(Call(f"upload {name}", "POST", "/instances", body=path.read_bytes()))
    )
    check.verdict()


def _file(dataset: Dataset) -> bytes:
    """A Part-10 file (explicit VR little endian) of a dataset."""
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.get("SOPInstanceUID", f"{UID_ROOT}.0")
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


UID_ROOT = "1.2.826.0.1.3680043.8.498.77"


def _instance(series: int, *elements: tuple[int, str, object], **keywords: object) -> Dataset:
    """The only instance of a series of its own, with extra attributes: ``(tag, VR, value)``
    elements (values pydicom would refuse, VRs of our choice) and keywords."""
    dataset = Dataset()
    dataset.PatientID = "CRAFTED"
    dataset.StudyInstanceUID = f"{UID_ROOT}.1"
    dataset.SeriesInstanceUID = f"{UID_ROOT}.2.{series}"
    dataset.SOPInstanceUID = f"{UID_ROOT}.3.{series}"
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.InstanceNumber = "1"
    for element in elements:
        dataset.add_new(*element)
    for keyword, value in keywords.items():
        setattr(dataset, keyword, value)
    return dataset


def _elements_only(*elements: tuple[int, str, object]) -> Dataset:
    dataset = Dataset()
    for element in elements:
        dataset.add_new(*element)
    return dataset


ACQUISITION_MATRIX = 0x00181310
"""US: in decimal, 42 values from 10000 and one of 3, 4 or 5 digits take 255, 256 or 257 characters."""

CRAFTED: dict[str, Callable[[], Dataset]] = {
    # ExpectedNumberOfInstances (hence Status) of a series.
    "images × temporal positions": lambda: _instance(
        1, ImagesInAcquisition="3", NumberOfTemporalPositions="2"
    ),
    "images × temporal positions with spaces": lambda: _instance(
        2, ImagesInAcquisition=" 3 ", NumberOfTemporalPositions="2 "
    ),
    "negative product": lambda: _instance(
        3, ImagesInAcquisition="-3", NumberOfTemporalPositions="-2", CardiacNumberOfImages="7"
    ),
    "zero product": lambda: _instance(
        4, ImagesInAcquisition="0", NumberOfTemporalPositions="2", CardiacNumberOfImages="7"
    ),
    "product not a number": lambda: _instance(
        5, (0x00200105, "LO", "x"), ImagesInAcquisition="3", CardiacNumberOfImages="7"
    ),
    "images without temporal positions": lambda: _instance(
        6, ImagesInAcquisition="3", CardiacNumberOfImages="7"
    ),
    "cardiac images": lambda: _instance(7, CardiacNumberOfImages="1"),
    "cardiac images zero": lambda: _instance(8, CardiacNumberOfImages="0"),
    "number of slices": lambda: _instance(9, (0x00540081, "US", 4)),
    # The 256-byte limit of /tags, measured on the text shown.
    "text of 256 and 257 bytes": lambda: _instance(
        10,
        ImageComments="x" * 256,
        AdmittingDiagnosesDescription=["z" * 63] * 4 + ["a"],  # 257 with the \\
    ),
    "padding beyond 256 bytes": lambda: _instance(11, ImageComments="x" * 250 + " " * 10),
    "Latin-1 over 256 bytes of UTF-8": lambda: _instance(
        12, SpecificCharacterSet="ISO_IR 100", ImageComments="é" * 200, StudyDescription="é" * 64
    ),
    "numbers of 255 characters": lambda: _instance(
        13, (ACQUISITION_MATRIX, "US", [*range(10000, 10042), 100])
    ),
    "numbers of 256 characters": lambda: _instance(
        14, (ACQUISITION_MATRIX, "US", [*range(10000, 10042), 1000])
    ),
    "numbers of 257 characters": lambda: _instance(
        15, (ACQUISITION_MATRIX, "US", [*range(10000, 10042), 10042])
    ),
    "floats over 256 characters": lambda: _instance(16, (0x00189089, "FD", [1.1] * 15)),
    "attribute tags beyond 256 bytes": lambda: _instance(17, (0x00209165, "AT", [0x00100010] * 70)),
    # Files without identifiers.
    "meta group only": Dataset,
    "file-set elements only": lambda: _elements_only((0x00041130, "CS", "FILESET")),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_upload(pair: ServerPair, name: str) -> None:
    check = pair.checker()
    upload = check.compare(Call(f"upload crafted {name}", "POST", "/instances", body=_file(CRAFTED[name]())))
    _compare_stored(check, f"crafted {name}", upload)
    if upload.orthanc.status == 200:
        check.compare(get(f"content crafted {name} tags", f"/instances/{upload.orthanc.json['ID']}/tags"))
    check.verdict()
