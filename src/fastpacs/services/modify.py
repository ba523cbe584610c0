"""Modify, anonymize, split and merge: the use cases behind /modify, /anonymize, /split and /merge.

Instance level: the modified file is the answer and nothing is stored.
Patient, study and series level, split and merge: every instance concerned
is modified in the worker pool, a batch at a time, and the new files are
stored through the ingest pipeline like any upload (so the index, the change
log and the metrics see ordinary new instances). Modified and anonymized
resources then record where they come from (``ModifiedFrom`` /
``AnonymizedFrom`` on each new resource whose ID differs from its source's),
and the sources are deleted at the end unless ``KeepSource``.

The requests are read, and refused when bad, before any instance is touched
(:mod:`fastpacs.dicom.modification_request`). A :class:`ModificationRun` is
the work of one request, done in steps (one batch of instances each) so that
the job engine can run it as well as a synchronous request.
"""

import asyncio
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from fastpacs.dicom.ids import Level, RawId, format_id, parse_id
from fastpacs.dicom.modification import Modification, new_uid
from fastpacs.dicom.modification_request import (
    PATIENT_MODULE,
    STUDY_MODULE,
    AnonymizationRequest,
    decode_body,
    merge_modification,
    parse_anonymize_request,
    parse_modify_request,
    split_modification,
    string_member,
    with_patient_name,
)
from fastpacs.dicom.transcoding import check_transfer_syntax
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.metadata import SYSTEM_METADATA
from fastpacs.index.updates import IndexUpdate, IngestOutcome, delete_resource, next_anonymization_number
from fastpacs.index.view import IndexView
from fastpacs.index.writer import IndexWriter
from fastpacs.pool.modify import modify_stored, modify_stored_file
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin
from fastpacs.services.resources import resource_path

INSTANCES_PER_WORKER = 8
"""Instances one worker modifies per round trip; a step gives each worker one such batch."""
DESCRIPTION = "REST API"


@dataclass(frozen=True)
class SourceInstance:
    """An instance to modify: its IDs (patient, study, series, instance) and its stored file."""

    ids: tuple[RawId, RawId, RawId, RawId]
    digest: bytes


