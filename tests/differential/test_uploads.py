"""Every file of pydicom's test data, uploaded to both servers: same answer, same resources.

Each test uploads one file (in name order, so later files meet what earlier
ones stored: ``MR_small_implicit.dcm`` is the SOP instance of ``MR_small.dcm``
in another transfer syntax and must be ``AlreadyStored``), then compares the
instance, its series, study and patient, and the stored file. Stability is
not compared here: a resource last touched about StableAge ago may flip
between the two GETs.
"""

from pathlib import Path

import pytest

from tests.differential.data import CHARSET_FILES, TEST_FILES
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

RESOURCES_OF_UPLOAD = (
    ("instance", "instances", "ID"),
    ("series", "series", "ParentSeries"),
    ("study", "studies", "ParentStudy"),
    ("patient", "patients", "ParentPatient"),
)


@pytest.mark.parametrize("path", TEST_FILES + CHARSET_FILES, ids=lambda path: path.name)
def test_upload_gives_same_answer_and_resources(pair: ServerPair, path: Path) -> None:
    check = pair.checker()
    upload = check.compare(Call(f"upload {path.name}", "POST", "/instances", body=path.read_bytes()))
    if upload.orthanc.status == 200:
        stored = upload.orthanc.json
        for label, level, key in RESOURCES_OF_UPLOAD:
            check.compare(get(f"after-upload {path.name} {label} {stored[key]}", f"/{level}/{stored[key]}"))
        check.compare(get(f"after-upload {path.name} file", f"/instances/{stored['ID']}/file"))
    check.verdict()
