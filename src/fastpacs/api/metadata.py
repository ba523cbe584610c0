"""/{level}/{id}/metadata and /{level}/{id}/metadata/{name}."""

from litestar import Request, Response, delete, get, put
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.responses import empty_ok, flag, json_response, text_response, unknown_resource
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.services.registry import Services


def _resource(public_id: str) -> RawId:
    rid = parse_id(public_id)
    if rid is None:
        raise unknown_resource()
    return rid


def metadata_handlers(level: Level) -> list[HTTPRouteHandler]:
    base = f"/{level.plural}/{{resource_id:str}}/metadata"

    @get(base, name=f"{level.plural}-metadata")
    async def list_metadata(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        entries = services.metadata.entries(level, _resource(resource_id))
        if entries is None:
            raise unknown_resource()
        if flag(request, "expand"):
            return json_response({name: entry.value for name, entry in entries.items()})
        return json_response(list(entries))

    @get(f"{base}/{{name:str}}", name=f"{level.plural}-metadata-get")
    async def get_metadata(resource_id: str, name: str, services: Services) -> Response[bytes]:
        entry = services.metadata.get(level, _resource(resource_id), name)
        if entry is None:
            raise unknown_resource()
        response = text_response(entry.value)
        response.headers["ETag"] = f'"{entry.revision}"'
        return response

    @put(f"{base}/{{name:str}}", name=f"{level.plural}-metadata-put", status_code=200)
    async def put_metadata(
        resource_id: str, name: str, request: Request, services: Services
    ) -> Response[bytes]:
        value = (await request.body()).decode("utf-8", errors="replace")
        try:
            revision = await services.metadata.set(
                level, _resource(resource_id), name, value, request.headers.get("if-match")
            )
        except KeyError:
            raise unknown_resource() from None
        response = empty_ok()
        response.headers["ETag"] = f'"{revision}"'
        return response

    @delete(f"{base}/{{name:str}}", name=f"{level.plural}-metadata-delete", status_code=200)
    async def delete_metadata(
        resource_id: str, name: str, request: Request, services: Services
    ) -> Response[bytes]:
        try:
            await services.metadata.set(
                level, _resource(resource_id), name, None, request.headers.get("if-match")
            )
        except KeyError:
            raise unknown_resource() from None
        return empty_ok()

    return [list_metadata, get_metadata, put_metadata, delete_metadata]
