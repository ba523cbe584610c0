"""``DicomLossyTranscodingQuality``: the JPEG baseline both servers write at a quality other than 90.

``Transcode`` to JPEG baseline by /modify of an 8-bit grayscale and an RGB (RLE, 2 frames)
file, on both servers started with quality 50: the frames must be the same
bytes (both use the IJG encoder with the same settings), and the derived
image must name that quality and ratio alike.
"""

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames

from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import CHARSET_FILES_ROOT, TEST_FILES_ROOT
from tests.differential.harness import ServerPair

pytestmark = pytest.mark.reference

FILES = (CHARSET_FILES_ROOT / "chrX1.dcm", TEST_FILES_ROOT / "SC_rgb_rle_2frame.dcm")
QUALITY = 50


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    servers = ServerPair.start(
        tmp_path_factory.mktemp("lossy-quality"), {**COMMON_OPTIONS, "DicomLossyTranscodingQuality": QUALITY}
    )
    try:
        yield servers
    finally:
        servers.stop()


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_jpeg_baseline_is_written_at_the_configured_quality(pair: ServerPair, path: Path) -> None:
    data = path.read_bytes()
    written = []
    for client in (pair.orthanc_client, pair.fastpacs_client):
        instance = client.post("/instances", content=data).json()["ID"]
        answer = client.post(
            f"/instances/{instance}/modify", json={"Transcode": "1.2.840.10008.1.2.4.50", "Force": True}
        )
        assert answer.status_code == 200, answer.text
        written.append(dcmread(io.BytesIO(answer.content)))
    orthanc, fastpacs = written
    frames = [list(generate_frames(dataset.PixelData)) for dataset in written]
    assert frames[1] == frames[0]
    assert f"IJG quality factor {QUALITY}," in fastpacs.DerivationDescription
    assert fastpacs.DerivationDescription == orthanc.DerivationDescription
    assert fastpacs.LossyImageCompressionRatio == orthanc.LossyImageCompressionRatio
