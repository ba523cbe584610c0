"""``POST /tools/create-dicom``: new instances built from JSON, stored through the ingest pipeline."""

from typing import Any

import msgspec

from fastpacs.dicom.create import Inheritance, character_set_of, create_dicom, read_options, read_request
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.dicom.modules import MODULES
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import IngestOutcome
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.content import ContentService, TagForm
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin

_SPECIFIC_CHARACTER_SET = "0008,0005"


class Created(msgspec.Struct, frozen=True):
    """What a create-dicom request stored: one instance, or a series (an array ``Content``)."""

    outcomes: list[IngestOutcome]
    is_series: bool


def inherited_tags(full: dict[str, Any], level: Level) -> dict[int, str]:
    """The string values of the modules of ``level`` and the levels above it, in an instance's tags.

    As Orthanc, sequences and binary values are not inherited, and an empty value is.
    """
    inherited: dict[int, str] = {}
    for module_level in range(Level.PATIENT, level + 1):
        for tag, _ in MODULES[Level(module_level)]:
            entry = full.get(f"{tag >> 16:04x},{tag & 0xFFFF:04x}")
            if entry is None:
                continue
            if entry["Type"] == "String":
                inherited[tag] = entry["Value"]
            elif entry["Type"] == "Null":
                inherited[tag] = ""
    return inherited


class CreateService:
    def __init__(
        self, database: Database, pool: WorkerPool, ingest: IngestService, default_encoding: DefaultEncoding
    ):
        self.database = database
        self.pool = pool
        self.ingest = ingest
        self.default_encoding = default_encoding
        self.content = ContentService(database, pool, default_encoding)

    def _sibling(self, parent: Any) -> tuple[Level, RawId]:
        """The parent's level and the instance whose tags the new one inherits; Orthanc's refusals."""
        rid = parse_id(parent) if isinstance(parent, str) else None
        with self.database.read() as view:
            record = view.resource(rid) if rid is not None else None
            if record is None or rid is None:
                raise OrthancError(ErrorCode.CREATE_DICOM_BAD_PARENT)
            if record.level == Level.INSTANCE:
                raise OrthancError(ErrorCode.CREATE_DICOM_PARENT_IS_INSTANCE)
            instances = view.descendants(rid, record.level, Level.INSTANCE)
        if not instances:
            raise OrthancError(ErrorCode.INTERNAL_ERROR)
        return record.level, instances[-1]  # Orthanc's choice: the last one indexed

    async def _inheritance(self, parent: Any) -> Inheritance:
        level, sibling = self._sibling(parent)
        full_json = await self.content.tags(sibling, TagForm.FULL)
        if full_json is None:
            raise OrthancError(ErrorCode.INTERNAL_ERROR)
        full = msgspec.json.decode(full_json)
        term = full.get(_SPECIFIC_CHARACTER_SET, {}).get("Value")
        return Inheritance(
            level=level,
            tags=inherited_tags(full, level),
            character_set=character_set_of(term if isinstance(term, str) else None),
        )

    async def create(self, document: dict[str, Any], origin: Origin) -> Created:
        request = read_request(document)
        inheritance = None
        if not request.legacy and "Parent" in document:
            inheritance = await self._inheritance(document["Parent"])
        request = read_options(request, document)
        files = await self.pool.run(create_dicom, request, inheritance, self.default_encoding.name)
        outcomes = [await self.ingest.ingest(data, origin) for data in files]
        return Created(outcomes, is_series=isinstance(request.content, list) and bool(request.content))
