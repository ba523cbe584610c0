"""The bulk loader: a large fastpacs index built fast, for the /tools/find benchmarks.

``python -m benchmarks.bulk_index FOLDER --studies 20000`` writes storage and
index for 20,000 studies of 2 series of 25 instances (1,000,000 instances,
5,000 patients) into ``FOLDER/storage``, where ``fastpacs.testing.fastpacs_server(FOLDER)``
finds them. The data are seeded and deterministic: names drawn from
syllables, study dates spread over 2000-2024, CT/MR/CR/US/PT studies, 8×8
pixels per instance.

The fast path, and why it gives the same index as the real pipeline
--------------------------------------------------------------------
The real pipeline (POST /instances) parses each file in the worker pool
(``dicom.parse.summarize``), stores its blob with an fsync, and indexes it
with ``index.updates.add_instance`` in a group commit. The loader keeps the
two parts that decide what the index holds and replaces the costly rest:

1. per series, one *template* file is written with pydicom and summarized
   by the real ``summarize``; the instances of the series differ from it
   only in SOPInstanceUID (same length: the last component counts from
   100000) and InstanceNumber (six characters, padded with trailing spaces,
   which DICOM allows and Orthanc drops). Their bytes are the template's
   with those values replaced, and their summaries the template's with the
   same values replaced in the identifiers, the main tags, IndexInSeries and
   the tag JSON (re-compressed as ``summarize`` compresses it). This runs in
   worker processes, which also write the blobs (content-addressed as
   ``BlobStore`` names them, without the per-file fsync: everything is
   synced once at the end);
2. the main process indexes every instance with the real ``add_instance``,
   thousands per transaction, with an ``Origin`` like a local REST upload.

``tests/test_find.py::test_bulk_loader_builds_the_same_index`` loads a small
set both ways (this loader, and the files uploaded to a running fastpacs)
and compares the two indexes database by database; only timestamps differ.
"""

import argparse
import functools
import hashlib
import io
import json
import multiprocessing
import os
import random
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import msgspec
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage

from fastpacs.dicom.parse import InstanceSummary, compress_tags, summarize
from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate, add_instance
from fastpacs.services.ingest import Origin
from fastpacs.storage.blobs import BlobStore, StoredBlob

UID_ROOT = "1.2.826.0.1.3680043.8.498.77."
"""Under pydicom's UID root (free for its users' test data), a branch of its own."""
DEFAULT_ENCODING = "Latin1"
FIRST_SOP_NUMBER = 100_000
INSTANCE_NUMBER_SENTINEL = "424242"
INSTANCE_NUMBER_WIDTH = len(INSTANCE_NUMBER_SENTINEL)
INSTANCES_PER_TRANSACTION = 4000
INDEX_MAP_SIZE_GB = 64
STORAGE_FOLDER = "storage"

SYLLABLES = ["KA", "MO", "RI", "TA", "NE", "SU", "LO", "VI", "RA", "DE", "MI", "NO", "BE", "SA", "TU", "EL"]
FIRST_NAMES = ["Anna", "Jürgen", "Maria", "José", "Chen", "Fatima", "Olivier", "Ingrid", "Kenji", "Zoë"]
STUDY_KINDS = [
    ("CT", CTImageStorage, "CT CHEST W/O CONTRAST", "CHEST"),
    ("CT", CTImageStorage, "CT ABDOMEN PELVIS", "ABDOMEN"),
    ("MR", MRImageStorage, "MR BRAIN", "HEAD"),
    ("MR", MRImageStorage, "MR KNEE RIGHT", "KNEE"),
    ("CR", SecondaryCaptureImageStorage, "XR CHEST PA", "CHEST"),
    ("US", SecondaryCaptureImageStorage, "US ABDOMEN", "ABDOMEN"),
    ("PT", SecondaryCaptureImageStorage, "PET CT WHOLE BODY", "WHOLEBODY"),
]
FIRST_STUDY_DATE = date(2000, 1, 1)
STUDY_DATE_SPAN_DAYS = 25 * 365


@dataclass(frozen=True)
class BulkSpec:
    """What to generate."""

    studies: int = 20_000
    series_per_study: int = 2
    instances_per_series: int = 25
    studies_per_patient: int = 4
    seed: int = 20261127

    @property
    def series(self) -> int:
        return self.studies * self.series_per_study

    @property
    def instances(self) -> int:
        return self.series * self.instances_per_series

    @property
    def patients(self) -> int:
        return -(-self.studies // self.studies_per_patient)


# --- the generated attributes --------------------------------------------------------------------


def patient_name(spec: BulkSpec, patient: int) -> str:
    rng = random.Random(spec.seed * 7919 + patient)
    family = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3, 3))))
    return f"{family}^{rng.choice(FIRST_NAMES)}"


def study_uid(study: int) -> str:
    return f"{UID_ROOT}{study + 1}"


def study_date(spec: BulkSpec, study: int) -> str:
    rng = random.Random(spec.seed * 104729 + study)
    return (FIRST_STUDY_DATE + timedelta(days=rng.randrange(STUDY_DATE_SPAN_DAYS))).strftime("%Y%m%d")


