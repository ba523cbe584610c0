"""/{level}/{id}/metadata and /{level}/{id}/metadata/{name}.

An entry's answers carry its ETag as Orthanc's do; ``PUT`` and ``DELETE``
take it back in ``If-Match``, ``GET`` in ``If-None-Match`` (304 when it
still matches). The order of the checks is the service's.
"""

from litestar import Request, Response, delete, get, put
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.etags import not_modified, with_etag
from fastpacs.api.responses import empty_ok, flag, json_response, text_response, unknown_resource
from fastpacs.dicom.ids import Level, parse_id
from fastpacs.services.metadata import ETag
from fastpacs.services.registry import Services


def _with_etag(response: Response[bytes], etag: ETag) -> Response[bytes]:
    return with_etag(response, str(etag))


def metadata_handlers(level: Level) -> list[HTTPRouteHandler]:
    base = f"/{level.plural}/{{resource_id:str}}/metadata"

    @get(base, name=f"{level.plural}-metadata")
    async def list_metadata(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        rid = parse_id(resource_id)
        entries = None if rid is None else services.metadata.entries(level, rid)
        if entries is None:
            raise unknown_resource()
        if flag(request, "expand"):
            return json_response({name: entry.value for name, entry in entries.items()})
        return json_response(list(entries))

    @get(f"{base}/{{name:str}}", name=f"{level.plural}-metadata-get")
    async def get_metadata(
        resource_id: str, name: str, request: Request, services: Services
    ) -> Response[bytes]:
        entry = services.metadata.get(level, parse_id(resource_id), name)
        return not_modified(request, str(entry.etag)) or _with_etag(text_response(entry.value), entry.etag)

    @put(f"{base}/{{name:str}}", name=f"{level.plural}-metadata-put", status_code=200)
    async def put_metadata(
        resource_id: str, name: str, request: Request, services: Services
    ) -> Response[bytes]:
        value = (await request.body()).decode("utf-8", errors="replace")
        etag = await services.metadata.put(
            level, parse_id(resource_id), name, value, request.headers.get("if-match")
        )
        return _with_etag(empty_ok(), etag)

    @delete(f"{base}/{{name:str}}", name=f"{level.plural}-metadata-delete", status_code=200)
    async def delete_metadata(
        resource_id: str, name: str, request: Request, services: Services
    ) -> Response[bytes]:
        await services.metadata.delete(level, parse_id(resource_id), name, request.headers.get("if-match"))
        return empty_ok()

    return [list_metadata, get_metadata, put_metadata, delete_metadata]
