"""Modify, anonymize, split and merge: the use cases behind /modify, /anonymize, /split, /merge
and /tools/bulk-modify, /tools/bulk-anonymize.

Instance level: the modified file is the answer and nothing is stored.
Patient, study and series level, split and merge: the instances concerned
are modified in the worker pool and stored through the ingest pipeline like
any upload, by a job (:mod:`fastpacs.services.modification_jobs`); as in
Orthanc, the request waits for its job and answers the job's content
(``"Synchronous": true``, the default), or answers the job's ID at once
(``"Asynchronous": true`` or ``"Synchronous": false``, with ``Priority``).

A bulk request names resources of any level (``Resources``); every instance
below them is modified by one ResourceModification job, at the level of
``Level`` (bulk-modify; when absent: deduced from the identifiers replaced,
as for an instance), and the answer lists every resource the new instances
belong to.

Every request is read, and refused when bad, before any instance is touched
(:mod:`fastpacs.dicom.modification_request`); the number of a generated
``AnonymizedN`` is drawn only once the request is accepted.
"""

import json
import zlib
from typing import Any

from fastpacs.dicom.ids import Level, RawId, format_id, parse_id
from fastpacs.dicom.jpeg_baseline import QUALITY
from fastpacs.dicom.modification import Modification, new_uid
from fastpacs.dicom.modification_request import (
    SPLIT_MODULE_TAGS,
    AnonymizationRequest,
    anonymization_refusal,
    decode_body,
    level_refusal,
    merge_modification,
    parse_anonymize_request,
    parse_modify_request,
    read_modify_request,
    split_modification,
    string_member,
    with_patient_name,
)
from fastpacs.dicom.transcoding import is_transfer_syntax
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import next_anonymization_number
from fastpacs.index.view import IndexView
from fastpacs.index.writer import IndexWriter
from fastpacs.jobs.engine import JobEngine
from fastpacs.jobs.job import JobState
from fastpacs.pool.modify import modify_stored_file
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.find import parse_level
from fastpacs.services.ingest import IngestService, Origin
from fastpacs.services.modification_jobs import (
    INSTANCES_PER_WORKER,
    JOB_TYPES,
    MergeStudyJob,
    ModificationJob,
    ModificationWork,
    ResourceModificationJob,
    RunState,
    SourceInstance,
    SplitStudyJob,
)
from fastpacs.services.request_fields import boolean_field, is_synchronous, priority_field
from fastpacs.storage.blobs import StoredBlob