@dataclass
class ModificationRun:
    """The work of one request: the sources, what to do to them, and what came out."""

    sources: list[SourceInstance]
    modification: Modification
    origin: Origin
    keep_source: bool
    provenance: str | None
    """``ModifiedFrom``, ``AnonymizedFrom``, or ``None`` (split and merge record nothing)."""
    step_size: int
    outcomes: list[IngestOutcome] = field(default_factory=list)
    failed: int = 0
    processed: list[RawId] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return max(1, -(-len(self.sources) // self.step_size))

    def batch(self, step: int) -> list[SourceInstance]:
        return self.sources[step * self.step_size : (step + 1) * self.step_size]

    @property
    def first(self) -> IngestOutcome | None:
        return self.outcomes[0] if self.outcomes else None


class ModifyService:
    def __init__(
        self,
        database: Database,
        writer: IndexWriter,
        pool: WorkerPool,
        ingest: IngestService,
        default_encoding: DefaultEncoding,
    ):
        self.database = database
        self.writer = writer
        self.pool = pool
        self.ingest = ingest
        self.default_encoding = default_encoding

    # -- instance level: the file is the answer

    async def modify_instance(self, rid: RawId, body: bytes) -> bytes:
        request = decode_body(body)
        modification = parse_modify_request(request, None)
        transcode = string_member(request, "Transcode")
        if transcode is not None:
            check_transfer_syntax(transcode)
        digest = self._digest(rid)
        return await self.pool.run(
            modify_stored_file, modification, digest, self.default_encoding.name, transcode
        )

    async def anonymize_instance(self, rid: RawId, body: bytes) -> bytes:
        anonymization = parse_anonymize_request(decode_body(body))
        digest = self._digest(rid)  # an unknown instance consumes no generated name
        modification = await self._named(anonymization)
        return await self.pool.run(modify_stored_file, modification, digest, self.default_encoding.name, None)

    def _digest(self, rid: RawId) -> bytes:
        with self.database.read() as view:
            record = view.resource_at(rid, Level.INSTANCE)
            if record is None or record.blob is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            return record.blob.digest

    async def _named(self, anonymization: AnonymizationRequest) -> Modification:
        """The anonymization, with a generated PatientName when the request leaves it to the server."""
        if not anonymization.needs_patient_name:
            return anonymization.modification
        number = await self.writer.run(next_anonymization_number)
        return with_patient_name(anonymization.modification, f"Anonymized{number}")

    # -- patient, study and series level: new resources

    async def modify_resource(
        self, level: Level, public_id: str, body: bytes, origin: Origin
    ) -> dict[str, Any]:
        request = decode_body(body)
        modification = parse_modify_request(request, level)
        sources = self._sources_below(public_id)
        return await self._resource(level, request, sources, modification, origin, anonymization=False)

    async def anonymize_resource(
        self, level: Level, public_id: str, body: bytes, origin: Origin
    ) -> dict[str, Any]:
        request = decode_body(body)
        anonymization = parse_anonymize_request(request)
        sources = self._sources_below(public_id)  # an unknown resource consumes no generated name
        modification = await self._named(anonymization)
        return await self._resource(level, request, sources, modification, origin, anonymization=True)

    async def _resource(
        self,
        level: Level,
        request: dict[str, Any],
        sources: list[SourceInstance],
        modification: Modification,
        origin: Origin,
        *,
        anonymization: bool,
    ) -> dict[str, Any]:
        run = self.new_run(
            sources,
            modification,
            origin,
            keep_source=_keep_source(request, default=True),
            provenance="AnonymizedFrom" if anonymization else "ModifiedFrom",
        )
        await self.complete(run)
        return modification_content(run, level, anonymization)

    def _sources_below(self, public_id: str) -> list[SourceInstance]:
        """Every instance below a resource of any level (Orthanc takes any ID on these routes)."""
        rid = parse_id(public_id)
        with self.database.read() as view:
            record = view.resource(rid) if rid is not None else None
            if record is None or rid is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            return _instances_below(view, rid, Level(record.level))

    # -- split and merge

    async def split(self, public_id: str, body: bytes, origin: Origin) -> dict[str, Any]:
        request = decode_body(body)
        study = parse_id(public_id)
        with self.database.read() as view:
            if study is None or view.resource_at(study, Level.STUDY) is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot split unknown study {public_id}")
            sources = _split_sources(view, study, request)
        if not sources:
            raise OrthancError(
                ErrorCode.BAD_REQUEST, 'Both the "Series" and the "Instances" fields are missing'
            )
        keep_source = _keep_source(request, default=False)
        remove = _strings(request, "Remove")
        replace = request.get("Replace", {})
        if not isinstance(replace, dict) or not all(isinstance(value, str) for value in replace.values()):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
        target_uid = new_uid()
        modification = split_modification(target_uid, replace, remove)
        run = self.new_run(sources, modification, origin, keep_source=keep_source, provenance=None)
        await self.complete(run)
        return split_content(run, target_uid)

    async def merge(self, public_id: str, body: bytes, origin: Origin) -> dict[str, Any]:
        request = decode_body(body)
        study = parse_id(public_id)
        with self.database.read() as view:
            if study is None or view.resource_at(study, Level.STUDY) is None:
                raise OrthancError(
                    ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge into an unknown study: {public_id}"
                )
            target_values = _module_values(view, study)
            sources = _merge_sources(view, study, _strings(request, "Resources", required=True))
        keep_source = _keep_source(request, default=False)
        run = self.new_run(
            sources, merge_modification(target_values), origin, keep_source=keep_source, provenance=None
        )
        await self.complete(run)
        return merge_content(run, study)

    # -- running the work

    def new_run(
        self,
        sources: list[SourceInstance],
        modification: Modification,
        origin: Origin,
        *,
        keep_source: bool,
        provenance: str | None,
    ) -> ModificationRun:
        return ModificationRun(
            sources=sources,
            modification=modification,
            origin=origin,
            keep_source=keep_source,
            provenance=provenance,
            step_size=INSTANCES_PER_WORKER * self.pool.processes,
        )

    async def complete(self, run: ModificationRun) -> None:
        """Every step, then the end (the synchronous form of a request)."""
        for step in range(run.total_steps):
            await self.run_step(run, step)
        await self.finish(run)

    async def run_step(self, run: ModificationRun, step: int) -> None:
        """Modify one batch (spread over the workers) and store the new files."""
        batch = run.batch(step)
        workers = min(self.pool.processes, len(batch))
        results = await asyncio.gather(
            *(
                self.pool.run(
                    modify_stored,
                    run.modification,
                    [source.digest for source in batch[worker::workers]],
                    self.default_encoding.name,
                )
                for worker in range(workers)
            )
        )
        files: list[bytes | None] = [None] * len(batch)
        for worker, chunk in enumerate(results):
            files[worker::workers] = chunk
        stored = [(source, data) for source, data in zip(batch, files, strict=True) if data is not None]
        run.failed += len(batch) - len(stored)
        outcomes = await asyncio.gather(*(self.ingest.ingest(data, run.origin) for _, data in stored))
        if run.provenance is not None:
            provenance = run.provenance
            pairs = [(source, outcome) for (source, _), outcome in zip(stored, outcomes, strict=True)]
            await self.writer.run(lambda update: _record_provenance(update, provenance, pairs))
        run.outcomes.extend(outcomes)
        run.processed.extend(source.ids[Level.INSTANCE] for source, _ in stored)

    async def finish(self, run: ModificationRun) -> None:
        """Delete the sources, unless kept (never a source the result landed on)."""
        if run.keep_source:
            return
        created = {outcome.ids[Level.INSTANCE] for outcome in run.outcomes}
        doomed = [rid for rid in run.processed if rid not in created]
        await self.writer.run(lambda update: _delete_instances(update, doomed))


def _keep_source(request: dict[str, Any], default: bool) -> bool:
    value = request.get("KeepSource", default)
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Boolean value expected in field: KeepSource")
    return value


def _strings(request: dict[str, Any], name: str, required: bool = False) -> list[str]:
    """A list of strings of the request (empty when absent and not required)."""
    value = request.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"List of strings expected in field: {name}")
    return value


def _instances_below(view: IndexView, rid: RawId, level: Level) -> list[SourceInstance]:
    ancestors = [rid]
    current = rid
    for _ in range(level):
        record = view.resource(current)
        assert record is not None and record.parent is not None
        current = record.parent
        ancestors.insert(0, current)
    found: list[SourceInstance] = []

    def walk(node: RawId, path: list[RawId], node_level: Level) -> None:
        if node_level == Level.INSTANCE:
            record = view.resource(node)
            if record is not None and record.blob is not None:
                found.append(
                    SourceInstance(ids=(path[0], path[1], path[2], path[3]), digest=record.blob.digest)
                )
            return
        for child in view.children(node):
            walk(child, [*path, child], Level(node_level + 1))

    walk(rid, ancestors, level)
    return found


def _split_sources(view: IndexView, study: RawId, request: dict[str, Any]) -> list[SourceInstance]:
    sources: dict[RawId, SourceInstance] = {}
    for public_id in _strings(request, "Series"):
        series = parse_id(public_id)
        record = view.resource_at(series, Level.SERIES) if series is not None else None
        if record is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        if record.parent != study:
            raise OrthancError(
                ErrorCode.UNKNOWN_RESOURCE,
                f"This series does not belong to the study to be split: {public_id}",
            )
        for source in _instances_below(view, series, Level.SERIES):
            sources.setdefault(source.ids[Level.INSTANCE], source)
    for public_id in _strings(request, "Instances"):
        instance = parse_id(public_id)
        found = _instances_below(view, instance, Level.INSTANCE) if instance is not None else []
        if not found or found[0].ids[Level.STUDY] != study:
            raise OrthancError(
                ErrorCode.UNKNOWN_RESOURCE,
                f"This instance does not belong to the study to be split: {public_id}",
            )
        sources.setdefault(instance, found[0])
    return list(sources.values())


def _merge_sources(view: IndexView, study: RawId, resources: list[str]) -> list[SourceInstance]:
    target = format_id(study)
    sources: dict[RawId, SourceInstance] = {}
    for public_id in resources:
        rid = parse_id(public_id)
        record = view.resource(rid) if rid is not None else None
        if record is None or rid is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Cannot find this resource: {public_id}")
        level = Level(record.level)
        found = _instances_below(view, rid, level)
        if level == Level.PATIENT:
            raise OrthancError(
                ErrorCode.UNKNOWN_RESOURCE,
                f"This resource is neither a study, nor a series, nor an instance: {public_id} is a Patient",
            )
        if level == Level.STUDY and rid == study:
            raise OrthancError(
                ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge a study into the same study: {public_id}"
            )
        if level > Level.STUDY and view.ancestor(rid, level, Level.STUDY) == study:
            kind = "series" if level == Level.SERIES else "instance"
            raise OrthancError(
                ErrorCode.UNKNOWN_RESOURCE, f"Cannot merge {kind} {public_id} into its parent study {target}"
            )
        for source in found:
            sources.setdefault(source.ids[Level.INSTANCE], source)
    return list(sources.values())


def _module_values(view: IndexView, study: RawId) -> dict[int, str]:
    """The patient and study module attributes of the study's first instance that have a text value."""
    instances = view.descendants(study, Level.STUDY, Level.INSTANCE)
    stored = view.stored_tags(instances[0]) if instances else None
    if stored is None:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
    full = json.loads(zlib.decompress(stored.full))
    values = {}
    for tag in (*PATIENT_MODULE, *STUDY_MODULE):
        entry = full.get(f"{tag >> 16:04x},{tag & 0xFFFF:04x}")
        if entry is not None and entry["Type"] == "String":
            values[tag] = entry["Value"]
    return values


def _record_provenance(
    update: IndexUpdate, name: str, pairs: list[tuple[SourceInstance, IngestOutcome]]
) -> None:
    """``ModifiedFrom``/``AnonymizedFrom`` on the resources whose ID differs from their source's."""
    for source, outcome in pairs:
        for level in Level:
            new, old = outcome.ids[level], source.ids[level]
            if (new != old or level == Level.INSTANCE) and update.resource(new) is not None:
                current = update.metadata_value(new, SYSTEM_METADATA[name])
                if current is None or current.value != format_id(old):
                    update.set_metadata(new, {name: format_id(old)})


def _delete_instances(update: IndexUpdate, instances: list[RawId]) -> None:
    for rid in instances:
        if update.resource_at(rid, Level.INSTANCE) is not None:
            delete_resource(update, Level.INSTANCE, rid)


def modification_content(run: ModificationRun, level: Level, anonymization: bool) -> dict[str, Any]:
    """Orthanc's answer to a patient/study/series /modify or /anonymize (a job's ``Content``)."""
    content: dict[str, Any] = {
        "Description": DESCRIPTION,
        "FailedInstancesCount": run.failed,
        "InstancesCount": len(run.sources),
        "IsAnonymization": anonymization,
    }
    first = run.first
    if first is not None:
        rid = first.ids[level]
        content |= {
            "ID": format_id(rid),
            "Path": resource_path(level, rid),
            "PatientID": format_id(first.ids[Level.PATIENT]),
            "Type": level.type_name,
        }
    return content


def split_content(run: ModificationRun, target_uid: str) -> dict[str, Any]:
    content: dict[str, Any] = {
        "Description": DESCRIPTION,
        "FailedInstancesCount": run.failed,
        "InstancesCount": len(run.sources),
        "TargetStudyUID": target_uid,
    }
    if run.first is not None:
        content["TargetStudy"] = format_id(run.first.ids[Level.STUDY])
    return content


def merge_content(run: ModificationRun, study: RawId) -> dict[str, Any]:
    return {
        "Description": DESCRIPTION,
        "FailedInstancesCount": run.failed,
        "InstancesCount": len(run.sources),
        "TargetStudy": format_id(study),
    }
