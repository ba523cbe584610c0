"""/tools routes of the foundation: lookup."""

from litestar import Request, Response, post

from fastpacs.api.responses import json_response
from fastpacs.services.registry import Services


@post("/tools/lookup", name="tools-lookup", status_code=200)
async def lookup(request: Request, services: Services) -> Response[bytes]:
    body = await request.body()
    identifier = body.decode("utf-8", errors="replace")
    return json_response(services.resources.lookup(identifier))
