"""``POST /tools/create-dicom``: a new instance built from JSON, stored through the ingest pipeline."""

import msgspec

from fastpacs.dicom.create import CreateRequest, create_dicom
from fastpacs.dicom.ids import Level, parse_id
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import IngestOutcome
from fastpacs.json_body import json_object_body
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService, Origin


def parse_create_request(body: bytes) -> CreateRequest:
    """The request; Orthanc's bare "Bad request" when the body is not a JSON object."""
    document = json_object_body(body, ErrorCode.BAD_REQUEST)
    try:
        return msgspec.convert(document, CreateRequest)
    except msgspec.ValidationError as error:
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Bad create-dicom request: {error}") from error


class CreateService:
    def __init__(
        self, database: Database, pool: WorkerPool, ingest: IngestService, default_encoding: DefaultEncoding
    ):
        self.database = database
        self.pool = pool
        self.ingest = ingest
        self.default_encoding = default_encoding

    def _parent_tags(self, public_id: str) -> dict[str, str]:
        """Main tags of the parent and its ancestors, which the new instance inherits."""
        rid = parse_id(public_id)
        with self.database.read() as view:
            record = view.resource(rid) if rid is not None else None
            if record is None or record.level == Level.INSTANCE:
                raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Unknown parent resource: {public_id}")
            inherited: dict[str, str] = {}
            while record is not None:
                inherited = {**record.main_tags, **inherited}
                record = view.resource(record.parent) if record.parent is not None else None
        return inherited

    async def create(self, request: CreateRequest, origin: Origin) -> IngestOutcome:
        parent_tags = self._parent_tags(request.parent) if request.parent else {}
        data = await self.pool.run(create_dicom, request, parent_tags, self.default_encoding.name)
        return await self.ingest.ingest(data, origin)