class ModifyService:
    def __init__(
        self,
        database: Database,
        writer: IndexWriter,
        pool: WorkerPool,
        ingest: IngestService,
        default_encoding: DefaultEncoding,
        *,
        lossy_quality: int = QUALITY,
        engine: JobEngine | None = None,
    ):
        self.database = database
        self.writer = writer
        self.pool = pool
        self.default_encoding = default_encoding
        self.engine = engine
        self.work = ModificationWork(pool, writer, ingest, default_encoding, lossy_quality)
        if engine is not None:
            for job_type in JOB_TYPES:
                engine.register(job_type.type_name, job_type.loader(self.work))

    # -- instance level: the file is the answer

    async def modify_instance(self, rid: RawId, body: bytes) -> bytes:
        request = decode_body(body)
        modification = parse_modify_request(request, None)
        transcode = string_member(request, "Transcode")
        if transcode is not None and not is_transfer_syntax(transcode):
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown transfer syntax: {transcode}")
        blob = self._blob(rid)
        target = self.work.transcode_target(transcode)
        encoding = self.default_encoding.name
        return await self.pool.run(modify_stored_file, modification, blob, encoding, target)

    async def anonymize_instance(self, rid: RawId, body: bytes) -> bytes:
        anonymization = parse_anonymize_request(decode_body(body))
        blob = self._blob(rid)  # an unknown instance consumes no generated name
        modification = await self._named(anonymization)
        refusal = anonymization_refusal(anonymization)  # after the name, which Orthanc's refusal consumes
        if refusal is not None:
            raise refusal
        return await self.pool.run(modify_stored_file, modification, blob, self.default_encoding.name, None)

    def _blob(self, rid: RawId) -> StoredBlob:
        with self.database.read() as view:
            record = view.resource_at(rid, Level.INSTANCE)
            if record is None or record.blob is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            return record.blob

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
        modification = read_modify_request(request, level)
        return await self._resource(
            level=level,
            sources=self._sources_below(public_id),
            request=request,
            modification=modification,
            origin=origin,
            provenance="ModifiedFrom",
            refusal=level_refusal(modification, level),
        )

    async def anonymize_resource(
        self, level: Level, public_id: str, body: bytes, origin: Origin
    ) -> dict[str, Any]:
        request = decode_body(body)
        anonymization = parse_anonymize_request(request)
        sources = self._sources_below(public_id)  # an unknown resource consumes no generated name
        modification = await self._named(anonymization)
        return await self._resource(
            level=level,
            sources=sources,
            request=request,
            modification=modification,
            origin=origin,
            provenance="AnonymizedFrom",
            refusal=anonymization_refusal(anonymization),
        )

    async def _resource(
        self,
        *,
        level: Level,
        sources: list[SourceInstance],
        request: dict[str, Any],
        modification: Modification,
        origin: Origin,
        provenance: str,
        bulk: bool = False,
        refusal: OrthancError | None = None,
    ) -> dict[str, Any]:
        """``refusal``: the error every instance gets (:func:`level_refusal`), answered at once to a
        synchronous request, the error of the job an asynchronous one gets (as Orthanc)."""
        transcode = string_member(request, "Transcode")
        if transcode is not None and not is_transfer_syntax(transcode):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Unknown transfer syntax UID: {transcode}")
        if refusal is not None and (is_synchronous(request) or self.engine is None):
            raise refusal
        state = self._state(
            sources,
            modification,
            origin,
            keep_source=boolean_field(request, "KeepSource", True),
            permissive=boolean_field(request, "Permissive", False),
            provenance=provenance,
            transcode=transcode,
            level=level,
            bulk=bulk,
            refusal=None if refusal is None else (refusal.code, refusal.details or ""),
        )
        return await self._run(ResourceModificationJob(self.work, state), request)

    def _sources_below(self, public_id: str) -> list[SourceInstance]:
        """Every instance below a resource of any level (Orthanc takes any ID on these routes)."""
        rid = parse_id(public_id)
        with self.database.read() as view:
            record = view.resource(rid) if rid is not None else None
            if record is None or rid is None:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
            return _instances_below(view, rid, Level(record.level))

    # -- resources of any level at once: /tools/bulk-modify and /tools/bulk-anonymize

    async def bulk_modify(self, body: bytes, origin: Origin) -> dict[str, Any]:
        request = decode_body(body)
        modification = parse_modify_request(request, None)
        level = _bulk_level(request)
        sources = self._bulk_sources(request)
        refusal = None
        if sources and level is not None:
            # The rules of the level are Orthanc's job's: they refuse instances, so a request without
            # any passes.
            modification = read_modify_request(request, level)
            refusal = level_refusal(modification, level)
        return await self._resource(
            level=modification.level,
            sources=sources,
            request=request,
            modification=modification,
            origin=origin,
            provenance="ModifiedFrom",
            bulk=True,
            refusal=refusal,
        )

    async def bulk_anonymize(self, body: bytes, origin: Origin) -> dict[str, Any]:
        request = decode_body(body)
        anonymization = parse_anonymize_request(request)  # ``Level`` is not read (as Orthanc)
        sources = self._bulk_sources(request)  # unknown resources consume no generated name
        modification = await self._named(anonymization)
        return await self._resource(
            level=modification.level,
            sources=sources,
            request=request,
            modification=modification,
            origin=origin,
            provenance="AnonymizedFrom",
            bulk=True,
            refusal=anonymization_refusal(anonymization) if sources else None,
        )

    def _bulk_sources(self, request: dict[str, Any]) -> list[SourceInstance]:
        """Every instance below the ``Resources`` of a bulk request, each once."""
        sources: dict[RawId, SourceInstance] = {}
        for public_id in _strings(request, "Resources", required=True):
            for source in self._sources_below(public_id):
                sources.setdefault(source.ids[Level.INSTANCE], source)
        return list(sources.values())

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
        keep_source = boolean_field(request, "KeepSource", False)
        remove = _strings(request, "Remove")
        replace = request.get("Replace", {})
        if not isinstance(replace, dict) or not all(isinstance(value, str) for value in replace.values()):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
        target_uid = new_uid()
        modification = split_modification(target_uid, replace, remove)
        state = self._state(
            sources,
            modification,
            origin,
            keep_source=keep_source,
            permissive=boolean_field(request, "Permissive", False),
            target_study_uid=target_uid,
        )
        return await self._run(SplitStudyJob(self.work, state), request)

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
        keep_source = boolean_field(request, "KeepSource", False)
        modification = merge_modification(target_values)
        permissive = boolean_field(request, "Permissive", False)
        state = self._state(
            sources, modification, origin, keep_source=keep_source, permissive=permissive, target_study=study
        )
        return await self._run(MergeStudyJob(self.work, state), request)

    # -- running the work

    def _state(
        self, sources: list[SourceInstance], modification: Modification, origin: Origin, **options: Any
    ) -> RunState:
        step_size = INSTANCES_PER_WORKER * self.pool.processes
        return RunState(
            sources=sources, modification=modification, origin=origin, step_size=step_size, **options
        )

    async def _run(self, job: ModificationJob, request: dict[str, Any]) -> dict[str, Any]:
        """The job's content once it has run (synchronous), or its ID (asynchronous), as Orthanc answers."""
        synchronous = is_synchronous(request)
        priority = priority_field(request)
        if self.engine is None:
            if not synchronous:
                raise OrthancError(ErrorCode.NOT_IMPLEMENTED, "No job engine to run asynchronous requests")
            await self.work.complete(job.state)
            return job.content()
        if not synchronous:
            job_id = await self.engine.submit(job, priority)
            return {"ID": job_id, "Path": f"/jobs/{job_id}"}
        tracked = await self.engine.wait(self.engine.run_now(job, priority))
        if tracked.state == JobState.FAILURE:
            raise OrthancError(ErrorCode(tracked.error_code), tracked.error_details or None)
        return job.content()


