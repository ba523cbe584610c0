"""What the reliability tests share: unique instances, C-STORE senders, the store's own check, memory.

The consistency check looks at both sides of a store: what the REST API
shows (instances, their files, /statistics) and what lies in the storage
folder (blob files named by their SHA-256, the temporary folder), and
asserts that they describe the same data.
"""

import copy
import hashlib
import io
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
from benchmarks.procstats import proportional_memory, session_processes
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage

from fastpacs.net.scu import leave_answers_to_requests
from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.testing import ServerProcess
from tests.conftest import orthanc_id, pydicom_file, stored_blobs

META_START = 132
"""Preamble (128 bytes) and ``DICM``: the file meta group follows."""
GROUP_LENGTH_ELEMENT = 12
"""(0002,0000) UL in explicit VR little endian: tag, VR, length, value."""


class InstanceMaker:
    """Distinct CT instances made from pydicom's CT_small, fast enough for thousands."""

    def __init__(self) -> None:
        self.template = pydicom.dcmread(pydicom_file("CT_small.dcm"))

    def dataset(self, patient: str, series: int, number: int) -> Dataset:
        dataset = copy.deepcopy(self.template)  # Dataset.copy() would share the elements
        dataset.PatientID = patient
        dataset.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1311.{_digits(patient)}"
        dataset.SeriesInstanceUID = f"{dataset.StudyInstanceUID}.{series}"
        dataset.SOPInstanceUID = f"{dataset.SeriesInstanceUID}.{number}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        return dataset

    def file(self, patient: str, series: int, number: int) -> bytes:
        buffer = io.BytesIO()
        self.dataset(patient, series, number).save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()


def _digits(text: str) -> str:
    """A UID component from any text (UIDs hold digits only)."""
    return str(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def instance_id(dataset: Dataset) -> str:
    return orthanc_id(
        dataset.PatientID, dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID
    )


def dataset_part(data: bytes) -> bytes:
    """The bytes of a DICOM file after its file meta group (what C-STORE carries)."""
    (group_length,) = struct.unpack_from("<I", data, META_START + 8)
    return data[META_START + GROUP_LENGTH_ELEMENT + group_length :]


def sent_bytes(dataset: Dataset) -> bytes:
    """The dataset as pynetdicom sends it in explicit VR little endian."""
    encoded = encode(dataset, False, True)
    assert encoded is not None
    return encoded


@dataclass
class StoreOutcome:
    acknowledged: dict[str, bytes]
    """Instance ID → the dataset bytes sent, for every C-STORE answered Success."""
    statuses: dict[int, int]
    """How many answers of each status."""
    failed: bool = False
    """The association broke (the server went away)."""


def c_store_all(
    server: ServerProcess,
    datasets: Iterable[Dataset],
    *,
    calling_aet: str = "RELIABILITY",
    called_aet: str | None = None,
    on_answer: Callable[[str, bytes, int], None] | None = None,
) -> StoreOutcome:
    """Send datasets over one association until done or the association breaks."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    context = build_context(CTImageStorage, ExplicitVRLittleEndian)
    outcome = StoreOutcome({}, {})
    assoc = ae.associate(
        "127.0.0.1",
        server.dicom_port,
        [context],
        ae_title=called_aet or server.aet,
        evt_handlers=NO_DELAY_HANDLERS,
    )
    if not assoc.is_established:
        outcome.failed = True
        return outcome
    leave_answers_to_requests(assoc)
    try:
        for dataset in datasets:
            data = sent_bytes(dataset)
            try:
                answer = assoc.send_c_store(dataset)
            except (RuntimeError, OSError):
                outcome.failed = True
                break
            status = int(answer.Status) if "Status" in answer else -1
            outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
            if on_answer is not None:
                on_answer(instance_id(dataset), data, status)
            if status == 0x0000:
                outcome.acknowledged[instance_id(dataset)] = data
            if status == -1 or not assoc.is_established:
                outcome.failed = True
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return outcome


@dataclass
class StoreFigures:
    instances: int
    blobs: int
    disk_size: int


def check_store(server: ServerProcess, http: httpx.Client, storage: Path | None = None) -> StoreFigures:
    """Assert that index and storage agree, from both sides; return what is stored.

    - every indexed instance has its file, of the size indexed, and its parents are listed;
    - every blob in the storage folder is the file of some instance (no orphan), and is named
      by the SHA-256 of its content; the temporary folder is empty;
    - /statistics equals the counts and sizes recomputed from the listings.
    """
    listing = http.get("/instances", params={"expand": ""})
    assert listing.status_code == 200, listing.text
    instances = listing.json()
    series = set(http.get("/series").json())
    studies = set(http.get("/studies").json())
    patients = set(http.get("/patients").json())
    referenced: dict[str, int] = {}
    for instance in instances:
        answer = http.get(f"/instances/{instance['ID']}/file")
        assert answer.status_code == 200, (instance["ID"], answer.status_code)
        assert len(answer.content) == instance["FileSize"], instance["ID"]
        referenced[hashlib.sha256(answer.content).hexdigest()] = len(answer.content)
        assert instance["ParentSeries"] in series, instance["ID"]
    storage = storage or server.directory / "storage"
    blobs = stored_blobs(storage)
    for name, path in blobs.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == name, f"blob {name} is damaged"
    orphans = blobs.keys() - referenced.keys()
    missing = referenced.keys() - blobs.keys()
    assert not orphans, f"{len(orphans)} blobs no instance refers to"
    assert not missing, f"{len(missing)} instances whose blob is not where the storage keeps it"
    assert list((storage / "tmp").iterdir()) == [], "temporary files left"
    disk_size = sum(path.stat().st_size for path in blobs.values())
    statistics = http.get("/statistics").json()
    assert statistics["CountInstances"] == len(instances)
    assert statistics["CountSeries"] == len(series)
    assert statistics["CountStudies"] == len(studies)
    assert statistics["CountPatients"] == len(patients)
    assert int(statistics["TotalDiskSize"]) == disk_size
    assert int(statistics["TotalUncompressedSize"]) == disk_size
    return StoreFigures(instances=len(instances), blobs=len(blobs), disk_size=disk_size)


def tree_memory(server: ServerProcess) -> int:
    """Memory of the server's whole process tree (its session) in bytes: PSS summed over its processes.

    PSS splits each shared page among the processes sharing it, so the pool's
    shared libraries and copy-on-write pages count once, as in the benchmarks.
    """
    assert server.process is not None
    return sum(proportional_memory(process.pid) for process in session_processes(server.process.pid))


def tree_anonymous_memory(server: ServerProcess) -> int:
    """The anonymous part of :func:`tree_memory` (heaps, stacks): what a leak makes grow.

    The rest is file-backed, mostly the pages of the LMDB index mapped into
    the server, which grow with what is stored and which the kernel reclaims.
    """
    assert server.process is not None
    return sum(_anonymous_memory(process.pid) for process in session_processes(server.process.pid))


def _anonymous_memory(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss_Anon:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.0f} MB"


def environment_number(name: str, default: float) -> float:
    """A test's size from the environment (documented where it is used), else its CI default."""
    return float(os.environ.get(name, default))
