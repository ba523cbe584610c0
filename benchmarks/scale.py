"""The scale test's data: many small instances, loaded into each server before the find and list workloads.

When ``benchmarks/bulk_index.py`` (the fast offline loader of fastpacs's
index) is present, the set is the bulk loader's: fastpacs gets it written by
that loader into its storage folder before it starts, and Orthanc receives
the very same files through POST /instances. Without it, the set is
:func:`benchmarks.corpus.ensure_scale_set`'s tiny instances, uploaded to both
servers through POST /instances.
"""

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.filebase import DicomBytesIO

from benchmarks.corpus import ensure_scale_set
from benchmarks.procstats import client_cpu_seconds
from benchmarks.stats import RunResult

QUERY_SAMPLE = 1000
"""How many instances the find workloads draw their queries from, spread over the whole set."""
BULK_INSTANCES_PER_STUDY = (2, 5)
"""Series per study and instances per series of the bulk set: many studies, for the study-level find."""


@dataclass(frozen=True)
class ScaleSet:
    count: int
    payloads: list[bytes]
    """Every file of the set, in memory, for the servers that load it through POST /instances."""
    sop_uids: list[str]
    """A sample of SOP Instance UIDs spread over the set."""
    patient_ids: list[str]
    """A sample of Patient IDs spread over the set."""
    origin: str
    preload: Callable[[Path], RunResult] | None = None
    """Writes the set into a fastpacs server's folder before it starts (bulk loader only)."""


def _sample(payloads: list[bytes]) -> tuple[list[str], list[str]]:
    step = max(1, len(payloads) // QUERY_SAMPLE)
    sop_uids, patient_ids = [], []
    for payload in payloads[::step]:
        dataset = pydicom.dcmread(DicomBytesIO(payload), stop_before_pixels=True)
        sop_uids.append(dataset.SOPInstanceUID)
        patient_ids.append(dataset.PatientID)
    return sop_uids, sorted(set(patient_ids))


def bulk_loader_available() -> bool:
    return importlib.util.find_spec("benchmarks.bulk_index") is not None


def _bulk_set(count: int) -> ScaleSet:
    from benchmarks import bulk_index  # noqa: PLC0415 - optional: written by another part of the project

    series_per_study, instances_per_series = BULK_INSTANCES_PER_STUDY
    studies = math.ceil(count / (series_per_study * instances_per_series))
    spec = bulk_index.BulkSpec(
        studies=studies, series_per_study=series_per_study, instances_per_series=instances_per_series
    )
    payloads = list(bulk_index.all_files(spec))

    def preload(folder: Path) -> RunResult:
        cpu_before = client_cpu_seconds()
        loaded = bulk_index.bulk_load(spec, folder)
        return RunResult(
            operations=loaded.instances,
            errors=0,
            elapsed=loaded.seconds,
            transferred=sum(map(len, payloads)),
            client_cpu=client_cpu_seconds() - cpu_before,
        )

    return ScaleSet(len(payloads), payloads, *_sample(payloads), origin="bulk_index", preload=preload)


def scale_set(count: int, cache: Path) -> ScaleSet:
    """About ``count`` small instances (the bulk loader rounds up to whole studies)."""
    if bulk_loader_available():
        return _bulk_set(count)
    payloads = [Path(instance.path).read_bytes() for instance in ensure_scale_set(count, cache=cache)]
    return ScaleSet(len(payloads), payloads, *_sample(payloads), origin="generated")
