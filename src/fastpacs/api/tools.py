"""/tools routes: lookup, create-dicom."""

from litestar import Request, Response, post

from fastpacs.api.instances import upload_answer
from fastpacs.api.responses import json_response, parse_integer
from fastpacs.services.create import parse_create_request
from fastpacs.services.ingest import Origin
from fastpacs.services.registry import Services


@post("/tools/lookup", name="tools-lookup", status_code=200)
async def lookup(request: Request, services: Services) -> Response[bytes]:
    body = await request.body()
    identifier = body.decode("utf-8", errors="replace")
    return json_response(services.resources.lookup(identifier))


@post("/tools/create-dicom", name="tools-create-dicom", status_code=200)
async def create_dicom(request: Request, services: Services) -> Response[bytes]:
    declared_size = parse_integer(request.headers.get("content-length", "")) or 0
    with services.ingest.pending.admit(declared_size):  # as uploads: 503 when too much is being stored
        create_request = parse_create_request(await request.body())
        origin = Origin(kind="RestApi", remote_ip=request.client.host if request.client else "")
        outcome = await services.creator.create(create_request, origin)
    return json_response(upload_answer(outcome))
