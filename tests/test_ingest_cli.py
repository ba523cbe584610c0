"""``fastpacs ingest``: folders with broken files, ZIP archives, DICOMDIR trees, a stopped store,
and the errors that stop it.

The big folder goes through the real command in a process of its own; the other cases call the
same entry point (``fastpacs.cli.main``) in this process, which saves the seconds of start-up each
command costs. The DICOM files are tiny (about 500 bytes, no pixels) and made from one template
per series, so that two thousand of them take well under a second to write.
"""

import contextlib
import io
import logging
import os
import pty
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from fastpacs.cli import main
from fastpacs.testing import ServerProcess, fastpacs_server, free_port

UID_ROOT = "1.2.826.0.1.3680043.10.1192"
PLACEHOLDER = ".999999"
"""The last component of the template's SOPInstanceUID, replaced by the instance number (same length)."""
COMMAND_TIMEOUT = 240


def tiny_dataset(patient: str, study_uid: str, series_uid: str, instance_uid: str, number: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.PatientID = patient
    dataset.PatientName = f"Ingest^{patient}"
    dataset.StudyInstanceUID = study_uid
    dataset.StudyDate, dataset.StudyTime = "20240101", "120000"
    dataset.StudyID, dataset.AccessionNumber = "1", ""
    dataset.SeriesInstanceUID = series_uid
    dataset.SeriesNumber = 1
    dataset.SOPInstanceUID = instance_uid
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.Modality = "OT"
    dataset.InstanceNumber = number
    return dataset


def encoded(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def tiny_files(tag: int, patients: int, series_per_patient: int, per_series: int) -> dict[str, bytes]:
    """``{relative name: DICOM bytes}``; ``tag`` keeps the UIDs of different calls apart."""
    files = {}
    for patient in range(patients):
        study_uid = f"{UID_ROOT}.{tag}.{patient}"
        for series in range(series_per_patient):
            series_uid = f"{study_uid}.{series}"
            template = encoded(
                tiny_dataset(f"P{tag}-{patient}", study_uid, series_uid, series_uid + PLACEHOLDER, 1)
            )
            placeholder = (series_uid + PLACEHOLDER).encode()
            for number in range(per_series):
                uid = f"{series_uid}.{number:06d}".encode()
                name = f"patient{patient}/series{series}/{number:06d}.dcm"
                files[name] = template.replace(placeholder, uid)
    return files


def broken_files() -> dict[str, bytes]:
    """Ten files no DICOM server may accept."""
    valid = encoded(tiny_dataset("BROKEN", f"{UID_ROOT}.9.1", f"{UID_ROOT}.9.1.1", f"{UID_ROOT}.9.1.1.1", 1))
    no_instance_uid = tiny_dataset("BROKEN", f"{UID_ROOT}.9.2", f"{UID_ROOT}.9.2.1", f"{UID_ROOT}.9.2.1.1", 1)
    del no_instance_uid.SOPInstanceUID
    return {
        "broken/empty.dcm": b"",
        "broken/notes.txt": b"These are not images.\n",
        "broken/random.bin": bytes(range(256)) * 4,
        "broken/truncated-head.dcm": valid[:200],
        "broken/truncated-half.dcm": valid[: len(valid) // 2],
        "broken/preamble-only.dcm": b"\0" * 128 + b"DICM",
        "broken/preamble-garbage.dcm": b"\0" * 128 + b"DICM" + b"\xff" * 64,
        "broken/image.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
        "broken/report.json": b'{"PatientID": "X"}',
        "broken/no-sop-instance-uid.dcm": encoded(no_instance_uid),
    }


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def ingest_command(*arguments: str) -> subprocess.CompletedProcess:
    """``fastpacs ingest`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "fastpacs", "ingest", *arguments],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_ingest(*arguments: str) -> Outcome:
    """``fastpacs ingest`` through the command's entry point, in this process.

    The command sets up the ``fastpacs`` loggers; they are put back as they were afterwards, so
    that the tests that follow see the logging pytest expects.
    """
    logger = logging.getLogger("fastpacs")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["ingest", *arguments])
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture
def ingest() -> Callable[..., Outcome]:
    return run_ingest


def summary_counts(output: str) -> tuple[int, int, int]:
    """(imported, already stored, rejected) from the summary line."""
    line = next(line for line in output.splitlines() if " imported, " in line)
    counts = line.rsplit(": ", 1)[1].split(", ")
    return tuple(int(part.split()[0]) for part in counts)  # type: ignore[return-value]


def rejected_names(output: str) -> list[str]:
    lines = output.split("Rejected files:\n", 1)[1].splitlines() if "Rejected files:" in output else []
    return [line.strip().split(": ", 1)[0] for line in lines]


@dataclass
class StoreImport:
    folder: Path
    store: Path
    outcome: Outcome


@pytest.fixture(scope="module")
def stopped_store(tmp_path_factory: pytest.TempPathFactory) -> StoreImport:
    """A store filled by ``fastpacs ingest --store`` before any server ran on it: 100 files, 1 broken."""
    folder = tmp_path_factory.mktemp("store-files")
    write_tree(folder, tiny_files(5, patients=2, series_per_patient=2, per_series=25))
    write_tree(folder, {"broken/notes.txt": b"not DICOM"})
    store = tmp_path_factory.mktemp("store")
    return StoreImport(folder, store, run_ingest(str(folder), "--store", str(store)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, stopped_store: StoreImport) -> Iterator[ServerProcess]:
    """A server on the store ``fastpacs ingest --store`` filled, taking at most 1 MB of uploads in
    flight (large files make it answer 503: see the busy-server test)."""
    options = {
        "StorageDirectory": str(stopped_store.store),
        "IndexDirectory": str(stopped_store.store),
        "MaximumPendingIngestSize": 1,
    }
    process = fastpacs_server(tmp_path_factory.mktemp("ingest-server"), options).start()
    yield process
    process.stop()


def instance_count(server: ServerProcess) -> int:
    return httpx.get(f"{server.base_url}/statistics").json()["CountInstances"]


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("big-folder")
    write_tree(folder, tiny_files(1, patients=10, series_per_patient=4, per_series=50))  # 2,000 files
    write_tree(folder, broken_files())
    return folder


@pytest.mark.slow
def test_folder_of_2000_files_with_10_broken(server: ServerProcess, big_folder: Path) -> None:
    before = httpx.get(f"{server.base_url}/statistics").json()
    result = ingest_command(str(big_folder), "--url", server.base_url, "--jobs", "8")
    assert result.returncode == 1, result.stderr
    assert summary_counts(result.stdout) == (2000, 0, 10), result.stdout
    expected = sorted(str(big_folder / name) for name in broken_files())
    assert rejected_names(result.stdout) == expected, result.stdout
    assert "no-sop-instance-uid.dcm: " in result.stdout
    after = httpx.get(f"{server.base_url}/statistics").json()
    added = {key: after[key] - before[key] for key in ("CountInstances", "CountPatients", "CountSeries")}
    assert added == {"CountInstances": 2000, "CountPatients": 10, "CountSeries": 40}


PROGRESS = re.compile(r"(\d+)/(\d+) files +(\d+\.\d)%  [\d,]+ files/s  [\d,]+\.\d MB/s  ETA \d+:\d\d:\d\d")


@pytest.mark.slow
def test_progress_on_a_terminal(server: ServerProcess, tmp_path: Path) -> None:
    """With stderr a terminal (a pseudo-terminal here), a progress line is redrawn in place."""
    write_tree(tmp_path, tiny_files(6, patients=2, series_per_patient=2, per_series=100))
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "fastpacs", "ingest", str(tmp_path), "--url", server.base_url],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
        )
        os.close(terminal)
        shown = bytearray()
        while chunk := _read_terminal(controller):
            shown += chunk
        stdout, _ = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        os.close(controller)
    assert process.returncode == 0, stdout
    assert summary_counts(stdout) == (400, 0, 0), stdout
    redraws = shown.decode().split("\r")
    states = [match.groups() for line in redraws if (match := PROGRESS.fullmatch(line.rstrip()))]
    assert states, shown
    assert states[-1] == ("400", "400", "100.0")
    assert [int(files) for files, _, _ in states] == sorted(int(files) for files, _, _ in states)
    assert redraws[-1].strip() == ""  # the line is cleared at the end, before the summary


def _read_terminal(descriptor: int) -> bytes:
    """What the terminal shows next; empty once the other end is closed (EIO on Linux)."""
    try:
        return os.read(descriptor, 4096)
    except OSError:
        return b""


def test_zip_archive_entries_are_imported_one_by_one(server: ServerProcess, tmp_path: Path, ingest) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as writer:
        for name, content in tiny_files(2, patients=1, series_per_patient=2, per_series=15).items():
            writer.writestr(name, content)
        writer.writestr("README.txt", b"not DICOM")
        writer.writestr("empty-folder/", b"")
    before = instance_count(server)
    result = ingest(str(archive), str(tmp_path / "absent.dcm"), "--url", server.base_url)
    assert result.returncode == 1, result.stderr
    assert summary_counts(result.stdout) == (30, 0, 2), result.stdout
    assert rejected_names(result.stdout) == sorted([f"{archive}!README.txt", str(tmp_path / "absent.dcm")])
    assert f"{tmp_path / 'absent.dcm'}: no such file or folder" in result.stdout
    assert instance_count(server) == before + 30


def test_dicomdir_tree(server: ServerProcess, tmp_path: Path, ingest) -> None:
    file_set = FileSet()
    study, series = f"{UID_ROOT}.3.1", f"{UID_ROOT}.3.1.1"
    for number in range(1, 6):
        file_set.add(tiny_dataset("DICOMDIR-PATIENT", study, series, f"{series}.{number}", number))
    media = tmp_path / "media"
    file_set.write(media)
    before = instance_count(server)

    result = ingest(str(media / "DICOMDIR"), "--url", server.base_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_counts(result.stdout) == (5, 0, 0), result.stdout
    assert instance_count(server) == before + 5

    walked = ingest(str(media), "--url", server.base_url)  # the folder: DICOMDIR itself is skipped
    assert walked.returncode == 0, walked.stdout
    assert summary_counts(walked.stdout) == (0, 5, 0)
    assert "1 DICOMDIR index files skipped" in walked.stdout

    referenced = sorted(path for path in media.rglob("IM*"))
    referenced[0].unlink()
    missing = ingest(str(media / "DICOMDIR"), "--url", server.base_url)
    assert missing.returncode == 1, missing.stderr
    assert summary_counts(missing.stdout) == (0, 4, 1)
    assert f"{referenced[0]}: referenced by the DICOMDIR but missing" in missing.stdout


def test_busy_server_gets_the_files_again(server: ServerProcess, tmp_path: Path, ingest) -> None:
    """Files of 600 KB, six at a time, against a server storing at most 1 MB at once: some are
    answered 503, sent again after Retry-After, and all end up stored."""
    series = f"{UID_ROOT}.6.1.1"
    for number in range(12):
        dataset = tiny_dataset("BUSY", f"{UID_ROOT}.6.1", series, f"{series}.{number}", number)
        dataset.add_new(0x00090010, "LO", "FASTPACS TEST")
        dataset.add_new(0x00091010, "OB", bytes([number]) * 600_000)
        (tmp_path / f"{number}.dcm").write_bytes(encoded(dataset))
    busy = {"method": "POST", "route": "/instances", "status": "503"}
    before = _request_count(server, busy)
    result = ingest(str(tmp_path), "--url", server.base_url, "--jobs", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_counts(result.stdout) == (12, 0, 0)
    assert _request_count(server, busy) > before


def _request_count(server: ServerProcess, labels: dict[str, str]) -> float:
    text = httpx.get(f"{server.base_url}/tools/metrics-prometheus").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "fastpacs_http_request_duration_seconds_count"
        and all(sample.labels.get(key) == value for key, value in labels.items())
    )


def test_unreachable_server_and_nothing_to_import(tmp_path: Path, ingest) -> None:
    (tmp_path / "one.dcm").write_bytes(next(iter(tiny_files(4, 1, 1, 1).values())))
    result = ingest(str(tmp_path), "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert "cannot reach" in result.stderr
    (tmp_path / "empty").mkdir()
    nothing = ingest(str(tmp_path / "empty"), "--url", f"http://127.0.0.1:{free_port()}")
    assert (nothing.returncode, nothing.stderr) == (2, "fastpacs ingest: no file to import\n")


def test_stopped_store_then_served(stopped_store: StoreImport, server: ServerProcess) -> None:
    result = stopped_store.outcome
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary_counts(result.stdout) == (100, 0, 1), result.stdout
    assert rejected_names(result.stdout) == [str(stopped_store.folder / "broken/notes.txt")]

    patients = httpx.get(f"{server.base_url}/patients", params={"expand": ""}).json()
    imported = {patient["MainDicomTags"]["PatientID"]: patient for patient in patients}
    for patient_id in ("P5-0", "P5-1"):
        instances = httpx.get(f"{server.base_url}/patients/{imported[patient_id]['ID']}/instances").json()
        assert len(instances) == 50
    origin = httpx.get(f"{server.base_url}/instances/{instances[0]['ID']}/metadata/Origin")
    assert origin.text == "Unknown"

    refused = run_ingest(str(stopped_store.folder), "--store", str(stopped_store.store))
    assert refused.returncode == 2
    assert "in use by another process" in refused.stderr
