"""/tools/bulk-content and /tools/bulk-delete."""

from litestar import Request, Response, post

from fastpacs.api.responses import empty_ok, json_response
from fastpacs.services.registry import Services


@post("/tools/bulk-content", name="tools-bulk-content", status_code=200)
async def bulk_content(request: Request, services: Services) -> Response[bytes]:
    return json_response(services.bulk.content(await request.body()))


@post("/tools/bulk-delete", name="tools-bulk-delete", status_code=200)
async def bulk_delete(request: Request, services: Services) -> Response[bytes]:
    await services.bulk.delete(await request.body())
    return empty_ok()


BULK_HANDLERS = [bulk_content, bulk_delete]