def _bulk_level(request: dict[str, Any]) -> Level | None:
    """The ``Level`` of a bulk request, ``None`` when absent."""
    name = request.get("Level")
    if name is None:
        return None
    if not isinstance(name, str):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "String value expected in field: Level")
    return parse_level(name)


def _strings(request: dict[str, Any], name: str, required: bool = False) -> list[str]:
    """A list of strings of the request (empty when absent and not required)."""
    value = request.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"List of strings expected in field: {name}")
    return value


def _instances_below(view: IndexView, rid: RawId, level: Level) -> list[SourceInstance]:
    """The stored instances below a resource (itself for an instance), with their parents' IDs."""
    ancestors = [rid]
    for _ in range(level):
        record = view.resource(ancestors[0])
        assert record is not None and record.parent is not None
        ancestors.insert(0, record.parent)
    found: list[SourceInstance] = []

    def walk(node: RawId, path: list[RawId], node_level: Level) -> None:
        if node_level == Level.INSTANCE:
            record = view.resource(node)
            if record is not None and record.blob is not None:
                found.append(SourceInstance(ids=(path[0], path[1], path[2], path[3]), blob=record.blob))
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
        if record is None or series is None:
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
        found = []
        if instance is not None and view.resource_at(instance, Level.INSTANCE) is not None:
            found = _instances_below(view, instance, Level.INSTANCE)
        if not found or found[0].ids[Level.STUDY] != study:
            raise OrthancError(
                ErrorCode.UNKNOWN_RESOURCE,
                f"This instance does not belong to the study to be split: {public_id}",
            )
        sources.setdefault(found[0].ids[Level.INSTANCE], found[0])
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
        for source in _instances_below(view, rid, level):
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
    for tag in SPLIT_MODULE_TAGS:
        entry = full.get(f"{tag >> 16:04x},{tag & 0xFFFF:04x}")
        if entry is not None and entry["Type"] == "String":
            values[tag] = entry["Value"]
    return values
