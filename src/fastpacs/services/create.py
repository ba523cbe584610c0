"""``POST /tools/create-dicom``: new instances built from JSON, stored through the ingest pipeline."""

from typing import Any

import msgspec

from fastpacs.dicom.create import create_dicom, read_options, read_request
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import IngestOutcome
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.content import ContentService, TagForm
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin


class Created(msgspec.Struct, frozen=True):
    """What a create-dicom request stored: one instance, or a series (an array ``Content``)."""

    outcomes: list[IngestOutcome]
    is_series: bool


class CreateService:
    def __init__(
        self,
        database: Database,
        pool: WorkerPool,
        ingest: IngestService,
        default_encoding: DefaultEncoding,
        content: ContentService,
    ):
        self.database = database
        self.pool = pool
        self.ingest = ingest
        self.default_encoding = default_encoding
        self.content = content
        """Reads the tags a new instance inherits from its parent's."""

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

    async def _parent(self, parent: Any) -> tuple[Level, bytes]:
        """The parent's level and the full tags of the instance the new one inherits from."""
        level, sibling = self._sibling(parent)
        full_json = await self.content.tags(sibling, TagForm.FULL)
        if full_json is None:
            raise OrthancError(ErrorCode.INTERNAL_ERROR)
        return level, full_json

    async def create(self, document: dict[str, Any], origin: Origin) -> Created:
        request = read_request(document)
        parent = None
        if not request.legacy and "Parent" in document:
            parent = await self._parent(document["Parent"])
        request = read_options(request, document)
        files = await self.pool.run(create_dicom, request, parent, self.default_encoding.name)
        outcomes = [await self.ingest.ingest(data, origin) for data in files]
        return Created(outcomes, is_series=isinstance(request.content, list) and bool(request.content))
