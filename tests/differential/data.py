"""The DICOM files the differential tests upload: pydicom's own test data, read locally."""

import copy
import io
import zipfile
from pathlib import Path

import pydicom.data
from pydicom.dataset import Dataset
from pydicom.filereader import dcmread
from pydicom.misc import is_dicom
from pydicom.uid import generate_uid

DATA_ROOT = Path(pydicom.data.__file__).parent
TEST_FILES_ROOT = DATA_ROOT / "test_files"
CHARSET_FILES_ROOT = DATA_ROOT / "charset_files"
TEST_FILES = sorted(TEST_FILES_ROOT.glob("*.dcm"))
"""Every file of pydicom's test data set (valid, broken, odd) — about 80 files."""


def _by_series(path: Path) -> tuple[str, str, str, Path]:
    """Sort key putting the files of a patient, a study and a series next to one another (the folders
    of a file-set mix studies): none of their resources then gets an instance again after a pause, so
    how often each turns stable during the upload does not depend on its pace (test_resources.py)."""
    dataset = dcmread(path, specific_tags=["PatientID", "StudyInstanceUID", "SeriesInstanceUID"])
    keys = (dataset.get(keyword) for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"))
    patient, study, series = (str(key or "") for key in keys)
    return patient, study, series, path


DICOMDIR_TEST_FILES = sorted(
    (path for path in (TEST_FILES_ROOT / "dicomdirtests").rglob("*") if path.is_file() and is_dicom(path)),
    key=_by_series,
)
"""The file-sets of pydicom's DICOMDIR tests: 31 MR, CT and CR instances of two patients, 50
minimal CT instances (TINY_ALPHA) and 8 DICOMDIR files (README files left out)."""
CHARSET_FILES = sorted(CHARSET_FILES_ROOT.glob("*.dcm"))
"""Files in non-ASCII character sets (Latin-1, Greek, Cyrillic, ISO 2022 Japanese and Korean...)."""
ALL_FILES = TEST_FILES + DICOMDIR_TEST_FILES + CHARSET_FILES
"""Every DICOM file of pydicom's data sets, in the order the differential tests upload them."""


def file_name(path: Path) -> str:
    """A data file's name in test names and the allow-list: its path below test_files/ or charset_files/."""
    root = TEST_FILES_ROOT if path.is_relative_to(TEST_FILES_ROOT) else CHARSET_FILES_ROOT
    return path.relative_to(root).as_posix()


def test_file(name: str) -> Path:
    path = DATA_ROOT / "test_files" / name
    assert path.exists(), f"pydicom test file {name} is missing"
    return path


test_file.__test__ = False  # a helper, not a test


def zip_of(entries: dict[str, bytes]) -> bytes:
    """A ZIP archive holding the given files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def shuffled_study() -> list[Dataset]:
    """Two series of CT slices, stored out of order; one slice's file meta still names the slice it
    was copied from (a file edited without its meta)."""
    base = dcmread(test_file("CT_small.dcm"))
    study = generate_uid()
    slices = []
    for series_number, count in ((1, 3), (2, 2)):
        series = generate_uid()
        for number in range(count):
            dataset = copy.deepcopy(base)
            dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
            dataset.SeriesNumber, dataset.InstanceNumber = series_number, number + 1
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            slices.append(dataset)
    slices[1].file_meta.MediaStorageSOPInstanceUID = base.SOPInstanceUID
    return [slices[index] for index in (3, 0, 4, 1, 2)]
