"""Per-resource helpers: /statistics, /protected, /module, /module-patient, /shared-tags,
/instances-tags and /ordered-slices."""

from litestar import Request, Response, get, put
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.content import _form as tag_form
from fastpacs.api.responses import JSON_MEDIA_TYPE, empty_ok, json_response, text_response, unknown_resource
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.services.registry import Services


def _resource(public_id: str) -> RawId:
    rid = parse_id(public_id)
    if rid is None:
        raise unknown_resource()
    return rid


def _json(body: bytes) -> Response[bytes]:
    return Response(body, media_type=JSON_MEDIA_TYPE)


def _level_handlers(level: Level) -> list[HTTPRouteHandler]:
    base = f"/{level.plural}/{{resource_id:str}}"

    @get(f"{base}/statistics", name=f"{level.plural}-statistics")
    async def statistics(resource_id: str, services: Services) -> Response[bytes]:
        answer = services.statistics.of(level, _resource(resource_id))
        if answer is None:
            raise unknown_resource()
        return json_response(answer)

    @get(f"{base}/module", name=f"{level.plural}-module")
    async def module(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        return _json(
            await services.resource_tags.module(level, _resource(resource_id), level, tag_form(request))
        )

    handlers = [statistics, module]
    if level == Level.INSTANCE:
        return handlers

    @get(f"{base}/shared-tags", name=f"{level.plural}-shared-tags")
    async def shared_tags(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        rid = _resource(resource_id)
        return _json(await services.resource_tags.shared_tags(level, rid, tag_form(request)))

    @get(f"{base}/instances-tags", name=f"{level.plural}-instances-tags")
    async def instances_tags(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        rid = _resource(resource_id)
        return _json(await services.resource_tags.instances_tags(level, rid, tag_form(request)))

    return [*handlers, shared_tags, instances_tags]


@get("/studies/{resource_id:str}/module-patient", name="studies-module-patient")
async def study_patient_module(resource_id: str, request: Request, services: Services) -> Response[bytes]:
    rid = _resource(resource_id)
    return _json(await services.resource_tags.module(Level.STUDY, rid, Level.PATIENT, tag_form(request)))


@get("/series/{resource_id:str}/ordered-slices", name="series-ordered-slices")
async def ordered_slices(resource_id: str, services: Services) -> Response[bytes]:
    return json_response(services.slices.ordered(_resource(resource_id)))


def _patient_or_out_of_range(public_id: str) -> RawId:
    """Orthanc answers "Parameter out of range" for any unknown patient on /protected."""
    rid = parse_id(public_id)
    if rid is None:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    return rid


@get("/patients/{resource_id:str}/protected", name="patients-protected")
async def get_protected(resource_id: str, services: Services) -> Response[bytes]:
    protected = services.protection.is_protected(_patient_or_out_of_range(resource_id))
    return text_response("1" if protected else "0")


@put("/patients/{resource_id:str}/protected", name="patients-protected-set", status_code=200)
async def set_protected(resource_id: str, request: Request, services: Services) -> Response[bytes]:
    body = (await request.body()).decode("utf-8", errors="replace")
    await services.protection.set(_patient_or_out_of_range(resource_id), body)
    return empty_ok()


RESOURCE_HELPER_HANDLERS = [
    *(handler for level in Level for handler in _level_handlers(level)),
    study_patient_module,
    ordered_slices,
    get_protected,
    set_protected,
]