def _patient_tags(spec: BulkSpec, patient: int) -> dict[str, str]:
    rng = random.Random(spec.seed * 15485863 + patient)
    birth = date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365))
    return {
        "PatientID": f"BULK{patient:07d}",
        "PatientName": patient_name(spec, patient),
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "PatientSex": rng.choice("MF"),
    }


def _study_tags(spec: BulkSpec, study: int) -> dict[str, str]:
    rng = random.Random(spec.seed * 32452843 + study)
    description = STUDY_KINDS[study % len(STUDY_KINDS)][2]
    return {
        "StudyInstanceUID": study_uid(study),
        "StudyDate": study_date(spec, study),
        "StudyTime": f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}",
        "StudyDescription": description,
        "AccessionNumber": f"ACC{study + 1:08d}",
        "StudyID": str(study + 1),
        "InstitutionName": "Bulk General Hospital",
        "ReferringPhysicianName": rng.choice(["House^Gregory", "Grey^Meredith", "Quinn^Michaela"]),
    }


def _series_tags(spec: BulkSpec, study: int, series: int) -> dict[str, str]:
    modality, sop_class, description, body_part = STUDY_KINDS[study % len(STUDY_KINDS)]
    return {
        "SeriesInstanceUID": f"{study_uid(study)}.{series + 1}",
        "SeriesNumber": str(series + 1),
        "SeriesDescription": f"{description} #{series + 1}",
        "Modality": modality,
        "BodyPartExamined": body_part,
        "SOPClassUID": sop_class,
        "Manufacturer": "fastpacs bulk loader",
    }


# --- templates and instances ---------------------------------------------------------------------


def _template_file(tags: dict[str, str], sop_instance_uid: str) -> bytes:
    dataset = Dataset()
    dataset.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    dataset.SOPInstanceUID = sop_instance_uid
    dataset.InstanceNumber = INSTANCE_NUMBER_SENTINEL
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    dataset.Rows = dataset.Columns = 8
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    dataset.PixelData = bytes(range(64)) * 2  # 64 little-endian values below 256: no ASCII run in the pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


