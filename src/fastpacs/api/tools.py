"""/tools routes: lookup, create-dicom."""

from litestar import Request, Response, post

from fastpacs.api.instances import upload_answer
from fastpacs.api.responses import json_response, parse_integer
from fastpacs.dicom.ids import Level, format_id
from fastpacs.errors import ErrorCode
from fastpacs.json_body import json_object_body
from fastpacs.services.create import Created
from fastpacs.services.ingest import Origin
from fastpacs.services.registry import Services
from fastpacs.services.resources import resource_path


@post("/tools/lookup", name="tools-lookup", status_code=200)
async def lookup(request: Request, services: Services) -> Response[bytes]:
    body = await request.body()
    identifier = body.decode("utf-8", errors="replace")
    return json_response(services.resources.lookup(identifier))


@post("/tools/create-dicom", name="tools-create-dicom", status_code=200)
async def create_dicom(request: Request, services: Services) -> Response[bytes]:
    declared_size = parse_integer(request.headers.get("content-length", "")) or 0
    with services.ingest.pending.admit(declared_size):  # as uploads: 503 when too much is being stored
        document = json_object_body(await request.body(), ErrorCode.BAD_REQUEST)
        origin = Origin(kind="RestApi", remote_ip=request.client.host if request.client else "")
        created = await services.creator.create(document, origin)
    return json_response(_created_answer(created))


def _created_answer(created: Created) -> dict[str, str]:
    """The new instance as an upload's answer, or the new series (``ID``, ``Path``, ``Status``)."""
    if not created.is_series:
        return upload_answer(created.outcomes[0])
    series = created.outcomes[0].ids[Level.SERIES]
    return {"ID": format_id(series), "Path": resource_path(Level.SERIES, series), "Status": "Success"}
