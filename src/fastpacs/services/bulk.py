"""/tools/bulk-content and /tools/bulk-delete: one request about many resources of any level.

The body names resources by ID, at any level. ``Level`` (bulk-content)
maps each to that level: the resource itself, its ancestor, or its
descendants. IDs nobody knows are skipped, as Orthanc does.
"""

from typing import Any

from fastpacs.dicom.ids import Level, RawId, format_id, parse_id
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate, delete_resource
from fastpacs.index.view import IndexView
from fastpacs.index.writer import IndexWriter
from fastpacs.json_body import json_object_body
from fastpacs.services.metadata import MetadataService
from fastpacs.services.resources import formatted, resource_json, tags_format_of


def _bulk_document(body: bytes) -> dict[str, Any]:
    return json_object_body(body, ErrorCode.BAD_REQUEST, "The body must contain a JSON object")


def parse_bulk_request(body: bytes) -> tuple[list[str], Level | None]:
    """The ``Resources`` (list of IDs) and optional ``Level`` of a bulk request."""
    return _resources_and_level(_bulk_document(body))


def _resources_and_level(request: dict[str, Any]) -> tuple[list[str], Level | None]:
    resources = request.get("Resources")
    if not isinstance(resources, list) or not all(isinstance(item, str) for item in resources):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "List of strings expected in field: Resources")
    level_name = request.get("Level")
    if level_name is None:
        return resources, None
    try:
        return resources, Level.from_name(str(level_name))
    except KeyError:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE) from None


def _at_level(view: IndexView, public_ids: list[str], level: Level | None) -> list[tuple[Level, RawId]]:
    """The known resources, as Orthanc lists them.

    Without ``level``: each at its own level, in the order of the request,
    repetitions kept. With one: each mapped to that level (itself, its
    ancestor or its descendants), once, in the order of their IDs.
    """
    if level is None:
        found = []
        for public_id in public_ids:
            rid = parse_id(public_id)
            record = None if rid is None else view.resource(rid)
            if record is not None and rid is not None:
                found.append((Level(record.level), rid))
        return found
    mapped: set[RawId] = set()
    for own, rid in _at_level(view, public_ids, None):
        if level == own:
            mapped.add(rid)
        elif level < own:
            mapped.add(view.ancestor(rid, own, level))
        else:
            mapped.update(view.descendants(rid, own, level))
    return [(level, rid) for rid in sorted(mapped, key=format_id)]


def _delete_all(update: IndexUpdate, rids: list[RawId]) -> None:
    for rid in rids:
        record = update.resource(rid)
        if record is not None:  # gone with an ancestor deleted before it
            delete_resource(update, Level(record.level), rid)


class BulkService:
    def __init__(self, database: Database, writer: IndexWriter, metadata: MetadataService):
        self.database = database
        self.writer = writer
        self.metadata = metadata

    def content(self, body: bytes) -> list[dict[str, Any]]:
        """The JSON of every resource with its metadata (Orthanc's ``Metadata`` field)."""
        document = _bulk_document(body)
        public_ids, level = _resources_and_level(document)
        tags_format = tags_format_of(document)
        found = []
        with self.database.read() as view:
            for resource_level, rid in _at_level(view, public_ids, level):
                record = view.resource(rid)
                if record is not None:
                    found.append((resource_level, rid, resource_json(view, rid, record)))
        for resource_level, rid, answer in found:
            entries = self.metadata.entries(resource_level, rid) or {}  # its own snapshot: LMDB nests none
            answer["Metadata"] = {name: entry.value for name, entry in entries.items()}
        return [formatted(answer, tags_format) for _, _, answer in found]

    async def delete(self, body: bytes) -> None:
        public_ids, _ = parse_bulk_request(body)
        with self.database.read() as view:
            rids = [rid for _, rid in _at_level(view, public_ids, None)]
        await self.writer.run(lambda update: _delete_all(update, rids))