@dataclass
class SeriesTemplate:
    """One file of a series and its summary, from which every instance of the series is derived."""

    data: bytes
    summary: InstanceSummary
    sop_prefix: str
    json_forms: tuple[str, str, str, str]
    """full, simplified and short tag JSON (decompressed), and the header JSON."""

    @classmethod
    def build(cls, spec: BulkSpec, study: int, series: int) -> "SeriesTemplate":
        tags = {
            **_patient_tags(spec, study // spec.studies_per_patient),
            **_study_tags(spec, study),
            **_series_tags(spec, study, series),
        }
        sop_prefix = f"{tags['SeriesInstanceUID']}."
        data = _template_file(tags, f"{sop_prefix}{FIRST_SOP_NUMBER}")
        summary = summarize(data, DEFAULT_ENCODING)
        stored = summary.tags
        forms = (
            zlib.decompress(stored.full).decode(),
            zlib.decompress(stored.simplified).decode(),
            zlib.decompress(stored.short).decode(),
            stored.header.decode(),
        )
        template = cls(data, summary, sop_prefix, forms)
        template._check_sentinels_are_unique()
        return template

    def _check_sentinels_are_unique(self) -> None:
        sop = f"{self.sop_prefix}{FIRST_SOP_NUMBER}"
        assert self.data.count(sop.encode()) == 2, "SOPInstanceUID: file meta and dataset"
        assert self.data.count(INSTANCE_NUMBER_SENTINEL.encode()) == 1
        for form, sop_count in zip(self.json_forms, (1, 1, 1, 1), strict=True):
            assert form.count(f'"{sop}"') == sop_count
        for form, count in zip(self.json_forms, (1, 1, 1, 0), strict=True):
            assert form.count(f'"{INSTANCE_NUMBER_SENTINEL}"') == count

    def instance(self, index: int) -> tuple[bytes, InstanceSummary]:
        """The file and summary of the ``index``-th instance (0-based) of the series."""
        number = index + 1
        sop = f"{self.sop_prefix}{FIRST_SOP_NUMBER + index}"
        template_sop = f"{self.sop_prefix}{FIRST_SOP_NUMBER}"
        padded_number = f"{number:<{INSTANCE_NUMBER_WIDTH}}"
        data = self.data.replace(INSTANCE_NUMBER_SENTINEL.encode(), padded_number.encode()).replace(
            template_sop.encode(), sop.encode()
        )
        full, simplified, short, header = (
            form.replace(f'"{INSTANCE_NUMBER_SENTINEL}"', f'"{number}"').replace(
                f'"{template_sop}"', f'"{sop}"'
            )
            for form in self.json_forms
        )
        template = self.summary
        instance_tags = {**template.main_tags[3], "SOPInstanceUID": sop, "InstanceNumber": str(number)}
        summary = msgspec.structs.replace(
            template,
            identifiers=(*template.identifiers[:3], sop),
            main_tags=(*template.main_tags[:3], instance_tags),
            index_in_series=number,
            tags=msgspec.structs.replace(
                template.tags,
                full=compress_tags(full.encode()),
                simplified=compress_tags(simplified.encode()),
                short=compress_tags(short.encode()),
                header=header.encode(),
            ),
        )
        return data, summary


def series_files(spec: BulkSpec, series_number: int) -> Iterator[bytes]:
    """The files of one series (numbered 0 .. spec.series - 1), as the loader derives them."""
    template = SeriesTemplate.build(spec, *divmod(series_number, spec.series_per_study))
    for index in range(spec.instances_per_series):
        yield template.instance(index)[0]


def all_files(spec: BulkSpec) -> Iterator[bytes]:
    """Every file of the set, in the order the loader indexes them."""
    for series_number in range(spec.series):
        yield from series_files(spec, series_number)


# --- the loader ----------------------------------------------------------------------------------

_storage: BlobStore | None = None
_made_folders: set[Path] = set()


def _start_worker(storage_root: str) -> None:
    global _storage  # noqa: PLW0603 - one storage handle per worker process, set once
    _storage = BlobStore(Path(storage_root))


def _write_blob(data: bytes) -> StoredBlob:
    """Store bytes where ``BlobStore`` puts them, without its per-file fsync."""
    assert _storage is not None
    digest = hashlib.sha256(data).digest()
    path = _storage.path_of(digest)
    if path.parent not in _made_folders:
        path.parent.mkdir(parents=True, exist_ok=True)
        _made_folders.add(path.parent)
    if not path.exists():
        path.write_bytes(data)
    return StoredBlob(digest=digest, size=len(data))


def _load_series(spec: BulkSpec, series_number: int) -> bytes:
    """Worker: one series' blobs written, its (blob, summary) pairs returned msgpack-encoded."""
    template = SeriesTemplate.build(spec, *divmod(series_number, spec.series_per_study))
    pairs = []
    for index in range(spec.instances_per_series):
        data, summary = template.instance(index)
        pairs.append((_write_blob(data), summary))
    return msgspec.msgpack.encode(pairs)


_PAIRS = msgspec.msgpack.Decoder(list[tuple[StoredBlob, InstanceSummary]])


@dataclass
class LoadReport:
    instances: int
    seconds: float
    instances_per_second: float
    index_bytes: int


def bulk_load(spec: BulkSpec, folder: Path, processes: int = 0, progress: bool = False) -> LoadReport:
    """Write storage and index of ``spec`` into ``folder/storage`` (which must be empty or absent)."""
    root = folder / STORAGE_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    storage = BlobStore(root)
    database = Database(root, INDEX_MAP_SIZE_GB)
    processes = processes or max(1, len(os.sched_getaffinity(0)))
    started = time.monotonic()
    origin = Origin(kind="RestApi", remote_ip="127.0.0.1")
    loaded = 0
    pending: list[tuple[StoredBlob, InstanceSummary]] = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_start_worker, initargs=(str(root),)) as pool:
        results = pool.imap(functools.partial(_load_series, spec), range(spec.series), chunksize=8)
        for encoded in results:
            pending += _PAIRS.decode(encoded)
            if len(pending) >= INSTANCES_PER_TRANSACTION:
                _index(database, storage, pending, origin)
                loaded += len(pending)
                pending = []
                if progress:
                    rate = loaded / (time.monotonic() - started)
                    print(f"\r{loaded:,} / {spec.instances:,} instances, {rate:,.0f}/s", end="", flush=True)
    _index(database, storage, pending, origin)
    loaded += len(pending)
    database.close()
    os.sync()
    seconds = time.monotonic() - started
    if progress:
        print()
    index_bytes = sum(entry.stat().st_size for entry in (root / "fastpacs-index").iterdir())
    return LoadReport(loaded, round(seconds, 1), round(loaded / seconds), index_bytes)


def _index(
    database: Database, storage: BlobStore, pairs: list[tuple[StoredBlob, InstanceSummary]], origin: Origin
) -> None:
    """One write transaction: every pair through the real ``add_instance``."""
    moment = time.time()
    metadata = origin.metadata(moment)
    with database.env.begin(write=True) as txn:
        update = IndexUpdate(txn, database.dbs, lambda digest: storage.path_of(digest).exists())
        for blob, summary in pairs:
            outcome = add_instance(update, summary, blob, metadata, moment)
            assert outcome.status == "Success", outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write (FOLDER/storage holds storage and index)")
    parser.add_argument("--studies", type=int, default=BulkSpec.studies)
    parser.add_argument("--series-per-study", type=int, default=BulkSpec.series_per_study)
    parser.add_argument("--instances-per-series", type=int, default=BulkSpec.instances_per_series)
    parser.add_argument("--processes", type=int, default=0, help="worker processes (default: one per core)")
    arguments = parser.parse_args()
    spec = BulkSpec(arguments.studies, arguments.series_per_study, arguments.instances_per_series)
    print(f"loading {spec.instances:,} instances, {spec.studies:,} studies, {spec.patients:,} patients")
    report = bulk_load(spec, arguments.folder, arguments.processes, progress=True)
    print(json.dumps({"spec": asdict(spec), "report": asdict(report)}, indent=2))


if __name__ == "__main__":
    main()
