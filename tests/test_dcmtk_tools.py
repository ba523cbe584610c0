"""DCMTK's command-line tools (echoscu, storescu, findscu, movescu, getscu) against a running fastpacs.

A third-party DICOM stack checks fastpacs's SCP: association negotiation,
transfer syntaxes (compressed ones stored as received), C-FIND answers,
C-MOVE to a registered modality and C-GET back on the caller's association.
"""

import subprocess
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import numpy
import pydicom
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from fastpacs.testing import ServerProcess, fastpacs_server, free_port

SERVER_AET = "FASTPACS"
TOOL_AET = "DCMTK"
TIMEOUT = 60
CHARSET_FILES = Path(pydicom.data.__file__).parent / "charset_files"

FILES_BY_OPTION = {
    # storescu proposes uncompressed transfer syntaxes unless told which compressed one to propose.
    (): [
        "CT_small.dcm",  # explicit little endian, signed 16-bit
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "rtdose.dcm",  # multi-frame
        "waveform_ecg.dcm",
        "test-SR.dcm",
        CHARSET_FILES / "chrH31.dcm",  # Japanese, ISO 2022
        CHARSET_FILES / "chrArab.dcm",
    ],
    ("--propose-rle",): ["MR_small_RLE.dcm"],
    ("--propose-j2k-lossy",): ["JPEG2000.dcm"],
    ("--propose-jpeg8",): ["SC_rgb_jpeg_dcmtk.dcm"],  # color, JPEG baseline
    ("--propose-jls-lossless",): ["MR_small_jpeg_ls_lossless.dcm"],
    ("--propose-deflated",): ["image_dfl.dcm"],
}


def _path(name: str | Path) -> Path:
    if isinstance(name, Path):
        return name
    found = get_testdata_file(name, download=False)
    assert found is not None, name
    return Path(found)


