"""/exports: the log of resources sent to modalities and peers (``LogExportedResources``)."""

from litestar import Request, Response, delete, get

from fastpacs.api.responses import empty_ok, flag, json_response
from fastpacs.api.system import since_and_limit  # the same reading of since/limit as /changes
from fastpacs.services.registry import Services


@get("/exports", name="exports")
async def exports(request: Request, services: Services) -> Response[bytes]:
    since, limit = since_and_limit(request.query_params.get("since"), request.query_params.get("limit"))
    return json_response(services.exports.entries(since, limit, flag(request, "last")))


@delete("/exports", name="exports-clear", status_code=200)
async def clear_exports(services: Services) -> Response[bytes]:
    await services.exports.clear()
    return empty_ok()


EXPORT_HANDLERS = [exports, clear_exports]
