"""/instances/{id}/tags, /simplified-tags, /header, /content/..., /pdf and /tools/default-encoding."""

from litestar import HttpMethod, Request, Response, get, route

from fastpacs.api.responses import JSON_MEDIA_TYPE, flag, json_response, text_response, unknown_resource
from fastpacs.dicom.dictionary import parse_tag
from fastpacs.dicom.ids import RawId, parse_id
from fastpacs.errors import BareHttpError
from fastpacs.services.content import TagForm
from fastpacs.services.registry import Services


def _instance_or_unknown(public_id: str) -> RawId:
    rid = parse_id(public_id)
    if rid is None:
        raise unknown_resource()
    return rid


def _form(request: Request) -> TagForm:
    """``?simplify`` wins over ``?short``, as in Orthanc."""
    if flag(request, "simplify"):
        return TagForm.SIMPLIFIED
    return TagForm.SHORT if flag(request, "short") else TagForm.FULL


def _json(body: bytes | None) -> Response[bytes]:
    if body is None:
        raise unknown_resource()
    return Response(body, media_type=JSON_MEDIA_TYPE)


def _ignored_lengths(request: Request) -> frozenset[int]:
    values = request.query_params.getall("ignore-length", [])
    return frozenset(parse_tag(tag) for value in values for tag in value.split(",") if tag)


@get("/instances/{instance_id:str}/tags", name="instance-tags")
async def instance_tags(instance_id: str, request: Request, services: Services) -> Response[bytes]:
    rid = _instance_or_unknown(instance_id)
    return _json(await services.content.tags(rid, _form(request), _ignored_lengths(request)))


@get("/instances/{instance_id:str}/simplified-tags", name="instance-simplified-tags")
async def instance_simplified_tags(instance_id: str, request: Request, services: Services) -> Response[bytes]:
    rid = _instance_or_unknown(instance_id)
    return _json(await services.content.tags(rid, TagForm.SIMPLIFIED, _ignored_lengths(request)))


@get("/instances/{instance_id:str}/header", name="instance-header")
async def instance_header(instance_id: str, request: Request, services: Services) -> Response[bytes]:
    return _json(services.content.header(_instance_or_unknown(instance_id), _form(request)))


async def _content(instance_id: str, path: str, services: Services) -> Response[bytes]:
    answer = await services.content.content(
        _instance_or_unknown(instance_id), [segment for segment in path.split("/") if segment]
    )
    if answer is None:
        raise unknown_resource()
    if answer.listing is not None:
        return json_response(answer.listing)
    return Response(answer.raw or b"", media_type="application/octet-stream")


@get("/instances/{instance_id:str}/content", name="instance-content-root")
async def instance_content_root(instance_id: str, services: Services) -> Response[bytes]:
    return await _content(instance_id, "", services)


@get("/instances/{instance_id:str}/content/{path:path}", name="instance-content")
async def instance_content(instance_id: str, path: str, services: Services) -> Response[bytes]:
    return await _content(instance_id, path, services)


@route(
    ["/instances/{instance_id:str}/content", "/instances/{instance_id:str}/content/{path:path}"],
    http_method=[HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE],
    name="instance-content-other-methods",
    include_in_schema=False,
)
async def instance_content_other_methods() -> Response[bytes]:
    """Orthanc answers another method than GET below /content as an unknown route, not with a 405."""
    raise unknown_resource()


@get("/instances/{instance_id:str}/pdf", name="instance-pdf")
async def instance_pdf(instance_id: str, services: Services) -> Response[bytes]:
    document = await services.content.pdf(_instance_or_unknown(instance_id))
    if document is None:
        raise BareHttpError(404)
    return Response(document, media_type="application/pdf")


@get("/tools/default-encoding", name="default-encoding-get")
async def get_default_encoding(services: Services) -> Response[bytes]:
    return text_response(services.default_encoding.name)


@route(
    "/tools/default-encoding",
    http_method=[HttpMethod.PUT, HttpMethod.POST],
    name="default-encoding-set",
    status_code=200,
)
async def set_default_encoding(request: Request, services: Services) -> Response[bytes]:
    name = (await request.body()).decode("utf-8", errors="replace").strip()
    services.default_encoding.set(name)
    return text_response(services.default_encoding.name)