def _run(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(arguments, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def tool_port() -> int:
    """The port movescu's own storage SCP listens on (modality DCMTK in fastpacs)."""
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tool_port: int) -> Iterator[ServerProcess]:
    options = {
        "DicomAet": SERVER_AET,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,  # with no DicomAlwaysAllow* left, only known callers get in
        "DicomModalities": {"dcmtk": [TOOL_AET, "127.0.0.1", tool_port]},
    }
    process = fastpacs_server(tmp_path_factory.mktemp("dcmtk"), options).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def stored(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test file, with UIDs of its own, sent by storescu (one association per transfer
    syntax): file name → the copy sent."""
    folder = tmp_path_factory.mktemp("dcmtk-files")
    sent: dict[str, Path] = {}
    for options, names in FILES_BY_OPTION.items():
        paths = []
        for name in names:
            source = _path(name)
            dataset = dcmread(source)
            dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            copy = folder / source.name
            dataset.save_as(copy, enforce_file_format=True)
            sent[source.name] = copy
            paths.append(copy)
        result = _run(
            "storescu",
            *options,
            "-aet",
            TOOL_AET,
            "-aec",
            SERVER_AET,
            "127.0.0.1",
            str(server.dicom_port),
            *map(str, paths),
        )
        assert result.returncode == 0, result.stderr
    return sent


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=TIMEOUT) as http:
        yield http


def test_echoscu(server: ServerProcess) -> None:
    result = _run("echoscu", "-aet", TOOL_AET, "-aec", SERVER_AET, "127.0.0.1", str(server.dicom_port))
    assert result.returncode == 0, result.stderr


def test_echoscu_with_the_wrong_called_aet_is_rejected(server: ServerProcess) -> None:
    result = _run("echoscu", "-aet", TOOL_AET, "-aec", "SOMEONE", "127.0.0.1", str(server.dicom_port))
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr


def test_an_unknown_calling_aet_is_rejected(server: ServerProcess) -> None:
    result = _run("echoscu", "-aet", "NOBODY", "-aec", SERVER_AET, "127.0.0.1", str(server.dicom_port))
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr


def test_storescu_stores_every_transfer_syntax_as_received(
    stored: dict[str, Path], client: httpx.Client
) -> None:
    for path in stored.values():
        original = dcmread(path)
        found = client.post("/tools/lookup", content=str(original.SOPInstanceUID)).json()
        assert [entry["Type"] for entry in found] == ["Instance"], path.name
        received = _file(client, found[0]["ID"])
        syntax = original.file_meta.TransferSyntaxUID
        if syntax.is_compressed:  # sent as it was: the very same fragments
            assert received.file_meta.TransferSyntaxUID == syntax, path.name
            assert received.PixelData == original.PixelData, path.name
        elif "PixelData" in original:  # storescu may convert between uncompressed syntaxes
            assert numpy.array_equal(received.pixel_array, original.pixel_array), path.name
        assert received.get("PatientName") == original.get("PatientName"), path.name
        metadata = client.get(f"/instances/{found[0]['ID']}/metadata", params={"expand": ""}).json()
        assert (metadata["Origin"], metadata["RemoteAET"], metadata["CalledAET"]) == (
            "DicomProtocol",
            TOOL_AET,
            SERVER_AET,
        )


def _file(client: httpx.Client, instance: str) -> pydicom.Dataset:
    response = client.get(f"/instances/{instance}/file")
    assert response.status_code == 200, response.text
    return dcmread(BytesIO(response.content))


def test_findscu_study_level(server: ServerProcess, stored: dict[str, Path], tmp_path: Path) -> None:
    ct = dcmread(stored["CT_small.dcm"], stop_before_pixels=True)
    result = _run(
        "findscu",
        "-S",
        "-aet",
        TOOL_AET,
        "-aec",
        SERVER_AET,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"PatientID={ct.PatientID}",
        "-k",
        f"StudyInstanceUID={ct.StudyInstanceUID}",
        "-k",
        "PatientName",
        "-k",
        "ModalitiesInStudy",
        "-k",
        "NumberOfStudyRelatedInstances",
        "-X",
        "-od",
        str(tmp_path),
        "127.0.0.1",
        str(server.dicom_port),
    )
    assert result.returncode == 0, result.stderr
    answers = [dcmread(path) for path in sorted(tmp_path.glob("rsp*.dcm"))]
    assert [answer.StudyInstanceUID for answer in answers] == [ct.StudyInstanceUID]
    (answer,) = answers
    assert answer.PatientName == ct.PatientName
    assert answer.ModalitiesInStudy == "CT"
    assert answer.NumberOfStudyRelatedInstances == 1
    assert answer.RetrieveAETitle == SERVER_AET


def test_findscu_patient_root_image_level(
    server: ServerProcess, stored: dict[str, Path], tmp_path: Path
) -> None:
    mr = dcmread(stored["MR_small_RLE.dcm"], stop_before_pixels=True)
    result = _run(
        "findscu",
        "-P",
        "-aet",
        TOOL_AET,
        "-aec",
        SERVER_AET,
        "-k",
        "QueryRetrieveLevel=IMAGE",
        "-k",
        f"PatientID={mr.PatientID}",
        "-k",
        f"StudyInstanceUID={mr.StudyInstanceUID}",
        "-k",
        f"SeriesInstanceUID={mr.SeriesInstanceUID}",
        "-k",
        "SOPInstanceUID",
        "-k",
        "Rows",
        "-X",
        "-od",
        str(tmp_path),
        "127.0.0.1",
        str(server.dicom_port),
    )
    assert result.returncode == 0, result.stderr
    answers = [dcmread(path) for path in sorted(tmp_path.glob("rsp*.dcm"))]
    assert [(answer.SOPInstanceUID, answer.Rows, answer.PatientID) for answer in answers] == [
        (mr.SOPInstanceUID, mr.Rows, mr.PatientID)
    ]


def test_movescu_to_itself(
    server: ServerProcess, stored: dict[str, Path], tool_port: int, tmp_path: Path
) -> None:
    """movescu asks fastpacs to send a study to movescu's own storage SCP (modality "dcmtk")."""
    ct = dcmread(stored["CT_small.dcm"], stop_before_pixels=True)
    result = _run(
        "movescu",
        "-S",
        "-aet",
        TOOL_AET,
        "-aec",
        SERVER_AET,
        "-aem",
        TOOL_AET,
        "--port",
        str(tool_port),
        "-od",
        str(tmp_path),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={ct.StudyInstanceUID}",
        "127.0.0.1",
        str(server.dicom_port),
    )
    assert result.returncode == 0, result.stderr
    received = [dcmread(path) for path in tmp_path.iterdir()]
    assert [item.SOPInstanceUID for item in received] == [ct.SOPInstanceUID]
    assert received[0].PixelData == dcmread(_path("CT_small.dcm")).PixelData


def test_movescu_to_an_unknown_destination(server: ServerProcess, stored: dict[str, Path]) -> None:
    """Refused with 0xC000 (Unable to process), as Orthanc 1.10.1 refuses an unknown destination
    (tests/differential/test_retrieve_refusals_vs_orthanc.py compares it), not 0xA801."""
    ct = dcmread(stored["CT_small.dcm"])
    result = _run(
        "movescu",
        "-S",
        "-aet",
        TOOL_AET,
        "-aec",
        SERVER_AET,
        "-aem",
        "NOBODY",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={ct.StudyInstanceUID}",
        "127.0.0.1",
        str(server.dicom_port),
    )
    assert "Failed: UnableToProcess" in result.stderr + result.stdout


def test_getscu_series_is_transcoded_for_a_peer_without_jpeg(
    server: ServerProcess, stored: dict[str, Path], tmp_path: Path
) -> None:
    """getscu proposes uncompressed syntaxes only: the JPEG instance is decompressed (as Orthanc does)."""
    jpeg = dcmread(stored["SC_rgb_jpeg_dcmtk.dcm"])
    result = _run(
        "getscu",
        "-S",
        "-aet",
        TOOL_AET,
        "-aec",
        SERVER_AET,
        "-od",
        str(tmp_path),
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={jpeg.StudyInstanceUID}",
        "-k",
        f"SeriesInstanceUID={jpeg.SeriesInstanceUID}",
        "127.0.0.1",
        str(server.dicom_port),
    )
    assert result.returncode == 0, result.stderr
    received = [dcmread(path) for path in tmp_path.iterdir()]
    assert [item.SOPInstanceUID for item in received] == [jpeg.SOPInstanceUID]
    assert not received[0].file_meta.TransferSyntaxUID.is_compressed
    assert numpy.array_equal(received[0].pixel_array, jpeg.pixel_array)
