"""The DICOM files the differential tests upload: pydicom's own test data, read locally."""

import io
import zipfile
from pathlib import Path

import pydicom.data

DATA_ROOT = Path(pydicom.data.__file__).parent
TEST_FILES = sorted((DATA_ROOT / "test_files").glob("*.dcm"))
"""Every file of pydicom's test data set (valid, broken, odd) — about 80 files."""
CHARSET_FILES = sorted((DATA_ROOT / "charset_files").glob("*.dcm"))
"""Files in non-ASCII character sets (Latin-1, Greek, Cyrillic, ISO 2022 Japanese and Korean...)."""


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
