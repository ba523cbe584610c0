"""/patients, /studies, /series, /instances: listings, single resources, relatives, deletion.

The four levels share the same routes; :func:`resource_router` builds the
router of one level.
"""

from litestar import Request, Response, Router, delete, get
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.responses import flag, json_response, paging, route_id, unknown_resource
from fastpacs.dicom.ids import Level, parse_id
from fastpacs.errors import BareHttpError
from fastpacs.services.registry import Services
from fastpacs.services.resources import ResourceJson, TagsFormat, formatted


def _tags_format(request: Request) -> TagsFormat:
    """``?simplify`` wins over ``?short``, which wins over ``?full``, as in Orthanc."""
    if flag(request, "simplify"):
        return TagsFormat.HUMAN
    if flag(request, "short"):
        return TagsFormat.SHORT
    return TagsFormat.FULL if flag(request, "full") else TagsFormat.HUMAN


def _answer(resources: ResourceJson | list[ResourceJson], request: Request) -> Response[bytes]:
    form = _tags_format(request)
    if isinstance(resources, list):
        return json_response([formatted(resource, form) for resource in resources])
    return json_response(formatted(resources, form))


def _relative_segment(level: Level, relative: Level) -> str:
    """``/studies/{id}/patient`` names an ancestor in the singular, descendants in the plural."""
    return relative.type_name.lower() if relative < level else relative.plural


def _relatives_handler(level: Level, relative: Level) -> HTTPRouteHandler:
    segment = _relative_segment(level, relative)

    @get(f"/{{resource_id:str}}/{segment}", name=f"{level.plural}-{segment}")
    async def relatives(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        rid = parse_id(resource_id)
        answer = None if rid is None else services.resources.related(level, rid, relative)
        if answer is None:
            raise unknown_resource()  # JSON 404, as for every route below an unknown resource
        return _answer(answer, request)

    return relatives


def resource_router(level: Level) -> Router:
    """Listing, GET, DELETE and relatives of one level."""

    @get("/", name=f"{level.plural}-list")
    async def list_resources(request: Request, services: Services) -> Response[bytes]:
        since, limit = paging(request)
        if flag(request, "expand"):
            return _answer(services.resources.list_expanded(level, since, limit), request)
        return json_response(services.resources.list_ids(level, since, limit))

    @get("/{resource_id:str}", name=f"{level.plural}-get")
    async def get_resource(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        answer = services.resources.get(level, route_id(resource_id))
        if answer is None:
            raise BareHttpError(404)
        return _answer(answer, request)

    @delete("/{resource_id:str}", name=f"{level.plural}-delete", status_code=200)
    async def delete_resource(resource_id: str, services: Services) -> Response[bytes]:
        try:
            remaining = await services.deletes.delete(level, route_id(resource_id))
        except KeyError:
            raise BareHttpError(404) from None
        return json_response({"RemainingAncestor": remaining})

    relatives = [_relatives_handler(level, relative) for relative in Level if relative != level]
    return Router(
        path=f"/{level.plural}", route_handlers=[list_resources, get_resource, delete_resource, *relatives]
    )
