"""POST /tools/find: search resources by DICOM tags (see :mod:`fastpacs.services.find`)."""

from litestar import Request, Response, post

from fastpacs.api.responses import json_response
from fastpacs.services.find import parse_find_request
from fastpacs.services.registry import Services


@post("/tools/find", name="tools-find", status_code=200)
async def find(request: Request, services: Services) -> Response[bytes]:
    query = parse_find_request(await request.body())
    return json_response(await services.find.find(query))
