"""/{level}/{id}/reconstruct, /tools/reconstruct and /tools/invalidate-tags."""

from litestar import Response, post
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.responses import empty_ok, unknown_resource
from fastpacs.dicom.ids import Level, parse_id
from fastpacs.services.registry import Services


def _reconstruct_handler(level: Level) -> HTTPRouteHandler:
    @post(
        f"/{level.plural}/{{resource_id:str}}/reconstruct",
        name=f"{level.plural}-reconstruct",
        status_code=200,
    )
    async def reconstruct(resource_id: str, services: Services) -> Response[bytes]:
        rid = parse_id(resource_id)
        if rid is None:
            raise unknown_resource()
        await services.reconstruct.reconstruct(rid)
        return empty_ok()

    return reconstruct


@post("/tools/reconstruct", name="tools-reconstruct", status_code=200)
async def reconstruct_all(services: Services) -> Response[bytes]:
    await services.reconstruct.reconstruct()
    return empty_ok()


@post("/tools/invalidate-tags", name="tools-invalidate-tags", status_code=200)
async def invalidate_tags(services: Services) -> Response[bytes]:
    services.reconstruct.invalidate_tags()
    return empty_ok()


RECONSTRUCT_HANDLERS = [*(_reconstruct_handler(level) for level in Level), reconstruct_all, invalidate_tags]
